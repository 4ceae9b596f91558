"""The Meterhouse benchmark (`make bench`, `meterhouse bench`): our full build against
hand-written chDB and DuckDB rollups of the same events, measured side by side in one run.

One run, each step in a child process of its own (bench/phase.py) whose process tree is
sampled for peak memory:

1. generate a deterministic synthetic workload (catalogs + landing files), or reuse the data
   of an earlier run with the same parameters (`--data`);
2. ingest the landing files into raw_events (events/s);
3. export raw_events to Parquet and run the baselines (bench/baselines.py): the same rollups
   written by hand in chDB (embedded ClickHouse) and plain DuckDB;
4. full build: catalog tables, calendars, `dbt build` of every model and test (wall seconds,
   events/s, peak memory; dbt's per-model timings say where the time goes);
5. check that each baseline agrees with fct_meter_usage row by row (bench/agreement.py) —
   only then print the timings; a baseline that disagrees has its timing marked INVALID and
   the run exits with status 1;
6. the read API under load: `meterhouse serve` on loopback, a query mix at a fixed offered
   rate, latency percentiles and errors (bench/api_load.py);
7. the incremental run: 1% new events land (half of them late), `meterhouse run` ingests and
   rebuilds, timed as a whole; then the grown warehouse is checked against the DuckDB
   baseline again (a fast wrong incremental answer is not a result either).

Results: a table on stdout and JSON under bench/results/ (a timestamped file and
latest.json). See bench/README.md for how to read them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.dbt_profile import profile
from bench.memory import PeakTreeMemory
from bench.phases import load_run_results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = ROOT / "bench" / "work"
DEFAULT_RESULTS = ROOT / "bench" / "results"
ENGINES = ("chdb", "duckdb")
ENGINE_NAMES = {"chdb": "chDB (ClickHouse)", "duckdb": "DuckDB"}
TARGET_EVENTS = 10_000_000
TARGETS = {"ingest_events_per_second": 500_000, "build_to_chdb_ratio": 1.0,
           "peak_memory_bytes": 4 * 1024**3, "api_p99_ms": 20, "api_rate": 200,
           "incremental_share": 0.10}
DATA_START = "2026-10-01T00:00:00+00:00"  # orchestration.generate.DEFAULT_START
GB = 1024**3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterhouse bench",
        description="Benchmark the full build against hand-written chDB and DuckDB rollups "
                    "on the same synthetic events (see bench/README.md).",
    )
    parser.add_argument("--events", type=int, default=10_000_000,
                        help="distinct events to generate (default: %(default)s)")
    parser.add_argument("--days", type=int, default=31, help="days of events (default 31)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument("--customers", type=int, default=1000,
                        help="customers over all tenant environments (default 1000)")
    parser.add_argument("--tenants", type=int, default=3,
                        help="tenants (the first also has a sandbox; default 3)")
    parser.add_argument("--out", default=str(DEFAULT_WORK),
                        help="work folder for data, warehouse and logs (default bench/work)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS),
                        help="folder for the JSON results (default bench/results)")
    parser.add_argument("--skip-baselines", action="store_true",
                        help="measure generate, ingest and the full build only")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated data, warehouse and baseline files")
    parser.add_argument("--data", default="",
                        help="reuse the generated data of an earlier run's work folder (same "
                             "--events/--days/--seed/--customers/--tenants) instead of "
                             "generating; nothing is written into it")
    parser.add_argument("--api-rate", type=float, default=200,
                        help="offered requests/s of the read API load (default 200)")
    parser.add_argument("--api-seconds", type=float, default=20,
                        help="seconds of load at that rate, after 2 s of warm-up (default 20)")
    parser.add_argument("--skip-api", action="store_true", help="do not measure the read API")
    parser.add_argument("--only-ingest", action="store_true",
                        help="stop after generate and ingest (no baselines, build, API or "
                             "incremental run): to measure ingest alone")
    parser.add_argument("--skip-incremental", action="store_true",
                        help="do not measure the incremental run")
    parser.add_argument("--spark", action="store_true",
                        help="also run the pipeline on local Spark (needs Java; slow: minutes "
                             "of start-up) and report its time beside DuckDB's, for the record")
    parser.add_argument("--incremental-fraction", type=float, default=0.01,
                        help="new events of the incremental run, as a share of --events "
                             "(default 0.01)")
    parser.add_argument("--time-limit", type=float, default=0,
                        help="stop any step that runs longer than this many seconds and "
                             "report it as stopped (default: no limit)")
    parser.add_argument("--memory-limit-gb", type=float, default=0,
                        help="stop any step whose processes hold more than this many GB "
                             "(protects a shared machine; default: no limit)")
    return parser


@dataclass(frozen=True)
class Layout:
    """Where one run keeps its files under the work folder."""

    work: Path

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    @property
    def catalog_dir(self) -> Path:
        return self.data_dir / "catalog"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def warehouse(self) -> Path:
        return self.work / "warehouse.duckdb"

    @property
    def baseline_dir(self) -> Path:
        return self.work / "baseline"

    @property
    def phases_dir(self) -> Path:
        return self.work / "phases"

    @property
    def logs_dir(self) -> Path:
        return self.work / "logs"

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "catalog_dir": str(self.catalog_dir),
            "landing_dir": str(self.landing_dir),
            "warehouse": str(self.warehouse),
            "baseline_dir": str(self.baseline_dir),
            "raw_parquet": str(self.baseline_dir / "raw_events.parquet"),
            "customers_parquet": str(self.baseline_dir / "customers.parquet"),
            **extra,
        }


# --------------------------------------------------------------------------------------------
# Running one phase in a child process


@dataclass(frozen=True)
class Limits:
    """When a step is stopped: wall seconds and resident bytes of its process tree (0: none)."""

    seconds: float = 0
    bytes: int = 0


def run_phase(layout: Layout, label: str, name: str, spec: dict[str, Any],
              limits: Limits = Limits()) -> dict[str, Any]:
    """Run phase `name` in a child process; its result plus peak memory of its process tree.

    The child leads a process group of its own; a step over a limit is stopped with its whole
    group (our own processes, by the group's id) and reported with `stopped` set."""
    layout.phases_dir.mkdir(parents=True, exist_ok=True)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    spec_path = layout.phases_dir / f"{label}.spec.json"
    result_path = layout.phases_dir / f"{label}.result.json"
    log_path = layout.logs_dir / f"{label}.log"
    spec = {**spec, "logs_dir": str(layout.logs_dir)}
    spec_path.write_text(json.dumps(spec, indent=2))
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    stopped = ""
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.phase", name, str(spec_path), str(result_path)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        sampler = PeakTreeMemory(child.pid).start()
        try:
            while child.poll() is None:
                elapsed = time.monotonic() - started
                if limits.seconds and elapsed > limits.seconds:
                    stopped = f"stopped after {elapsed:,.0f} s (time limit {limits.seconds:,.0f} s)"
                elif limits.bytes and sampler.peak_bytes > limits.bytes:
                    stopped = (f"stopped after {elapsed:,.0f} s: its processes held "
                               f"{sampler.peak_bytes / GB:.1f} GB (memory limit "
                               f"{limits.bytes / GB:.1f} GB)")
                if stopped:
                    _stop_group(child)
                    break
                time.sleep(0.25)
            code = child.wait()
        except BaseException:
            _stop_group(child)
            raise
        finally:
            sampled_peak = sampler.stop()
    if result_path.exists() and not stopped:
        result = json.loads(result_path.read_text())
    elif stopped:
        result = {"ok": False, "stopped": stopped, "error": stopped}
    else:
        result = {"ok": False, "error": f"phase process exited with status {code} "
                                        "and wrote no result"}
    result["process_seconds"] = time.monotonic() - started
    result["peak_rss_bytes"] = max(sampled_peak, int(result.get("own_peak_rss_bytes") or 0))
    result["load_average"] = [load_before, os.getloadavg()[0]]
    result["log"] = str(log_path)
    if not result.get("ok"):
        result["log_tail"] = log_path.read_text(errors="replace")[-3000:]
    return result


def _stop_group(child: subprocess.Popen) -> None:
    """Stop a phase's process group (the child and what it started): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------
# The run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.events < 1:
        raise SystemExit("error: --events must be at least 1")
    layout = Layout(Path(args.out).resolve())
    layout.work.mkdir(parents=True, exist_ok=True)
    results_dir = Path(args.results).resolve()
    limits = Limits(seconds=args.time_limit, bytes=int(args.memory_limit_gb * GB))
    started_at = datetime.now(UTC)
    report: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "parameters": {"events": args.events, "days": args.days, "seed": args.seed,
                       "customers": args.customers, "tenants": args.tenants,
                       "skip_baselines": args.skip_baselines, "data": args.data or None,
                       "api_rate": args.api_rate, "api_seconds": args.api_seconds,
                       "skip_api": args.skip_api, "skip_incremental": args.skip_incremental,
                       "only_ingest": args.only_ingest,
                       "incremental_fraction": args.incremental_fraction,
                       "time_limit_seconds": args.time_limit or None,
                       "memory_limit_gb": args.memory_limit_gb or None},
        "host": _host(),
        "code": _code_version(),
        "phases": {},
        "baselines": {},
        "agreement": {},
        "after_incremental": {},
    }
    _say(f"Meterhouse benchmark: {args.events:,} events, {args.days} days, seed {args.seed}, "
         f"work folder {layout.work}")
    _say("(timings are printed once every baseline has been checked against our tables)")
    phases = report["phases"]
    common = layout.spec(events=args.events, days=args.days, seed=args.seed,
                         customers=args.customers, tenants=args.tenants,
                         reuse_data=str(Path(args.data).resolve()) if args.data else "",
                         data_start=DATA_START, api_rate=args.api_rate,
                         api_seconds=args.api_seconds,
                         incremental_fraction=args.incremental_fraction)

    def step(label: str, name: str, spec: dict[str, Any], say: str) -> dict[str, Any]:
        _say(f"  {say} ...")
        result = run_phase(layout, label, name, spec, limits)
        if not result.get("ok"):
            _say(f"  {label} FAILED: {result.get('error')}")
        return result

    for label in ("generate", "ingest"):
        reuse = args.data and label == "generate"
        phases[label] = step(label, label, common,
                             f"reuse the data of {args.data}" if reuse else label)
        if not phases[label].get("ok"):
            break
    ingested = all(phases.get(s, {}).get("ok") for s in ("generate", "ingest"))
    ingested = ingested and not args.only_ingest  # nothing after ingest runs

    # the baselines first: their timings stay unreported until the build agrees with them
    baselines_possible = ingested and not args.skip_baselines
    if baselines_possible:
        phases["export"] = step("export", "export", common, "export raw_events for the "
                                                             "baselines")
        baselines_possible = phases["export"].get("ok", False)
    engine_specs = {}
    for engine in ENGINES if baselines_possible else ():
        if engine == "chdb" and importlib.util.find_spec("chdb") is None:
            report["baselines"][engine] = {"ok": False, "skipped": True,
                                           "error": "chdb is not installed (pip install chdb)"}
            _say("  baseline chdb skipped: chdb is not installed")
            continue
        engine_specs[engine] = {**common, "engine": engine,
                                "output_dir": str(layout.baseline_dir / f"out_{engine}"),
                                "database": str(layout.baseline_dir / f"{engine}_db")}
        report["baselines"][engine] = step(f"baseline_{engine}", "baseline",
                                           engine_specs[engine], f"baseline {engine}")

    if ingested:
        phases["build"] = step("build", "build", common, "full build")
        if phases["build"].get("stopped"):
            phases["build"]["dbt_progress"] = dbt_progress(layout.warehouse)
    built = bool(phases.get("build", {}).get("ok") and phases["build"].get("dbt_success"))
    if phases.get("build", {}).get("ok"):
        report["profile"] = profile(load_run_results(Path(phases["build"]["run_results"])))
    if built and phases["build"].get("fct_meter_usage_rows", 0) > 0:
        for engine, spec in engine_specs.items():
            if report["baselines"][engine].get("ok"):
                report["agreement"][engine] = step(f"agreement_{engine}", "agreement", spec,
                                                   f"agreement {engine} vs fct_meter_usage")

    if built:
        phases["expression"] = step("expression", "expression", common,
                                    "CEL expression meter vs field meter")
    if built and args.spark:
        phases["spark_build"] = step("spark_build", "spark_build", common,
                                     "the same pipeline on local Spark (meterhouse run)")
    if built and not args.skip_api:
        phases["api_load"] = step("api_load", "api_load", common,
                                  f"read API under load ({args.api_rate:g} requests/s)")
    if built and not args.skip_incremental:
        phases["incremental"] = step("incremental", "incremental", common,
                                     f"incremental run ({args.incremental_fraction:.0%} new "
                                     "events, `meterhouse run`)")
        if phases["incremental"].get("run_results"):
            report["incremental_profile"] = profile(
                load_run_results(Path(phases["incremental"]["run_results"])))
        if phases["incremental"].get("ok") and "duckdb" in engine_specs:
            _check_after_incremental(layout, common, limits, report)

    report["finished_at"] = datetime.now(UTC).isoformat()
    report["results"], problems = evaluate(report, args)
    report["problems"] = problems
    report["valid"] = not problems
    _say("")
    _say(render(report))
    path = write_results(report, results_dir)
    _say(f"\nresults: {path} (and {results_dir / 'latest.json'})")
    if not args.keep:
        _clean(layout)
    return 0 if not problems else 1


def dbt_progress(warehouse: Path) -> dict[str, Any]:
    """How far a stopped dbt build of `warehouse` got, from its dbt.log."""
    from orchestration.defs.dbt.project import target_path_for
    from orchestration.warehouse import WarehouseConfig

    log = target_path_for(WarehouseConfig(target="duckdb", duckdb_path=str(warehouse)))
    try:
        return dbt_progress_from_log((log / "logs" / "dbt.log").read_text(errors="replace"))
    except OSError:
        return {"available": False}


def dbt_progress_from_log(text: str) -> dict[str, Any]:
    """The models the last dbt invocation in a dbt.log finished (seconds) and the one it was
    running when it ended."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = text[max(0, text.rfind("Running with dbt")):]  # the last invocation only
    started = re.findall(r"(\d+) of (\d+) START sql \w+ model [\w.]+?\.(\w+) ", text)
    finished = re.findall(r"OK created sql \w+ model [\w.]+?\.(\w+) .*? in ([\d.]+)s", text)
    done = {name for name, _ in finished}
    running = [(n, total, name) for n, total, name in started if name not in done]
    return {
        "available": True,
        "finished_models": [{"model": name, "seconds": float(sec)} for name, sec in finished],
        "running": ({"model": running[-1][2], "node": f"{running[-1][0]} of {running[-1][1]}"}
                    if running else None),
    }


def _check_after_incremental(layout: Layout, common: dict[str, Any], limits: Limits,
                             report: dict[str, Any]) -> None:
    """The grown warehouse against the DuckDB baseline recomputed on all its events."""
    folder = layout.work / "baseline_after_incremental"
    spec = {**common, "baseline_dir": str(folder),
            "raw_parquet": str(folder / "raw_events.parquet"),
            "customers_parquet": str(folder / "customers.parquet"),
            "engine": "duckdb", "output_dir": str(folder / "out_duckdb"),
            "database": str(folder / "duckdb_db")}
    after = report["after_incremental"]
    _say("  check after the incremental run: export, DuckDB baseline, agreement ...")
    for label, name in (("export", "export"), ("baseline_duckdb", "baseline"),
                        ("agreement_duckdb", "agreement")):
        after[label] = run_phase(layout, f"{label}_after_incremental", name, spec, limits)
        if not after[label].get("ok"):
            _say(f"  {label} after the incremental run FAILED: {after[label].get('error')}")
            return


def bench_command(args_list: list[str]) -> int:
    """Entry point for `meterhouse bench ARGS...` (the CLI passes its remaining arguments)."""
    return main(list(args_list))


# --------------------------------------------------------------------------------------------
# Judging and reporting


def evaluate(report: dict[str, Any], args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The headline numbers, whether each may be trusted, and every problem found.

    A problem makes the run invalid (exit status 1): a step that failed, a baseline that does
    not agree, an API error, an incremental run whose tables disagree. A step stopped by
    --time-limit/--memory-limit-gb is listed under `incomplete` (exit status 1 too), its
    measurement a lower bound."""
    phases, problems, incomplete = report["phases"], [], []
    for label, result in phases.items():
        if result.get("stopped"):
            incomplete.append(f"{label} {result['stopped']}")
        elif not result.get("ok"):
            problems.append(f"{label} failed: {result.get('error')}")
    build = phases.get("build", {})
    if build.get("ok") and not build.get("dbt_success"):
        nodes = ", ".join(f["node"].rsplit(".", 1)[-1] for f in build.get("failures", []))
        problems.append(f"full build FAILED (dbt): {nodes or 'see the build log'}; "
                        "its timing is invalid")
    build_valid = bool(build.get("ok") and build.get("dbt_success"))
    build_stopped = bool(build.get("stopped"))
    results: dict[str, Any] = {"build_valid": build_valid, "build_stopped": build_stopped,
                               "ratios": {}, "baseline_valid": {}}
    for engine, base in report["baselines"].items():
        agreement = report["agreement"].get(engine, {})
        if base.get("skipped"):
            continue
        if base.get("stopped"):
            incomplete.append(f"baseline {engine} {base['stopped']}")
            continue
        if not base.get("ok"):
            problems.append(f"baseline {engine} failed: {base.get('error')}")
            continue
        if not build_valid:
            results["baseline_valid"][engine] = None  # nothing to check it against
            if build_stopped:
                results["ratios"][engine] = {
                    "full_build": None,
                    "full_build_at_least": build["process_seconds"] / base["seconds"]}
            continue
        agrees = bool(agreement.get("ok") and agreement.get("agrees"))
        results["baseline_valid"][engine] = agrees
        if not agrees:
            problems.append(f"baseline {engine} does not agree with fct_meter_usage: "
                            f"{_agreement_summary(agreement)}; its timing is INVALID")
            continue
        if base.get("seconds"):
            rollup = report.get("profile", {}).get("rollup_model_seconds")
            results["ratios"][engine] = {
                "full_build": build["seconds"] / base["seconds"],
                "rollup_models": (rollup / base["seconds"]) if rollup else None,
            }

    api = phases.get("api_load", {})
    if api.get("ok") and api.get("errors"):
        problems.append(f"read API: {api['errors']:,} errors of {api['requests']:,} requests "
                        f"({api['error_reasons']}); zero errors are required")
    if api.get("ok") and api.get("one_at_a_time", {}).get("errors"):
        problems.append(f"read API: {api['one_at_a_time']['errors']:,} errors one request at "
                        "a time")
    if api.get("ok") and not api.get("server_alive_after_load", True):
        problems.append("read API: the server process died under load")

    incremental = phases.get("incremental", {})
    if incremental.get("ok"):
        if incremental.get("exit_status"):
            problems.append(f"incremental run: meterhouse run exited with status "
                            f"{incremental['exit_status']} (see {incremental.get('log')})")
        increment = incremental.get("increment", {})
        if incremental.get("new_raw_event_rows") != increment.get("events"):
            problems.append(f"incremental run stored {incremental.get('new_raw_event_rows')} "
                            f"new raw events for {increment.get('events')} new events")
        if build_valid and build.get("seconds"):
            results["incremental_share_of_full_build"] = (incremental["seconds"]
                                                          / build["seconds"])
    after = report.get("after_incremental", {})
    for label, result in after.items():
        if not result.get("ok"):
            problems.append(f"{label} after the incremental run failed: {result.get('error')}")
    checked = after.get("agreement_duckdb", {})
    if checked.get("ok"):
        results["incremental_agrees"] = bool(checked.get("agrees"))
        if not checked.get("agrees"):
            problems.append("after the incremental run, fct_meter_usage does not agree with the "
                            f"DuckDB baseline on all events: {_agreement_summary(checked)}; "
                            "its timing is INVALID")

    scale_note = ("" if args.events == TARGET_EVENTS
                  else f" (targets are set for {TARGET_EVENTS:,} events)")
    targets = []
    ingest = phases.get("ingest", {})
    if ingest.get("ok"):
        rate = ingest["events_per_second"]
        targets.append(("ingest >= 500k events/s", f"{rate:,.0f} events/s",
                        rate >= TARGETS["ingest_events_per_second"]))
    chdb = results["ratios"].get("chdb", {})
    if chdb.get("full_build") is not None:
        targets.append(("full build <= chDB baseline (ratio <= 1.0)",
                        f"{chdb['full_build']:.1f}x",
                        chdb["full_build"] <= TARGETS["build_to_chdb_ratio"]))
    elif chdb.get("full_build_at_least") is not None:
        targets.append(("full build <= chDB baseline (ratio <= 1.0)",
                        f"> {chdb['full_build_at_least']:.1f}x (build stopped)", False))
    if build_valid or build_stopped:
        peak = build["peak_rss_bytes"]
        targets.append(("full build peak memory <= 4 GB",
                        f"{'>= ' if build_stopped else ''}{peak / GB:.1f} GB",
                        peak <= TARGETS["peak_memory_bytes"]))
    if api.get("ok"):
        measured = (f"p99 {_ms(api.get('p99_ms'))} at {api['offered_rate']:g} requests/s "
                    f"offered, {api['requests_per_second'] or 0:,.1f} answered/s, "
                    f"{api['errors']} errors"
                    + ("" if api["sustained"] else "; rate NOT sustained"))
        met = (api["sustained"] and not api["errors"] and api["p99_ms"] is not None
               and api["p99_ms"] <= TARGETS["api_p99_ms"]
               and api["offered_rate"] >= TARGETS["api_rate"])
        targets.append(("read API p99 <= 20 ms at 200 requests/s", measured, met))
    elif not args.skip_api:
        targets.append(("read API p99 <= 20 ms at 200 requests/s",
                        "not measured (no finished build)", None))
    share = results.get("incremental_share_of_full_build")
    if share is not None:
        targets.append(("incremental run <= 10% of full build (issue 6)",
                        f"{share:.0%} ({incremental['seconds']:,.0f} s)",
                        share <= TARGETS["incremental_share"]))
    expression = phases.get("expression", {})
    if expression.get("ok") and expression.get("ratio") is not None:
        rates = [expression[k]["pairs_per_second"] for k in ("expression", "field")]
        measured = f"{expression['ratio']:.2f}x ({rates[0]:,.0f} vs {rates[1]:,.0f} pairs/s)"
        targets.append(("CEL expression meter >= 0.5x a field meter (issue 3)", measured,
                        expression["ratio"] >= 0.5))
    spark = phases.get("spark_build", {})
    if spark.get("ok"):
        duckdb_build = (phases.get("ingest", {}).get("seconds") or 0) + (build.get("seconds") or 0)
        results["spark_record"] = (
            f"local Spark: `meterhouse run` {spark['seconds']:,.0f} s beside DuckDB's ingest + "
            f"build {duckdb_build:,.0f} s; fct_meter_usage agrees "
            f"({spark['fct_meter_usage_rows']:,} rows)")
    results["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in targets]
    results["targets_note"] = scale_note.strip()
    results["incomplete"] = incomplete
    return results, problems + [f"INCOMPLETE: {i}" for i in incomplete]


def _agreement_summary(agreement: dict[str, Any]) -> str:
    if not agreement.get("ok", False):
        return agreement.get("error") or "the check did not run"
    if agreement.get("error"):
        return agreement["error"]
    return (f"{agreement.get('only_ours', 0):,} rows only in ours, "
            f"{agreement.get('only_baseline', 0):,} only in the baseline, "
            f"{agreement.get('value_mismatches', 0):,} values and "
            f"{agreement.get('count_mismatches', 0):,} event counts differ")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _rate(events: int | None, seconds: float | None) -> str:
    return "—" if not events or not seconds else f"{events / seconds:,.0f}"


def _mem(value: int | None) -> str:
    return "—" if not value else f"{value / GB:,.2f} GB"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f} ms" if value < 1000 else f"{value / 1000:,.1f} s"


def incremental_label(result: dict[str, Any]) -> str:
    """What kind of run the incremental step measured, read from the dbt manifest."""
    models = result.get("incremental_models")
    if models is None:
        return "dbt manifest not found"
    if not models:
        return ("no dbt model is incremental yet (issue 6 open): "
                "the run recomputes everything")
    return f"{len(models)} incremental dbt models"


def render(report: dict[str, Any]) -> str:
    """The results table (plain text)."""
    p, phases, res = report["parameters"], report["phases"], report["results"]
    host = report["host"]
    lines = [
        f"Meterhouse benchmark: {p['events']:,} events, {p['days']} days, seed {p['seed']}, "
        f"{p['customers']:,} customers",
        f"host: {host['cores']} cores, {host['memory_bytes'] / GB:.1f} GB RAM, "
        f"load average {host['load_average'][0]:.1f} at start; code {report['code']['commit']}"
        f"{' (uncommitted changes)' if report['code']['dirty'] else ''}",
        "",
        f"{'step':44}{'wall s':>10}{'events/s':>12}{'peak mem':>11}{'cpu s':>9}  note",
    ]

    def row(name: str, result: dict[str, Any], events: int | None, note: str = "",
            valid: bool = True) -> None:
        if not result:
            return
        if result.get("stopped"):
            lines.append(f"{name:44}{'>' + _seconds(result.get('process_seconds')):>10}"
                         f"{'—':>12}{'>=' + _mem(result.get('peak_rss_bytes')):>11}{'':9}  "
                         f"STOPPED: {result['stopped']}")
            return
        if not result.get("ok"):
            lines.append(f"{name:44}{'FAILED':>10}  {result.get('error', '')[:80]}")
            return
        seconds = result.get("seconds")
        wall = _seconds(seconds) if valid else "INVALID"
        lines.append(f"{name:44}{wall:>10}{_rate(events, seconds) if valid else '—':>12}"
                     f"{_mem(result.get('peak_rss_bytes')):>11}"
                     f"{_seconds(result.get('cpu_seconds')):>9}  {note}")

    gen, ingest, build = phases.get("generate", {}), phases.get("ingest", {}), phases.get(
        "build", {})
    raw_rows = build.get("raw_event_rows") or ingest.get("stored")
    gen_note = (f"{gen.get('files', 0):,} files, {gen.get('landing_rows', 0):,} rows"
                if gen else "")
    if gen.get("reused_from"):
        # wall s and events/s: the run that generated the data; memory and CPU: linking it
        gen_note += (f"; reused from {gen['reused_from']} (wall s of the original run; "
                     "peak mem and cpu s of linking the files)")
    row("generate (catalog + landing files)", gen, gen.get("events"), gen_note)
    row("ingest (files -> raw_events)", ingest, ingest.get("rows_read"),
        f"{ingest.get('stored', 0):,} versions stored, {ingest.get('rejected', 0):,} rejected"
        if ingest else "")
    build_note = ""
    if build.get("ok"):
        build_note = (f"catalog {build['catalog_seconds']:.1f} s + calendars "
                      f"{build['calendars_seconds']:.1f} s + dbt {build['dbt_seconds']:.1f} s")
        if not build.get("dbt_success"):
            build_note = "dbt FAILED: " + ", ".join(
                f["node"].rsplit(".", 1)[-1] for f in build.get("failures", []))
    row("full build (catalog + calendars + dbt build)", build, raw_rows, build_note,
        valid=res.get("build_valid", False) or bool(build.get("stopped")))
    progress = build.get("dbt_progress", {})
    if progress.get("available"):
        done = ", ".join(f"{m['model']} {m['seconds']:,.0f} s"
                         for m in progress["finished_models"][-4:])
        lines.append(f"  when stopped: dbt was running {(progress['running'] or {}).get('model')}"
                     f" ({(progress['running'] or {}).get('node')}); "
                     f"{len(progress['finished_models'])} models done"
                     + (f", the last: {done}" if done else ""))
    prof = report.get("profile", {})
    if prof.get("available"):
        lines.append(f"{'  of which rollup models (sum of dbt times)':44}"
                     f"{_seconds(prof['rollup_model_seconds']):>10}")
    export = phases.get("export", {})
    row("export raw_events -> Parquet (baseline input)", export, export.get("rows"),
        "not part of any ratio")
    for engine in ENGINES:
        base = report["baselines"].get(engine)
        if not base:
            continue
        name = f"baseline {ENGINE_NAMES[engine]}, 10 windows"
        if base.get("skipped"):
            lines.append(f"{name:44}{'skipped':>10}  {base.get('error')}")
            continue
        agreed = res["baseline_valid"].get(engine)
        if agreed is None:
            note = "UNCHECKED: our build did not finish, nothing to compare with"
        else:
            note = "agrees with fct_meter_usage" if agreed else "DISAGREES: timing INVALID"
        if base.get("ok"):
            note += f" (stage {base['stage_seconds']:.1f} s)"
        row(name, base, raw_rows, note, valid=agreed is not False)
    api = phases.get("api_load", {})
    if api.get("ok"):
        lines.append(
            f"{'read API, ' + format(api['offered_rate'], 'g') + ' requests/s offered':44}"
            f"{api['duration_seconds']:>10.1f}{(api['requests_per_second'] or 0):>10,.1f}/s"
            f"{_mem(api.get('peak_rss_bytes')):>11}{_seconds(api.get('cpu_seconds')):>9}  "
            f"p50 {_ms(api['p50_ms'])}, p95 {_ms(api['p95_ms'])}, p99 {_ms(api['p99_ms'])}; "
            f"{api['requests']:,} requests, {api['errors']} errors"
            + ("" if api["sustained"] else
               f"; NOT sustained ({api['not_sent']:,} not sent: server fell "
               f"{api['max_in_flight']} requests behind)"))
    elif api:
        row("read API under load", api, None)
    incremental = phases.get("incremental", {})
    if incremental.get("ok"):
        increment = incremental["increment"]
        valid = res.get("incremental_agrees", True) and not incremental.get("exit_status")
        share = res.get("incremental_share_of_full_build")
        row(f"incremental run (+{increment['events']:,} events)", incremental,
            increment["events"],
            "`meterhouse run` (ingest + rebuild, start-up included)"
            + (f", {share:.0%} of the full build" if share is not None else "")
            + f"; {incremental_label(incremental)}", valid=valid)
    elif incremental:
        row("incremental run", incremental, None)
    lines.append("")
    for engine in ENGINES:
        ratio = res["ratios"].get(engine)
        if ratio and ratio.get("full_build") is not None:
            rollup = ratio.get("rollup_models")
            lines.append(
                f"ratio full build / {ENGINE_NAMES[engine]:18} {ratio['full_build']:>7.1f}x"
                + (f"   (rollup models only: {rollup:.1f}x)" if rollup else ""))
        elif ratio and ratio.get("full_build_at_least") is not None:
            lines.append(f"ratio full build / {ENGINE_NAMES[engine]:18} > "
                         f"{ratio['full_build_at_least']:.1f}x (our build was stopped)")
        elif engine in report["baselines"] and not report["baselines"][engine].get("skipped"):
            lines.append(f"ratio full build / {ENGINE_NAMES[engine]:18}     n/a   "
                         "(build or baseline invalid)")

    windows = {e: b["window_seconds"] for e, b in report["baselines"].items()
               if b.get("ok") and res["baseline_valid"].get(e) is not False}
    if windows:
        lines += ["", "baseline seconds per query: " + ", ".join(
            f"{ENGINE_NAMES[e]} stage {report['baselines'][e]['stage_seconds']:.1f}"
            for e in windows)]
        sizes = list(next(iter(windows.values())))
        lines.append(f"{'':10}" + "".join(f"{s:>8}" for s in sizes))
        for engine, per in windows.items():
            lines.append(f"{engine:10}" + "".join(f"{per[s]:>8.1f}" for s in sizes))

    if prof.get("available"):
        lines += ["", f"where the dbt build spends its time (dbt elapsed "
                      f"{prof['dbt_elapsed_seconds']:.1f} s, one dbt thread):"]
        for model in prof["top_models"][:8]:
            lines.append(f"  {model['model']:44}{model['seconds']:>9.1f} s "
                         f"{model['share'] * 100:>5.1f}%")
        lines.append(f"  {'data tests':44}{prof['data_test_seconds']:>9.1f} s")
        lines.append(f"  {'unit tests':44}{prof['unit_test_seconds']:>9.1f} s")

    inc_prof = report.get("incremental_profile", {})
    if incremental.get("steps"):
        lines += ["", "where the incremental run spends its time "
                      f"({incremental['seconds']:.1f} s):"]
        for step in incremental["steps"]:
            lines.append(f"  {step['step']:44}{step['seconds']:>9.1f} s")
        if inc_prof.get("available"):
            lines.append("  of which in dbt, by model:")
            for model in inc_prof["top_models"][:8]:
                lines.append(f"    {model['model']:42}{model['seconds']:>9.1f} s")
            lines.append(f"    {'data tests':42}{inc_prof['data_test_seconds']:>9.1f} s")

    if api.get("ok"):
        alone = api["one_at_a_time"]
        lines += ["", f"read API one request at a time ({alone['requests']} requests, "
                      f"{alone['requests_per_second'] or 0:,.1f}/s): p50 "
                      f"{_ms(alone['p50_ms'])}, p99 {_ms(alone['p99_ms'])}; by query:"]
        for kind, numbers in alone["by_kind"].items():
            under = api["by_kind"].get(kind, {})
            lines.append(f"  {kind:20} alone p50 {_ms(numbers['p50_ms']):>9}, p99 "
                         f"{_ms(numbers['p99_ms']):>9}   under load p50 "
                         f"{_ms(under.get('p50_ms')):>9}, p99 {_ms(under.get('p99_ms')):>9}")
        for lower in api.get("lower_rates", []):
            lines.append(f"  at {lower['offered_rate']:g} requests/s offered: "
                         f"{lower['requests_per_second'] or 0:,.1f} answered/s, p50 "
                         f"{_ms(lower['p50_ms'])}, p99 {_ms(lower['p99_ms'])}, "
                         f"{lower['errors']} errors"
                         + ("" if lower["sustained"] else " (not sustained)"))

    if res.get("spark_record"):
        lines += ["", res["spark_record"]]
    if res.get("targets"):
        lines += ["", "targets" + (f" {res['targets_note']}" if res.get("targets_note") else "")
                  + ":"]
        for target in res["targets"]:
            mark = {True: "met", False: "MISSED", None: "—"}[target["met"]]
            lines.append(f"  {target['target']:47}{mark:>7}  {target['measured']}")

    for engine, agreement in report["agreement"].items():
        if agreement.get("ok") and agreement.get("agrees"):
            lines.append(f"\nagreement {engine}: {agreement['rows_ours']:,} rows of "
                         "fct_meter_usage match the baseline exactly (AVG to 1e-9)")
    checked = report.get("after_incremental", {}).get("agreement_duckdb", {})
    if checked.get("ok") and checked.get("agrees"):
        lines.append(f"after the incremental run: {checked['rows_ours']:,} rows of "
                     "fct_meter_usage match the DuckDB baseline on all events")
    if report["problems"]:
        bar = "!" * 90
        lines += ["", bar, "PROBLEMS: these numbers must not be reported as results"
                  if any(not p.startswith("INCOMPLETE") for p in report["problems"])
                  else "INCOMPLETE: stopped steps are lower bounds, not results"]
        lines += [f"  - {problem}" for problem in report["problems"]]
        agreements = {**report["agreement"],
                      "after incremental": report.get("after_incremental", {}).get(
                          "agreement_duckdb", {})}
        for engine, agreement in agreements.items():
            for example in agreement.get("examples", [])[:3]:
                lines.append(f"    {engine} example: {example}")
        lines.append(bar)
    return "\n".join(lines)


def write_results(report: dict[str, Any], results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(report["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"bench-{stamp}-{report['parameters']['events']}.json"
    text = json.dumps(report, indent=2, default=str)
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path


def _host() -> dict[str, Any]:
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    from importlib.metadata import PackageNotFoundError, version

    for package in ("duckdb", "chdb", "dbt-core", "dbt-duckdb", "dagster"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cores": os.cpu_count(), "memory_bytes": memory,
            "load_average": list(os.getloadavg()), "python": platform.python_version(),
            "versions": versions}


def _code_version() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                                  text=True, timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain"))}


def _clean(layout: Layout) -> None:
    """Remove the bulky files of the run; logs and phase results stay for inspection."""
    serving = layout.warehouse.with_name(layout.warehouse.name + ".serving")
    for path in (layout.data_dir, layout.baseline_dir,
                 layout.work / "baseline_after_incremental", serving):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.warehouse, layout.warehouse.with_name(layout.warehouse.name + ".wal")):
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
