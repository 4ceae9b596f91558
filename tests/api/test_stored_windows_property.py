"""Usage read from the stored windows of fct_meter_usage (`api.usage.stored_window_usage`)
equals usage merged from the minute states and the plain-Python reference, on the random
tenants of tests/dbt/test_usage_matches_reference.py, on DuckDB and on Postgres.

Ranges are drawn on window boundaries (only stored windows are read), on hours of the
customer's calendar (partial windows at the ends come from the stored HOUR windows, for the
aggregations those merge into) and anywhere on the minute (partial windows at the ends come
from the minute states); windows are in each
customer's own calendar, which is when the stored windows serve a request.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.encoding import decimal_text
from api.usage import customer_calendar, load_meter, meter_usage, stored_windows_fit
from models import reference as ref
from models import windows
from orchestration.warehouse import Warehouse, WarehouseConfig
from tests.dbt.test_usage_matches_reference import SETTINGS, WINDOWS, _close, _periods, case_lists
from tests.support.pipeline import build_warehouse

pytestmark = pytest.mark.slow


def _answer(usage) -> tuple:
    return (decimal_text(usage.total), usage.event_count,
            [(p.start, p.end, decimal_text(p.value), p.event_count) for p in usage.points])


def check_stored_windows(warehouse: Warehouse, all_cases, draw) -> int:
    """Compare both paths and the reference; the number of answers that used stored windows."""
    stored = 0
    for case in all_cases:
        latest = ref.deduplicate(case.events)
        if not latest:
            continue
        times = sorted(e.timestamp for e in latest)
        for meter in case.ref_meters():
            info = load_meter(warehouse, case.tenant_id, case.environment_id, meter.meter_id)
            for customer in sorted({e.external_customer_id for e in latest}):
                calendar = customer_calendar(warehouse, info, customer)
                tz = calendar.timezone
                anchor = windows.anchor_from_key(calendar.month_anchor_key, tz)
                window = draw(st.sampled_from(WINDOWS))
                lo = times[0].replace(second=0, microsecond=0) - timedelta(
                    minutes=draw(st.integers(0, 3000)))
                on = draw(st.sampled_from(["window", "hour", "minute"]))
                if on == "window":  # on window boundaries
                    lo = windows.bucket_start(lo, window, tz, anchor)
                    hi = lo
                    for _ in range(draw(st.integers(1, 40 if window != "MINUTE" else 3000))):
                        hi = windows.next_bucket_start(hi, window, tz, anchor)
                elif on == "hour":  # partial windows of whole hours: from stored HOUR windows
                    lo = windows.bucket_start(lo, "HOUR", tz)
                    hi = windows.bucket_start(lo + timedelta(hours=draw(st.integers(1, 24 * 45))),
                                              "HOUR", tz)
                    hi = hi if hi > lo else windows.next_bucket_start(lo, "HOUR", tz)
                else:
                    hi = lo + timedelta(minutes=draw(st.integers(1, 60 * 24 * 45)))
                fast = meter_usage(warehouse, info, customer, lo, hi, window, tz, anchor)
                slow = meter_usage(warehouse, info, customer, lo, hi, window, tz, anchor,
                                   stored_windows=False)
                context = (case.tenant_id, meter, customer, lo, hi, window, tz, anchor)
                assert _answer(fast) == _answer(slow), context
                mine = [e for e in latest if e.external_customer_id == customer]
                want = ref.usage(meter, mine, lo, hi, window, tz, anchor,
                                 _periods(case, customer),
                                 bucket_tz=case.customer_timezone(customer))
                assert fast.event_count == want.event_count, context
                assert _close(meter.aggregation_type, fast.total, want.total,
                              Decimal("1e-20")), (context, fast.total, want.total)
                assert [(p.start, p.event_count) for p in fast.points] == [
                    (p.start, p.event_count) for p in want.points], context
                for g, e in zip(fast.points, want.points, strict=True):
                    assert _close(meter.aggregation_type, g.value, e.value,
                                  Decimal("1e-20")), (context, g, e)
                first = windows.bucket_start(lo, window, tz, anchor)
                whole = (first if first == lo
                         else windows.next_bucket_start(first, window, tz, anchor))
                if (stored_windows_fit(info.aggregation_type, info, calendar, window, tz, anchor)
                        and windows.next_bucket_start(whole, window, tz, anchor) <= hi):
                    stored += 1
    return stored


def _run(config: WarehouseConfig, all_cases, data) -> None:
    build_warehouse(config, all_cases)
    with Warehouse(config) as warehouse:
        stored = check_stored_windows(warehouse, all_cases, data.draw)
    print(f"{stored} answers read stored windows")
    if any(case.events for case in all_cases):
        assert stored > 0


@SETTINGS
@given(all_cases=case_lists(), data=st.data())
def test_duckdb_stored_windows_match_minute_states(tmp_path_factory, all_cases, data):
    path = tmp_path_factory.mktemp("stored") / "warehouse.duckdb"
    _run(WarehouseConfig(target="duckdb", duckdb_path=str(path)), all_cases, data)


@pytest.mark.postgres
@SETTINGS
@given(all_cases=case_lists(), data=st.data())
def test_postgres_stored_windows_match_minute_states(pg_server, all_cases, data):
    with pg_server() as config:
        _run(config, all_cases, data)
