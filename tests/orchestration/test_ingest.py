"""Ingest of landing files and warehouse tables into the raw tables (orchestration/ingest.py).

Expected values come from the rules (DESIGN 3, 3b.9, 3b.10; docs/ARCHITECTURE.md "Raw tables")
and from plain Python parsing of the same inputs, never from the code under test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.ingest import (
    _RISKY_NUMBER,
    RAW_LINE_MAX_CHARS,
    IngestReport,
    ensure_raw_tables,
    find_landing_files,
    ingest_landing,
    ingest_table,
    pending_landing_files,
)
from orchestration.warehouse import Warehouse, WarehouseConfig

T, E = "acme", "production"


# -- helpers ---------------------------------------------------------------------------------


def event(event_id: Any, **fields: Any) -> dict[str, Any]:
    base = {
        "event_id": event_id,
        "event_name": "api_request",
        "external_customer_id": "cust_1",
        "timestamp": "2024-03-01T10:00:00Z",
        "properties": {"method": "GET"},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _MISSING}


_MISSING = object()


def jsonl(*items: Any) -> str:
    return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items)


def write(landing: Path, relative: str, content: str | bytes, tenant: str = T,
          env: str = E) -> Path:  # fmt: skip
    path = landing / tenant / env / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def ingest(config: WarehouseConfig, landing: Path) -> IngestReport:
    with Warehouse(config) as warehouse:
        return ingest_landing(warehouse, landing)


def rows(config: WarehouseConfig, sql: str) -> list[tuple]:
    with Warehouse(config) as warehouse:
        return warehouse.query(sql.format(s=warehouse.schema))


def content_hash(stored: dict[str, Any], digest: Callable[[bytes], Any]) -> str:
    """The rule (docs/ARCHITECTURE.md "Raw tables"): a digest of the length-prefixed name,
    customer ids, source, UTC epoch microseconds and properties, '-' for NULL."""
    epoch_us = (stored["event_timestamp"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    parts = [stored["event_name"], stored["external_customer_id"], stored["customer_id"],
             stored["source"], str(epoch_us), stored["properties"]]  # fmt: skip
    text = "".join("-" if p is None else f"{len(p.encode())}:{p}" for p in parts)
    return digest(text.encode()).hexdigest()


def events(config: WarehouseConfig) -> list[dict[str, Any]]:
    with Warehouse(config) as warehouse:
        return warehouse.query_dicts(
            f"select * from {warehouse.table('raw_events')} order by ingest_seq"
        )


def rejects(config: WarehouseConfig) -> list[tuple[str, int, str]]:
    return rows(
        config,
        'select source_file, source_line, reason from "{s}".raw_event_rejects '
        "order by source_file, source_line",
    )


def check_counts(config: WarehouseConfig, report: IngestReport) -> None:
    """rows_read = accepted + rejected per file, in the report and in raw_ingested_files, and
    the stored rows and rejects match the counts."""
    for file in report.files:
        assert file.rows_read == file.accepted + file.rejected, file
        assert 0 <= file.duplicates <= file.accepted
    for read, accepted, rejected, duplicate in rows(
        config,
        "select rows_read, rows_accepted, rows_rejected, rows_duplicate "
        'from "{s}".raw_ingested_files',
    ):
        assert read == accepted + rejected
        assert duplicate <= accepted
    totals = rows(
        config,
        "select coalesce(sum(rows_accepted - rows_duplicate), 0), coalesce(sum(rows_rejected), 0) "
        'from "{s}".raw_ingested_files',
    )[0]
    stored = rows(config, 'select count(*) from "{s}".raw_events')[0][0]
    rejected = rows(config, 'select count(*) from "{s}".raw_event_rejects')[0][0]
    assert (stored, rejected) == totals


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


# -- the tables ------------------------------------------------------------------------------


def test_tables_have_the_contract_columns(duckdb_config: WarehouseConfig) -> None:
    with Warehouse(duckdb_config) as warehouse:
        ensure_raw_tables(warehouse)
        ensure_raw_tables(warehouse)  # idempotent
        columns = {
            table: [c for (c,) in warehouse.query(
                "select column_name from information_schema.columns where table_name = ? "
                "order by ordinal_position", [table])]
            for table in ("raw_events", "raw_event_rejects", "raw_ingested_files")
        }  # fmt: skip
    assert columns == {
        "raw_events": [
            "tenant_id", "environment_id", "event_id", "event_name", "external_customer_id",
            "customer_id", "source", "event_timestamp", "properties", "ingest_seq",
            "ingested_at", "source_file", "source_line", "content_hash",
        ],
        "raw_event_rejects": [
            "tenant_id", "environment_id", "source_file", "source_line", "raw_line", "reason",
            "rejected_at",
        ],
        "raw_ingested_files": [
            "tenant_id", "environment_id", "source_file", "file_sha256", "file_bytes",
            "rows_read", "rows_accepted", "rows_rejected", "rows_duplicate", "batch_id",
            "ingested_at",
        ],
    }  # fmt: skip


# -- JSON Lines: what is accepted, how it is stored ---------------------------------------


def test_accepted_event_is_stored_normalised(duckdb_config, landing) -> None:
    write(landing, "2024/03/01/a.jsonl", jsonl(
        event("e1", timestamp="2024-01-01T10:00:00.123456+05:30", customer_id="cus_1",
              source="api", properties={"a": 1}, tenant_id=T, environment_id=E,
              unknown_field={"ignored": True}),
        event("e2", timestamp="2024-01-01t04:30:00z", customer_id="", source=None,
              properties=None),
        event("e3", timestamp="2024-01-01 04:30:00.5-00:00", properties=_MISSING),
    ))  # fmt: skip
    report = ingest(duckdb_config, landing)
    assert (report.rows_read, report.accepted, report.rejected) == (3, 3, 0)
    got = events(duckdb_config)
    assert [e["event_id"] for e in got] == ["e1", "e2", "e3"]
    first = got[0]
    assert first["tenant_id"] == T and first["environment_id"] == E
    assert first["event_timestamp"] == datetime(2024, 1, 1, 4, 30, 0, 123456, tzinfo=UTC)
    assert (first["customer_id"], first["source"], first["properties"]) == (
        "cus_1", "api", '{"a":1}')  # fmt: skip
    assert first["source_file"] == f"{T}/{E}/2024/03/01/a.jsonl"
    assert [e["source_line"] for e in got] == [1, 2, 3]
    assert [e["ingest_seq"] for e in got] == [1, 2, 3]
    assert got[1]["event_timestamp"] == datetime(2024, 1, 1, 4, 30, tzinfo=UTC)
    assert (got[1]["customer_id"], got[1]["source"], got[1]["properties"]) == (None, None, "{}")
    assert got[2]["properties"] == "{}"
    assert got[2]["event_timestamp"] == datetime(2024, 1, 1, 4, 30, 0, 500000, tzinfo=UTC)
    assert [e["content_hash"] for e in got] == [content_hash(e, hashlib.md5) for e in got]
    check_counts(duckdb_config, report)


REJECTED_LINES = [
    # (line, reason)
    ("not json at all", "line is not valid JSON"),
    ('{"event_id": "x", ', "line is not valid JSON"),
    ('[{"event_id": "x"}]', "line is not a JSON object"),
    ('"just a string"', "line is not a JSON object"),
    (json.dumps(event(_MISSING)), "missing required field event_id"),
    (json.dumps(event(None)), "missing required field event_id"),
    (json.dumps(event(123)), "event_id must be a string"),
    (json.dumps(event("")), "event_id must not be empty"),
    (json.dumps(event("  ")), "event_id must not be empty"),
    (json.dumps(event("a\u0000b")), "event_id contains a NUL character"),
    (json.dumps(event("x", event_name=_MISSING)), "missing required field event_name"),
    (json.dumps(event("x", event_name=["a"])), "event_name must be a string"),
    (json.dumps(event("x", external_customer_id=_MISSING)),
     "missing required field external_customer_id"),
    (json.dumps(event("x", external_customer_id=42)),
     "external_customer_id must be a string"),
    (json.dumps(event("x", timestamp=_MISSING)), "missing required field timestamp"),
    (json.dumps(event("x", timestamp=1704067200)),
     "timestamp must be an RFC 3339 string or a timestamp with time zone"),
    (json.dumps(event("x", timestamp="2024-01-01T10:00:00")), "timestamp has no UTC offset"),
    (json.dumps(event("x", timestamp="2024-01-01 10:00:00.5")), "timestamp has no UTC offset"),
    (json.dumps(event("x", timestamp="2024-01-01T10:00:00.1234567Z")),
     "timestamp has more than 6 fractional second digits"),
    (json.dumps(event("x", timestamp="yesterday")),
     "timestamp is not a valid RFC 3339 date-time"),
    (json.dumps(event("x", timestamp="2024-01-01")),
     "timestamp is not a valid RFC 3339 date-time"),
    (json.dumps(event("x", timestamp="2024-02-30T00:00:00Z")),
     "timestamp is not a valid RFC 3339 date-time"),
    (json.dumps(event("x", timestamp="2024-01-01T24:00:00Z")),
     "timestamp is not a valid RFC 3339 date-time"),
    (json.dumps(event("x", timestamp="2024-01-01T10:00:00+0530")),
     "timestamp is not a valid RFC 3339 date-time"),
    (json.dumps(event("x", timestamp="1969-12-31T23:59:59Z")), "timestamp out of supported range"),
    (json.dumps(event("x", timestamp="1970-01-01T00:30:00+01:00")),
     "timestamp out of supported range"),
    (json.dumps(event("x", timestamp="2100-01-01T00:00:00Z")), "timestamp out of supported range"),
    (json.dumps(event("x", customer_id=7)), "customer_id must be a string"),
    (json.dumps(event("x", source={"a": 1})), "source must be a string"),
    (json.dumps(event("x", properties=[1, 2])), "properties must be a JSON object"),
    (json.dumps(event("x", properties='{"a": 1}')), "properties must be a JSON object"),
    (json.dumps(event("x", properties=5)), "properties must be a JSON object"),
    ('{"event_id":"x","event_name":"n","external_customer_id":"c",'
     '"timestamp":"2024-01-01T00:00:00Z","properties":{"v":NaN}}',
     "properties contain NaN or Infinity, which JSON forbids"),
    ('{"event_id":"x","event_name":"n","external_customer_id":"c",'
     '"timestamp":"2024-01-01T00:00:00Z","properties":{"v":[1, -Infinity]}}',
     "properties contain NaN or Infinity, which JSON forbids"),
    ('{"event_id":"x","event_name":"n","external_customer_id":"c",'
     '"timestamp":"2024-01-01T00:00:00Z","properties":{"v":"a\\u0000b"}}',
     "properties contain a \\u0000 character"),
    (json.dumps(event("x", tenant_id="other")), "tenant_id contradicts landing path"),
    (json.dumps(event("x", environment_id="sandbox")), "environment_id contradicts landing path"),
    (json.dumps(event("x", tenant_id=1)), "tenant_id must be a string"),
    ('{"event_id":"x","event_id":"y","event_name":"n","external_customer_id":"c",'
     '"timestamp":"2024-01-01T00:00:00Z"}', "duplicate field event_id"),
]  # fmt: skip


def test_every_reject_reason_with_its_line_number(duckdb_config, landing) -> None:
    lines = []
    for i, (line, _) in enumerate(REJECTED_LINES):
        lines.append(json.dumps(event(f"good{i}")))  # a good line between bad ones
        lines.append(line)
    write(landing, "a.jsonl", "\n".join(lines) + "\n")
    report = ingest(duckdb_config, landing)
    expected = [(f"{T}/{E}/a.jsonl", 2 * i + 2, reason)
                for i, (_, reason) in enumerate(REJECTED_LINES)]  # fmt: skip
    assert rejects(duckdb_config) == expected
    assert report.accepted == len(REJECTED_LINES)
    assert report.rejected == len(REJECTED_LINES)
    raw = rows(duckdb_config, 'select raw_line from "{s}".raw_event_rejects order by source_line')
    assert [r for (r,) in raw][:2] == [REJECTED_LINES[0][0], REJECTED_LINES[1][0]]
    assert report.reject_reasons["line is not valid JSON"] == 2
    check_counts(duckdb_config, report)


def test_blank_lines_are_skipped_but_keep_their_numbers(duckdb_config, landing) -> None:
    content = "\n" + json.dumps(event("a")) + "\n   \n\t\r\n" + "oops\n" + json.dumps(event("b"))
    write(landing, "a.jsonl", content)  # no final newline either
    report = ingest(duckdb_config, landing)
    assert (report.rows_read, report.accepted, report.rejected) == (3, 2, 1)
    assert [e["source_line"] for e in events(duckdb_config)] == [2, 6]
    assert rejects(duckdb_config) == [(f"{T}/{E}/a.jsonl", 5, "line is not valid JSON")]


def test_byte_order_mark_and_crlf(duckdb_config, landing) -> None:
    content = "\ufeff" + json.dumps(event("a")) + "\r\n" + json.dumps(event("b")) + "\r\n"
    write(landing, "a.jsonl", content.encode("utf-8"))
    write(landing, "b.csv", "\ufeffevent_id,event_name,external_customer_id,timestamp\r\n"
                            "c,n,cust,2024-01-01T00:00:00Z\r\n")  # fmt: skip
    report = ingest(duckdb_config, landing)
    assert (report.accepted, report.rejected) == (3, 0)
    assert [e["event_id"] for e in events(duckdb_config)] == ["a", "b", "c"]


def test_invalid_utf8_rejects_only_that_line(duckdb_config, landing) -> None:
    good = json.dumps(event("a")).encode()
    bad = b'{"event_id":"\xff\xfe","event_name":"n"}'
    write(landing, "a.jsonl", good + b"\n" + bad + b"\n" + good.replace(b'"a"', b'"b"') + b"\n")
    write(
        landing,
        "b.csv",
        b"event_id,event_name,external_customer_id,timestamp\n"
        b"x\xff,n,c,2024-01-01T00:00:00Z\ny,n,c,2024-01-01T00:00:00Z\n",
    )
    report = ingest(duckdb_config, landing)
    assert rejects(duckdb_config) == [
        (f"{T}/{E}/a.jsonl", 2, "line is not valid UTF-8"),
        (f"{T}/{E}/b.csv", 2, "line is not valid UTF-8"),
    ]
    assert [e["event_id"] for e in events(duckdb_config)] == ["a", "b", "y"]
    raw = rows(duckdb_config, 'select raw_line from "{s}".raw_event_rejects order by 1')
    assert all("\\x" in r.lower() for (r,) in raw)  # bad bytes shown escaped
    check_counts(duckdb_config, report)


def test_raw_line_is_truncated(duckdb_config, landing) -> None:
    long_line = '{"event_id": "' + "x" * 50_000 + '"'
    write(landing, "a.jsonl", long_line + "\n")
    ingest(duckdb_config, landing)
    (raw,) = rows(duckdb_config, 'select raw_line from "{s}".raw_event_rejects')[0]
    assert raw == long_line[:RAW_LINE_MAX_CHARS]


# -- exact numbers ---------------------------------------------------------------------------

EXACT_PROPERTIES = (
    '{"a":1.10,"b":12345678901234567890,"c":1e5,"d":-0,"e":0.1000,"f":1E+2,'
    '"g":[1.50,{"h":2.0e-3}],"i":123456789012345678901234567890.123456789,"j":"1.10",'
    '"k":0.00001,"l":-0.0,"m":7,"n":true,"o":null,"p":"x\\"y:1.0,z"}'
)


def test_numbers_are_kept_exactly_in_every_format(duckdb_config, landing) -> None:
    spaced = EXACT_PROPERTIES.replace('":', '": ').replace(',"', ', "').replace("[", "[ ")
    head = (
        '{"event_id":"%s","event_name":"n","external_customer_id":"c",'
        '"timestamp":"2024-01-01T00:00:00Z","properties":'
    )
    write(
        landing,
        "a.jsonl",
        (head % "compact")
        + EXACT_PROPERTIES
        + "}\n"
        + (head % "spaced").replace(",", ", ")
        + spaced
        + "}\n",
    )
    csv_cell = '"' + spaced.replace('"', '""') + '"'
    write(
        landing,
        "b.csv",
        "event_id,event_name,external_customer_id,timestamp,properties\n"
        f"csv,n,c,2024-01-01T00:00:00Z,{csv_cell}\n",
    )
    table = pa.table({"event_id": ["parquet"], "event_name": ["n"],
                      "external_customer_id": ["c"], "timestamp": ["2024-01-01T00:00:00Z"],
                      "properties": [spaced]})  # fmt: skip
    pq.write_table(table, write(landing, "c.parquet", b""))
    report = ingest(duckdb_config, landing)
    assert report.rejected == 0, report.reject_reasons
    stored = {e["event_id"]: e["properties"] for e in events(duckdb_config)}
    assert stored == {k: EXACT_PROPERTIES for k in ("compact", "spaced", "csv", "parquet")}
    # the same content in other clothes is one identical re-send per id, not new versions
    hashes = {e["content_hash"] for e in events(duckdb_config)}
    assert len(hashes) == 1


def test_strings_that_look_like_marked_numbers_stay_strings(duckdb_config, landing) -> None:
    # U+0001 followed by digits is how the exact path marks a number with the first marker;
    # a file holding that escape gets another marker
    properties = '{"s":"\\u00011.10","t":"\\u0002","v":1.10}'
    write(landing, "a.jsonl", '{"event_id":"a","event_name":"n","external_customer_id":"c",'
                              '"timestamp":"2024-01-01T00:00:00Z","properties": ' + properties
                              + "}\n")  # fmt: skip
    ingest(duckdb_config, landing)
    (stored,) = events(duckdb_config)
    assert stored["properties"] == properties  # the exact path: spaced, with 1.10
    assert json.loads(stored["properties"])["s"] == "\u00011.10"


def test_fast_path_numbers_round_trip_through_duckdb() -> None:
    """The fast path relies on this: a number token the risky pattern does not flag is written
    back by DuckDB's JSON functions exactly as it came."""
    import re

    risky = re.compile(_RISKY_NUMBER)
    rng = random.Random(3)
    digits = "0123456789"

    def token() -> str:
        k = rng.randint(0, 16)
        whole = (
            "0"
            if k == 0
            else rng.choice("123456789") + "".join(rng.choice(digits) for _ in range(k - 1))
        )
        text = rng.choice(["", "-"]) + whole
        if rng.random() < 0.7:
            text += (
                "."
                + "0" * rng.choice([0, 0, 1, 3, 4, 6])
                + "".join(rng.choice(digits) for _ in range(rng.randint(0, 15)))
            )
            text = text.rstrip(".")
        if rng.random() < 0.1:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 400))
        return text

    docs = ['{"v":[' + token() + "]}" for _ in range(100_000)]
    con = duckdb.connect()
    written = con.execute("select d, json(d)::varchar from unnest(?) t(d)", [docs]).fetchall()
    wrong = [(d, w) for d, w in written if d != w and not risky.search(d)]
    assert wrong == []
    assert any(d != w for d, w in written)  # the exact path is needed at all


# -- dedup: versions, identical re-sends, ordering -----------------------------------------


def test_identical_resend_is_a_duplicate_and_a_change_is_a_new_version(
    duckdb_config, landing
) -> None:
    original = event("e1", timestamp="2024-01-01T10:00:00Z", properties={"n": 1, "m": "x"})
    same_instant_other_offset = dict(original, timestamp="2024-01-01T11:00:00+01:00")
    same_content_other_spacing = (
        '{"event_id": "e1", "event_name": "api_request", "external_customer_id": "cust_1",'
        ' "timestamp": "2024-01-01T10:00:00.000000Z", "properties": {"n": 1, "m": "x"}}'
    )
    changed = dict(original, properties={"n": 2, "m": "x"})
    write(landing, "a.jsonl", jsonl(original, same_instant_other_offset,
                                    same_content_other_spacing, changed))  # fmt: skip
    report = ingest(duckdb_config, landing)
    assert (report.accepted, report.duplicates, report.stored) == (4, 2, 2)
    got = events(duckdb_config)
    assert [(e["source_line"], e["properties"]) for e in got] == [
        (1, '{"n":1,"m":"x"}'), (4, '{"n":2,"m":"x"}')]  # fmt: skip
    assert got[0]["ingest_seq"] < got[1]["ingest_seq"]
    check_counts(duckdb_config, report)


def test_a_b_a_stores_three_versions_and_the_latest_wins(duckdb_config, landing) -> None:
    a = event("e1", properties={"v": "a"})
    b = event("e1", properties={"v": "b"})
    write(landing, "1.jsonl", jsonl(a, b, a, a))
    report = ingest(duckdb_config, landing)
    assert (report.accepted, report.duplicates) == (4, 1)
    assert [e["properties"] for e in events(duckdb_config)] == ['{"v":"a"}', '{"v":"b"}',
                                                                 '{"v":"a"}']  # fmt: skip
    # the same again in a later file: identical to the latest version, so nothing new
    write(landing, "2.jsonl", jsonl(a))
    report = ingest(duckdb_config, landing)
    assert (report.files_ingested, report.files_skipped, report.duplicates) == (1, 1, 1)
    assert len(events(duckdb_config)) == 3
    # b again is a change relative to the latest (a): a new version with a larger ingest_seq
    write(landing, "3.jsonl", jsonl(b))
    ingest(duckdb_config, landing)
    latest = events(duckdb_config)[-1]
    assert (latest["properties"], latest["source_file"]) == ('{"v":"b"}', f"{T}/{E}/3.jsonl")


def test_a_rejected_resend_never_replaces_a_version(duckdb_config, landing) -> None:
    good = event("e1", properties={"v": 1})
    bad = dict(good, timestamp="2024-01-01T00:00:00")  # no offset
    write(landing, "a.jsonl", jsonl(good, bad, good))
    report = ingest(duckdb_config, landing)
    assert (report.accepted, report.rejected, report.duplicates) == (2, 1, 1)
    assert len(events(duckdb_config)) == 1


def test_ids_are_scoped_by_tenant_and_environment(duckdb_config, landing) -> None:
    write(landing, "a.jsonl", jsonl(event("same")), tenant="t1", env="prod")
    write(landing, "a.jsonl", jsonl(event("same")), tenant="t1", env="sandbox")
    write(landing, "a.jsonl", jsonl(event("same")), tenant="t2", env="prod")
    report = ingest(duckdb_config, landing)
    assert (report.stored, report.duplicates) == (3, 0)
    assert [(e["tenant_id"], e["environment_id"]) for e in events(duckdb_config)] == [
        ("t1", "prod"), ("t1", "sandbox"), ("t2", "prod")]  # fmt: skip


def test_files_are_ingested_in_sorted_path_order_across_formats(duckdb_config, landing) -> None:
    write(landing, "2024/01/02/b.jsonl", jsonl(event("e2"), event("e1", properties={"v": 2})))
    write(landing, "2024/01/01/z.csv",
          "event_id,event_name,external_customer_id,timestamp,properties\n"
          'e1,api_request,cust_1,2024-03-01T10:00:00Z,"{""v"":1}"\n')  # fmt: skip
    table = pa.table({"event_id": ["e0"], "event_name": ["n"], "external_customer_id": ["c"],
                      "timestamp": ["2024-01-01T00:00:00Z"]})  # fmt: skip
    pq.write_table(table, write(landing, "2024/01/01/a.parquet", b""))
    write(landing, "2024/01/01/ignored.txt", "not an event file")
    write(landing, "2024/01/01/.partial.jsonl", "being written")
    report = ingest(duckdb_config, landing)
    assert [f.source_file for f in report.files] == [
        f"{T}/{E}/2024/01/01/a.parquet", f"{T}/{E}/2024/01/01/z.csv",
        f"{T}/{E}/2024/01/02/b.jsonl"]  # fmt: skip
    got = events(duckdb_config)
    assert [(e["event_id"], e["ingest_seq"]) for e in got] == [
        ("e0", 1), ("e1", 2), ("e2", 3), ("e1", 4)]  # fmt: skip
    assert got[-1]["properties"] == '{"v":2}'
    check_counts(duckdb_config, report)


# -- re-runs ---------------------------------------------------------------------------------


def test_rerun_ingests_nothing_and_changed_file_is_ingested_again(duckdb_config, landing) -> None:
    path = write(landing, "a.jsonl", jsonl(event("e1"), event("e2"), "bad"))
    first = ingest(duckdb_config, landing)
    assert (first.files_ingested, first.stored, first.rejected) == (1, 2, 1)
    with Warehouse(duckdb_config) as warehouse:
        assert pending_landing_files(warehouse, landing) == []
    again = ingest(duckdb_config, landing)
    assert (again.files_ingested, again.files_skipped, again.rows_read) == (0, 1, 0)
    assert len(events(duckdb_config)) == 2
    assert rows(duckdb_config, 'select count(*) from "{s}".raw_ingested_files')[0][0] == 1
    # change one line: the file comes back, its unchanged lines are identical re-sends
    path.write_text(jsonl(event("e1"), event("e2", properties={"v": 9}), "bad"))
    with Warehouse(duckdb_config) as warehouse:
        assert pending_landing_files(warehouse, landing) == [f"{T}/{E}/a.jsonl"]
    changed = ingest(duckdb_config, landing)
    assert (changed.rows_read, changed.accepted, changed.duplicates, changed.stored,
            changed.rejected) == (3, 2, 1, 1, 1)  # fmt: skip
    got = events(duckdb_config)
    assert [(e["event_id"], e["ingest_seq"]) for e in got] == [("e1", 1), ("e2", 2), ("e2", 3)]
    assert rows(duckdb_config, 'select count(*) from "{s}".raw_ingested_files')[0][0] == 2
    check_counts(duckdb_config, changed)


def test_a_failed_run_leaves_nothing_and_the_next_run_redoes_it(
    duckdb_config, landing, monkeypatch
) -> None:
    write(landing, "a.jsonl", jsonl(event("e1"), "bad"))
    calls = []

    def failing_append(self, name, data, **options):
        calls.append(name)
        if name == "raw_ingested_files":
            raise RuntimeError("disk full")
        return original(self, name, data, **options)

    original = Warehouse.append_arrow
    monkeypatch.setattr(Warehouse, "append_arrow", failing_append)
    with pytest.raises(RuntimeError):
        ingest(duckdb_config, landing)
    assert "raw_events" in calls
    monkeypatch.setattr(Warehouse, "append_arrow", original)
    for table in ("raw_events", "raw_event_rejects", "raw_ingested_files"):
        assert rows(duckdb_config, f'select count(*) from "{{s}}".{table}')[0][0] == 0
    report = ingest(duckdb_config, landing)
    assert (report.stored, report.rejected) == (1, 1)


# -- CSV -------------------------------------------------------------------------------------


def test_csv_columns_extra_properties_and_bad_rows(duckdb_config, landing) -> None:
    write(landing, "a.csv", (
        "event_id,event_name,external_customer_id,timestamp,customer_id,source,properties,"
        "region,properties.tier\n"
        'c1,n,cust,2024-01-01T00:00:00Z,cus,api,"{""tokens"": 5}",eu,gold\n'
        "c2,n,cust,2024-01-01T00:00:00Z,,,,,\n"
        "c3,n,cust,2024-01-01T00:00:00Z\n"  # wrong number of fields
        '"c4","n","multi\nline",2024-01-01T00:00:00Z,,,"{}",us,\n'
        "c5,n,cust,2024-01-01T00:00:00,,,,,\n"
        'c6,n,cust,2024-01-01T00:00:00Z,,,"[1]",,\n'
        'c7,n,cust,2024-01-01T00:00:00Z,,,"{""region"": ""x""}",eu,\n'
        'c8,n,cust,2024-01-01T00:00:00Z,,,"{bad",,\n'
        ",n,cust,2024-01-01T00:00:00Z,,,,,\n"
    ))  # fmt: skip
    report = ingest(duckdb_config, landing)
    got = {e["event_id"]: e for e in events(duckdb_config)}
    assert got["c1"]["properties"] == '{"tokens":5,"region":"eu","tier":"gold"}'
    assert (got["c1"]["customer_id"], got["c1"]["source"]) == ("cus", "api")
    assert (got["c2"]["properties"], got["c2"]["customer_id"]) == ("{}", None)
    assert got["c4"]["external_customer_id"] == "multi\nline"
    assert got["c4"]["properties"] == '{"region":"us"}'
    assert got["c4"]["source_line"] == 5
    source = f"{T}/{E}/a.csv"
    assert rejects(duckdb_config) == [
        (source, 4, "wrong number of fields: expected 9, got 4"),
        (source, 7, "timestamp has no UTC offset"),
        (source, 8, "properties must be a JSON object"),
        (source, 9, "property given twice: region"),
        (source, 10, "properties is not valid JSON"),
        (source, 11, "event_id must not be empty"),
    ]
    check_counts(duckdb_config, report)


def test_csv_column_and_prefixed_column_naming_one_property(duckdb_config, landing) -> None:
    write(landing, "a.csv", "event_id,event_name,external_customer_id,timestamp,region,"
                            "properties.region\n"
                            "a,n,c,2024-01-01T00:00:00Z,eu,\n"
                            "b,n,c,2024-01-01T00:00:00Z,eu,us\n")  # fmt: skip
    ingest(duckdb_config, landing)
    assert [(e["event_id"], e["properties"]) for e in events(duckdb_config)] == [
        ("a", '{"region":"eu"}')]  # fmt: skip
    assert rejects(duckdb_config) == [(f"{T}/{E}/a.csv", 3, "property given twice: region")]


def test_csv_header_without_a_required_column_rejects_every_row(duckdb_config, landing) -> None:
    write(landing, "a.csv", "event_id,event_name,timestamp\nx,n,2024-01-01T00:00:00Z\n"
                            "y,n,2024-01-01T00:00:00Z\n")  # fmt: skip
    write(landing, "b.csv", "")  # empty: no rows at all
    report = ingest(duckdb_config, landing)
    assert rejects(duckdb_config) == [
        (f"{T}/{E}/a.csv", 2, "missing column external_customer_id"),
        (f"{T}/{E}/a.csv", 3, "missing column external_customer_id"),
    ]
    assert [(f.source_file, f.rows_read) for f in report.files] == [
        (f"{T}/{E}/a.csv", 2), (f"{T}/{E}/b.csv", 0)]  # fmt: skip


# -- Parquet ---------------------------------------------------------------------------------


def test_parquet_typed_columns(duckdb_config, landing) -> None:
    utc = pa.timestamp("us", tz="UTC")
    table = pa.table({
        "event_id": pa.array([1, 2, 3], pa.int64()),
        "event_name": ["n", "n", None],
        "external_customer_id": ["c", "c", "c"],
        "timestamp": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * 3, utc),
        "properties": pa.array([{"tokens": 5, "cost": 1.5}, None, {"tokens": 1, "cost": 0.0}],
                               pa.struct([("tokens", pa.int64()), ("cost", pa.float64())])),
        "extra": ["ignored", "ignored", "ignored"],
    })  # fmt: skip
    pq.write_table(table, write(landing, "a.parquet", b""))
    naive = table.set_column(3, "timestamp", pa.array([datetime(2024, 1, 1)] * 3,
                                                       pa.timestamp("us")))  # fmt: skip
    pq.write_table(naive.slice(0, 1), write(landing, "b.parquet", b""))
    ns = pa.array([1_704_067_200_000_000_001, 1_704_067_200_000_001_000], pa.timestamp("ns", "UTC"))
    pq.write_table(pa.table({"event_id": ["ns1", "ns2"], "event_name": ["n", "n"],
                             "external_customer_id": ["c", "c"], "timestamp": ns}),
                   write(landing, "c.parquet", b""))  # fmt: skip
    write(landing, "d.parquet", b"PAR1 this is not parquet")
    report = ingest(duckdb_config, landing)
    got = events(duckdb_config)
    assert [(e["event_id"], e["properties"]) for e in got] == [
        ("1", '{"tokens":5,"cost":1.5}'), ("2", "{}"), ("ns2", "{}")]  # fmt: skip
    assert got[2]["event_timestamp"] == datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    reasons = [(f, line, reason.split(":")[0]) for f, line, reason in rejects(duckdb_config)]
    assert reasons == [
        (f"{T}/{E}/a.parquet", 3, "missing required field event_name"),
        (f"{T}/{E}/b.parquet", 1, "timestamp has no UTC offset"),
        (f"{T}/{E}/c.parquet", 1, "timestamp has more than 6 fractional second digits"),
        (f"{T}/{E}/d.parquet", 0, "file is not valid Parquet"),
    ]
    check_counts(duckdb_config, report)


# -- a warehouse table as the source -------------------------------------------------------


def _source_table(warehouse: Warehouse, rows_: list[tuple]) -> None:
    warehouse.execute(f"drop table if exists {warehouse.table('app_events')}")
    warehouse.execute(
        f"create table {warehouse.table('app_events')} (tenant_id varchar, environment_id "
        "varchar, event_id varchar, event_name varchar, external_customer_id varchar, "
        'customer_id varchar, source varchar, "timestamp" timestamptz, properties varchar)'
    )
    for row in rows_:
        warehouse.execute(
            f"insert into {warehouse.table('app_events')} values ({', '.join([warehouse.ph] * 9)})",
            list(row),
        )
    warehouse.commit()


def _table_rows(n: int = 3) -> list[tuple]:
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    return [(T, E, f"t{i}", "n", "c", None, "app", ts + timedelta(minutes=n - i),
             '{"v": 1.10}') for i in range(n)]  # fmt: skip


@pytest.mark.parametrize(
    "config_fixture", ["duckdb_config", pytest.param("pg_config", marks=pytest.mark.postgres)]
)
def test_ingest_table(config_fixture: str, request: pytest.FixtureRequest) -> None:
    config = request.getfixturevalue(config_fixture)
    source = _table_rows() + [(T, E, "bad", "n", "c", None, None, None, "{}"),
                              (None, E, "no_tenant", "n", "c", None, None,
                               datetime(2024, 1, 1, tzinfo=UTC), None)]  # fmt: skip
    with Warehouse(config) as warehouse:
        _source_table(warehouse, source)
        first = ingest_table(warehouse, "app_events")
        again = ingest_table(warehouse, "app_events")
    assert (first.rows_read, first.stored, first.rejected) == (5, 3, 2)
    assert (again.files_skipped, again.rows_read) == (1, 0)
    got = events(config)
    # rows are numbered by (timestamp, event_id): t2 is the earliest
    assert [(e["event_id"], e["source_line"]) for e in got] == [("t2", 2), ("t1", 3), ("t0", 4)]
    assert {e["source_file"] for e in got} == {"table:app_events"}
    assert {e["properties"] for e in got} == {'{"v":1.10}'}
    assert sorted(r[2] for r in rejects(config)) == [
        "missing required field tenant_id", "missing required field timestamp"]  # fmt: skip
    # one changed row and one row appended: only those are stored
    with Warehouse(config) as warehouse:
        warehouse.execute(f"update {warehouse.table('app_events')} set properties = "
                          "'{\"v\": 2}' where event_id = 't1'")  # fmt: skip
        warehouse.execute(f"delete from {warehouse.table('app_events')} where event_id = 'bad'")
        warehouse.commit()
        third = ingest_table(warehouse, "app_events")
    assert (third.stored, third.duplicates) == (1, 2)
    assert events(config)[-1]["event_id"] == "t1"
    check_counts(config, third)


def test_ingest_table_with_fixed_scope_and_text_timestamps(duckdb_config) -> None:
    with Warehouse(duckdb_config) as warehouse:
        warehouse.execute(
            "create table feed (event_id varchar, event_name varchar, external_customer_id "
            'varchar, "timestamp" varchar, properties json)'
        )
        warehouse.execute(
            "insert into feed values ('a', 'n', 'c', '2024-01-01T01:00:00+01:00', '{\"x\": 1}'),"
            "('a', 'n', 'c', '2024-01-01T00:30:00Z', '{\"x\": 2}'),"
            "('b', 'n', 'c', '2024-01-01T00:00:00', null)"
        )
        report = ingest_table(warehouse, "feed", tenant_id=T, environment_id=E)
    # 'a' appears twice: the later row (by timestamp) is the version, the other a duplicate
    assert (report.rows_read, report.accepted, report.duplicates, report.rejected) == (3, 2, 1, 1)
    (stored,) = events(duckdb_config)
    assert (stored["event_id"], stored["properties"], stored["source_line"]) == ("a", '{"x":2}', 2)
    assert rejects(duckdb_config)[0][1:] == (3, "timestamp has no UTC offset")  # sorts last


# -- Postgres --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_landing_ingest_on_postgres(pg_config: WarehouseConfig, landing: Path) -> None:
    write(
        landing,
        "a.jsonl",
        jsonl(
            event("e1", properties=json.loads('{"n": 1}')),
            event("e1"),
            "bad",
            event("e2", timestamp="2024-01-01T10:00:00.123456+05:30", customer_id="x"),
        )
        + '{"event_id":"e3","event_name":"n","external_customer_id":"c",'
        '"timestamp":"2024-01-01T00:00:00Z","properties":' + EXACT_PROPERTIES + "}\n",
    )
    write(
        landing,
        "b.csv",
        "event_id,event_name,external_customer_id,timestamp,note\n"
        'e1,api_request,cust_1,2024-03-01T10:00:00Z,"a ""quoted"", text"\n',
    )
    first = ingest(pg_config, landing)
    again = ingest(pg_config, landing)
    assert (first.rows_read, first.accepted, first.rejected, first.stored) == (6, 5, 1, 5)
    assert (again.files_skipped, again.rows_read) == (2, 0)
    got = events(pg_config)
    assert [e["event_id"] for e in got] == ["e1", "e1", "e2", "e3", "e1"]
    assert got[2]["event_timestamp"] == datetime(2024, 1, 1, 4, 30, 0, 123456, tzinfo=UTC)
    assert got[3]["properties"] == EXACT_PROPERTIES
    assert got[4]["properties"] == '{"note":"a \\"quoted\\", text"}'
    assert [e["ingest_seq"] for e in got] == [1, 2, 3, 4, 5]
    check_counts(pg_config, first)
    # the next file continues the global sequence and sees the stored versions
    write(landing, "c.jsonl", jsonl(event("e3", properties=json.loads(EXACT_PROPERTIES)),
                                    event("e2", timestamp="2024-01-01T04:30:00.123456Z",
                                          customer_id="x")))  # fmt: skip
    third = ingest(pg_config, landing)
    assert (third.stored, third.duplicates) == (1, 1)
    assert events(pg_config)[-1]["ingest_seq"] == 6


# -- generated mixes -------------------------------------------------------------------------

GOOD = st.builds(
    lambda i, name, value, minute, spaced: (i, name, value, minute, spaced),
    st.integers(0, 15), st.sampled_from(["a", "b"]), st.integers(-3, 3), st.integers(0, 59),
    st.booleans(),
)  # fmt: skip
BAD = st.sampled_from([
    "", "   ", "{", "[]", "null", '{"event_id": 1}', '{"event_id": "x", "event_name": "n"}',
    '{"event_id":"x","event_name":"n","external_customer_id":"c","timestamp":"2024-01-01"}',
    '{"event_id":"x","event_name":"n","external_customer_id":"c",'
    '"timestamp":"2024-01-01T00:00:00Z","properties":[]}',
])  # fmt: skip


def _good_line(i: int, name: str, value: int, minute: int, spaced: bool) -> tuple[str, dict]:
    ev = event(f"id{i}", event_name=name, timestamp=f"2024-01-01T00:{minute:02d}:00Z",
               properties={"v": value, "f": 1.10 if value > 0 else 2})  # fmt: skip
    text = json.dumps(ev, separators=(", ", ": ") if spaced else (",", ":"))
    return text.replace("1.1,", "1.10,").replace("1.1}", "1.10}"), ev


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.one_of(GOOD, BAD), max_size=25), min_size=1, max_size=3))
def test_generated_mixes_keep_the_invariants(tmp_path_factory, files) -> None:
    root = tmp_path_factory.mktemp("mix")
    config = WarehouseConfig(duckdb_path=str(root / "w.duckdb"))
    landing = root / "landing"
    expected_rows = []
    latest: dict[str, tuple[dict, str, int]] = {}
    for n, items in enumerate(files):
        lines = []
        for line_no, item in enumerate(items, start=1):
            if isinstance(item, str):
                lines.append(item)
                if item.strip():
                    expected_rows.append(None)
                continue
            text, ev = _good_line(*item)
            lines.append(text)
            expected_rows.append(ev)
            latest[ev["event_id"]] = (ev, f"{T}/{E}/{n:02d}.jsonl", line_no)
        write(landing, f"{n:02d}.jsonl", "\n".join(lines) + "\n")
    report = ingest(config, landing)
    assert report.rows_read == len(expected_rows)
    assert report.accepted == sum(1 for r in expected_rows if r is not None)
    check_counts(config, report)
    stored = events(config)
    # the latest stored version of each id is the content of its last good line
    last_version = {}
    for e in stored:
        last_version[e["event_id"]] = e
    assert set(last_version) == set(latest)
    for event_id, (ev, _, _) in latest.items():
        got = last_version[event_id]
        assert got["event_name"] == ev["event_name"]
        assert json.loads(got["properties"]) == ev["properties"]
        assert got["event_timestamp"] == datetime.fromisoformat(ev["timestamp"])
    # consecutive versions of an id always differ
    by_id: dict[str, list[str]] = {}
    for e in stored:
        by_id.setdefault(e["event_id"], []).append(e["content_hash"])
    assert all(
        a != b for hashes in by_id.values() for a, b in zip(hashes, hashes[1:], strict=False)
    )
    assert [e["ingest_seq"] for e in stored] == list(range(1, len(stored) + 1))
    again = ingest(config, landing)
    assert again.rows_read == 0 and again.files_skipped == len(files)


def test_find_landing_files_needs_tenant_and_environment(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "top.jsonl").write_text("")
    write(tmp_path, "x/y.JSONL", "")
    write(tmp_path, "x/z.json", "")
    write(tmp_path, ".hidden/a.csv", "")
    found = find_landing_files(tmp_path)
    assert [(f.source_file, f.tenant_id, f.environment_id, f.format) for f in found] == [
        (f"{T}/{E}/x/y.JSONL", T, E, "jsonl"), (f"{T}/{E}/x/z.json", T, E, "jsonl")]  # fmt: skip


# -- the fast paths against the careful ones -------------------------------------------------

MIXED_ROW = st.one_of(
    GOOD,
    BAD,
    st.sampled_from([
        {"event_id": "", "event_name": "n", "external_customer_id": "c",
         "timestamp": "2024-01-01T00:00:00Z"},
        {"event_id": "z", "event_name": "n", "external_customer_id": "c",
         "timestamp": "2024-01-01T00:00:00.1234567Z"},
        {"event_id": "z", "event_name": "n", "external_customer_id": "c",
         "timestamp": "2024-01-01 00:00:00+05:30", "properties": '{"a": NaN}'},
        {"event_id": "z", "event_name": "n", "external_customer_id": "c",
         "timestamp": "1969-12-31T23:59:59Z", "properties": '{"a": 1e400}'},
    ]),
)  # fmt: skip


def _mixed_row(item: Any) -> dict[str, Any] | str:
    """A row as a dict of text fields (properties as JSON text), or a raw line."""
    if isinstance(item, tuple):
        _, ev = _good_line(*item)
        return {**ev, "properties": json.dumps(ev["properties"])}
    return item


def _jsonl_line(row: dict[str, Any] | str) -> str:
    """A JSON Lines line with the properties text written verbatim (NaN, 1e400 stay)."""
    if isinstance(row, str):
        return row
    head = json.dumps({k: v for k, v in row.items() if k != "properties"})
    return head if "properties" not in row else f'{head[:-1]}, "properties": {row["properties"]}}}'


def _write_mixed(landing: Path, files: list[tuple[str, list[Any]]]) -> None:
    fields = ["event_id", "event_name", "external_customer_id", "timestamp", "properties"]
    for n, (fmt, items) in enumerate(files):
        rows_ = [_mixed_row(i) for i in items]
        if fmt == "jsonl":
            lines = [_jsonl_line(r) for r in rows_]
            write(landing, f"{n:02d}.jsonl", "\n".join(lines) + "\n")
            continue
        dicts = [r for r in rows_ if isinstance(r, dict)]
        if fmt == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(dicts)
            write(landing, f"{n:02d}.csv", out.getvalue())
            continue
        columns = {f: [d.get(f) for d in dicts] for f in fields}
        if fmt == "parquet_int_ids":  # not all strings: the pyarrow path
            columns["event_id"] = [hash(v) % 1000 if v else None for v in columns["event_id"]]
        path = landing / T / E / f"{n:02d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)


def _raw_contents(config: WarehouseConfig) -> tuple[list, list, list]:
    return (
        rows(config, 'select * exclude (ingested_at) from "{s}".raw_events order by ingest_seq'),
        rows(config, 'select * exclude (rejected_at) from "{s}".raw_event_rejects '
                     "order by source_file, source_line"),
        rows(config, 'select * exclude (ingested_at, batch_id) from "{s}".raw_ingested_files '
                     "order by source_file"),
    )  # fmt: skip


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(
    st.tuples(st.sampled_from(["jsonl", "csv", "parquet", "parquet_int_ids"]),
              st.lists(MIXED_ROW, max_size=20)),
    min_size=1, max_size=5,
))  # fmt: skip
def test_fast_paths_store_what_the_careful_paths_store(
    tmp_path_factory, monkeypatch, files
) -> None:
    """One chunk with Parquet read by DuckDB (the fast paths) against one chunk per file with
    every Parquet file read by pyarrow: the same raw_events, rejects and file rows."""
    import orchestration.ingest as ingest_module

    root = tmp_path_factory.mktemp("paths")
    landing = root / "landing"
    _write_mixed(landing, files)
    fast = WarehouseConfig(duckdb_path=str(root / "fast.duckdb"))
    ingest(fast, landing)
    with monkeypatch.context() as patch:
        patch.setattr(ingest_module._Batch, "FLUSH_BYTES", 1)
        patch.setattr(ingest_module, "_text_parquet_columns", lambda data: None)
        careful = WarehouseConfig(duckdb_path=str(root / "careful.duckdb"))
        report = ingest(careful, landing)
    check_counts(careful, report)
    assert _raw_contents(fast) == _raw_contents(careful)


def test_a_chunk_written_inside_the_transaction_is_not_kept_until_the_commit(
    duckdb_config: WarehouseConfig,
) -> None:
    """Ingest writes every chunk inside one transaction; the Arrow data of a written chunk
    must be free to go before the commit, or the run holds all it wrote (it held 6 GB at 10M
    events when append_arrow registered a view per chunk)."""
    import gc
    import weakref

    with Warehouse(duckdb_config) as wh:
        ensure_raw_tables(wh)
        with wh.transaction():
            chunk = pa.table({"tenant_id": [T], "environment_id": [E], "source_file": ["a"],
                              "source_line": pa.array([1], pa.int64()), "reason": ["r"],
                              "rejected_at": [datetime(2024, 1, 1, tzinfo=UTC)]})  # fmt: skip
            written = weakref.ref(chunk)
            wh.append_arrow("raw_event_rejects", chunk)
            del chunk
            gc.collect()
            assert written() is None
        assert wh.query('select count(*) from "main".raw_event_rejects') == [(1,)]


@pytest.mark.parametrize(
    "config_fixture", ["duckdb_config", pytest.param("pg_config", marks=pytest.mark.postgres)]
)
def test_versions_stored_with_a_sha256_still_match_their_re_sends(
    config_fixture: str, request: pytest.FixtureRequest, landing: Path
) -> None:
    """Versions stored before 2026-11-27 hold the sha256 of the content; a re-send of the same
    content is still an identical re-send, a changed one a new version (landing files and
    warehouse tables alike)."""
    config = request.getfixturevalue(config_fixture)
    write(landing, "a.jsonl", jsonl(event("same"), event("changed"), event("chunk")))
    ingest(config, landing)
    with Warehouse(config) as warehouse:
        for stored in events(config):
            warehouse.execute(
                f"update {warehouse.table('raw_events')} set content_hash = {warehouse.ph} "
                f"where event_id = {warehouse.ph}",
                [content_hash(stored, hashlib.sha256), stored["event_id"]],
            )
        warehouse.commit()
    write(landing, "b.jsonl", jsonl(
        event("same", timestamp="2024-03-01T11:00:00+01:00"),  # the same instant
        event("changed", properties={"method": "POST"}),
        event("chunk"), event("chunk"),  # a re-send twice in one chunk
    ))  # fmt: skip
    report = ingest(config, landing)
    assert (report.accepted, report.stored, report.duplicates) == (4, 1, 3)
    (new_version,) = [e for e in events(config) if e["ingest_seq"] > 3]
    assert new_version["event_id"] == "changed"
    assert new_version["content_hash"] == content_hash(new_version, hashlib.md5)
    check_counts(config, report)
    with Warehouse(config) as warehouse:
        _source_table(warehouse, [(T, E, "same", "api_request", "cust_1", None, None,
                                   datetime(2024, 3, 1, 10, tzinfo=UTC), '{"method": "GET"}')])
        table = ingest_table(warehouse, "app_events")
    assert (table.accepted, table.stored, table.duplicates) == (1, 0, 1)
