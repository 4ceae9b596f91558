"""Which builds are batch runs: a customer whose calendar moved forces a full rebuild (its
windows move); a new customer does not (it has no windows yet)."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestration.build_state import plan_build, record_build
from orchestration.warehouse import Warehouse

CALENDARS = [("acme", "production", "cust_a", "Europe/Paris", ""),
             ("acme", "production", "cust_b", "UTC", "05 00:00")]


def _warehouse(config, calendars) -> None:
    with Warehouse(config) as warehouse:
        warehouse.execute(f"create or replace table {warehouse.table('raw_events')} "
                          "(ingest_seq bigint)")
        warehouse.execute(f"insert into {warehouse.table('raw_events')} "
                          "select range from range(1, 11)")
        warehouse.execute(f"create or replace table {warehouse.table('customer_usage_calendars')}"
                          " (tenant_id varchar, environment_id varchar, "
                          "external_customer_id varchar, timezone varchar, "
                          "month_anchor_key varchar)")
        for row in calendars:
            warehouse.execute(f"insert into {warehouse.table('customer_usage_calendars')} "
                              "values (?, ?, ?, ?, ?)", list(row))
        warehouse.commit()


def _plan_after_first_build(config, calendars):
    _warehouse(config, CALENDARS)
    with Warehouse(config) as warehouse:
        first = plan_build(warehouse)
        assert first.full and first.reason == "no completed build recorded"
        assert first.dbt_args() == ["--full-refresh"]  # unit tests included
        record_build(warehouse, first, datetime.now(UTC))
    _warehouse(config, calendars)
    with Warehouse(config) as warehouse:
        return plan_build(warehouse)


def test_unchanged_calendars_give_a_batch_run(duckdb_config):
    plan = _plan_after_first_build(duckdb_config, CALENDARS)
    assert not plan.full and plan.batch_from == 10
    # same SQL as the recorded build, whose unit tests passed: a batch run skips them
    args = plan.dbt_args()
    assert args[args.index("--exclude-resource-type") + 1] == "unit_test"
    assert '"mh_batch_from": 10' in args[args.index("--vars") + 1]


def test_a_new_customer_gives_a_batch_run(duckdb_config):
    plan = _plan_after_first_build(
        duckdb_config, [*CALENDARS, ("acme", "production", "cust_new", "Asia/Tokyo", "")])
    assert not plan.full


def test_a_moved_calendar_gives_a_full_build(duckdb_config):
    plan = _plan_after_first_build(
        duckdb_config, [CALENDARS[0], ("acme", "production", "cust_b", "UTC", "06 00:00")])
    assert plan.full and "acme/production/cust_b" in plan.reason


def test_a_customer_gone_gives_a_full_build(duckdb_config):
    plan = _plan_after_first_build(duckdb_config, CALENDARS[:1])
    assert plan.full and "calendar" in plan.reason
