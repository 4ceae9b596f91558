"""Connections to the warehouse: an embedded DuckDB file, a PostgreSQL server or Spark.

Everything Python writes into the warehouse (raw events, rejects, catalog tables, calendars)
goes through `Warehouse`, so that ingest and catalog code never care which engine is behind.
dbt reads the same tables as sources; the read API reads the serving tables.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

DEFAULT_DUCKDB_PATH = "warehouse/meterhouse.duckdb"
# Column types of the work tables of `query_arrow_over`, by Arrow type.
_WORK_COLUMN_TYPES = {pa.string(): "varchar", pa.int64(): "bigint"}
DEFAULT_SPARK_WAREHOUSE = "warehouse/spark"


def duckdb_memory_limit() -> str:
    """What one DuckDB connection of the pipeline may hold (dbt's profile reads the same
    variable); beyond it DuckDB spills to disk instead of taking the machine."""
    return os.environ.get("MH_DUCKDB_MEMORY_LIMIT", "3GB")
TARGETS = ("duckdb", "postgres", "spark")


@dataclass(frozen=True)
class WarehouseConfig:
    """Where the warehouse is. `target` is the dbt target name: duckdb, postgres or spark."""

    target: str = "duckdb"
    duckdb_path: str = DEFAULT_DUCKDB_PATH
    # Spark (orchestration/spark.py): the folder of its tables and metastore
    spark_warehouse: str = DEFAULT_SPARK_WAREHOUSE
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    pg_database: str = "meterhouse"
    schema: str = field(default="")

    @property
    def schema_name(self) -> str:
        if self.schema:
            return self.schema
        return "main" if self.target == "duckdb" else "meterhouse"

    @classmethod
    def from_env(cls, target: str | None = None, duckdb_path: str | None = None) -> WarehouseConfig:
        env = os.environ
        return cls(
            target=target or env.get("MH_TARGET", "duckdb"),
            duckdb_path=duckdb_path or env.get("MH_DUCKDB_PATH", DEFAULT_DUCKDB_PATH),
            pg_host=env.get("MH_PG_HOST", "127.0.0.1"),
            pg_port=int(env.get("MH_PG_PORT", "5432")),
            pg_user=env.get("MH_PG_USER", "postgres"),
            pg_password=env.get("MH_PG_PASSWORD", ""),
            pg_database=env.get("MH_PG_DATABASE", "meterhouse"),
            schema=env.get("MH_SCHEMA", ""),
            spark_warehouse=env.get("MH_SPARK_WAREHOUSE", DEFAULT_SPARK_WAREHOUSE),
        )

    def dbt_env(self) -> dict[str, str]:
        """Environment variables that dbt_project/profiles.yml reads."""
        return {
            "MH_DUCKDB_PATH": str(Path(self.duckdb_path).resolve()),
            "MH_PG_HOST": self.pg_host,
            "MH_PG_PORT": str(self.pg_port),
            "MH_PG_USER": self.pg_user,
            "MH_PG_PASSWORD": self.pg_password,
            "MH_PG_DATABASE": self.pg_database,
            "MH_SCHEMA": self.schema_name,
            "MH_SPARK_WAREHOUSE": str(Path(self.spark_warehouse).resolve()),
        }


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be reached; nothing was written."""


class Warehouse:
    """A short-lived connection to the warehouse with the few operations Python needs."""

    def __init__(self, config: WarehouseConfig):
        self.config = config
        self.schema = config.schema_name
        self._conn: Any = None

    # -- connection -------------------------------------------------------------------------
    def __enter__(self) -> Warehouse:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        if self._conn is not None:
            return
        if self.config.target == "duckdb":
            import duckdb

            path = Path(self.config.duckdb_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = duckdb.connect(str(path))
            self._conn.execute("set TimeZone = 'UTC'")
            self._conn.execute("set memory_limit = ?", [duckdb_memory_limit()])
        elif self.config.target == "postgres":
            import psycopg2

            ensure_postgres_database(self.config)
            try:
                self._conn = psycopg2.connect(
                    host=self.config.pg_host,
                    port=self.config.pg_port,
                    user=self.config.pg_user,
                    password=self.config.pg_password or None,
                    dbname=self.config.pg_database,
                    connect_timeout=5,
                )
            except psycopg2.OperationalError as exc:  # pragma: no cover - depends on server
                raise WarehouseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
            self._conn.autocommit = False
            with self._conn.cursor() as cur:
                cur.execute("set time zone 'UTC'")
                cur.execute(f'create schema if not exists "{self.schema}"')
            self._conn.commit()
        elif self.config.target == "spark":
            from orchestration.spark import SparkTables, spark_session

            session = spark_session(self.config.spark_warehouse)
            self._conn = SparkTables(session, self.schema)
        else:
            raise ValueError(f"unknown warehouse target {self.config.target!r}")

    def close(self) -> None:
        if self._conn is not None:
            if not self.is_spark:  # the process keeps its one SparkSession
                self._conn.close()
            self._conn = None

    @property
    def is_duckdb(self) -> bool:
        return self.config.target == "duckdb"

    @property
    def is_postgres(self) -> bool:
        return self.config.target == "postgres"

    @property
    def is_spark(self) -> bool:
        return self.config.target == "spark"

    def table(self, name: str) -> str:
        """Fully qualified, quoted table name in our schema."""
        return f'"{self.schema}"."{name}"'

    # -- statements ---------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement. Use `?` placeholders on DuckDB and `%s` on Postgres via `ph`."""
        if self.is_duckdb:
            self._conn.execute(sql, params or [])
        elif self.is_spark:
            self._conn.execute(sql, params)
        else:
            with self._conn.cursor() as cur:
                cur.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        if self.is_spark:
            return self._conn.query(sql, params)
        if self.is_duckdb:
            return self._conn.execute(sql, params or []).fetchall()
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        if self.is_spark:
            return self._conn.query_dicts(sql, params)
        if self.is_duckdb:
            cur = self._conn.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """A result as Arrow. DuckDB keeps the column types; on Postgres every column arrives
        as text (through COPY csv, NULL kept apart from ''), so cast in SQL what matters.
        Spark keeps the column types, like DuckDB."""
        if self.is_spark:
            return self._conn.query_arrow(sql, params)
        if self.is_duckdb:
            return self._conn.sql(sql, params=list(params or [])).to_arrow_table()
        import pyarrow.csv as pacsv

        with self._conn.cursor() as cur:
            query = cur.mogrify(sql, params).decode() if params else sql
            cur.execute(f"select * from ({query}) as q limit 0")
            names = [d[0] for d in cur.description]
            buf = io.BytesIO()
            cur.copy_expert(f"copy ({query}) to stdout with (format csv)", buf)
        if buf.tell() == 0:
            return pa.table({n: pa.array([], pa.string()) for n in names})
        buf.seek(0)
        return pacsv.read_csv(
            buf,
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    def query_arrow_over(self, data: pa.Table, sql: str) -> pa.Table:
        """`query_arrow` of `sql`, which reads the rows of `data` as the table `{data}`: on
        DuckDB straight from Arrow, elsewhere from a work table written for the query (in
        the current transaction, dropped after it)."""
        if self.is_duckdb:
            query = sql.replace("{data}", "_mh_data")
            return self._conn.from_arrow(data).query("_mh_data", query).to_arrow_table()
        work = f"_mh_work_{uuid.uuid4().hex[:12]}"
        types = ", ".join(f'"{f.name}" {_WORK_COLUMN_TYPES[f.type]}' for f in data.schema)
        self.execute(f"create table {self.table(work)} ({types})")
        try:
            self.append_arrow(work, data)
            return self.query_arrow(sql.replace("{data}", self.table(work)))
        finally:
            self.execute(f"drop table {self.table(work)}")

    @property
    def ph(self) -> str:
        """The parameter placeholder of this engine."""
        return "%s" if self.is_postgres else "?"

    def table_exists(self, name: str) -> bool:
        if self.is_spark:
            return self._conn.table_exists(name)
        rows = self.query(
            "select count(*) from information_schema.tables "
            f"where table_schema = {self.ph} and table_name = {self.ph}",
            [self.schema, name],
        )
        return rows[0][0] > 0

    def columns(self, name: str, schema: str | None = None) -> list[tuple[str, str]]:
        """(column name, engine type name) of a table, in order; [] when it does not exist."""
        if self.is_spark:
            return self._conn.columns(name, schema)
        return [tuple(row) for row in self.query(
            "select column_name, data_type from information_schema.columns "
            f"where table_schema = {self.ph} and table_name = {self.ph} "
            "order by ordinal_position",
            [schema or self.schema, name],
        )]

    @contextmanager
    def transaction(self) -> Iterator[Warehouse]:
        """All statements inside commit together or not at all (not on Spark: Parquet tables
        have no transactions; each write is visible when it is done)."""
        if self.is_spark:
            yield self
        elif self.is_duckdb:
            self._conn.execute("begin transaction")
            try:
                yield self
            except BaseException:
                self._conn.execute("rollback")
                raise
            self._conn.execute("commit")
        else:
            try:
                yield self
            except BaseException:
                self._conn.rollback()
                raise
            self._conn.commit()

    def commit(self) -> None:
        if self.is_postgres:
            self._conn.commit()

    # -- bulk writes --------------------------------------------------------------------------
    def append_arrow(self, name: str, data: pa.Table, keep_order: bool = True) -> None:
        """Append an Arrow table to an existing table with the same column names.
        `keep_order=False`: the rows may be stored in any order (DuckDB writes them faster,
        in parallel); for tables whose rows carry their order, like raw_events."""
        if data.num_rows == 0:
            return
        if self.is_spark:
            self._conn.append_arrow(self.table(name), data)
            return
        cols = ", ".join(f'"{c}"' for c in data.column_names)
        if self.is_duckdb:
            # A relation's own name, not register(): a view registered and dropped inside a
            # transaction keeps its Arrow data alive until the commit, so one ingest held
            # every chunk it wrote (6 GB at 10M events).
            insert = f"insert into {self.table(name)} ({cols}) select {cols} from _mh_append"
            if keep_order:
                self._conn.from_arrow(data).query("_mh_append", insert)
                return
            self._conn.execute("set session preserve_insertion_order = false")
            try:
                self._conn.from_arrow(data).query("_mh_append", insert)
            finally:
                self._conn.execute("reset session preserve_insertion_order")
            return
        import pyarrow.csv as pacsv

        buf = io.BytesIO()
        pacsv.write_csv(
            data, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
        )
        buf.seek(0)
        with self._conn.cursor() as cur:
            cur.copy_expert(
                f"copy {self.table(name)} ({cols}) from stdin with (format csv, null '')",
                io.TextIOWrapper(buf, encoding="utf-8"),
            )

    def replace_arrow(self, name: str, data: pa.Table, ddl: str) -> None:
        """Replace a table's content inside the current transaction: create if needed,
        delete everything, append. `ddl` is the column list of the create statement."""
        if self.is_spark:
            self._conn.replace_arrow(self.table(name), data, ddl)
            return
        self.execute(f"create table if not exists {self.table(name)} ({ddl})")
        self.execute(f"delete from {self.table(name)}")
        self.append_arrow(name, data)


def ensure_postgres_database(config: WarehouseConfig) -> None:
    """Create the configured database on the server if it does not exist yet."""
    import psycopg2

    try:
        conn = psycopg2.connect(
            host=config.pg_host,
            port=config.pg_port,
            user=config.pg_user,
            password=config.pg_password or None,
            dbname="postgres",
            connect_timeout=5,
        )
    except psycopg2.OperationalError as exc:
        raise WarehouseUnavailable(
            f"cannot connect to PostgreSQL at {config.pg_host}:{config.pg_port}: "
            f"{str(exc).strip()}"
        ) from exc
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", [config.pg_database])
            if cur.fetchone() is None:
                cur.execute(f'create database "{config.pg_database}"')
                cur.execute(f'alter database "{config.pg_database}" set timezone to \'UTC\'')
    finally:
        conn.close()
