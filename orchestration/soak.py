"""`meterhouse soak` (`make soak`): exactness under scale, checked by invariants.

On a generated workload (10 million events by default) it runs the whole pipeline, adds 1%
late events spread over the last 30 days and runs again (a batch run), then rebuilds
everything in full, and after each step checks the reconciliation invariants:

- every landing row is accepted or rejected (per file), and every accepted event is counted
  by a meter or listed as unmatched;
- additive meters have the same total at every window size;
- each line item's point costs add up, at every window size, to what its billing periods
  charge (without the true-up; WEIGHTED_SUM items aside);
- the batch run and the full rebuild give the same rollups.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from orchestration.reconcile import (
    additive_totals_mismatches,
    events_not_accounted_for,
    ingest_count_mismatches,
    priced_totals_mismatches,
)
from orchestration.warehouse import Warehouse, WarehouseConfig

Say = Callable[[str], None]


def invariant_failures(warehouse: Warehouse) -> list[str]:
    """What is wrong in a built warehouse (empty when every invariant holds)."""
    failures = []
    if files := ingest_count_mismatches(warehouse):
        failures.append(f"{len(files)} landing file(s) where read != accepted + rejected")
    if missing := events_not_accounted_for(warehouse):
        failures.append(f"{missing} accepted event(s) neither counted nor unmatched")
    if totals := additive_totals_mismatches(warehouse):
        failures.append(f"{len(totals)} additive meter total(s) differ between window sizes")
    if priced := priced_totals_mismatches(warehouse):
        failures.append(f"{len(priced)} line item(s) whose point costs differ from the charge")
    return failures


def usage_fingerprint(warehouse: Warehouse) -> list[tuple]:
    """Row counts and sums of the rollups per window size, and of the priced usage."""
    rows = warehouse.query(
        "select window_size, count(*), sum(event_count), sum(value) "
        f"from {warehouse.table('fct_meter_usage')} group by 1 order by 1")
    rows += warehouse.query(
        f"select 'priced', count(*), sum(event_count), sum(total_cost) "
        f"from {warehouse.table('fct_priced_usage')}")
    return [tuple(map(str, row)) for row in rows]


def write_late_events(landing: Path, fraction: float, days: int, seed: int = 1) -> int:
    """Copy a `fraction` of the JSONL events as new ids with times over the last `days`."""
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    written = 0
    for folder in sorted(p for p in landing.glob("*/*") if p.is_dir()):
        # The copies come from the JSON Lines files, in proportion to the rows of all formats.
        jsonl = [line for file in sorted(folder.rglob("*.jsonl"))
                 for line in file.read_text().splitlines()]
        rows = len(jsonl) + sum(max(len(f.read_text().splitlines()) - 1, 0)
                                for f in folder.rglob("*.csv"))
        rows += sum(pq.ParquetFile(f).metadata.num_rows for f in folder.rglob("*.parquet"))
        share = min(1.0, fraction * rows / max(len(jsonl), 1))
        events = []
        for line in jsonl:
            if rng.random() < share:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("timestamp"), str):
                    events.append(event)
        if not events:
            continue
        latest = max(event["timestamp"] for event in events)
        end = datetime.fromisoformat(latest.replace("Z", "+00:00"))
        late = folder / "late" / f"soak-{seed}.jsonl"
        late.parent.mkdir(parents=True, exist_ok=True)
        with late.open("w") as out:
            for event in events:
                event["event_id"] = f"late_{rng.getrandbits(64):016x}"
                moment = end - timedelta(seconds=rng.uniform(0, days * 86400))
                event["timestamp"] = moment.isoformat().replace("+00:00", "Z")
                out.write(json.dumps(event) + "\n")
                written += 1
    return written


def run_soak(events: int, work_dir: Path, target: str = "duckdb", rebuild: bool = True,
             say: Say = print) -> bool:
    """The soak; True when every invariant held at every step."""
    from orchestration.build_state import build_models
    from orchestration.cli import run_pipeline
    from orchestration.generate import generate_dataset

    if work_dir.exists():
        shutil.rmtree(work_dir)
    config = WarehouseConfig.from_env(target=target,
                                      duckdb_path=str(work_dir / "warehouse.duckdb"))
    started = time.monotonic()
    say(f"soak: generating {events:,} events under {work_dir}")
    data = generate_dataset(work_dir / "data", events=events, days=31)
    ok = True

    def check(step: str) -> None:
        nonlocal ok
        with Warehouse(config) as warehouse:
            failures = invariant_failures(warehouse)
        for failure in failures:
            say(f"  FAILED after {step}: {failure}")
        ok = ok and not failures
        if not failures:
            say(f"  invariants hold after {step} ({time.monotonic() - started:.0f} s)")

    say("soak: full pipeline")
    if not run_pipeline(data.catalog_dir, data.landing_dir, target, config.duckdb_path):
        say("  FAILED: the pipeline failed")
        return False
    check("the first build")
    late = write_late_events(data.landing_dir, 0.01, days=30)
    say(f"soak: {late:,} late events over the last 30 days, batch run")
    if not run_pipeline(data.catalog_dir, data.landing_dir, target, config.duckdb_path):
        say("  FAILED: the batch run failed")
        return False
    check("the batch run")
    with Warehouse(config) as warehouse:
        counted = warehouse.query(
            f"select count(*) from {warehouse.table('int_events_deduplicated')}")[0][0]
        batch = usage_fingerprint(warehouse)
    if counted != data.events_written + late:
        say(f"  FAILED: {counted:,} distinct events, expected {data.events_written + late:,}")
        ok = False
    if rebuild:
        say("soak: full rebuild of the same raw events")
        build_models(config, full=True)
        check("the full rebuild")
        with Warehouse(config) as warehouse:
            if usage_fingerprint(warehouse) != batch:
                say("  FAILED: the batch run and the full rebuild disagree")
                ok = False
    say(f"soak: {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return ok
