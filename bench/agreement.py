"""Do a baseline and our `fct_meter_usage` agree? Checked before any timing is reported.

Both sides are compared on the meters the baseline computes, at every window size:

- per (window size, aggregation type): row count, Σ event_count and Σ value (exact decimals;
  AVG values as doubles to 1e-9 per row);
- row by row on the full key (tenant, environment, meter, customer, window size, window
  start), by grouping both sides on it: rows only one side has, values that differ (exactly;
  AVG by more than 1e-9) and event counts that differ, with a few examples.

A baseline agrees when no row differs. A fast wrong answer is not a result, so the benchmark
marks the timing of a baseline that does not agree as invalid and exits non-zero.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from bench.baselines import BaselinePlan

AVG_TOLERANCE = 1e-9
EXAMPLES = 5
KEYS = ("tenant_id", "environment_id", "meter_id", "external_customer_id", "window_size",
        "window_start_epoch")


@dataclass
class Agreement:
    baseline: str
    agrees: bool
    rows_ours: int = 0
    rows_baseline: int = 0
    only_ours: int = 0
    only_baseline: int = 0
    value_mismatches: int = 0
    count_mismatches: int = 0
    by_window_and_type: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    error: str = ""

    def summary(self) -> str:
        if self.error:
            return f"{self.baseline}: could not compare ({self.error})"
        if self.agrees:
            return (f"{self.baseline}: agrees with fct_meter_usage on {self.rows_ours:,} rows "
                    f"(every window size, COUNT/SUM/MAX/LATEST/COUNT_UNIQUE exact, AVG to 1e-9)")
        return (f"{self.baseline}: DISAGREES with fct_meter_usage: {self.only_ours:,} rows only "
                f"in ours, {self.only_baseline:,} only in the baseline, "
                f"{self.value_mismatches:,} values and {self.count_mismatches:,} event counts "
                f"differ (of {self.rows_ours:,} / {self.rows_baseline:,} rows)")

    def as_dict(self) -> dict:
        return asdict(self)


MEMORY_LIMIT = "3GB"  # the comparison spills to disk beyond this, so 10M rows fit too


def compare(warehouse: Path, baseline: str, output_dir: Path, plan: BaselinePlan) -> Agreement:
    """Compare the Parquet files a baseline wrote under `output_dir` with fct_meter_usage.

    Both sides are stacked (`union all`) and grouped by the full key, so each key becomes one
    row holding both sides' values; a grouping spills to disk under the memory limit, where a
    full outer join of two 45M-row tables does not. Only differing rows are kept."""
    files = sorted(str(p) for p in output_dir.glob("*.parquet"))
    if not files:
        return Agreement(baseline, False, error=f"no output under {output_dir}")
    spill = output_dir.parent / f".agreement-{baseline}.tmp"
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'; set enable_progress_bar = false; "
                    "set preserve_insertion_order = false")
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'; set temp_directory = '{spill}'")
        con.execute(f"attach '{warehouse}' as wh (read_only)")
        con.execute("create temp table baseline_meters (tenant_id varchar, environment_id "
                    "varchar, meter_id varchar)")
        con.executemany("insert into baseline_meters values (?, ?, ?)",
                        [(m.tenant_id, m.environment_id, m.meter_id) for m in plan.meters])
        con.execute("""
            create temp view ours as
            select u.tenant_id, u.environment_id, u.meter_id, u.external_customer_id,
                u.window_size, epoch(u.window_start)::bigint as window_start_epoch,
                u.aggregation_type, u.value::decimal(38, 18) as value, u.event_count
            from wh.main.fct_meter_usage as u
            semi join baseline_meters as m using (tenant_id, environment_id, meter_id)
        """)
        con.execute(f"""
            create temp view theirs as
            select tenant_id, environment_id, meter_id, external_customer_id, window_size,
                window_start_epoch::bigint as window_start_epoch,
                aggregation_type, value::decimal(38, 12)::decimal(38, 18) as value,
                avg_value::double as avg_value, event_count::bigint as event_count
            from read_parquet({files!r})
        """)
        keys = ", ".join(KEYS)
        con.execute(f"""
            create temp table joined as
            with stacked as (
                select {keys}, aggregation_type, value, null::double as avg_value,
                    event_count, true as ours
                from ours
                union all
                select {keys}, aggregation_type, value, avg_value, event_count, false
                from theirs
            ),
            paired as (
                select {keys},
                    min(aggregation_type) as aggregation_type,
                    count(*) filter (where ours) as n_ours,
                    count(*) filter (where not ours) as n_theirs,
                    max(value) filter (where ours) as our_value,
                    max(value) filter (where not ours) as their_value,
                    max(avg_value) filter (where not ours) as their_avg,
                    max(event_count) filter (where ours) as our_count,
                    max(event_count) filter (where not ours) as their_count
                from stacked
                group by {keys}
            ),
            classified as (
                select *, n_theirs = 0 as only_ours, n_ours = 0 as only_theirs,
                    case when n_ours = 0 or n_theirs = 0 then false
                         when n_ours > 1 or n_theirs > 1 then true
                         when aggregation_type = 'AVG'
                             then their_avg is null
                                  or abs(our_value::double - their_avg) > {AVG_TOLERANCE}
                         else our_value is distinct from their_value end as value_differs,
                    n_ours > 0 and n_theirs > 0
                        and our_count is distinct from their_count as count_differs
                from paired
            )
            select * from classified
            where only_ours or only_theirs or value_differs or count_differs
        """)
        result = Agreement(baseline, False)
        (result.only_ours, result.only_baseline, result.value_mismatches,
         result.count_mismatches) = con.execute("""
            select count(*) filter (where only_ours), count(*) filter (where only_theirs),
                count(*) filter (where value_differs), count(*) filter (where count_differs)
            from joined
        """).fetchone()
        rows = con.execute("""
            with o as (
                select window_size, aggregation_type, count(*) as rows,
                    sum(event_count) as events,
                    sum(case when aggregation_type = 'AVG' then null else value end) as total,
                    sum(case when aggregation_type = 'AVG' then value::double end) as avg_total
                from ours group by all
            ),
            t as (
                select window_size, aggregation_type, count(*) as rows,
                    sum(event_count) as events,
                    sum(case when aggregation_type = 'AVG' then null else value end) as total,
                    sum(avg_value) as avg_total
                from theirs group by all
            )
            select coalesce(o.window_size, t.window_size), coalesce(o.aggregation_type,
                t.aggregation_type), o.rows, t.rows, o.events, t.events,
                o.total::varchar, t.total::varchar, o.avg_total, t.avg_total
            from o full outer join t using (window_size, aggregation_type)
            order by 1, 2
        """).fetchall()
        for (window, kind, rows_o, rows_t, ev_o, ev_t, tot_o, tot_t, avg_o, avg_t) in rows:
            result.rows_ours += rows_o or 0
            result.rows_baseline += rows_t or 0
            result.by_window_and_type.append({
                "window_size": window, "aggregation_type": kind,
                "rows": [rows_o, rows_t], "event_count_sum": [ev_o, ev_t],
                "value_sum": [_trim(tot_o), _trim(tot_t)] if kind != "AVG" else [avg_o, avg_t],
            })
        columns = ["window_size", "aggregation_type", *[k for k in KEYS if k != "window_size"],
                   "our_value", "their_value", "their_avg", "our_count", "their_count",
                   "only_ours", "only_theirs"]
        for row in con.execute(f"""
            select {", ".join(columns)} from joined
            order by window_size, aggregation_type, tenant_id, meter_id, external_customer_id,
                window_start_epoch
            limit {EXAMPLES}
        """).fetchall():
            result.examples.append({c: (str(v) if v is not None else None)
                                    for c, v in zip(columns, row, strict=True)})
        result.agrees = (result.only_ours == result.only_baseline == result.value_mismatches
                         == result.count_mismatches == 0 and result.rows_ours > 0)
        if result.rows_ours == 0:
            result.error = "fct_meter_usage has no rows for the baseline's meters"
        return result
    except duckdb.Error as exc:
        return Agreement(baseline, False, error=str(exc).splitlines()[0])
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _trim(text: str | None) -> str | None:
    if text is None or "." not in text:
        return text
    return text.rstrip("0").rstrip(".")
