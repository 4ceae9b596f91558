"""Do a baseline and our `fct_meter_usage` agree? Checked before any timing is reported.

Both sides are compared on the meters the baseline computes, at every window size:

- per (window size, aggregation type): row count, Σ event_count and Σ value (exact decimals;
  AVG values as doubles to 1e-9 per row);
- row by row on the full key (tenant, environment, meter, customer, window size, window
  start): rows only one side has, values that differ (exactly; AVG by more than 1e-9) and
  event counts that differ, with a few examples.

A baseline agrees when no row differs. A fast wrong answer is not a result, so the benchmark
marks the timing of a baseline that does not agree as invalid and exits non-zero.
"""

from __future__ import annotations

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


def compare(warehouse: Path, baseline: str, output_dir: Path, plan: BaselinePlan) -> Agreement:
    """Compare the Parquet files a baseline wrote under `output_dir` with fct_meter_usage."""
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'; set enable_progress_bar = false")
        con.execute(f"attach '{warehouse}' as wh (read_only)")
        con.execute("create temp table baseline_meters (tenant_id varchar, environment_id "
                    "varchar, meter_id varchar)")
        con.executemany("insert into baseline_meters values (?, ?, ?)",
                        [(m.tenant_id, m.environment_id, m.meter_id) for m in plan.meters])
        con.execute("""
            create temp table ours as
            select u.tenant_id, u.environment_id, u.meter_id, u.external_customer_id,
                u.window_size, epoch(u.window_start)::bigint as window_start_epoch,
                u.aggregation_type, u.value, u.event_count
            from wh.main.fct_meter_usage as u
            semi join baseline_meters as m using (tenant_id, environment_id, meter_id)
        """)
        files = sorted(str(p) for p in output_dir.glob("*.parquet"))
        if not files:
            return Agreement(baseline, False, error=f"no output under {output_dir}")
        con.execute(f"""
            create temp table theirs as
            select tenant_id, environment_id, meter_id, external_customer_id, window_size,
                window_start_epoch::bigint as window_start_epoch,
                aggregation_type, value::decimal(38, 12) as value,
                avg_value::double as avg_value, event_count::bigint as event_count
            from read_parquet({files!r})
        """)
        result = Agreement(baseline, False)
        result.rows_ours = con.execute("select count(*) from ours").fetchone()[0]
        result.rows_baseline = con.execute("select count(*) from theirs").fetchone()[0]
        on = " and ".join(f"o.{k} = t.{k}" for k in KEYS)
        con.execute(f"""
            create temp table joined as
            select
                coalesce(o.window_size, t.window_size) as window_size,
                coalesce(o.aggregation_type, t.aggregation_type) as aggregation_type,
                {", ".join(f"coalesce(o.{k}, t.{k}) as {k}" for k in KEYS if k != "window_size")},
                o.value as our_value, t.value as their_value, t.avg_value as their_avg,
                o.event_count as our_count, t.event_count as their_count,
                o.tenant_id is null as only_theirs, t.tenant_id is null as only_ours,
                case when o.tenant_id is null or t.tenant_id is null then false
                     when o.aggregation_type = 'AVG'
                         then t.avg_value is null
                              or abs(o.value::double - t.avg_value) > {AVG_TOLERANCE}
                     else o.value is distinct from t.value::decimal(38, 18) end as value_differs,
                o.tenant_id is not null and t.tenant_id is not null
                    and o.event_count is distinct from t.event_count as count_differs
            from ours as o
            full outer join theirs as t on {on}
        """)
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
                    sum(value) as total, sum(avg_value) as avg_total
                from theirs group by all
            )
            select coalesce(o.window_size, t.window_size), coalesce(o.aggregation_type,
                t.aggregation_type), o.rows, t.rows, o.events, t.events,
                o.total::varchar, t.total::varchar, o.avg_total, t.avg_total
            from o full outer join t using (window_size, aggregation_type)
            order by 1, 2
        """).fetchall()
        for (window, kind, rows_o, rows_t, ev_o, ev_t, tot_o, tot_t, avg_o, avg_t) in rows:
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
            where only_ours or only_theirs or value_differs or count_differs
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


def _trim(text: str | None) -> str | None:
    if text is None or "." not in text:
        return text
    return text.rstrip("0").rstrip(".")
