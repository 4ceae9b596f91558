"""The measured phases of the benchmark. Each runs in a child process of its own
(`python -m bench.phase NAME SPEC RESULT`), so that its peak memory is its own and the engines
never share a process; each returns a JSON-ready dict with its own timings.

- generate: synthetic catalog and landing files (`orchestration.generate`), or a dataset of an
  earlier run reused (`--data`), plus the benchmark's CEL meter (bench/workload.py);
- ingest: landing files → raw_events in a fresh DuckDB warehouse (`orchestration.ingest`);
- build: catalog tables, calendars, then `dbt build` of every model and test, in process —
  what `meterhouse run` does after ingest, without Dagster's own overhead;
- export: the baselines' input: raw_events as Parquet, the customers' calendars from the
  catalog (not timed against anyone: both sides start from the same raw event versions);
- baseline: one engine's hand-written rollups (bench/baselines.py): a staging statement, then
  one query per window size; outputs are then copied to Parquet for the agreement check;
- agreement: a baseline's outputs against fct_meter_usage (bench/agreement.py);
- api_load: `meterhouse serve` in its own process, the query mix at a fixed offered rate
  (bench/api_load.py);
- incremental: 1% new events land (bench/increment.py, not timed), then `meterhouse run` — the
  command a user runs — ingests and rebuilds, timed as a whole, start-up included.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import baselines
from models.windows import WINDOW_SIZES

ROLLUP_MODELS = (
    "stg_events",
    "int_events_deduplicated",
    "int_meter_events",
    "fct_meter_usage_minutely",
    "fct_meter_distinct_values_minutely",
    "fct_meter_usage",
)


def _warehouse_config(spec: dict[str, Any]):
    from orchestration.warehouse import WarehouseConfig

    return WarehouseConfig(target="duckdb", duckdb_path=spec["warehouse"])


def generate(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.workload import add_bench_meters, reuse_dataset
    from orchestration.generate import generate_dataset

    data_dir = Path(spec["data_dir"])
    if spec.get("reuse_data"):
        result = reuse_dataset(Path(spec["reuse_data"]), data_dir, spec)
        result["bench_meters_added_to"] = add_bench_meters(Path(spec["catalog_dir"]))
        return result
    if data_dir.exists():
        shutil.rmtree(data_dir)  # the generator overwrites files but never deletes old ones
    started = time.monotonic()
    data = generate_dataset(data_dir, events=spec["events"], days=spec["days"],
                            seed=spec["seed"], tenants=spec["tenants"],
                            customers=spec["customers"])
    seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "events": data.events_written,
        "landing_rows": data.rows_written,
        "duplicates": data.duplicates_written,
        "malformed": data.malformed_written,
        "files": len(data.files),
        "bytes": sum(p.stat().st_size for p in data.files),
        "tenant_environments": len(data.environments),
        "customers": spec["customers"],
        "summary": data.summary(),
        "bench_meters_added_to": add_bench_meters(Path(spec["catalog_dir"])),
    }


def ingest(spec: dict[str, Any]) -> dict[str, Any]:
    from orchestration.ingest import ingest_landing
    from orchestration.warehouse import Warehouse

    warehouse = Path(spec["warehouse"])
    for stale in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    with Warehouse(_warehouse_config(spec)) as wh:
        report = ingest_landing(wh, Path(spec["landing_dir"]))
    seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "rows_read": report.rows_read,
        "accepted": report.accepted,
        "stored": report.stored,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
        "files": report.files_ingested,
        "events_per_second": report.rows_read / seconds if seconds else None,
    }


def _write_time_tables(wh) -> dict[str, int]:
    """What the `calendars` asset writes: calendars, and subscription billing periods where
    this checkout has them (they arrive with the pricing work)."""
    from orchestration.calendar import write_calendars

    counts = write_calendars(wh)
    try:
        from orchestration.subscription_periods import write_subscription_periods
    except ImportError:
        return counts
    counts.update(write_subscription_periods(wh))
    return counts


def build(spec: dict[str, Any]) -> dict[str, Any]:
    from datetime import UTC, datetime

    from models.catalog import load_catalog_dir
    from orchestration.build_state import plan_build, record_build
    from orchestration.catalog_tables import write_catalog
    from orchestration.defs.dbt.project import run_dbt, target_path_for
    from orchestration.warehouse import Warehouse

    config = _warehouse_config(spec)
    started = time.monotonic()
    catalog = load_catalog_dir(Path(spec["catalog_dir"]))
    with Warehouse(config) as wh:
        write_catalog(wh, catalog)
        catalog_done = time.monotonic()
        time_tables = _write_time_tables(wh)
        plan = plan_build(wh)
    calendars_done = time.monotonic()
    run = run_dbt(["build", *plan.dbt_args()], config, raise_on_failure=False)
    finished = time.monotonic()
    with Warehouse(config) as wh:
        if run.success:  # what `meterhouse run` records: the incremental run is a batch run
            record_build(wh, plan, datetime.now(UTC))
        raw_rows = wh.query(f"select count(*) from {wh.table('raw_events')}")[0][0]
        usage_rows = (wh.query(f"select count(*) from {wh.table('fct_meter_usage')}")[0][0]
                      if wh.table_exists("fct_meter_usage") else 0)
    return {
        "seconds": finished - started,
        "catalog_seconds": catalog_done - started,
        "calendars_seconds": calendars_done - catalog_done,
        "dbt_seconds": finished - calendars_done,
        "dbt_success": run.success,
        "dbt_nodes": len(run.results),
        "failures": [{"node": n, "status": s, "message": m[:500]} for n, s, m in run.failures()],
        "time_table_rows": time_tables,
        "raw_event_rows": raw_rows,
        "fct_meter_usage_rows": usage_rows,
        "events_per_second": raw_rows / (finished - started),
        "run_results": str(target_path_for(config) / "run_results.json"),
    }


def export(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    from models.catalog import load_catalog_dir

    folder = Path(spec["baseline_dir"])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.monotonic()
    plan = baselines.plan_from_catalog(load_catalog_dir(Path(spec["catalog_dir"])))
    baselines.write_customers(plan, Path(spec["customers_parquet"]))
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'; set enable_progress_bar = false")
        con.execute(f"attach '{spec['warehouse']}' as wh (read_only)")
        con.execute(
            "copy (select tenant_id, environment_id, event_id, event_name, "
            "external_customer_id, event_timestamp, properties, ingest_seq "
            f"from wh.main.raw_events) to '{spec['raw_parquet']}' "
            "(format parquet, compression zstd)"
        )
        rows = con.execute(f"select count(*) from '{spec['raw_parquet']}'").fetchone()[0]
    finally:
        con.close()
    return {
        "seconds": time.monotonic() - started,
        "rows": rows,
        "bytes": Path(spec["raw_parquet"]).stat().st_size,
        "meters": len(plan.meters),
        "skipped_meters": [list(s) for s in plan.skipped],
    }


def baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """One engine's hand-written rollups: staging, then one query per window size (timed),
    then the outputs copied to Parquet for the agreement check (not timed)."""
    from models.catalog import load_catalog_dir

    engine = spec["engine"]
    plan = baselines.plan_from_catalog(load_catalog_dir(Path(spec["catalog_dir"])))
    raw, customers = Path(spec["raw_parquet"]), Path(spec["customers_parquet"])
    out_dir, db_path = Path(spec["output_dir"]), Path(spec["database"])
    for stale in (out_dir, db_path):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    out_dir.mkdir(parents=True)
    if engine == "chdb":
        from chdb import session

        conn = session.Session(str(db_path))
        execute = conn.query
        stage, window, export_sql, cleanup = (baselines.chdb_stage, baselines.chdb_window,
                                              baselines.chdb_export, baselines.chdb_cleanup)
    elif engine == "duckdb":
        import duckdb

        conn = duckdb.connect(str(db_path))
        conn.execute("set TimeZone = 'UTC'; set enable_progress_bar = false")
        execute = conn.execute
        stage, window, export_sql, cleanup = (baselines.duckdb_stage, baselines.duckdb_window,
                                              baselines.duckdb_export, baselines.duckdb_cleanup)
    else:
        raise ValueError(f"unknown baseline engine {engine!r}")
    try:
        started = time.monotonic()
        for statement in stage(plan, raw, customers):
            execute(statement)
        stage_seconds = time.monotonic() - started
        window_seconds: dict[str, float] = {}
        for size in WINDOW_SIZES:
            window_started = time.monotonic()
            execute(window(plan, size))
            window_seconds[size] = time.monotonic() - window_started
        seconds = time.monotonic() - started
        for size in WINDOW_SIZES:
            execute(export_sql(size, out_dir / f"{size}.parquet"))
        for statement in cleanup():
            execute(statement)
    finally:
        conn.close()
    return {
        "engine": engine,
        "seconds": seconds,
        "stage_seconds": stage_seconds,
        "window_seconds": window_seconds,
        "output_dir": str(out_dir),
        "version": _engine_version(engine),
    }


def agreement(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.agreement import compare
    from models.catalog import load_catalog_dir

    plan = baselines.plan_from_catalog(load_catalog_dir(Path(spec["catalog_dir"])))
    started = time.monotonic()
    result = compare(Path(spec["warehouse"]), spec["engine"], Path(spec["output_dir"]), plan)
    return {**result.as_dict(), "seconds": time.monotonic() - started}


def api_load(spec: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    from bench.api_load import measure

    started = time.monotonic()
    result = measure(
        Path(spec["warehouse"]), Path(spec["catalog_dir"]),
        Path(spec["data_dir"]) / "api_keys.txt", datetime.fromisoformat(spec["data_start"]),
        spec["days"], spec["api_rate"], spec["api_seconds"],
        Path(spec["logs_dir"]) / "api_server.log", seed=spec["seed"],
    )
    return {**result, "seconds": time.monotonic() - started}


def incremental(spec: dict[str, Any]) -> dict[str, Any]:
    """1% new events land (not timed), then `meterhouse run` ingests and rebuilds (timed).

    The run starts from the state a user's `meterhouse run` leaves: the full build served by
    a snapshot, which the run then patches. The build phase times dbt alone and the read API
    phase (skipped with --skip-api) publishes one, so it is published here when missing (not
    timed); without it the incremental run would copy the whole warehouse (3 min at 10M).
    """
    from api.serving import current_snapshot, publish_if_stale, serving_dir_for
    from bench.increment import write_increment
    from orchestration.defs.dbt.project import target_path_for

    warehouse = Path(spec["warehouse"])
    config = _warehouse_config(spec)
    snapshot_before = "reused"
    if current_snapshot(serving_dir_for(config)) is None:
        snapshot_before = publish_if_stale(config)
    increment = write_increment(warehouse, Path(spec["landing_dir"]),
                                fraction=spec["incremental_fraction"], seed=spec["seed"])
    before = _raw_counts(warehouse)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "orchestration.cli", "run", "--catalog",
               spec["catalog_dir"], "--landing", spec["landing_dir"], "--warehouse",
               str(warehouse), "--target", "duckdb"]
    wall_started = time.time()
    started = time.monotonic()
    with open(Path(spec["logs_dir"]) / "incremental_meterhouse_run.log", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                              check=False).returncode
    seconds = time.monotonic() - started
    after = _raw_counts(warehouse)
    # this warehouse's own target folder: tests running beside the bench write their own
    run_results = _newest(target_path_for(_warehouse_config(spec)), "run_results.json",
                          wall_started)
    manifest = run_results.parent / "manifest.json" if run_results else None
    return {
        "seconds": seconds,
        "command": "meterhouse run --catalog ... --landing ... --warehouse ...",
        "exit_status": code,
        "dbt_success": code == 0,
        "increment": increment.as_dict(),
        "snapshot_before": snapshot_before,
        "raw_event_rows_before": before,
        "raw_event_rows_after": after,
        "new_raw_event_rows": after - before,
        "events_per_second": increment.events / seconds if seconds else None,
        "run_results": str(run_results) if run_results else None,
        "incremental_models": _incremental_models(manifest),
        "steps": run_steps(Path(spec["logs_dir"]) / "incremental_meterhouse_run.log", seconds),
    }


_STEP_LINE = re.compile(r"^\s*([0-9.]+)s \u25b6 (\S+)")


def run_steps(log: Path, total_seconds: float) -> list[dict[str, Any]]:
    """Seconds per step of a `meterhouse run`, from its progress lines ('  3.7s \u25b6 calendars'):
    start-up before the first step, then each step until the next one starts."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    starts = [(float(m.group(1)), m.group(2)) for m in map(_STEP_LINE.match, text.splitlines())
              if m]
    if not starts:
        return []
    # the progress clock starts when the pipeline does; the rest of the wall time is start-up
    # (interpreter, Dagster definitions) and the exit
    ends = [at for at, _ in starts[1:]] + [max(starts[-1][0], _finished_at(text))]
    steps = [{"step": name, "seconds": end - at}
             for (at, name), end in zip(starts, ends, strict=True)]
    steps.insert(0, {"step": "start-up, Dagster, exit",
                     "seconds": max(total_seconds - (ends[-1] - starts[0][0]), 0.0)})
    return steps


def _finished_at(text: str) -> float:
    found = re.findall(r"pipeline finished in ([0-9.]+) s", text)
    return float(found[-1]) if found else 0.0


def _raw_counts(warehouse: Path) -> int:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select count(*) from main.raw_events").fetchone()[0]
    finally:
        con.close()


def _newest(folder: Path, name: str, since: float) -> Path | None:
    """The most recently written `name` under `folder`, if written after `since`."""
    found = [p for p in folder.rglob(name) if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _incremental_models(manifest: Path | None) -> list[str] | None:
    """The dbt models materialized `incremental` (None when the manifest is not found)."""
    if manifest is None or not manifest.exists():
        return None
    nodes = json.loads(manifest.read_text()).get("nodes", {})
    return sorted(n["name"] for n in nodes.values() if n.get("resource_type") == "model"
                  and n.get("config", {}).get("materialized") == "incremental")


def _engine_version(engine: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chdb" if engine == "chdb" else "duckdb")
    except PackageNotFoundError:
        return "?"


# The comparison: a CEL expression meter against a plain field meter on the same
# events (both SUM over api_request, no filters).
EXPRESSION_METER = "mtr_compute_units"
FIELD_METER = "mtr_tokens"


def expression_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """(event × meter) pairs per second of int_meter_events, as dbt compiled it for the full
    build, for the CEL meter and for the field meter: best of three runs each, reading the
    built warehouse. The meter filter reaches the meters side of the pairing, so each run
    reads every event and computes the quantity of that meter only."""
    import duckdb

    from orchestration.defs.dbt.project import target_path_for

    config = _warehouse_config(spec)
    compiled = (target_path_for(config) / "compiled" / "meterhouse" / "models"
                / "intermediate" / "int_meter_events.sql").read_text()
    query = (f"select count(*), count(quantity), count(quantity_error) from ({compiled}) "
             "as meter_events where meter_id = ?")
    result: dict[str, Any] = {}
    with duckdb.connect(config.duckdb_path, read_only=True) as conn:
        conn.execute("set memory_limit = ?",
                     [os.environ.get("MH_DUCKDB_MEMORY_LIMIT", "4GB")])
        for label, meter in (("expression", EXPRESSION_METER), ("field", FIELD_METER)):
            best = float("inf")
            for _ in range(3):
                started = time.monotonic()
                pairs, quantities, errors = conn.execute(query, [meter]).fetchone()
                best = min(best, time.monotonic() - started)
            result[label] = {"meter": meter, "pairs": pairs, "quantities": quantities,
                             "errors": errors, "seconds": best,
                             "pairs_per_second": pairs / best if best else None}
    field_rate = result["field"]["pairs_per_second"] or 0
    result["ratio"] = (result["expression"]["pairs_per_second"] / field_rate
                       if field_rate else None)
    return result


def spark_build(spec: dict[str, Any]) -> dict[str, Any]:
    """`meterhouse run --target spark` on the workload's files into a fresh local Spark
    warehouse (session mode, `local[2]`): ingest, catalog, calendars and every dbt model, for
    the record beside DuckDB's build. Its fct_meter_usage (Parquet files) is then compared with
    DuckDB's: the same rows per window size, events and value sums."""
    import duckdb

    work = Path(spec["warehouse"]).parent / "spark"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "MH_SPARK_WAREHOUSE": str(work / "warehouse"), "MH_SCHEMA": "meterhouse",
           "DO_NOT_TRACK": "1"}
    command = [str(Path(sys.executable).parent / "meterhouse"), "run", "--target", "spark",
               "--catalog", spec["catalog_dir"], "--landing", spec["landing_dir"]]
    started = time.monotonic()
    run = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise RuntimeError(f"meterhouse run --target spark exited {run.returncode}: "
                           f"{(run.stderr or run.stdout)[-2000:]}")
    files = sorted((work / "warehouse").rglob("fct_meter_usage/*.parquet"))
    if not files:
        raise RuntimeError(f"no fct_meter_usage Parquet files under {work / 'warehouse'}")
    totals = ("select window_size, count(*), sum(event_count), round(sum(value), 6) "
              "from {} group by 1 order by 1")
    with duckdb.connect() as conn:
        spark_rows = conn.execute(totals.format(
            "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])")).fetchall()
    with duckdb.connect(spec["warehouse"], read_only=True) as conn:
        duckdb_rows = conn.execute(totals.format("fct_meter_usage")).fetchall()
    agree = [tuple(map(str, r)) for r in spark_rows] == [tuple(map(str, r)) for r in duckdb_rows]
    if not agree:
        raise RuntimeError(f"Spark and DuckDB disagree: {spark_rows} vs {duckdb_rows}")
    return {"seconds": seconds, "agrees_with_duckdb": agree,
            "fct_meter_usage_rows": sum(r[1] for r in spark_rows)}


PHASES = {
    "spark_build": spark_build,
    "expression": expression_throughput,
    "generate": generate,
    "ingest": ingest,
    "build": build,
    "export": export,
    "baseline": baseline,
    "agreement": agreement,
    "api_load": api_load,
    "incremental": incremental,
}


def load_run_results(path: Path) -> dict[str, Any] | None:
    """dbt's run_results.json, or None when the build wrote none."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
