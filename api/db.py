"""Read-only access to the warehouse for the API: one connection per request, never a write.

- DuckDB: requests read the current serving snapshot (see `api.serving`) through cursors of
  one shared read-only connection per snapshot; when a newer snapshot is published the next
  request opens it, and requests under way finish on the old one. Without a snapshot each
  request opens the warehouse file itself read-only and closes it at once, and a build that
  holds the file makes that a 503.
- Postgres: a small pool of connections, each request in one read-only REPEATABLE READ
  transaction, so all its queries see the same committed data.

Catalog reads (API keys, customers, meters, prices, calendars, billing periods) are cached
per DuckDB snapshot (`catalog_query`): a snapshot never changes, and a new snapshot starts with
an empty cache, so a request never sees catalog rows of another snapshot than its data.
Postgres tables change under the reader at any commit; there every read goes to the database.

Errors of the engines that mean "not available right now" (a lock, a lost connection, a
table not built yet) become 503 ErrorResponses; `database_error` decides.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from api.errors import ApiError, unavailable
from api.serving import current_snapshot, serving_dir_for
from api.settings import Settings
from orchestration.warehouse import Warehouse, WarehouseConfig

log = logging.getLogger("meterhouse.api")

# Postgres: a request waits this long for a free connection before it gets a 503.
POOL_WAIT_SECONDS = 10
# Catalog answers kept per snapshot; past this many the cache starts over (bounded memory).
CATALOG_CACHE_ENTRIES = 50_000


class QueryCache:
    """Answers of catalog queries on one immutable snapshot, by (SQL, parameters)."""

    def __init__(self, max_entries: int = CATALOG_CACHE_ENTRIES):
        self.max_entries = max_entries
        self._rows: dict[tuple[str, tuple[Any, ...]], list[tuple]] = {}
        self._indexes: dict[tuple[str, tuple[Any, ...]], dict[tuple, list[tuple]]] = {}
        self._lock = threading.Lock()

    def get(self, sql: str, params: tuple[Any, ...]) -> list[tuple] | None:
        return self._rows.get((sql, params))

    def put(self, sql: str, params: tuple[Any, ...], rows: list[tuple]) -> None:
        with self._lock:
            if len(self._rows) >= self.max_entries:
                self._rows.clear()
            self._rows[(sql, params)] = rows

    def get_index(self, sql: str, params: tuple[Any, ...]) -> dict[tuple, list[tuple]] | None:
        return self._indexes.get((sql, params))

    def put_index(self, sql: str, params: tuple[Any, ...],
                  index: dict[tuple, list[tuple]]) -> None:
        """An answer indexed by key (`catalog_lookup`): one per table and tenant environment."""
        with self._lock:
            if len(self._indexes) >= self.max_entries:
                self._indexes.clear()
            self._indexes[(sql, params)] = index


def catalog_query(warehouse: Warehouse, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """`warehouse.query` for small catalog tables, answered from the snapshot's cache when the
    warehouse is a serving snapshot (callers must not change the rows they get)."""
    cache: QueryCache | None = getattr(warehouse, "cache", None)
    if cache is None:
        return warehouse.query(sql, list(params))
    key = tuple(params)
    rows = cache.get(sql, key)
    if rows is None:
        rows = warehouse.query(sql, list(key))
        cache.put(sql, key, rows)
    return rows


def environment_scope(tenant_id: str, environment_id: str) -> list[tuple[str, str]]:
    """The `scope` of `catalog_lookup` for one tenant environment."""
    return [("tenant_id", tenant_id), ("environment_id", environment_id)]


def catalog_lookup(warehouse: Warehouse, table: str, columns: str,
                   scope: Sequence[tuple[str, Any]], key: Sequence[tuple[str, Any]],
                   order: str = "") -> list[tuple]:
    """Rows (`columns`) of a small catalog table whose `scope` and `key` columns equal their
    values, in `order`. On a serving snapshot the rows of the whole scope (a tenant
    environment) are read once and indexed by the key columns, so every later lookup of any
    key is a dict lookup; elsewhere (Postgres) the database is asked for the key's rows."""
    p = warehouse.ph
    order_sql = f" order by {order}" if order else ""
    if getattr(warehouse, "cache", None) is None:
        where = " and ".join(f"{column} = {p}" for column, _ in [*scope, *key])
        return warehouse.query(f"select {columns} from {warehouse.table(table)} "
                               f"where {where}{order_sql}", [v for _, v in [*scope, *key]])
    width = len(key)
    where = " and ".join(f"{column} = {p}" for column, _ in scope)
    sql = (f"select {', '.join([*(column for column, _ in key), columns])} "
           f"from {warehouse.table(table)} where {where}{order_sql}")
    params = tuple(value for _, value in scope)
    cache: QueryCache = warehouse.cache
    index = cache.get_index(sql, params)
    if index is None:
        index = defaultdict(list)
        for row in warehouse.query(sql, list(params)):
            index[tuple(row[:width])].append(tuple(row[width:]))
        index = dict(index)
        cache.put_index(sql, params, index)
    return index.get(tuple(value for _, value in key), [])


class ReadOnlyWarehouse(Warehouse):
    """A `Warehouse` over a connection the reader owns (queries only)."""

    def __init__(self, config: WarehouseConfig, conn: Any, schema: str, source: str,
                 cache: QueryCache | None = None):
        super().__init__(config)
        self._conn = conn
        self.schema = schema
        self.source = source  # what is being read, for messages
        self.cache = cache  # catalog answers of this snapshot (None: always ask the database)

    def connect(self) -> None:  # the reader connected already
        return None

    def close(self) -> None:  # the reader closes
        return None


class WarehouseReader(Protocol):
    def open(self) -> Any: ...  # a context manager yielding a ReadOnlyWarehouse

    def close(self) -> None: ...


def make_reader(settings: Settings) -> WarehouseReader:
    if settings.warehouse.target == "duckdb":
        return DuckDBReader(settings.warehouse, serving_dir_for(settings.warehouse,
                                                                settings.serving_dir),
                            settings.duckdb_memory_limit, settings.duckdb_threads)
    if settings.warehouse.target == "postgres":
        return PostgresReader(settings.warehouse, settings.pg_pool_size)
    raise ValueError(f"unknown warehouse target {settings.warehouse.target!r}")


# --------------------------------------------------------------------------------------------
# DuckDB


class DuckDBReader:
    def __init__(self, config: WarehouseConfig, serving_dir: Path, memory_limit: str = "1GB",
                 threads: int = 1):
        self.config = config
        self.serving_dir = serving_dir
        self._memory_limit = memory_limit
        self._threads = threads
        self._lock = threading.Lock()
        self._snapshot: Path | None = None
        self._shared: Any = None
        self._cache = QueryCache()

    def _connect(self, path: Path) -> Any:
        """A read-only connection held to the API's memory limit and thread count."""
        import duckdb

        conn = duckdb.connect(str(path), read_only=True)
        conn.execute(f"set memory_limit = '{self._memory_limit}'")
        conn.execute(f"set threads = {int(self._threads)}")
        return conn

    def _connection_to(self, snapshot: Path) -> tuple[Any, QueryCache]:
        with self._lock:
            if self._snapshot != snapshot:
                conn = self._connect(snapshot)
                # requests under way keep their own cursors (and cache); the old connection
                # is dropped
                self._snapshot, self._shared, self._cache = snapshot, conn, QueryCache()
                log.info("serving snapshot %s", snapshot.name)
            return self._shared, self._cache

    @contextmanager
    def open(self) -> Iterator[ReadOnlyWarehouse]:
        import duckdb

        snapshot = current_snapshot(self.serving_dir)
        if snapshot is not None:
            conn, cache = self._connection_to(snapshot)
            cursor = conn.cursor()
            try:
                cursor.execute("set TimeZone = 'UTC'")
                yield ReadOnlyWarehouse(self.config, cursor, "main", snapshot.name, cache)
            finally:
                cursor.close()
            return
        path = Path(self.config.duckdb_path)
        if not path.exists():
            raise unavailable(f"the warehouse {path} does not exist yet; run the pipeline "
                              "(meterhouse run) first")
        try:
            conn = self._connect(path)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            raise unavailable(
                "the warehouse is being written by a build and no serving snapshot has been "
                "published; retry shortly (publish snapshots to serve during builds)"
            ) from exc
        try:
            conn.execute("set TimeZone = 'UTC'")
            yield ReadOnlyWarehouse(self.config, conn, self.config.schema_name, str(path))
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._shared is not None:
                self._shared.close()
            self._snapshot, self._shared = None, None


# --------------------------------------------------------------------------------------------
# Postgres


class PostgresReader:
    def __init__(self, config: WarehouseConfig, pool_size: int):
        self.config = config
        self.pool_size = max(1, pool_size)
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._lock = threading.Lock()
        self._pool: Any = None

    def _get_pool(self) -> Any:
        from psycopg2.pool import ThreadedConnectionPool

        with self._lock:
            if self._pool is None:
                self._pool = ThreadedConnectionPool(
                    0, self.pool_size,
                    host=self.config.pg_host, port=self.config.pg_port,
                    user=self.config.pg_user, password=self.config.pg_password or None,
                    dbname=self.config.pg_database, connect_timeout=5,
                    options="-c timezone=UTC -c statement_timeout=60000",
                    application_name="meterhouse-api",
                )
            return self._pool

    @contextmanager
    def open(self) -> Iterator[ReadOnlyWarehouse]:
        import psycopg2

        if not self._slots.acquire(timeout=POOL_WAIT_SECONDS):
            raise unavailable(f"all {self.pool_size} warehouse connections are busy; retry")
        try:
            try:
                pool = self._get_pool()
                conn = pool.getconn()
            except psycopg2.Error as exc:
                raise unavailable(
                    f"cannot connect to PostgreSQL at {self.config.pg_host}:"
                    f"{self.config.pg_port}/{self.config.pg_database}: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
                ) from exc
            healthy = True
            try:
                conn.set_session(readonly=True, isolation_level="REPEATABLE READ",
                                 autocommit=False)
                yield ReadOnlyWarehouse(self.config, conn, self.config.schema_name,
                                        self.config.pg_database)
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                healthy = False
                raise
            finally:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    healthy = False
                pool.putconn(conn, close=not healthy)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
            self._pool = None


# --------------------------------------------------------------------------------------------
# Engine errors


def database_error(exc: Exception) -> ApiError:
    """What an engine error means for the caller: 503 when retrying can help, else 500."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        import duckdb

        if isinstance(exc, duckdb.IOException | duckdb.ConnectionException):
            return unavailable("the warehouse cannot be read right now; retry shortly")
        if isinstance(exc, duckdb.CatalogException):
            return unavailable(f"the warehouse is not fully built ({text}); run the pipeline")
    except ImportError:  # pragma: no cover
        pass
    try:
        import psycopg2
        from psycopg2 import errors as pg_errors

        if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
            return unavailable("the warehouse connection failed; retry shortly")
        if isinstance(exc, pg_errors.UndefinedTable | pg_errors.InvalidSchemaName):
            return unavailable(f"the warehouse is not fully built ({text}); run the pipeline")
    except ImportError:  # pragma: no cover
        pass
    log.error("warehouse error: %s", text)
    return ApiError(500, "database_error", "the warehouse query failed; the server log has "
                                          "the details")
