"""The Meterhouse benchmark (`make bench`, later `meterhouse bench`): our full build against
hand-written chDB and DuckDB rollups of the same events, measured side by side in one run.

One run, each step in a child process of its own (bench/phase.py) whose process tree is
sampled for peak memory:

1. generate a deterministic synthetic workload (catalogs + landing files);
2. ingest the landing files into raw_events (events/s);
3. full build: catalog tables, calendars, `dbt build` of every model and test (wall seconds,
   events/s, peak memory; dbt's per-model timings say where the time goes);
4. export raw_events to Parquet and run the baselines (bench/baselines.py): the same rollups
   written by hand in chDB (embedded ClickHouse) and plain DuckDB;
5. check that each baseline agrees with fct_meter_usage row by row (bench/agreement.py) —
   only then print the timings; a baseline that disagrees has its timing marked INVALID and
   the run exits with status 1.

The incremental run (issue 6) and the read API under load (issue 5) are reported as not
measured until those exist. Results: a table on stdout and JSON under bench/results/
(a timestamped file and latest.json). See bench/README.md for how to read them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
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
NOT_MEASURED = {
    "incremental": "not measured yet (issue 6: incremental runs)",
    "api_load": "not measured yet (issue 5: read API)",
}
TARGET_EVENTS = 10_000_000
TARGETS = {"ingest_events_per_second": 500_000, "build_to_chdb_ratio": 1.0,
           "peak_memory_bytes": 4 * 1024**3, "api_p99_ms": 20, "api_rate": 200}
GB = 1024**3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
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


def run_phase(layout: Layout, label: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run phase `name` in a child process; its result plus peak memory of its process tree."""
    layout.phases_dir.mkdir(parents=True, exist_ok=True)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    spec_path = layout.phases_dir / f"{label}.spec.json"
    result_path = layout.phases_dir / f"{label}.result.json"
    log_path = layout.logs_dir / f"{label}.log"
    spec_path.write_text(json.dumps(spec, indent=2))
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.phase", name, str(spec_path), str(result_path)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        sampler = PeakTreeMemory(child.pid).start()
        try:
            code = child.wait()
        except BaseException:
            child.terminate()  # our own child, by its pid
            child.wait()
            raise
        finally:
            sampled_peak = sampler.stop()
    if result_path.exists():
        result = json.loads(result_path.read_text())
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
    started_at = datetime.now(UTC)
    report: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "parameters": {"events": args.events, "days": args.days, "seed": args.seed,
                       "customers": args.customers, "tenants": args.tenants,
                       "skip_baselines": args.skip_baselines},
        "host": _host(),
        "code": _code_version(),
        "phases": {},
        "baselines": {},
        "agreement": {},
        "not_measured": dict(NOT_MEASURED),
    }
    _say(f"Meterhouse benchmark: {args.events:,} events, {args.days} days, seed {args.seed}, "
         f"work folder {layout.work}")
    _say("(timings are printed once every baseline has been checked against our tables)")
    phases = report["phases"]
    common = layout.spec(events=args.events, days=args.days, seed=args.seed,
                         customers=args.customers, tenants=args.tenants)

    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("generate", "generate", common),
        ("ingest", "ingest", common),
        ("build", "build", common),
    ]
    for label, name, spec in steps:
        _say(f"  {label} ...")
        phases[label] = run_phase(layout, label, name, spec)
        if not phases[label].get("ok"):
            _say(f"  {label} FAILED: {phases[label].get('error')}")
            break
    build_ok = all(phases.get(s, {}).get("ok") for s in ("generate", "ingest", "build"))
    if phases.get("build", {}).get("ok"):
        report["profile"] = profile(load_run_results(Path(phases["build"]["run_results"])))

    baselines_possible = (build_ok and not args.skip_baselines
                          and phases["build"].get("fct_meter_usage_rows", 0) > 0)
    if baselines_possible:
        _say("  export raw_events for the baselines ...")
        phases["export"] = run_phase(layout, "export", "export", common)
        baselines_possible = phases["export"].get("ok", False)
    for engine in ENGINES:
        if not baselines_possible:
            break
        if engine == "chdb" and importlib.util.find_spec("chdb") is None:
            report["baselines"][engine] = {"ok": False, "skipped": True,
                                           "error": "chdb is not installed (pip install chdb)"}
            _say("  baseline chdb skipped: chdb is not installed")
            continue
        spec = {**common, "engine": engine,
                "output_dir": str(layout.baseline_dir / f"out_{engine}"),
                "database": str(layout.baseline_dir / f"{engine}_db")}
        _say(f"  baseline {engine} ...")
        report["baselines"][engine] = run_phase(layout, f"baseline_{engine}", "baseline", spec)
        if report["baselines"][engine].get("ok"):
            _say(f"  agreement {engine} vs fct_meter_usage ...")
            report["agreement"][engine] = run_phase(layout, f"agreement_{engine}",
                                                    "agreement", spec)
        else:
            _say(f"  baseline {engine} FAILED: {report['baselines'][engine].get('error')}")

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


def bench_command(args_list: list[str]) -> int:
    """Entry point for `meterhouse bench ARGS...` (the CLI passes its remaining arguments)."""
    return main(list(args_list))


# --------------------------------------------------------------------------------------------
# Judging and reporting


def evaluate(report: dict[str, Any], args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The headline numbers, whether each may be trusted, and every problem found."""
    phases, problems = report["phases"], []
    for label, result in phases.items():
        if not result.get("ok"):
            problems.append(f"{label} failed: {result.get('error')}")
    build = phases.get("build", {})
    if build.get("ok") and not build.get("dbt_success"):
        nodes = ", ".join(f["node"].rsplit(".", 1)[-1] for f in build.get("failures", []))
        problems.append(f"full build FAILED (dbt): {nodes or 'see the build log'}; "
                        "its timing is invalid")
    build_valid = bool(build.get("ok") and build.get("dbt_success"))
    results: dict[str, Any] = {"build_valid": build_valid, "ratios": {}, "baseline_valid": {}}
    for engine, base in report["baselines"].items():
        agreement = report["agreement"].get(engine, {})
        if base.get("skipped"):
            continue
        if not base.get("ok"):
            problems.append(f"baseline {engine} failed: {base.get('error')}")
            continue
        agrees = bool(agreement.get("ok") and agreement.get("agrees"))
        results["baseline_valid"][engine] = agrees
        if not agrees:
            problems.append(f"baseline {engine} does not agree with fct_meter_usage: "
                            f"{_agreement_summary(agreement)}; its timing is INVALID")
            continue
        if build_valid and base.get("seconds"):
            rollup = report.get("profile", {}).get("rollup_model_seconds")
            results["ratios"][engine] = {
                "full_build": build["seconds"] / base["seconds"],
                "rollup_models": (rollup / base["seconds"]) if rollup else None,
            }
    scale_note = ("" if args.events == TARGET_EVENTS
                  else f" (targets are set for {TARGET_EVENTS:,} events)")
    targets = []
    ingest = phases.get("ingest", {})
    if ingest.get("ok"):
        rate = ingest["events_per_second"]
        targets.append(("ingest >= 500k events/s", f"{rate:,.0f} events/s",
                        rate >= TARGETS["ingest_events_per_second"]))
    chdb_ratio = results["ratios"].get("chdb", {}).get("full_build")
    if chdb_ratio is not None:
        targets.append(("full build <= chDB baseline (ratio <= 1.0)", f"{chdb_ratio:.1f}x",
                        chdb_ratio <= TARGETS["build_to_chdb_ratio"]))
    if build_valid:
        peak = build["peak_rss_bytes"]
        targets.append(("full build peak memory <= 4 GB", f"{peak / GB:.1f} GB",
                        peak <= TARGETS["peak_memory_bytes"]))
    targets.append(("read API p99 <= 20 ms at 200 requests/s", NOT_MEASURED["api_load"], None))
    results["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in targets]
    results["targets_note"] = scale_note.strip()
    return results, problems


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
    raw_rows = build.get("raw_event_rows")
    row("generate (catalog + landing files)", gen, gen.get("events"),
        f"{gen.get('files', 0):,} files, {gen.get('landing_rows', 0):,} rows" if gen else "")
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
        valid=res.get("build_valid", False))
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
        valid = res["baseline_valid"].get(engine, False)
        note = "agrees with fct_meter_usage" if valid else "DISAGREES: timing INVALID"
        if base.get("ok"):
            note += f" (stage {base['stage_seconds']:.1f} s)"
        row(name, base, raw_rows, note, valid=valid)
    lines.append("")
    for engine in ENGINES:
        ratio = res["ratios"].get(engine)
        if ratio:
            rollup = ratio.get("rollup_models")
            lines.append(
                f"ratio full build / {ENGINE_NAMES[engine]:18} {ratio['full_build']:>7.1f}x"
                + (f"   (rollup models only: {rollup:.1f}x)" if rollup else ""))
        elif engine in report["baselines"] and not report["baselines"][engine].get("skipped"):
            lines.append(f"ratio full build / {ENGINE_NAMES[engine]:18}     n/a   "
                         "(build or baseline invalid)")
    lines.append(f"incremental run (1% new events)           {NOT_MEASURED['incremental']}")
    lines.append(f"read API under load                       {NOT_MEASURED['api_load']}")

    windows = {e: b["window_seconds"] for e, b in report["baselines"].items()
               if b.get("ok") and res["baseline_valid"].get(e)}
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
                      f"{prof['dbt_elapsed_seconds']:.1f} s; model seconds overlap on 2 threads):"]
        for model in prof["top_models"][:8]:
            lines.append(f"  {model['model']:44}{model['seconds']:>9.1f} s "
                         f"{model['share'] * 100:>5.1f}%")
        lines.append(f"  {'data tests':44}{prof['data_test_seconds']:>9.1f} s")
        lines.append(f"  {'unit tests':44}{prof['unit_test_seconds']:>9.1f} s")

    if res.get("targets"):
        lines += ["", "targets" + (f" {res['targets_note']}" if res.get("targets_note") else "")
                  + ":"]
        for target in res["targets"]:
            mark = {True: "met", False: "MISSED", None: "—"}[target["met"]]
            lines.append(f"  {target['target']:44}{mark:>7}  {target['measured']}")

    for engine, agreement in report["agreement"].items():
        if agreement.get("ok") and agreement.get("agrees"):
            lines.append(f"\nagreement {engine}: {agreement['rows_ours']:,} rows of "
                         "fct_meter_usage match the baseline exactly (AVG to 1e-9)")
    if report["problems"]:
        bar = "!" * 90
        lines += ["", bar, "PROBLEMS: these numbers must not be reported as results"]
        lines += [f"  - {problem}" for problem in report["problems"]]
        for engine, agreement in report["agreement"].items():
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
    for path in (layout.data_dir, layout.baseline_dir):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.warehouse, layout.warehouse.with_name(layout.warehouse.name + ".wal")):
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
