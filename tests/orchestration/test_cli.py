"""The `meterhouse` command line: help everywhere, `query` equal to the API, clear errors with
their fix and documented exit codes, colour only on a terminal, progress output."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from orchestration.cli import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    build_parser,
    main,
)
from orchestration.terminal import ProgressBar, Terminal, colour_enabled
from orchestration.warehouse import WarehouseConfig
from tests.api.data import ACME, T0, T1, acme, iso
from tests.api.server import ROOT

COMMANDS = ["demo", "run", "query", "catalog", "generate", "serve", "bench"]


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


# -- help ---------------------------------------------------------------------------------------
def test_top_level_help_lists_commands_exit_codes_and_environment(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "exit codes:" in out and "MH_DUCKDB_PATH" in out
    for code, meaning in EXIT_CODES.items():
        assert f"{code:<3} {meaning}"[:40] in out


@pytest.mark.parametrize("command", [["demo"], ["run"], ["query"], ["generate"], ["serve"],
                                     ["catalog"], ["catalog", "validate"], ["bench"]])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: meterhouse {' '.join(command)}")
    assert "examples:" in out
    assert "  meterhouse " + command[0] in out.split("examples:")[1]


def test_every_option_is_explained():
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    for name, sub in subparsers.items():
        for action in sub._actions:  # noqa: SLF001
            if action.dest in ("help", "catalog_command", "bench_args"):
                continue
            assert action.help, f"meterhouse {name} {action.option_strings}: no help"


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == EXIT_USAGE
    assert "usage: meterhouse" in capsys.readouterr().out
    assert main(["catalog"]) == EXIT_USAGE
    assert "meterhouse catalog validate DIR" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["query"])  # --customer is required
    assert exc.value.code == EXIT_USAGE
    assert "--customer" in capsys.readouterr().err


# -- errors with their fix ------------------------------------------------------------------------
def test_run_with_missing_folders_says_what_and_how(tmp_path, capsys):
    code = main(["run", "--catalog", str(tmp_path / "nope"), "--landing", str(tmp_path),
                 "--warehouse", str(tmp_path / "w.duckdb")])
    assert code == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert f"catalog folder {tmp_path / 'nope'} does not exist" in err
    assert "fix:" in err
    assert main(["run", "--catalog", str(tmp_path), "--warehouse",
                 str(tmp_path / "w.duckdb")]) == EXIT_USAGE
    assert "--landing DIR, --events-table NAME" in capsys.readouterr().err


def test_catalog_validate_exit_codes(tmp_path, capsys):
    assert main(["catalog", "validate", str(tmp_path / "missing")]) == EXIT_NOT_FOUND
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("tenant_id: t\nenvironment_id: e\nmeters: [{id: m}]\n")
    assert main(["catalog", "validate", str(tmp_path)]) == EXIT_FAILED
    assert "problem" in capsys.readouterr().err


def test_query_without_a_warehouse(tmp_path, capsys):
    missing = tmp_path / "none.duckdb"
    assert main(["query", "--customer", "c", "--warehouse", str(missing)]) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert f"no warehouse at {missing}" in err and "meterhouse run" in err


# -- query --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> WarehouseConfig:
    """The API tests' warehouse, built in another process (as `meterhouse run` would be): dbt
    in this process would keep the file open read-write."""
    path = tmp_path_factory.mktemp("cli") / "warehouse.duckdb"
    build = ("from orchestration.warehouse import WarehouseConfig\n"
             "from tests.api.data import CASES, build_api_warehouse\n"
             f"build_api_warehouse(WarehouseConfig(target='duckdb', duckdb_path={str(path)!r}), "
             "CASES)\n")
    subprocess.run([sys.executable, "-c", build], cwd=ROOT, check=True)
    return WarehouseConfig(target="duckdb", duckdb_path=str(path))


@pytest.fixture(scope="module")
def api(warehouse) -> TestClient:
    with TestClient(create_app(Settings(warehouse=warehouse))) as client:
        yield client


def run_query(capsys, warehouse, *args: str) -> tuple[int, str, str]:
    code = main(["query", "--warehouse", warehouse.duckdb_path, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def api_items(api, customer: str, meters: list[dict], window: str | None) -> list[dict]:
    items = []
    for meter in meters:
        body = {"external_customer_id": customer, "start_time": iso(T0), "end_time": iso(T1),
                "meter_ids": [meter["id"]], "aggregation_type": meter["aggregation"]["type"]}
        if window:
            body["window_size"] = window
        response = api.post("/v1/meter-usage/analytics", headers=acme(), json=body)
        assert response.status_code == 200, response.text
        items.extend(response.json()["items"])
    return items


@pytest.mark.slow
@pytest.mark.parametrize("window", ["HOUR", "DAY", None])
def test_query_json_equals_the_api(warehouse, api, capsys, window):
    meters = ACME.catalog["meters"]
    args = ["--customer", "cust_1", "--tenant", "acme", "--from", iso(T0), "--to", iso(T1),
            "--format", "json"] + (["--window", window] if window else [])
    code, out, err = run_query(capsys, warehouse, *args)
    assert code == EXIT_OK, err
    answer = json.loads(out)
    assert answer["timezone"] == "America/New_York"  # the customer's
    assert (answer["start_time"], answer["end_time"]) == (iso(T0), iso(T1))
    mine = {i["meter_id"]: i for i in answer["items"]}
    theirs = api_items(api, "cust_1", meters, window)
    assert sorted(mine) == sorted(m["id"] for m in meters)
    points = 0
    for item in theirs:
        got = mine[item["meter_id"]]
        assert got["total_value"] == item["total_value"], item["meter_id"]
        assert got["event_count"] == item["event_count"]
        assert got["points"] == item["points"]
        points += len(item["points"])
    assert (points > 100) if window == "HOUR" else (points > 20 if window else points == 0)


@pytest.mark.slow
def test_query_csv_and_table_show_the_same_numbers(warehouse, api, capsys):
    common = ["--customer", "cust_2", "--tenant", "acme", "--meter", "mtr_calls,mtr_tokens",
              "--from", iso(T0), "--to", iso(T1), "--window", "DAY"]
    code, out, _ = run_query(capsys, warehouse, *common, "--format", "csv")
    assert code == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(out)))
    theirs = api_items(api, "cust_2", [m for m in ACME.catalog["meters"]
                                       if m["id"] in ("mtr_calls", "mtr_tokens")], "DAY")
    for item in theirs:
        mine = [r for r in rows if r["meter_id"] == item["meter_id"]]
        assert [(r["window_start"], r["value"], int(r["event_count"])) for r in mine[:-1]] == [
            (p["timestamp"], p["value"], p["event_count"]) for p in item["points"]]
        assert (mine[-1]["window_start"], mine[-1]["value"]) == ("total", item["total_value"])

    code, out, _ = run_query(capsys, warehouse, *common)
    assert code == EXIT_OK
    assert "\x1b[" not in out  # not a terminal: no colour
    lines = out.splitlines()
    assert lines[0].startswith("cust_2 (acme/production)") and "Europe/Berlin" in lines[0]
    for item in theirs:
        total = next(line for line in lines if line.startswith(item["meter_id"])
                     and " total " in line)
        assert total.split()[-2:] == [item["total_value"], f"{item['event_count']:,}"]


@pytest.mark.slow
def test_query_local_times_read_in_the_timezone(warehouse, api, capsys):
    """--from/--to without an offset are wall-clock times of --timezone."""
    meter = next(m for m in ACME.catalog["meters"] if m["id"] == "mtr_tokens")
    expected = api_items(api, "cust_1", [meter], None)[0]
    code, out, _ = run_query(capsys, warehouse, "--customer", "cust_1", "--tenant", "acme",
                             "--meter", "mtr_tokens", "--timezone", "Asia/Tokyo",
                             "--from", "2024-03-08T09:00", "--to", "2024-03-13T09:00",
                             "--format", "json")
    assert code == EXIT_OK
    answer = json.loads(out)
    assert (answer["start_time"], answer["end_time"]) == (iso(T0), iso(T1))
    assert answer["items"][0]["total_value"] == expected["total_value"]


@pytest.mark.slow
def test_query_colour_only_when_forced_or_on_a_terminal(warehouse, capsys, monkeypatch):
    args = ["--customer", "cust_1", "--tenant", "acme", "--meter", "mtr_calls",
            "--from", iso(T0), "--to", iso(T1)]
    monkeypatch.setenv("FORCE_COLOR", "1")
    code, out, _ = run_query(capsys, warehouse, *args)
    assert code == EXIT_OK and "\x1b[1m" in out
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = run_query(capsys, warehouse, *args)
    assert code == EXIT_OK and "\x1b[" not in out


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "message"), [
    (["--customer", "cust_nobody"], EXIT_NOT_FOUND, "no customer with external id"),
    (["--customer", "cust_1"], EXIT_USAGE, "several tenant environments"),
    (["--customer", "cust_1", "--tenant", "acme", "--meter", "mtr_nope"], EXIT_NOT_FOUND,
     "no meter 'mtr_nope'"),
    (["--customer", "cust_1", "--tenant", "acme", "--from", "last week"], EXIT_USAGE,
     "is not a date or time"),
    (["--customer", "cust_1", "--tenant", "acme", "--window", "FORTNIGHT"], EXIT_USAGE,
     "unknown window size"),
    (["--customer", "cust_1", "--tenant", "acme", "--timezone", "Mars/Base"], EXIT_USAGE,
     "unknown timezone"),
    (["--customer", "cust_1", "--tenant", "acme", "--from", "2024-03-09", "--to", "2024-03-08"],
     EXIT_USAGE, "must be after"),
    (["--customer", "cust_1", "--tenant", "acme", "--from", "2024-03-08T00:00:30Z"],
     EXIT_USAGE, "whole minute"),
])
def test_query_errors_name_the_fix(warehouse, capsys, args, code, message):
    got, out, err = run_query(capsys, warehouse, *args)
    assert got == code, err
    assert out == ""
    assert message in err
    assert "\n  fix: " in err


# -- terminal -----------------------------------------------------------------------------------
class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_follows_the_conventions(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    assert colour_enabled(_Stream(True)) and not colour_enabled(_Stream(False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_enabled(_Stream(True))
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert colour_enabled(_Stream(False))
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not colour_enabled(_Stream(True))


def test_progress_in_a_log_is_one_line_per_tenth():
    out = _Stream(False)
    bar = ProgressBar(Terminal(out, _Stream(False)), 1000, "ingesting", "rows")
    for done in range(0, 1001, 7):
        bar.update(done)
    bar.finish("ok")
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 12
    assert lines[-2].startswith("ingesting 100%")
    assert lines[-1].startswith("ingesting done in") and lines[-1].endswith(": ok")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_progress_on_a_terminal_redraws_one_line(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    out = _Stream(True)
    bar = ProgressBar(Terminal(out, _Stream(True)), 10, "building")
    for done in range(11):
        bar.update(done)
    bar.finish()
    text = out.getvalue()
    assert "\r" in text and "100%" in text
    assert text.count("\n") == 1  # only the final "done" line ends a line


def test_generate_reports_progress(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "data"), "--events", "2000",
                 "--days", "2"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "generating 100% 2,000/2,000 events" in out
    assert "generating done in" in out
    assert f"meterhouse run --catalog {tmp_path / 'data' / 'catalog'}" in out


@pytest.mark.postgres
@pytest.mark.slow
def test_query_on_postgres_equals_the_api(pg_config, capsys, monkeypatch):
    from tests.api.data import CASES, build_api_warehouse

    build_api_warehouse(pg_config, CASES)
    for key, value in pg_config.dbt_env().items():
        monkeypatch.setenv(key, value)
    meters = [m for m in ACME.catalog["meters"] if m["id"] in ("mtr_calls", "mtr_latency")]
    code = main(["query", "--target", "postgres", "--customer", "cust_1", "--tenant", "acme",
                 "--meter", "mtr_calls,mtr_latency", "--from", iso(T0), "--to", iso(T1),
                 "--window", "DAY", "--format", "json"])
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    mine = {i["meter_id"]: i for i in json.loads(captured.out)["items"]}
    with TestClient(create_app(Settings(warehouse=pg_config, pg_pool_size=2))) as api:
        for item in api_items(api, "cust_1", meters, "DAY"):
            got = mine[item["meter_id"]]
            assert (got["total_value"], got["event_count"], got["points"]) == (
                item["total_value"], item["event_count"], item["points"])
