"""Event ingest: landing files and warehouse tables into the raw tables.

`ingest_landing` reads `<landing>/<tenant_id>/<environment_id>/**/*.{jsonl,json,csv,parquet}`
and `ingest_table` copies events that already sit in a warehouse table. Both validate every
row, write each accepted *distinct version* of an event to `raw_events`, each rejected row with
its 1-based line number and a reason to `raw_event_rejects`, and one row per file (or table
snapshot) to `raw_ingested_files`, all in one transaction: a crash leaves nothing behind and
the next run redoes the work (docs/ARCHITECTURE.md "Raw tables", DESIGN 3, 3b.9, 3b.10).

The heavy lifting is vectorised in a scratch in-memory DuckDB (JSON parsing, regex checks,
casts, hashing, dedup windows); the results reach the warehouse as Arrow through `Warehouse`,
so DuckDB and Postgres warehouses behave the same. Files are checked and written in chunks of
about 64 MB of input inside the one transaction, so memory does not grow with the run; a chunk
dedups against the versions earlier chunks wrote. One background thread reads, hashes and
parses the next files (Python's CSV reader, pyarrow) while DuckDB checks and writes the chunk
before them. Parquet files whose event columns are plain strings are read by DuckDB, all
together; any other Parquet file by pyarrow (a property test holds both paths, and one chunk
against one chunk per file, to the same tables). Decisions a reader may look for:

- Line numbers are physical, 1-based line numbers of the file (CSV: the line the record starts
  on, the header being line 1). Blank lines (only JSON whitespace) are skipped and not counted
  as rows, but keep their number. Parquet rows are numbered from 1 in file order.
- A UTF-8 byte-order mark at the start of a file is ignored. `.json` files are JSON Lines.
- Fields: `event_id`, `event_name`, `external_customer_id` are required non-blank JSON strings
  (a number is rejected, never converted); `customer_id`, `source` are optional strings (an
  empty string is stored as NULL, Flexprice's zero value); `tenant_id`/`environment_id` in an
  event must equal the landing path's; unknown top-level fields are ignored; a known field
  given twice in one object is rejected (parsers disagree on which one wins).
- `timestamp`: RFC 3339 with `T`, `t` or a space, seconds required, at most 6 fractional
  digits (more is rejected rather than silently truncated), an explicit offset or `Z`, stored
  as the UTC instant; the instant must lie in [1970-01-01, 2100-01-01).
- `properties`: a JSON object (absent or null → `{}`), stored compactly re-serialised with
  every number kept exactly as sent (`1.10` stays `1.10`, `1e5` stays `1e5`). NaN/Infinity
  and `\\u0000` in properties are rejected (Postgres jsonb refuses them). Lines are parsed by
  DuckDB's JSON reader, which also tolerates trailing commas; what is stored is strict JSON.
  A duplicate key *inside* properties is not looked for (it costs a second parse of every
  line); DuckDB would read the first and Postgres jsonb the last.
- Content hash: md5 of the length-prefixed event_name, external_customer_id,
  customer_id, source, UTC epoch microseconds and compact properties; so the same event sent
  with another UTC offset, other whitespace or in another format is an identical re-send.
  It is only ever compared between versions of one event id, where md5 is ample; it is half
  the cost of the sha256 that versions stored before 2026-11-27 hold, and still match by.
- CSV: a header row is required; columns beyond the event fields become string properties
  (`x` or `properties.x` → property `x`; an empty cell adds nothing; a key also present in
  the `properties` column rejects the row); a header without a required column rejects every
  row; a row with the wrong number of fields is rejected; an empty required cell is "empty".
- Parquet and warehouse tables are typed: string or integer id columns are accepted,
  timestamp-with-time-zone columns are instants, naive timestamp columns are rejected (no
  offset), nanoseconds that microseconds would drop are rejected, properties may be JSON text
  or a struct/map column (written by DuckDB's to_json); other columns are ignored.
- A file that cannot be read at all (corrupt Parquet) is one reject with line 0, recorded so it
  is not retried until it changes.
- Dedup (DESIGN 3b.9): versions are ordered by files in sorted relative-path order, then line
  order, and numbered by a global `ingest_seq`. A row whose content hash equals the current
  latest version of its id (in the warehouse or earlier in the run) is an identical re-send:
  accepted, counted as a duplicate, not stored. A rejected row never replaces a version.
- A file is skipped when the latest ingest of the same relative path had the same sha256; a
  changed file is ingested again, its unchanged lines counting as identical re-sends.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestration.warehouse import Warehouse

# -- the contract (docs/ARCHITECTURE.md, "Raw tables") ----------------------------------------

RAW_EVENTS = "raw_events"
RAW_EVENT_REJECTS = "raw_event_rejects"
RAW_INGESTED_FILES = "raw_ingested_files"

RAW_EVENTS_DDL = """
    tenant_id varchar not null,
    environment_id varchar not null,
    event_id varchar not null,
    event_name varchar not null,
    external_customer_id varchar not null,
    customer_id varchar,
    source varchar,
    event_timestamp timestamptz not null,
    properties varchar not null,
    ingest_seq bigint not null,
    ingested_at timestamptz not null,
    source_file varchar not null,
    source_line bigint not null,
    content_hash varchar not null
"""
RAW_EVENT_REJECTS_DDL = """
    tenant_id varchar,
    environment_id varchar,
    source_file varchar not null,
    source_line bigint not null,
    raw_line varchar,
    reason varchar not null,
    rejected_at timestamptz not null
"""
RAW_INGESTED_FILES_DDL = """
    tenant_id varchar,
    environment_id varchar,
    source_file varchar not null,
    file_sha256 varchar not null,
    file_bytes bigint,
    rows_read bigint not null,
    rows_accepted bigint not null,
    rows_rejected bigint not null,
    rows_duplicate bigint not null,
    batch_id varchar not null,
    ingested_at timestamptz not null
"""
RAW_TABLES = {
    RAW_EVENTS: RAW_EVENTS_DDL,
    RAW_EVENT_REJECTS: RAW_EVENT_REJECTS_DDL,
    RAW_INGESTED_FILES: RAW_INGESTED_FILES_DDL,
}

LANDING_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
RAW_LINE_MAX_CHARS = 10_000  # "truncated to 10 kB": the first 10,000 characters
EARLIEST_TIMESTAMP = "1970-01-01 00:00:00+00"
LATEST_TIMESTAMP = "2100-01-01 00:00:00+00"  # exclusive

REQUIRED_FIELDS = ("event_id", "event_name", "external_customer_id")
OPTIONAL_FIELDS = ("customer_id", "source")
SCOPE_FIELDS = ("tenant_id", "environment_id")
STRING_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS + SCOPE_FIELDS
EVENT_FIELDS = STRING_FIELDS + ("timestamp", "properties")
CSV_REQUIRED_COLUMNS = REQUIRED_FIELDS + ("timestamp",)

Progress = Callable[[str], None]


# -- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileReport:
    """What happened to one landing file (or one table snapshot)."""

    source_file: str
    tenant_id: str | None
    environment_id: str | None
    file_sha256: str
    file_bytes: int | None
    skipped: bool = False
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0

    @property
    def stored(self) -> int:
        """New versions written to raw_events."""
        return self.accepted - self.duplicates


@dataclass(frozen=True)
class IngestReport:
    """Per-file and total counts of one run. rows_read = accepted + rejected, per file."""

    batch_id: str
    files: tuple[FileReport, ...] = ()
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def _sum(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def rows_read(self) -> int:
        return self._sum("rows_read")

    @property
    def accepted(self) -> int:
        return self._sum("accepted")

    @property
    def rejected(self) -> int:
        return self._sum("rejected")

    @property
    def duplicates(self) -> int:
        return self._sum("duplicates")

    @property
    def stored(self) -> int:
        return self._sum("stored")

    @property
    def files_ingested(self) -> int:
        return sum(1 for f in self.files if not f.skipped)

    @property
    def files_skipped(self) -> int:
        return sum(1 for f in self.files if f.skipped)


# -- landing folder --------------------------------------------------------------------------


@dataclass(frozen=True)
class LandingFile:
    path: Path
    source_file: str  # relative to the landing folder, with forward slashes
    tenant_id: str
    environment_id: str
    format: str


def find_landing_files(landing_dir: Path) -> list[LandingFile]:
    """Event files under `<landing>/<tenant>/<environment>/`, in sorted relative-path order.

    Hidden files and folders (a leading `.`) are ignored: writers use them for partial files."""
    landing_dir = Path(landing_dir)
    found = []
    for path in landing_dir.rglob("*"):
        fmt = LANDING_FORMATS.get(path.suffix.lower())
        if fmt is None or not path.is_file():
            continue
        parts = path.relative_to(landing_dir).parts
        if len(parts) < 3 or any(p.startswith(".") for p in parts):
            continue
        found.append(LandingFile(path, "/".join(parts), parts[0], parts[1], fmt))
    return sorted(found, key=lambda f: f.source_file)


def pending_landing_files(warehouse: Warehouse, landing_dir: Path) -> list[str]:
    """Relative paths of landing files the next `ingest_landing` would ingest (read only)."""
    latest = _latest_file_ingests(warehouse) if warehouse.table_exists(RAW_INGESTED_FILES) else {}
    return [f.source_file for f in find_landing_files(landing_dir)
            if _needs_ingest(f, latest)]  # fmt: skip


def _latest_file_ingests(warehouse: Warehouse) -> dict[str, tuple[str, int | None]]:
    """source_file → (sha256, bytes) of its most recent ingest."""
    rows = warehouse.query(
        f"select source_file, file_sha256, file_bytes from {warehouse.table(RAW_INGESTED_FILES)} "
        "order by ingested_at, batch_id"
    )
    return {source_file: (sha, size) for source_file, sha, size in rows}


def _needs_ingest(file: LandingFile, latest: dict[str, tuple[str, int | None]]) -> bool:
    previous = latest.get(file.source_file)
    if previous is None or previous[1] != file.path.stat().st_size:
        return True  # no need to hash a file whose size tells it is new
    return _sha256_file(file.path) != previous[0]


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- public entry points ---------------------------------------------------------------------


def ensure_raw_tables(warehouse: Warehouse) -> None:
    """Create the raw tables when missing (portable DDL: varchar, bigint, timestamptz)."""
    for name, ddl in RAW_TABLES.items():
        warehouse.execute(f"create table if not exists {warehouse.table(name)} ({ddl})")
    if warehouse.is_postgres:
        # The dedup lookup reads the latest version of a batch's ids; on DuckDB a zone-map
        # scan is fast and an index would slow every append.
        warehouse.execute(
            f"create index if not exists raw_events_event_key on {warehouse.table(RAW_EVENTS)} "
            "(tenant_id, environment_id, event_id, ingest_seq)"
        )
    warehouse.commit()


def ingest_landing(
    warehouse: Warehouse, landing_dir: Path, progress: Progress | None = None
) -> IngestReport:
    """Ingest every new or changed landing file, in one transaction."""
    say = progress or (lambda message: None)
    ensure_raw_tables(warehouse)
    with _Batch(warehouse) as batch, warehouse.transaction():
        _lock_raw_tables(warehouse)
        latest = _latest_file_ingests(warehouse)
        skipped: list[FileReport] = []
        files = find_landing_files(landing_dir)
        for file, sha, size, parsed in _read_ahead(files, latest, batch.FLUSH_BYTES):
            if parsed is None:
                skipped.append(FileReport(file.source_file, file.tenant_id, file.environment_id,
                                          sha, size, skipped=True))  # fmt: skip
                say(f"{file.source_file}: already ingested, skipped")
                continue
            batch.add_parsed(file, sha, size, parsed)
            say(f"{file.source_file}: {size:,} bytes read")
        report = batch.write()
    report = IngestReport(report.batch_id, tuple(report.files) + tuple(skipped),
                          report.reject_reasons)  # fmt: skip
    say(
        f"ingest: {report.files_ingested} files ({report.files_skipped} skipped), "
        f"{report.rows_read:,} rows read, {report.accepted:,} accepted "
        f"({report.duplicates:,} duplicates), {report.rejected:,} rejected"
    )
    return report


def ingest_table(
    warehouse: Warehouse,
    source_table: str,
    *,
    tenant_id: str | None = None,
    environment_id: str | None = None,
    tenant_id_column: str = "tenant_id",
    environment_id_column: str = "environment_id",
    progress: Progress | None = None,
) -> IngestReport:
    """Copy the events of a warehouse table into the raw tables (the warehouse-native source).

    The table has the event's column names (`event_id`, `event_name`, `external_customer_id`,
    `customer_id`, `source`, `timestamp` as timestamptz or RFC 3339 text, `properties` as JSON
    text); the tenant and environment come from `tenant_id_column`/`environment_id_column`, or
    from the fixed `tenant_id`/`environment_id` when given. The table is a snapshot: rows are
    numbered by (timestamp, event_id) as `source_line` of `table:<source_table>`; the last row
    of an id is its version, earlier rows of the same id count as duplicates; a version equal
    to the latest stored one is not stored again, so re-running ingests nothing twice. An
    unchanged snapshot (same content fingerprint as the last ingest) is skipped outright."""
    say = progress or (lambda message: None)
    source_file = f"table:{source_table}"
    ensure_raw_tables(warehouse)
    with _Batch(warehouse, snapshot=True) as batch, warehouse.transaction():
        _lock_raw_tables(warehouse)
        data = _read_source_table(
            warehouse, source_table, tenant_id, environment_id, tenant_id_column,
            environment_id_column,
        )  # fmt: skip
        previous = _latest_file_ingests(warehouse).get(source_file, ("", None))[0]
        fingerprint = batch.add_table(source_file, data, previous)
        if fingerprint == previous:
            say(f"{source_file}: unchanged since the last ingest, skipped")
            file = FileReport(source_file, tenant_id, environment_id, fingerprint, None, True)
            return IngestReport(f"skipped-{uuid.uuid4().hex[:8]}", (file,))
        report = batch.write()
    say(
        f"{source_file}: {report.rows_read:,} rows read, {report.accepted:,} accepted "
        f"({report.duplicates:,} duplicates), {report.rejected:,} rejected"
    )
    return report


def _lock_raw_tables(warehouse: Warehouse) -> None:
    """One ingest at a time on Postgres (ingest_seq continues from the max); readers go on.
    DuckDB allows a single writer process anyway."""
    if warehouse.is_postgres:
        warehouse.execute(f"lock table {warehouse.table(RAW_INGESTED_FILES)} in exclusive mode")


# -- SQL building blocks (run in the scratch DuckDB) -----------------------------------------
# Regular expressions are RE2 syntax inside single-quoted SQL literals (no quotes inside).
# RE2 is fast when a pattern starts with a literal and slow (≈4 ns/byte) when it starts with a
# class, so the costly patterns only run on rows a cheap test could not settle.

_BLANK = r"[ \t\r\n]*"
_JSON_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
# DuckDB's JSON reader accepts NaN and Infinity (any case) and keeps them verbatim in what it
# writes back; Postgres jsonb does not, so compact properties text is checked for them: a
# suspect is confirmed on the text with strings and numbers removed.
_NAN_SUSPECT = r"[:,\[]-?(?:[nN][aA]|[iI][nN])"
_SKELETON_OK = r"(?:[ \t\r\n{}\[\]:,]|true|false|null)*"
# DuckDB re-serialises numbers (1.10 → 1.1, 1e5 → 100000.0, -0 → 0). A number token written
# with at most 14 digits, no exponent, no trailing fractional zero, not -0 and not below 1e-4
# comes back identical (a test checks this over random tokens); text holding any other number
# token (or something like one inside a string) takes the exact path, where numbers travel as
# marked strings through the JSON functions and are put back verbatim.
_RISKY_NUMBER = (
    r"[:,\[][ \t\r\n]*(?:-?[0-9.]+[eE]|-?[0-9]*\.[0-9]*0[,}\] \t\r\n]|-0[,}\] \t\r\n]"
    r"|-?[0-9][0-9.]{14}|-?0\.0000)"
)
_TS_SHAPE = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?"
_TS_OFFSET = r"(?:[Zz]|[+-]\d{2}:\d{2})$"
_TS_STRICT = (
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d{1,6})?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
_NUL_ESCAPE = r"(?:^|[^\\])(?:\\\\)*\\u0000"
_KNOWN_FIELDS = ", ".join("'" + name + "'" for name in EVENT_FIELDS)


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _has_nan(x: str) -> str:
    """True when compact JSON text `x` holds a NaN or Infinity token outside strings."""
    skeleton = f"regexp_replace({x}, '{_JSON_STRING}|{_JSON_NUMBER}', '', 'g')"
    # a CASE, not AND: DuckDB may evaluate both sides of an AND for every row, and the
    # skeleton is the costly part
    return (
        f"(case when regexp_matches({x}, '{_NAN_SUSPECT}') "
        f"then not regexp_full_match({skeleton}, '{_SKELETON_OK}') else false end)"
    )


class _Marker:
    """How the exact path marks numbers: as JSON strings that start with escapes of control
    characters found nowhere in the input, so no genuine string can look like one."""

    def __init__(self, occurs: Callable[[str], bool]):
        for length in (1, 2, 3):
            for codes in itertools.product(range(1, 8), repeat=length):
                escape = "".join(f"\\u000{c}" for c in codes)
                if not occurs(escape):
                    self.escape = escape
                    return
        raise ValueError("no free marker for exact numbers")  # pragma: no cover

    @classmethod
    def for_files(cls, contents: list[bytes]) -> _Marker:
        return cls(lambda escape: any(escape.encode() in data for data in contents))

    @classmethod
    def for_texts(cls, arrays: list[pa.ChunkedArray]) -> _Marker:
        return cls(lambda escape: any(
            pc.any(pc.match_substring(a.cast(pa.large_string()), escape)).as_py()
            for a in arrays
        ))  # fmt: skip

    def wrap(self, x: str) -> str:
        """`x` with every number token (outside strings) turned into a marked string: raw
        \\x01/\\x02 (never in valid JSON) bracket the matches first."""
        marked = f"regexp_replace({x}, '({_JSON_STRING})|({_JSON_NUMBER})', '\\1\x01\\2\x02', 'g')"
        return (
            f"replace(replace(replace({marked}, '\x01\x02', ''), "
            f"'\x01', '\"{self.escape}'), '\x02', '\"')"
        )

    def unwrap(self, x: str) -> str:
        """Re-serialised JSON `x` with the marked strings back as the original numbers."""
        pattern = '"' + self.escape.replace("\\", "\\\\") + '(-?[0-9][0-9.eE+-]*)"'
        return f"regexp_replace({x}, {_lit(pattern)}, '\\1', 'g')"

    def exact_json(self, x: str) -> str:
        """Compact JSON text of `x` with every number exactly as written."""
        return self.unwrap(f"json({self.wrap(x)})")


def _json_type(v: str) -> str:
    """'string', 'object' or 'other' for JSON text `v` without leading blanks; NULL for a
    missing value or JSON null (the rules only ever ask for these)."""
    return f"""case
        when {v} is null or {v} = 'null' then null
        when starts_with({v}, '"') then 'string'
        when starts_with({v}, '{{') then 'object'
        else 'other' end"""


def _json_string_value(v: str) -> str:
    """The value of JSON string text `v` (NULL when `v` is not a string)."""
    return (
        f"case when starts_with({v}, '\"') then case when contains({v}, '\\') "
        f"then json_extract_string({v}, '$') else {v}[2:-2] end end"
    )


def _parse_json_text(x: str) -> str:
    """DuckDB's compact rewrite of JSON text `x`, NULL when `x` is not JSON. Computed once in
    its own step (`_mh_parsed`) for `_json_text_columns`."""
    return f"(try(json({x}))::varchar)"


def _json_text_columns(x: str, marker: _Marker) -> dict[str, str]:
    """Candidate columns `properties_type` and `properties` for JSON text `x` (a CSV cell or a
    text column) whose `_parse_json_text` is the column `_mh_parsed`: its JSON type ('invalid'
    when it is not JSON) and, for an object, its compact text with exact numbers. Text DuckDB
    would write back unchanged is taken as it is."""
    blank = f"({x} is null or regexp_full_match({x}, '{_BLANK}'))"
    parsed = "_mh_parsed"
    compact = f"""case when {parsed} = {x} then {x}
             when not regexp_matches({x}, '{_RISKY_NUMBER}') then {parsed}
             else {marker.exact_json(x)} end"""
    return {
        "properties_type": f"""case when {blank} then null when {parsed} is null then 'invalid'
             else {_json_type(parsed)} end""",
        "properties": f"case when not {blank} and starts_with({parsed}, '{{') then {compact} end",
    }


# What every format hands to the checks: one row per line/row read, each field as text plus
# its JSON type ('string', 'object', 'other', NULL when absent), or a reason already found.
_CANDIDATE_COLUMNS = {
    "file_no": "integer",
    "line_no": "bigint",
    "path_tenant": "varchar",
    "path_env": "varchar",
    "raw_line": "varchar",
    "pre_reason": "varchar",
    **{c: "varchar" for name in STRING_FIELDS for c in (name, f"{name}_type")},
    "ts_text": "varchar",
    "ts_type": "varchar",  # string | instant | instant_ns | local | other
    "ts_value": "timestamptz",
    "ts_sort": "timestamptz",
    "properties": "varchar",
    "properties_type": "varchar",  # object | invalid | other (| string for JSON strings)
}


def _candidates(exprs: dict[str, str]) -> str:
    """A select list of every candidate column, NULL where `exprs` has none."""
    return ",\n    ".join(
        f"{exprs.get(name, f'null::{sql_type}')} as {name}"
        for name, sql_type in _CANDIDATE_COLUMNS.items()
    )


def _checks() -> list[tuple[str, str]]:
    """(condition, reason) in the order they are tried; the first that holds rejects. Most
    rows pass every check, so each condition is cheap or guarded by a cheap one."""
    checks: list[tuple[str, str]] = [
        ("pre_reason is not null", "pre_reason"),
        ("path_tenant is null or path_tenant = ''", _lit("missing required field tenant_id")),
        ("path_env is null or path_env = ''", _lit("missing required field environment_id")),
    ]
    for name in REQUIRED_FIELDS:
        checks += [
            (f"{name}_type is null", _lit(f"missing required field {name}")),
            (f"{name}_type <> 'string'", _lit(f"{name} must be a string")),
            (f"regexp_full_match({name}, '{_BLANK}')", _lit(f"{name} must not be empty")),
            (f"contains({name}, chr(0))", _lit(f"{name} contains a NUL character")),
        ]
    unparsed = "event_timestamp is null and ts_type = 'string'"
    checks += [
        ("ts_type is null", _lit("missing required field timestamp")),
        ("ts_type = 'local'", _lit("timestamp has no UTC offset")),
        ("ts_type = 'instant_ns'", _lit("timestamp has more than 6 fractional second digits")),
        ("ts_type not in ('string', 'instant')",
         _lit("timestamp must be an RFC 3339 string or a timestamp with time zone")),
        (f"{unparsed} and not regexp_full_match(ts_text, '{_TS_SHAPE}')",
         _lit("timestamp is not a valid RFC 3339 date-time")),
        (f"{unparsed} and not regexp_matches(ts_text, '{_TS_OFFSET}')",
         _lit("timestamp has no UTC offset")),
        (f"{unparsed} and regexp_matches(ts_text, '\\.\\d{{7}}')",
         _lit("timestamp has more than 6 fractional second digits")),
        ("event_timestamp is null", _lit("timestamp is not a valid RFC 3339 date-time")),
        (f"event_timestamp < timestamptz '{EARLIEST_TIMESTAMP}' "
         f"or event_timestamp >= timestamptz '{LATEST_TIMESTAMP}'",
         _lit("timestamp out of supported range")),
    ]  # fmt: skip
    for name in OPTIONAL_FIELDS:
        checks += [
            (f"{name}_type is not null and {name}_type <> 'string'",
             _lit(f"{name} must be a string")),
            (f"contains({name}, chr(0))", _lit(f"{name} contains a NUL character")),
        ]  # fmt: skip
    checks += [
        ("properties_type = 'invalid'", _lit("properties is not valid JSON")),
        ("properties_type is not null and properties_type <> 'object'",
         _lit("properties must be a JSON object")),
        (_has_nan("properties"), _lit("properties contain NaN or Infinity, which JSON forbids")),
        (f"contains(properties, '\\u0000') and regexp_matches(properties, {_lit(_NUL_ESCAPE)})",
         _lit("properties contain a \\u0000 character")),
    ]  # fmt: skip
    for name, path_column in (("tenant_id", "path_tenant"), ("environment_id", "path_env")):
        checks += [
            (f"{name}_type is not null and {name}_type <> 'string'",
             _lit(f"{name} must be a string")),
            (f"nullif({name}, '') <> {path_column}", _lit(f"{name} contradicts landing path")),
        ]  # fmt: skip
    return checks


def _content_text(prefix: str = "") -> str:
    """An unambiguous text of the normalised content of a checked row (columns of
    `validated`, or of raw_events with `prefix`): each part prefixed with its length in bytes,
    '-' for NULL, the timestamp as UTC microseconds since the epoch."""
    columns = [f"{prefix}{c}" for c in ("event_name", "external_customer_id", "customer_id",
                                         "source", "event_timestamp", "properties")]  # fmt: skip
    columns[4] = f"epoch_us({columns[4]})::varchar"
    # one concat() call: chained || would build an intermediate string per operator
    parts = [f"coalesce(strlen({c})::varchar || ':', '-'), {c}" for c in columns]
    return f"concat({', '.join(parts)})"


# The content hash of a version: md5 of `_content_text` (32 hex digits). Versions stored before
# 2026-11-27 hold the sha256 (64 hex digits) of the same text; a row is compared with such a
# version by its sha256, so a re-send of an old event is still an identical re-send.
LEGACY_HASH_LENGTH = 64


_VALIDATED_DDL = """
create table validated (
    file_no integer, line_no bigint, tenant_id varchar, environment_id varchar,
    reason varchar, raw_line varchar, event_id varchar, event_name varchar,
    external_customer_id varchar, customer_id varchar, source varchar,
    event_timestamp timestamptz, properties varchar, content_hash varchar
)
"""


def _validate_into(candidates_sql: str) -> str:
    """The statement that checks the rows of `candidates_sql` and appends them to `validated`:
    the reason of a rejected row (with its raw text, trailing newline removed), or the
    normalised event of an accepted one with its content hash."""
    arms = "\n".join(f"            when {cond} then {reason}" for cond, reason in _checks())
    ts_text = (
        "case when contains(ts_text, 't') or contains(ts_text, 'z') "
        "then upper(ts_text) else ts_text end"
    )
    return f"""
insert into validated
with candidates as (
{candidates_sql}
),
typed as (
    select * exclude (customer_id, source, properties),
        nullif(customer_id, '') as customer_id, nullif(source, '') as source,
        coalesce(properties, '{{}}') as properties,
        case ts_type
            when 'string' then case when regexp_full_match(ts_text, '{_TS_STRICT}')
                then try_cast({ts_text} as timestamptz) end
            when 'instant' then ts_value
        end as event_timestamp
    from candidates
),
checked as (
    select *,
        case
{arms}
        end as reason
    from typed
)
select file_no, line_no, path_tenant, path_env, reason,
    case when reason is not null then regexp_replace(raw_line, '[\\r\\n]+$', '') end,
    event_id, event_name, external_customer_id, customer_id, source, event_timestamp,
    properties,
    case when reason is null then md5({_content_text()}) end
from checked
"""


# -- the batch: everything one run parses, checks, dedups and writes -------------------------


@dataclass
class _ParsedLines:
    """A JSON Lines file: its text (BOM removed) and its lines (`_split_lines`)."""

    text: bytes
    lines: pa.Table
    valid_utf8: bool


@dataclass
class _ParsedCsv:
    """A CSV file: its text (BOM removed), header (names stripped) and rows (`_read_csv`)."""

    text: bytes
    header: tuple[str, ...]
    table: pa.Table | None


@dataclass
class _ParsedParquet:
    """A Parquet file: the event columns when all are plain strings (DuckDB reads those files
    by path, together), else the table pyarrow read, or why it could not be read."""

    text_columns: tuple[str, ...] | None = None
    table: pa.Table | None = None
    error: str = ""


_Parsed = _ParsedLines | _ParsedCsv | _ParsedParquet


def _parse_landing(file: LandingFile, data: bytes) -> _Parsed:
    """One landing file parsed into Arrow (no DuckDB, so it can run beside the checks)."""
    if file.format == "jsonl":
        text = _strip_bom(data)
        lines, valid_utf8 = _split_lines(text)
        return _ParsedLines(text, lines, valid_utf8)
    if file.format == "csv":
        text = _strip_bom(data)
        header, table = _read_csv(text)
        return _ParsedCsv(text, tuple(name.strip() for name in header), table)
    columns = _text_parquet_columns(data)
    return _ParsedParquet(text_columns=columns) if columns is not None else _read_parquet(data)


def _read_parquet(data: bytes) -> _ParsedParquet:
    try:
        return _ParsedParquet(table=pq.read_table(io.BytesIO(data)))
    except (pa.ArrowException, OSError) as exc:
        return _ParsedParquet(error=f"file is not valid Parquet: {exc}")


def _read_landing_file(
    file: LandingFile, latest: dict[str, tuple[str, int | None]]
) -> tuple[LandingFile, str, int, _Parsed | None]:
    """A file read, hashed and parsed; not parsed (None) when its latest ingest had the same
    sha256."""
    data = file.path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if latest.get(file.source_file, ("", None))[0] == sha:
        return file, sha, len(data), None
    return file, sha, len(data), _parse_landing(file, data)


def _read_ahead(
    files: list[LandingFile], latest: dict[str, tuple[str, int | None]], ahead_bytes: int
) -> Iterator[tuple[LandingFile, str, int, _Parsed | None]]:
    """`_read_landing_file` of each file in order, done by one background thread up to about
    `ahead_bytes` of files ahead of the caller: Python parses the next files (CSV, hashing)
    while DuckDB checks and writes the previous chunk on the other core."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mh-ingest-read")
    queued: deque[tuple[Future, int]] = deque()
    ahead = 0
    remaining = iter(files)

    def fill() -> None:
        nonlocal ahead
        while ahead < ahead_bytes or not queued:
            file = next(remaining, None)
            if file is None:
                return
            size = file.path.stat().st_size
            queued.append((pool.submit(_read_landing_file, file, latest), size))
            ahead += size

    try:
        fill()
        while queued:
            future, size = queued.popleft()
            ahead -= size
            result = future.result()
            fill()
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _BatchFile:
    source_file: str
    tenant_id: str | None
    environment_id: str | None
    file_sha256: str
    file_bytes: int | None


class _Batch:
    """A scratch DuckDB holding one chunk's checked rows (`validated`), then their writes to
    the warehouse. Files are parsed into Arrow as they come and checked in groups — all JSON
    Lines together, CSV files per header, Parquet files per schema — one statement per group,
    since planning a statement costs more than checking a small file. Once `FLUSH_BYTES` of
    input are pending, the chunk is checked, deduplicated and written, and `validated` emptied.

    `snapshot=True` (warehouse tables): only the last row of an id within the source is a
    version; earlier rows of it count as duplicates."""

    FLUSH_BYTES = 64 << 20  # input held before its rows are checked and written
    ARROW_BATCH_ROWS = 122_880  # one DuckDB row group: the warehouse inserts batches in parallel

    def __init__(self, warehouse: Warehouse, snapshot: bool = False):
        self.warehouse = warehouse
        self.snapshot = snapshot
        self.ingested_at = datetime.now(UTC)
        self.batch_id = f"{self.ingested_at:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        self.db = duckdb.connect(":memory:")
        self.db.execute("set TimeZone = 'UTC'")
        self.db.execute(_VALIDATED_DDL)
        self.files: list[_BatchFile] = []
        self._jsonl: dict[bool, list[tuple[bytes, pa.Table]]] = {}  # by valid UTF-8
        self._csv: dict[tuple[str, ...], list[tuple[bytes, pa.Table]]] = {}  # by header
        self._typed: dict[str, list[pa.Table]] = {}  # by schema
        # Parquet files with only plain string event columns, by those columns: read by DuckDB
        self._text_parquet: dict[tuple[str, ...], list[tuple[int, Path]]] = {}
        self._unreadable: list[tuple[int, str]] = []
        self._pending = 0
        self._checked = False  # rows in `validated` not yet written
        # per file_no: rows read, accepted, rejected, duplicates (over every written chunk)
        self._counts: dict[int, tuple[int, int, int, int]] = {}
        self._reasons: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> _Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parsing -----------------------------------------------------------------------------
    def add_parsed(self, file: LandingFile, sha: str, size: int, parsed: _Parsed) -> None:
        """Add one landing file, parsed by `_parse_landing`, to the pending groups (checked at
        the next flush)."""
        file_no = len(self.files)
        self.files.append(
            _BatchFile(file.source_file, file.tenant_id, file.environment_id, sha, size)
        )
        if isinstance(parsed, _ParsedLines):
            lines = parsed.lines.add_column(
                0, "file_no", _constant_int(file_no, parsed.lines.num_rows)
            )
            self._jsonl.setdefault(parsed.valid_utf8, []).append((parsed.text, lines))
        elif isinstance(parsed, _ParsedCsv):
            if parsed.table is not None:
                table = parsed.table.add_column(
                    0, "file_no", _constant_int(file_no, parsed.table.num_rows)
                )
                self._csv.setdefault(parsed.header, []).append((parsed.text, table))
        elif parsed.text_columns is not None:
            self._text_parquet.setdefault(parsed.text_columns, []).append((file_no, file.path))
        else:
            self._add_read_parquet(file_no, parsed)
        self._pending += size
        if self._pending >= self.FLUSH_BYTES:
            self.flush()

    def _add_read_parquet(self, file_no: int, parsed: _ParsedParquet) -> None:
        """A Parquet file pyarrow read (`_read_parquet`, any schema), or recorded as
        unreadable."""
        if parsed.table is None:
            self._unreadable.append((file_no, parsed.error))
        else:
            self._add_typed(_prepare_typed(parsed.table, file_no))

    def _add_typed(self, table: pa.Table) -> None:
        self._typed.setdefault(table.schema.to_string(), []).append(table)

    def _read_text_parquet(self, columns: tuple[str, ...], files: list[tuple[int, Path]]) -> None:
        """Parquet files whose event columns are all plain strings, read together by DuckDB
        (parallel, no Python per file) into the pending typed tables, as `_prepare_typed` would
        have made them. Should DuckDB refuse a file (it checks UTF-8, pyarrow does not), the
        group is read file by file by pyarrow instead. The files are read again from their
        paths: a file replaced since it was hashed is ingested with its new content, and again
        at the next run (its hash differs), where its unchanged rows are identical re-sends."""
        paths = pa.table({
            "path": pa.array([str(path) for _, path in files], pa.string()),
            "file_no": pa.array([n for n, _ in files], pa.int32()),
        })  # fmt: skip
        selected = ", ".join(f'p."{name}"' for name in columns)
        self.db.register("_mh_parquet_files", paths)
        try:
            table = self.db.sql(f"""
select {selected}, (p.file_row_number + 1)::bigint as _mh_row, f.file_no as _mh_file_no
from read_parquet({_lit_list(paths.column("path").to_pylist())}, filename = true,
                  file_row_number = true) p
join _mh_parquet_files f on f.path = p.filename""").to_arrow_table(self.ARROW_BATCH_ROWS)
        except duckdb.Error:
            for file_no, path in files:
                self._add_read_parquet(file_no, _read_parquet(path.read_bytes()))
        else:
            self._add_typed(table.cast(pa.schema(
                [pa.field(name, pa.string()) for name in columns]
                + [pa.field("_mh_row", pa.int64()), pa.field("_mh_file_no", pa.int32())]
            )))  # fmt: skip
        finally:
            self.db.unregister("_mh_parquet_files")

    def flush(self) -> None:
        """Check every pending row into `validated`, then write them to the warehouse: memory
        holds one chunk of input at a time, whatever the size of the run."""
        for valid_utf8, parts in self._jsonl.items():
            self._check_jsonl(parts, valid_utf8)
        for header, parts in self._csv.items():
            self._check_csv(header, parts)
        for columns, files in self._text_parquet.items():
            self._read_text_parquet(columns, files)
        self._text_parquet = {}
        for tables in self._typed.values():
            self._check_typed(pa.concat_tables(tables))
        if self._unreadable:
            self._check_unreadable(self._unreadable)
        self._jsonl, self._csv, self._typed, self._unreadable = {}, {}, {}, []
        self._pending = 0
        if self._checked:
            self._write_checked()
            self.db.execute("drop table validated")
            self.db.execute(_VALIDATED_DDL)
            self._checked = False

    def _insert_validated(self, candidates_sql: str) -> None:
        self.db.execute(_validate_into(candidates_sql))
        self._checked = True

    def _scope(self) -> dict[str, str]:
        """path_tenant/path_env of a row from its file_no (a list literal: no join)."""
        tenants = ", ".join(_lit(f.tenant_id or "") for f in self.files)
        envs = ", ".join(_lit(f.environment_id or "") for f in self.files)
        return {
            "file_no": "file_no",
            "path_tenant": f"[{tenants}][file_no + 1]",
            "path_env": f"[{envs}][file_no + 1]",
        }

    def _check_jsonl(self, parts: list[tuple[bytes, pa.Table]], valid_utf8: bool) -> None:
        marker = _Marker.for_files([data for data, _ in parts])
        text = "line" if valid_utf8 else "try(decode(raw))"
        raw = "line" if valid_utf8 else "coalesce(try(decode(raw)), raw::varchar)"
        structure = ", ".join(f'"{name}":"JSON"' for name in EVENT_FIELDS)
        present = " + ".join(f"(f.{name} is not null)::int" for name in EVENT_FIELDS)
        exprs = self._scope()
        for name in STRING_FIELDS:
            v = f"(f.{name}::varchar)"
            exprs[f"{name}_type"] = _json_type(v)
            exprs[name] = _json_string_value(v)
        ts = "(f.timestamp::varchar)"
        exprs["ts_type"] = _json_type(ts)
        exprs["ts_text"] = _json_string_value(ts)
        # Properties as DuckDB writes them back are exact when they appear verbatim after the
        # single "properties": key of the line, or when the line has no risky number token.
        wrapped = marker.wrap("line")
        exact = marker.unwrap(
            f"""(from_json({wrapped}, '{{"properties":"JSON"}}').properties::varchar)"""
        )
        exprs["properties_type"] = _json_type("props")
        exprs["properties"] = f"""case
            when props is null or props = '{{}}' then props
            when contains(line, '"properties":' || props) and not regexp_matches(line,
                '"properties":[\\s\\S]*"properties":') then props
            when not regexp_matches(line, '{_RISKY_NUMBER}') then props
            else {exact}
            end"""
        exprs["raw_line"] = "raw_line"
        # A known field given twice: parsers disagree on which one wins, so reject. Only lines
        # with more keys than known fields present need the precise (slower) look.
        exprs["pre_reason"] = f"""case
            when pre_reason is not null then pre_reason
            when len(json_keys(line)) <> {present} then 'duplicate field ' || list_filter(
                json_keys(line), lambda k, i: k in ({_KNOWN_FIELDS})
                and list_position(json_keys(line), k) < i)[1]
            end"""
        exprs["line_no"] = "line_no"
        self.db.register("_mh_lines", pa.concat_tables([table for _, table in parts]))
        self._insert_validated(
            f"""
with lines as (
    select file_no, line_no, {text} as line, {raw} as raw_line from _mh_lines
),
parsed as (
    select file_no, line_no, line, raw_line,
        case when line is not null and regexp_matches(line, '^{_BLANK}\\{{')
            then try(from_json(line, '{{{structure}}}')) end as f
    from lines
    where line is null or regexp_matches(line, '[^ \\t\\r\\n]')
),
classified as (
    select *,
        case
            when line is null then 'line is not valid UTF-8'
            when f is not null then null
            when json_valid(line) then 'line is not a JSON object'
            else 'line is not valid JSON'
        end as pre_reason,
        (f.properties::varchar) as props
    from parsed
)
select {_candidates(exprs)}
from classified"""
        )
        self.db.unregister("_mh_lines")

    def _check_csv(self, header: tuple[str, ...], parts: list[tuple[bytes, pa.Table]]) -> None:
        marker = _Marker.for_files([data for data, _ in parts])
        names = list(header)
        file_reason = None
        seen: set[str] = set()
        for name in names:
            if name and name in seen and file_reason is None:
                file_reason = f"duplicate column {name}"
            seen.add(name)
        for name in CSV_REQUIRED_COLUMNS:
            if file_reason is None and name not in seen:
                file_reason = f"missing column {name}"
        column = {name: f"c{i}" for i, name in reversed(list(enumerate(names)))}

        def cell(name: str) -> str:
            return column.get(name, "null::varchar")

        exprs = self._scope()
        for name in STRING_FIELDS:
            value = cell(name) if name in REQUIRED_FIELDS else f"nullif({cell(name)}, '')"
            exprs[name] = value
            exprs[f"{name}_type"] = f"case when {value} is not null then 'string' end"
        exprs["ts_text"] = cell("timestamp")
        exprs["ts_type"] = f"case when {cell('timestamp')} is not null then 'string' end"
        extras = []
        for i, name in enumerate(names):
            key = name.removeprefix("properties.")
            if name in EVENT_FIELDS or not key:
                continue
            extras.append(
                f"case when c{i} <> '' then {_lit(json.dumps(key))} || ':' || to_json(c{i}) end"
            )
        extra_json = f"concat_ws(',', {', '.join(extras)})" if extras else "''"
        base = _json_text_columns(cell("properties"), marker)
        # a key given both as a column and inside `properties` (or by two columns, `x` and
        # `properties.x`) would be a duplicate key
        keys = [n.removeprefix("properties.") for n in names if n and n not in EVENT_FIELDS]
        possible = "true" if len(keys) != len(set(keys)) else "base is not null and base <> '{}'"
        given_twice = f"""case when extra <> '' and ({possible})
                and len(json_keys(merged)) <> len(list_distinct(json_keys(merged)))
            then 'property given twice: ' || list_filter(json_keys(merged),
                lambda k, i: list_position(json_keys(merged), k) < i)[1] end"""
        exprs.update({
            "line_no": "line_no",
            "raw_line": "raw_line",
            "pre_reason": f"coalesce(pre_reason, {_lit(file_reason) if file_reason else 'null'}, "
                          f"{given_twice})",
            "properties_type": "case when base_type is null and extra <> '' then 'object' "
                               "else base_type end",
            "properties": "merged",
        })  # fmt: skip
        self.db.register("_mh_csv", pa.concat_tables([table for _, table in parts]))
        self._insert_validated(
            f"""
with parsed as (
    select *, {_parse_json_text(cell("properties"))} as _mh_parsed from _mh_csv
),
cells as (
    select *, {base["properties_type"]} as base_type, {base["properties"]} as base,
        {extra_json} as extra
    from parsed
),
combined as (
    select *,
        case when extra = '' then base
             when base is null or base = '{{}}' then '{{' || extra || '}}'
             else base[1:-2] || ',' || extra || '}}' end as merged
    from cells
)
select {_candidates(exprs)}
from combined"""
        )
        self.db.unregister("_mh_csv")

    def _check_typed(self, table: pa.Table, order: bool = False) -> None:
        """Rows of prepared typed tables (`_prepare_typed`): Parquet, numbered by position, or
        a warehouse table (`order`), numbered by (timestamp, event_id), with its scope from
        its `_mh_tenant`/`_mh_env` columns."""
        exprs, raw = _typed_columns(table)
        if order:
            exprs.update(path_tenant="_mh_tenant", path_env="_mh_env", file_no="0")
        else:
            exprs.update(self._scope())
        # The raw line (a JSON rendering of the row) only matters for rejects: for Parquet it
        # is filled in afterwards for them alone; a table's rows are also ordered by it.
        exprs["raw_line"] = raw if order else "null::varchar"
        exprs["line_no"] = "_mh_row"
        line_no = (
            "row_number() over (order by ts_sort nulls last, event_id nulls last, raw_line)"
            if order else "line_no"
        )  # fmt: skip
        text_properties = "properties" in table.column_names and _is_text(
            table.schema.field("properties").type
        )
        parsed = _parse_json_text('"properties"') if text_properties else "null::varchar"
        self.db.register("_mh_typed", table.rename_columns(
            ["file_no" if n == "_mh_file_no" else n for n in table.column_names]))  # fmt: skip
        self._insert_validated(
            f"""
with parsed as (
    select *, {parsed} as _mh_parsed from _mh_typed
),
mapped as (
    select {_candidates(exprs)} from parsed
)
select * replace ({line_no} as line_no) from mapped"""
        )
        if not order:
            self.db.execute(f"""
update validated set raw_line = rejected.raw from (
    select t.file_no, t._mh_row, {raw} as raw
    from _mh_typed t
    semi join (select file_no, line_no from validated
               where reason is not null and raw_line is null) v
        on v.file_no = t.file_no and v.line_no = t._mh_row
) rejected
where validated.file_no = rejected.file_no and validated.line_no = rejected._mh_row""")
        self.db.unregister("_mh_typed")

    def _check_unreadable(self, files: list[tuple[int, str]]) -> None:
        """A file that cannot be read at all is one rejected row (line 0: the whole file), so
        the file is recorded and not retried until it changes."""
        table = pa.table({
            "file_no": pa.array([n for n, _ in files], pa.int32()),
            "pre_reason": pa.array([reason for _, reason in files], pa.string()),
        })  # fmt: skip
        exprs = {**self._scope(), "line_no": "0", "pre_reason": "pre_reason"}
        self.db.register("_mh_unreadable", table)
        self._insert_validated(f"select {_candidates(exprs)} from _mh_unreadable")
        self.db.unregister("_mh_unreadable")

    def add_table(self, source_file: str, data: pa.Table, previous_fingerprint: str) -> str:
        """Rows of a warehouse table, scope from its `_mh_tenant`/`_mh_env` columns, unless
        the snapshot's content fingerprint equals `previous_fingerprint`; returns it."""
        table = _prepare_typed(data, 0)
        _, raw = _typed_columns(table)
        self.db.register("_mh_typed", table)
        fingerprint = self.db.execute(
            f"select sha256(coalesce(string_agg(r, ',' order by r), '')) from ("
            f"select md5({raw} || ':' || coalesce(_mh_tenant, '-') || ':' || "
            "coalesce(_mh_env, '-')) as r from _mh_typed)"
        ).fetchall()[0][0]
        self.db.unregister("_mh_typed")
        if fingerprint != previous_fingerprint:
            self.files.append(_BatchFile(source_file, None, None, fingerprint, None))
            self._check_typed(table, order=True)
        return fingerprint

    # -- dedup and writing -----------------------------------------------------------------------
    def write(self) -> IngestReport:
        """Write what is still pending and one row per file to `raw_ingested_files` (inside
        the caller's transaction), and report."""
        self.flush()
        reports = []
        for i, file in enumerate(self.files):
            read, accepted, rejected, duplicates = self._counts.get(i, (0, 0, 0, 0))
            reports.append(FileReport(
                file.source_file, file.tenant_id, file.environment_id, file.file_sha256,
                file.file_bytes, False, read, accepted, rejected, duplicates,
            ))  # fmt: skip
        self.warehouse.append_arrow(
            RAW_INGESTED_FILES, _files_table(reports, self.batch_id, self.ingested_at)
        )
        reasons = dict(sorted(self._reasons.items(), key=lambda item: (-item[1], item[0])))
        return IngestReport(self.batch_id, tuple(reports), reasons)

    def _write_checked(self) -> None:
        """Decide which accepted rows of `validated` are new versions and append them and the
        rejects to the warehouse. Versions written by earlier chunks of this run are already
        in the warehouse (same transaction), so dedup and `ingest_seq` continue from them."""
        warehouse, db = self.warehouse, self.db
        self._mark_duplicates(warehouse)
        base_seq = warehouse.query(
            f"select coalesce(max(ingest_seq), 0) from {warehouse.table(RAW_EVENTS)}"
        )[0][0]
        source_file = "[" + ", ".join(_lit(f.source_file) for f in self.files) + "][file_no + 1]"
        at = f"{_lit(self.ingested_at.isoformat())}::timestamptz"
        # Numbered in (file_no, line_no) order by numpy, not sorted: the rows are stored in
        # any order, so only the numbers need the order (a sort of the whole rows in DuckDB
        # cost twice the export).
        events = db.sql(
            f"""
select tenant_id, environment_id, event_id, event_name, external_customer_id, customer_id,
    source, event_timestamp, properties,
    {at} as ingested_at, {source_file} as source_file, v.line_no as source_line, content_hash,
    v.file_no
from validated v anti join _mh_duplicate_rows d on d.file_no = v.file_no and d.line_no = v.line_no
where v.reason is null
"""
        ).to_arrow_table(self.ARROW_BATCH_ROWS)
        order = np.lexsort((events.column("source_line").to_numpy(),
                            events.column("file_no").to_numpy()))  # fmt: skip
        seq = np.empty(events.num_rows, dtype=np.int64)
        seq[order] = np.arange(int(base_seq) + 1, int(base_seq) + 1 + events.num_rows)
        events = events.drop_columns(["file_no"]).append_column("ingest_seq", pa.array(seq))
        warehouse.append_arrow(RAW_EVENTS, events, keep_order=False)
        del events
        rejects = db.sql(
            f"""
select tenant_id, environment_id, {source_file} as source_file, line_no as source_line,
    left(replace(raw_line, chr(0), '\\u0000'), {RAW_LINE_MAX_CHARS}) as raw_line, reason,
    {at} as rejected_at
from validated where reason is not null
order by file_no, line_no
"""
        ).to_arrow_table(self.ARROW_BATCH_ROWS)
        warehouse.append_arrow(RAW_EVENT_REJECTS, rejects)
        counts = db.execute("""
select v.file_no, count(*), count(*) filter (where v.reason is null), count(v.reason),
    count(d.file_no)
from validated v left join _mh_duplicate_rows d on d.file_no = v.file_no and d.line_no = v.line_no
group by v.file_no""").fetchall()  # fmt: skip
        for file_no, read, accepted, rejected, duplicates in counts:
            self._counts[file_no] = (read, accepted, rejected, duplicates)
        for reason, n in db.execute(
            "select reason, count(*) from validated where reason is not null group by reason"
        ).fetchall():
            self._reasons[reason] = self._reasons.get(reason, 0) + n
        db.execute("drop table _mh_duplicate_rows")

    def _mark_duplicates(self, warehouse: Warehouse) -> None:
        """`_mh_duplicate_rows`: (file_no, line_no) of the accepted rows that store nothing new.
        Only ids seen more than once in the chunk or already in the warehouse can have such
        rows."""
        db = self.db
        db.register("_mh_prior", _latest_versions(warehouse, db))
        same_as_prior = f"""(case when length(p.content_hash) = {LEGACY_HASH_LENGTH}
            then p.content_hash = sha256({_content_text("a.")})
            else p.content_hash = a.content_hash end)"""
        if self.snapshot:
            duplicate = f"lead(a.line_no) over w is not null or coalesce({same_as_prior}, false)"
        else:
            duplicate = f"""coalesce(case when lag(a.content_hash) over w is not null
                then lag(a.content_hash) over w = a.content_hash else {same_as_prior} end, false)"""
        db.execute(
            f"""
create table _mh_duplicate_rows as
with contested as (
    select tenant_id, environment_id, event_id from validated where reason is null
    group by all having count(*) > 1
    union
    select tenant_id, environment_id, event_id from _mh_prior
),
candidates as (
    select a.* from validated a semi join contested c
        on c.tenant_id = a.tenant_id and c.environment_id = a.environment_id
        and c.event_id = a.event_id
    where a.reason is null
),
decided as (
    select a.file_no, a.line_no, {duplicate} as is_duplicate
    from candidates a left join _mh_prior p
        on p.tenant_id = a.tenant_id and p.environment_id = a.environment_id
        and p.event_id = a.event_id
    window w as (partition by a.tenant_id, a.environment_id, a.event_id
                 order by a.file_no, a.line_no)
)
select file_no, line_no from decided where is_duplicate
"""
        )
        db.unregister("_mh_prior")


def _files_table(reports: list[FileReport], batch_id: str, ingested_at: datetime) -> pa.Table:
    return pa.table({
        "tenant_id": pa.array([r.tenant_id for r in reports], pa.string()),
        "environment_id": pa.array([r.environment_id for r in reports], pa.string()),
        "source_file": pa.array([r.source_file for r in reports], pa.string()),
        "file_sha256": pa.array([r.file_sha256 for r in reports], pa.string()),
        "file_bytes": pa.array([r.file_bytes for r in reports], pa.int64()),
        "rows_read": pa.array([r.rows_read for r in reports], pa.int64()),
        "rows_accepted": pa.array([r.accepted for r in reports], pa.int64()),
        "rows_rejected": pa.array([r.rejected for r in reports], pa.int64()),
        "rows_duplicate": pa.array([r.duplicates for r in reports], pa.int64()),
        "batch_id": pa.array([batch_id] * len(reports), pa.string()),
        "ingested_at": pa.array([ingested_at] * len(reports), pa.timestamp("us", "UTC")),
    })  # fmt: skip


def _latest_versions(warehouse: Warehouse, db: duckdb.DuckDBPyConnection) -> pa.Table:
    """(tenant_id, environment_id, event_id, content_hash) of the latest stored version of
    every id accepted in this batch."""
    empty = pa.table({name: pa.array([], pa.string()) for name in
                      ("tenant_id", "environment_id", "event_id", "content_hash")})  # fmt: skip
    if not warehouse.query(f"select 1 from {warehouse.table(RAW_EVENTS)} limit 1"):
        return empty
    keys = db.sql(
        "select tenant_id, environment_id, event_id from validated where reason is null"
    ).to_arrow_table()
    if keys.num_rows == 0:
        return empty
    return warehouse.query_arrow_over(
        keys,
        f"""
select tenant_id, environment_id, event_id, content_hash from (
    select r.tenant_id, r.environment_id, r.event_id, r.content_hash,
        row_number() over (partition by r.tenant_id, r.environment_id, r.event_id
                           order by r.ingest_seq desc) as version_rank
    from {warehouse.table(RAW_EVENTS)} r
    where exists (
        select 1 from {{data}} k
        where k.tenant_id = r.tenant_id and k.environment_id = r.environment_id
            and k.event_id = r.event_id
    )
) versions
where version_rank = 1
""",
    )


# -- file readers ----------------------------------------------------------------------------


def _strip_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def _line_ends(data: bytes) -> np.ndarray:
    """Offsets just past every newline, found in chunks to stay cache-friendly."""
    buf = np.frombuffer(data, dtype=np.uint8)
    chunk = 1 << 24
    parts = [np.flatnonzero(buf[i : i + chunk] == 0x0A) + (i + 1)
             for i in range(0, len(buf), chunk)]  # fmt: skip
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _split_lines(data: bytes) -> tuple[pa.Table, bool]:
    """Every physical line as (line_no, line) without copying — each line still ends with its
    newline, trimmed in SQL — and whether the whole file is valid UTF-8. When it is not, the
    column is `raw` (binary) and SQL decodes line by line."""
    offsets = np.concatenate([[0], _line_ends(data)]).astype(np.int64)
    if len(data) and data[-1:] != b"\n":
        offsets = np.append(offsets, len(data))
    n = len(offsets) - 1
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    line_no = pa.array(np.arange(1, n + 1, dtype=np.int64))
    text = pa.Array.from_buffers(pa.large_string(), n, buffers)
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        raw = pa.Array.from_buffers(pa.large_binary(), n, buffers)
        return pa.table({"line_no": line_no, "raw": raw}), False
    return pa.table({"line_no": line_no, "line": text}), True


def _read_csv(data: bytes) -> tuple[list[str], pa.Table | None]:
    """The header and one row per non-blank record: line_no (where the record starts),
    raw_line (its text), pre_reason, and the fields c0..cN as strings."""
    try:
        text = data.decode("utf-8")
        bad_utf8 = False
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")  # rows holding bad bytes are rejected
        bad_utf8 = True
    csv.field_size_limit(sys.maxsize)
    records = list(csv.reader(io.StringIO(text, newline="")))
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if len(records) == len(lines) and text.count("\r") == text.count("\r\n"):
        # every record is one physical line (the common case: no Python loop per row)
        starts = np.arange(1, len(records) + 1)
        raws = [line.removesuffix("\r") for line in lines]
    else:
        starts, raws = _csv_record_lines(text)
    widths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    blank = widths == 0
    for i in np.flatnonzero(widths == 1):  # a line of only spaces is blank too
        blank[i] = not records[i][0].strip()
    keep = np.flatnonzero(~blank)
    if len(keep) == 0:
        return [], None
    header = records[keep[0]]
    width = len(header)
    body = keep[1:]
    raw_line = [raws[i] for i in body]
    rows = [records[i] for i in body]
    reasons: list[str | None] = [None] * len(body)
    for j in np.flatnonzero(widths[body] != width):
        reasons[j] = f"wrong number of fields: expected {width}, got {len(rows[j])}"
        rows[j] = [None] * width
    if bad_utf8:
        for j, raw in enumerate(raw_line):
            if not _encodable(raw):
                reasons[j] = "line is not valid UTF-8"
                rows[j] = [None] * width
                raw_line[j] = raw.encode("utf-8", "surrogateescape").decode(
                    "utf-8", "backslashreplace"
                )
    columns = list(zip(*rows, strict=True)) if rows else [()] * width
    table = pa.table({
        "line_no": pa.array(np.asarray(starts, dtype=np.int64)[body], pa.int64()),
        "raw_line": pa.array(raw_line, pa.string()),
        "pre_reason": pa.array(reasons, pa.string()),
        **{f"c{k}": pa.array(columns[k], pa.string()) for k in range(width)},
    })  # fmt: skip
    return header, table


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _csv_record_lines(text: str) -> tuple[list[int], list[str]]:
    """Start line and text of each record when some records span several lines, or lines
    end in a lone CR (a Python loop per record: the rare path)."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(io.StringIO(text, newline=""))
    starts, raws, previous = [], [], 0
    for _ in reader:
        starts.append(previous + 1)
        raws.append("".join(lines[previous : reader.line_num]).rstrip("\r\n"))
        previous = reader.line_num
    return starts, raws


def _text_parquet_columns(data: bytes) -> tuple[str, ...] | None:
    """The event columns of a Parquet file, in file order, when every one of them is a plain
    string column (what DuckDB reads exactly as pyarrow does); None for any other file."""
    try:
        schema = pq.read_schema(io.BytesIO(data))
    except (pa.ArrowException, OSError):
        return None
    if len(set(schema.names)) != len(schema.names):
        return None
    columns = tuple(f.name for f in schema if f.name in EVENT_FIELDS)
    if not columns or any(schema.field(name).type != pa.string() for name in columns):
        return None
    return columns


def _lit_list(texts: list[str]) -> str:
    """A SQL list literal of strings."""
    return "[" + ", ".join(_lit(text) for text in texts) + "]"


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _prepare_typed(table: pa.Table, file_no: int) -> pa.Table:
    """A typed table reduced to the event columns (plus `_mh_tenant`/`_mh_env` of a warehouse
    table), timestamps with a time zone as UTC microseconds (`_mh_sub_micro` marks values with
    nanoseconds that would be lost), and its file number and 1-based row number."""
    keep = [n for n in table.column_names if n in EVENT_FIELDS or n in ("_mh_tenant", "_mh_env")]
    # Rows are numbered before the columns are chosen: a table without any event column still
    # has rows to reject, and pyarrow forgets the row count of a table left without columns.
    rows = pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64))
    table = table.append_column("_mh_row", rows).select([*keep, "_mh_row"])
    table = table.replace_schema_metadata(None)
    if "timestamp" in keep:
        t = table.schema.field("timestamp").type
        if pa.types.is_timestamp(t) and t.tz is not None:
            table = _timestamps_to_micros(table)
    return table.append_column("_mh_file_no", _constant_int(file_no, table.num_rows))


def _constant_int(value: int, n: int) -> pa.Array:
    return pa.array(np.full(n, value, dtype=np.int32))


def _typed_columns(table: pa.Table) -> tuple[dict[str, str], str]:
    """The candidate column expressions over a prepared typed table, and the SQL of a row's
    JSON rendering (its raw line)."""
    names = set(table.column_names)
    exprs: dict[str, str] = {}
    for name in STRING_FIELDS:
        if name not in names:
            continue
        t = table.schema.field(name).type
        q = f'"{name}"'
        if _is_text(t) or pa.types.is_integer(t):
            exprs[name] = f"cast({q} as varchar)"
            exprs[f"{name}_type"] = f"case when {q} is not null then 'string' end"
        else:
            exprs[f"{name}_type"] = f"case when {q} is not null then 'other' end"
    if "timestamp" in names:
        t = table.schema.field("timestamp").type
        present = """case when "timestamp" is not null then '{}' end"""
        if _is_text(t):
            exprs["ts_text"] = '"timestamp"'
            exprs["ts_type"] = present.format("string")
            exprs["ts_sort"] = f"""case when regexp_full_match("timestamp", '{_TS_STRICT}')
                then try_cast(upper("timestamp") as timestamptz) end"""
        elif pa.types.is_timestamp(t) and t.tz is not None:
            exprs["ts_type"] = """case when "timestamp" is null then null
                when _mh_sub_micro then 'instant_ns' else 'instant' end"""
            exprs["ts_value"] = exprs["ts_sort"] = '"timestamp"'
        elif pa.types.is_timestamp(t):
            exprs["ts_type"] = present.format("local")
        else:
            exprs["ts_type"] = present.format("other")
    if "properties" in names:
        t = table.schema.field("properties").type
        if _is_text(t):
            marker = _Marker.for_texts([table.column("properties")])
            exprs.update(_json_text_columns('"properties"', marker))
        elif pa.types.is_struct(t) or pa.types.is_map(t):
            exprs["properties_type"] = "case when properties is not null then 'object' end"
            exprs["properties"] = "to_json(properties)"
        else:
            exprs["properties_type"] = "case when properties is not null then 'other' end"
    shown = [n for n in table.column_names if n in EVENT_FIELDS]
    raw = ("to_json({" + ", ".join(f'{_lit(n)}: "{n}"' for n in shown) + "})") if shown else "'{}'"
    return exprs, raw


def _timestamps_to_micros(table: pa.Table) -> pa.Table:
    """The `timestamp` column as UTC microseconds, plus `_mh_sub_micro`: whether a value had
    nanoseconds that microseconds would silently drop."""
    column = table.column("timestamp")
    unit = column.type.unit
    if unit == "ns":
        ints = pc.cast(column, pa.int64())
        sub_micro = pc.fill_null(pc.not_equal(pc.multiply(pc.divide(ints, 1000), 1000), ints),
                                 False)  # fmt: skip
    else:
        sub_micro = pa.array(np.zeros(table.num_rows, dtype=bool))
    micros = pc.cast(column, pa.timestamp("us", tz="UTC"), safe=False)
    index = table.column_names.index("timestamp")
    return table.set_column(index, "timestamp", micros).append_column("_mh_sub_micro", sub_micro)


def _read_source_table(
    warehouse: Warehouse,
    source_table: str,
    tenant_id: str | None,
    environment_id: str | None,
    tenant_id_column: str,
    environment_id_column: str,
) -> pa.Table:
    """The event columns of a warehouse table as Arrow, plus `_mh_tenant`/`_mh_env`.

    On Postgres everything travels as text: timestamptz as RFC 3339 UTC text, naive timestamps
    without offset (so they are rejected like naive text), JSON as its text."""
    parts = source_table.split(".")
    schema, name = (parts[0], parts[1]) if len(parts) == 2 else (warehouse.schema, parts[0])
    types = dict(warehouse.columns(name, schema))
    if not types:
        raise ValueError(f"source table {source_table} not found")
    select = []
    for column in EVENT_FIELDS:
        if column in SCOPE_FIELDS or column not in types:
            continue
        data_type = types[column].lower()
        q = f'"{column}"'
        if warehouse.is_spark:
            expr = f"cast({q} as string)" if data_type not in ("timestamp", "string") else q
        elif warehouse.is_duckdb:
            expr = f"{q}::varchar" if data_type == "json" else q
        elif data_type == "timestamp with time zone":
            expr = f"""to_char({q} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
        elif data_type == "timestamp without time zone":
            expr = f"""to_char({q}, 'YYYY-MM-DD"T"HH24:MI:SS.US')"""
        else:
            expr = f"{q}::text"
        select.append(f"{expr} as {q}")
    for fixed, column, alias in (
        (tenant_id, tenant_id_column, "_mh_tenant"),
        (environment_id, environment_id_column, "_mh_env"),
    ):
        if fixed is not None:
            select.append(f"{_lit(fixed)} as {alias}")
        elif column in types:
            select.append(f'cast("{column}" as varchar) as {alias}')
        else:
            select.append(f"cast(null as varchar) as {alias}")
    data = warehouse.query_arrow(f'select {", ".join(select)} from "{schema}"."{name}"')
    for alias in ("_mh_tenant", "_mh_env"):
        index = data.column_names.index(alias)
        data = data.set_column(index, alias, pc.cast(data.column(alias), pa.string()))
    return data
