"""`meterhouse query`: a customer's meter usage from the terminal, computed as the API does.

It reads the same tables with the same code as `POST /v1/meter-usage/analytics`
(`api.usage.meter_usage`, `api.lookups`), so the numbers are the API's. Differences, for
convenience at a terminal: the tenant environment is found from the customer (no API key),
`--timezone` may override the customer's timezone, and MONTH windows start at the customer's
billing anchor (as on `/v1/events/analytics`).

Ranges: `--from`/`--to` take a date (midnight), a local time (`2024-03-08T09:00`) read in the
query's timezone, or an RFC 3339 instant with an offset. Default: the last 30 days up to the
next midnight.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.enums import WindowSize
from orchestration.warehouse import Warehouse, WarehouseConfig

EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 2, 3, 4
DEFAULT_DAYS = 30
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")


class QueryError(Exception):
    """A problem the user can fix: the message, the fix and the exit code."""

    def __init__(self, message: str, fix: str = "", exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code


@dataclass(frozen=True)
class QueryRequest:
    customer: str
    meters: tuple[str, ...] = ()  # empty: every meter of the tenant environment
    start: str = ""
    end: str = ""
    window: str | None = None
    timezone: str | None = None  # default: the customer's
    tenant: str | None = None
    environment: str | None = None


@dataclass
class MeterResult:
    meter_id: str
    name: str
    aggregation_type: str
    usage: object  # api.usage.Usage


@dataclass
class QueryResult:
    tenant_id: str
    environment_id: str
    customer: str
    timezone: str
    start: datetime
    end: datetime
    window: str | None
    meters: list[MeterResult] = field(default_factory=list)


# -- inputs ------------------------------------------------------------------------------------
def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"unknown timezone {name!r}",
                         "use an IANA name such as UTC, Europe/Berlin or America/New_York"
                         ) from None


def check_window(text: str | None) -> str | None:
    if not text:
        return None
    value = text.upper()
    if value not in {w.value for w in WindowSize}:
        raise QueryError(f"unknown window size {text!r}",
                         "use one of " + ", ".join(w.value for w in WindowSize))
    return value


def parse_instant(text: str, zone: ZoneInfo, option: str) -> datetime:
    """A date (local midnight), a local date-time (read in `zone`) or an RFC 3339 instant."""
    value = text.strip()
    try:
        if _DATE.match(value):
            return datetime.fromisoformat(value).replace(tzinfo=zone).astimezone(UTC)
        if _LOCAL.match(value):
            return datetime.fromisoformat(value).replace(tzinfo=zone).astimezone(UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise QueryError(f"{option} {text!r} is not a date or time",
                         f"write {option} 2024-03-01, {option} 2024-03-01T09:00 (in the "
                         f"query's timezone) or {option} 2024-03-01T09:00:00Z")
    return parsed.astimezone(UTC)


def default_range(zone: ZoneInfo, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last DEFAULT_DAYS days up to the next local midnight."""
    local = (now or datetime.now(UTC)).astimezone(zone)
    end = datetime(local.year, local.month, local.day, tzinfo=zone) + timedelta(days=1)
    start = end - timedelta(days=DEFAULT_DAYS)
    # wall-clock arithmetic, then back to instants (DST-correct midnights)
    start = datetime(start.year, start.month, start.day, tzinfo=zone)
    end = datetime(end.year, end.month, end.day, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


# -- reading -----------------------------------------------------------------------------------
@contextmanager
def open_warehouse(config: WarehouseConfig, serving_dir: str = "") -> Iterator[Warehouse]:
    """The warehouse, read-only. DuckDB: the file itself, or its serving snapshot while a
    build holds the file. Postgres: one read-only connection."""
    from api.db import PostgresReader, ReadOnlyWarehouse

    if config.target == "postgres":
        reader = PostgresReader(config, 1)
        try:
            with reader.open() as warehouse:
                yield warehouse
        finally:
            reader.close()
        return
    import duckdb

    from api.serving import current_snapshot, serving_dir_for

    path = Path(config.duckdb_path)
    if not path.exists():
        raise QueryError(f"there is no warehouse at {path}",
                         "build one with `meterhouse run --catalog DIR --landing DIR "
                         f"--warehouse {path}` (or `meterhouse demo`), or pass --warehouse FILE",
                         EXIT_NOT_FOUND)
    try:
        conn, schema, source = (duckdb.connect(str(path), read_only=True), config.schema_name,
                                str(path))
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        snapshot = current_snapshot(serving_dir_for(config, serving_dir))
        if snapshot is None:
            raise QueryError(f"the warehouse {path} is being written by a build ({exc})",
                             "retry when the run has finished", EXIT_UNAVAILABLE) from None
        conn, schema, source = duckdb.connect(str(snapshot), read_only=True), "main", str(snapshot)
    try:
        conn.execute("set TimeZone = 'UTC'")
        yield ReadOnlyWarehouse(config, conn, schema, source)
    finally:
        conn.close()


def find_environment(warehouse: Warehouse, request: QueryRequest) -> tuple[str, str]:
    """The tenant environment that has this customer (or the one given)."""
    if not warehouse.table_exists("catalog_customers"):
        raise QueryError("the warehouse has no catalog tables yet",
                         "run the pipeline first: meterhouse run --catalog DIR --landing DIR",
                         EXIT_NOT_FOUND)
    p = warehouse.ph
    where, params = [f"external_id = {p}"], [request.customer]
    if request.tenant:
        where.append(f"tenant_id = {p}")
        params.append(request.tenant)
    if request.environment:
        where.append(f"environment_id = {p}")
        params.append(request.environment)
    rows = warehouse.query(
        f"select distinct tenant_id, environment_id from {warehouse.table('catalog_customers')} "
        f"where {' and '.join(where)} order by 1, 2", params)
    if not rows:
        sample = warehouse.query(
            f"select external_id from {warehouse.table('catalog_customers')} "
            "order by external_id limit 5")
        known = ", ".join(row[0] for row in sample)
        scope = "".join(f" in {what} {value!r}" for what, value in
                        (("tenant", request.tenant), ("environment", request.environment))
                        if value)
        raise QueryError(f"no customer with external id {request.customer!r}{scope}",
                         f"give --customer an external_id from the catalog (e.g. {known})"
                         if known else "load a catalog with customers first", EXIT_NOT_FOUND)
    if len(rows) > 1:
        options = ", ".join(f"{t}/{e}" for t, e in rows)
        raise QueryError(f"customer {request.customer!r} exists in several tenant environments "
                         f"({options})", "pass --tenant and --environment", EXIT_USAGE)
    return rows[0][0], rows[0][1]


def run_query(warehouse: Warehouse, request: QueryRequest,
              now: datetime | None = None) -> QueryResult:
    from api import lookups
    from api.deps import Principal
    from api.errors import ApiError
    from api.inputs import check_range
    from api.settings import Settings
    from api.usage import UnsupportedAggregation, meter_usage
    from models import windows

    window = check_window(request.window)
    tenant, environment = find_environment(warehouse, request)
    principal = Principal(tenant, environment, "meterhouse-cli")
    customer = lookups.customer_by_external_id(warehouse, principal, request.customer)
    zone_name = request.timezone or customer.timezone
    zone = check_timezone(zone_name)
    start, end = default_range(zone, now)
    if request.start:
        start = parse_instant(request.start, zone, "--from")
    if request.end:
        end = parse_instant(request.end, zone, "--to")
    try:
        start, end = check_range(start, end, window, Settings(), "--from", "--to", "--window")
    except ApiError as exc:
        raise QueryError(exc.message, "change --from/--to or --window") from None

    all_meters = lookups.meters(warehouse, principal)
    by_id = {m.id: m for m in all_meters}
    chosen = []
    for meter_id in dict.fromkeys(request.meters) if request.meters else by_id:
        if meter_id not in by_id:
            known = ", ".join(by_id) or "none"
            raise QueryError(f"no meter {meter_id!r} in {tenant}/{environment}",
                             f"use one of: {known}", EXIT_NOT_FOUND)
        chosen.append(by_id[meter_id])
    calendar = lookups.customer_calendar(warehouse, principal, customer.external_id)
    anchor = windows.anchor_from_key(calendar.month_anchor_key, zone_name)
    result = QueryResult(tenant, environment, customer.external_id, zone_name, start, end, window)
    for meter in chosen:
        try:
            usage = meter_usage(warehouse, meter.info(), customer.external_id, start, end,
                                window, zone_name, anchor)
        except UnsupportedAggregation as exc:
            raise QueryError(f"meter {meter.id!r}: {exc}") from None
        result.meters.append(MeterResult(meter.id, meter.name, meter.aggregation_type, usage))
    return result


# -- output ------------------------------------------------------------------------------------
def _decimal(value) -> str:
    from api.encoding import decimal_text

    return decimal_text(value)


def _rfc3339(value: datetime) -> str:
    from api.encoding import rfc3339

    return rfc3339(value)


def _local(value: datetime, zone: str) -> str:
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def as_json(result: QueryResult) -> str:
    """The answer in the shape of POST /v1/meter-usage/analytics items, plus the query."""
    return json.dumps({
        "tenant_id": result.tenant_id,
        "environment_id": result.environment_id,
        "external_customer_id": result.customer,
        "timezone": result.timezone,
        "start_time": _rfc3339(result.start),
        "end_time": _rfc3339(result.end),
        "window_size": result.window,
        "items": [{
            "meter_id": m.meter_id,
            "name": m.name,
            "aggregation_type": m.aggregation_type,
            "total_value": _decimal(m.usage.total),
            "event_count": int(m.usage.event_count),  # Postgres sums counts as numeric
            "points": [{"timestamp": _rfc3339(p.start), "value": _decimal(p.value),
                        "event_count": int(p.event_count)} for p in m.usage.points],
        } for m in result.meters],
    }, indent=2)


def as_csv(result: QueryResult) -> str:
    """One row per point and one `total` row per meter; times in RFC 3339 (UTC)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["meter_id", "window_start", "window_end", "value", "event_count"])
    for m in result.meters:
        for p in m.usage.points:
            writer.writerow([m.meter_id, _rfc3339(p.start), _rfc3339(p.end), _decimal(p.value),
                             int(p.event_count)])
        writer.writerow([m.meter_id, "total", "", _decimal(m.usage.total),
                         int(m.usage.event_count)])
    return out.getvalue()


def as_table(result: QueryResult, style=lambda text, *styles: text) -> str:
    """Aligned columns for people: each meter's points, then its total in bold."""
    header = (f"{result.customer} ({result.tenant_id}/{result.environment_id}) · "
              f"{_local(result.start, result.timezone)} → {_local(result.end, result.timezone)} "
              f"{result.timezone}" + (f" · {result.window} windows" if result.window else ""))
    rows: list[tuple[str, str, str, str, bool]] = []
    for m in result.meters:
        for p in m.usage.points:
            rows.append((m.meter_id, _local(p.start, result.timezone), _decimal(p.value),
                         f"{int(p.event_count):,}", False))
        rows.append((m.meter_id, "total", _decimal(m.usage.total),
                     f"{int(m.usage.event_count):,}", True))
    titles = ("meter", f"window start ({result.timezone})", "value", "events")
    widths = [max([len(titles[i])] + [len(r[i]) for r in rows]) for i in range(4)]

    def line(cells) -> str:
        return (f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  "
                f"{cells[2]:>{widths[2]}}  {cells[3]:>{widths[3]}}")

    lines = [style(header, "bold"), style(line(titles), "dim")]
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            lines.append("")
        previous = row[0]
        lines.append(style(line(row), "bold") if row[4] else line(row))
    if not result.meters:
        lines.append("(no meters)")
    return "\n".join(lines)
