"""How the benchmark judges its own numbers (bench/run.py `evaluate` and `render`), on made-up
step results: a baseline that disagrees is INVALID and gets no ratio, API errors and a wrong
incremental answer invalidate the run, a stopped build is a lower bound — and a step over its
limit really is stopped, with its whole process group."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.run import GB, Layout, Limits, dbt_progress_from_log, evaluate, render, run_phase

ARGS = argparse.Namespace(events=1000, skip_api=False)


def _report(**phases) -> dict:
    base = {"ok": True, "seconds": 10.0, "stage_seconds": 1.0, "cpu_seconds": 10.0,
            "peak_rss_bytes": GB, "window_seconds": {"HOUR": 1.0}}
    return {
        "parameters": {"events": 1000, "days": 31, "seed": 7, "customers": 10},
        "host": {"cores": 2, "memory_bytes": 8 * GB, "load_average": [1.0, 1.0, 1.0]},
        "code": {"commit": "abc", "dirty": False},
        "phases": {
            "ingest": {"ok": True, "seconds": 1.0, "events_per_second": 1000.0,
                       "rows_read": 1000, "stored": 1000, "rejected": 0},
            "build": {"ok": True, "dbt_success": True, "seconds": 40.0, "catalog_seconds": 1,
                      "calendars_seconds": 1, "dbt_seconds": 38, "raw_event_rows": 1000,
                      "peak_rss_bytes": 2 * GB, "cpu_seconds": 40.0},
            **phases,
        },
        "baselines": {"chdb": dict(base), "duckdb": dict(base)},
        "agreement": {"chdb": {"ok": True, "agrees": True, "rows_ours": 5},
                      "duckdb": {"ok": True, "agrees": True, "rows_ours": 5}},
        "after_incremental": {},
    }


def _judge(report: dict) -> tuple[dict, list[str], str]:
    results, problems = evaluate(report, ARGS)
    report["results"], report["problems"] = results, problems
    return results, problems, render(report)


def test_agreeing_baselines_give_ratios_and_no_problem() -> None:
    results, problems, table = _judge(_report())
    assert problems == []
    assert results["ratios"]["chdb"]["full_build"] == 4.0
    assert any(line.startswith("ratio full build / chDB") and line.endswith("4.0x")
               for line in table.splitlines())


def test_a_baseline_that_disagrees_is_invalid_and_gets_no_ratio() -> None:
    report = _report()
    report["agreement"]["chdb"] = {"ok": True, "agrees": False, "rows_ours": 5,
                                   "value_mismatches": 1, "examples": [{"meter_id": "m"}]}
    results, problems, table = _judge(report)
    assert "chdb" not in results["ratios"] and "duckdb" in results["ratios"]
    assert any("baseline chdb does not agree" in p and "INVALID" in p for p in problems)
    assert "DISAGREES: timing INVALID" in table and "PROBLEMS" in table


def test_api_errors_invalidate_the_run_and_the_target() -> None:
    api = {"ok": True, "offered_rate": 200, "requests": 100, "ok_requests": 99, "errors": 1,
           "error_reasons": {"HTTP 500": 1}, "sustained": False, "p50_ms": 5.0,
           "p95_ms": 8.0, "p99_ms": 9.0, "requests_per_second": 199.0, "duration_seconds": 1,
           "not_sent": 0, "max_in_flight": 100, "by_kind": {}, "server_alive_after_load": True,
           "one_at_a_time": {"errors": 0, "requests": 10, "requests_per_second": 100,
                             "p50_ms": 1.0, "p99_ms": 2.0, "by_kind": {}}}
    results, problems, table = _judge(_report(api_load=api))
    assert any("zero errors are required" in p for p in problems)
    target = next(t for t in results["targets"] if t["target"].startswith("read API"))
    assert target["met"] is False


def test_a_wrong_incremental_answer_is_a_problem() -> None:
    incremental = {"ok": True, "seconds": 50.0, "exit_status": 0, "new_raw_event_rows": 10,
                   "increment": {"events": 10}, "incremental_models": [],
                   "peak_rss_bytes": GB, "cpu_seconds": 1.0}
    report = _report(incremental=incremental)
    report["after_incremental"] = {"agreement_duckdb": {"ok": True, "agrees": False,
                                                        "only_ours": 3}}
    results, problems, table = _judge(report)
    assert results["incremental_share_of_full_build"] == 1.25
    assert results["incremental_agrees"] is False
    assert any("after the incremental run" in p for p in problems)
    assert "recomputes everything" in table

    incremental["new_raw_event_rows"] = 9  # one new event lost on the way in
    report = _report(incremental=incremental)
    _, problems, _ = _judge(report)
    assert any("stored 9 new raw events for 10 new events" in p for p in problems)


def test_a_stopped_build_is_a_lower_bound_not_a_result() -> None:
    report = _report()
    report["phases"]["build"] = {"ok": False, "stopped": "stopped after 100 s (time limit)",
                                 "error": "stopped", "process_seconds": 100.0,
                                 "peak_rss_bytes": 5 * GB}
    report["agreement"] = {}
    results, problems, table = _judge(report)
    assert results["ratios"]["chdb"]["full_build_at_least"] == 10.0
    assert results["baseline_valid"]["chdb"] is None
    assert problems == ["INCOMPLETE: build stopped after 100 s (time limit)"]
    memory = next(t for t in results["targets"] if "memory" in t["target"])
    assert memory["met"] is False and memory["measured"].startswith(">=")
    assert "UNCHECKED" in table and "> 10.0x" in table


def test_a_step_over_its_time_limit_is_stopped_with_its_process_group(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    spec = layout.spec(events=20_000_000, days=31, seed=1, customers=100, tenants=1,
                       reuse_data="")
    result = run_phase(layout, "generate", "generate", spec, Limits(seconds=1.0))
    assert result["ok"] is False
    assert result["stopped"].startswith("stopped after")
    assert result["process_seconds"] < 40
    # nothing of the group is left running
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            assert str(layout.phases_dir).encode() not in command, command
    assert os.getpgrp() != 0


def test_how_far_a_stopped_dbt_build_got_is_read_from_its_log() -> None:
    log = "\n".join([
        "\x1b[0m09:00:00 [info ] Running with dbt=1.10.0",
        "\x1b[0m09:00:01 [info ] 1 of 3 START sql table model main.int_meter_events ... [RUN]",
        "\x1b[0m09:00:09 [info ] 1 of 3 OK created sql table model main.int_meter_events "
        ".... [\x1b[32mOK\x1b[0m in 8.25s]",
        "\x1b[0m09:00:09 [info ] 2 of 3 START sql view model main.stg_meters ... [RUN]",
        "\x1b[0m09:00:09 [info ] 2 of 3 OK created sql view model main.stg_meters "
        ".... [\x1b[32mOK\x1b[0m in 0.05s]",
        "\x1b[0m09:00:10 [info ] 3 of 3 START sql table model main.fct_meter_usage ... [RUN]",
    ])
    progress = dbt_progress_from_log("older invocation\nRunning with dbt=1.10.0\n"
                                     "9 of 9 START sql table model main.other .. [RUN]\n" + log)
    assert progress["finished_models"] == [{"model": "int_meter_events", "seconds": 8.25},
                                           {"model": "stg_meters", "seconds": 0.05}]
    assert progress["running"] == {"model": "fct_meter_usage", "node": "3 of 3"}
