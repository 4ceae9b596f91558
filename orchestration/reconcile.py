"""Reconciliation invariants over the warehouse, shared by asset checks, tests and the soak."""

from __future__ import annotations

from orchestration.warehouse import Warehouse


def ingest_count_mismatches(warehouse: Warehouse) -> list[tuple]:
    """Files whose rows read differ from rows accepted + rows rejected."""
    return warehouse.query(
        "select tenant_id, environment_id, source_file, rows_read, rows_accepted, rows_rejected "
        f"from {warehouse.table('raw_ingested_files')} "
        "where rows_read <> rows_accepted + rows_rejected"
    )


def events_not_accounted_for(warehouse: Warehouse) -> int:
    """Accepted events neither counted by a meter nor listed as unmatched."""
    t = warehouse.table
    return warehouse.query(
        f"""
        select count(*) from {t('int_events_deduplicated')} as events
        where not exists (
            select 1 from {t('int_meter_events')} as counted
            where counted.tenant_id = events.tenant_id
              and counted.environment_id = events.environment_id
              and counted.event_id = events.event_id)
          and not exists (
            select 1 from {t('fct_unmatched_events')} as unmatched
            where unmatched.tenant_id = events.tenant_id
              and unmatched.environment_id = events.environment_id
              and unmatched.event_id = events.event_id)
        """
    )[0][0]


def additive_totals_mismatches(warehouse: Warehouse) -> list[tuple]:
    """(meter, customer) pairs of additive meters whose totals differ between window sizes."""
    return warehouse.query(
        f"""
        with totals as (
            select tenant_id, environment_id, meter_id, external_customer_id, window_size,
                   sum(value) as total
            from {warehouse.table('fct_meter_usage')}
            where aggregation_type in ('COUNT', 'SUM', 'SUM_WITH_MULTIPLIER')
            group by 1, 2, 3, 4, 5
        )
        select tenant_id, environment_id, meter_id, external_customer_id,
               min(total), max(total)
        from totals
        group by 1, 2, 3, 4
        having min(total) <> max(total) or count(*) <> 10
        """
    )


def priced_totals_mismatches(warehouse: Warehouse) -> list[tuple]:
    """Line items whose point costs, summed per window size, differ between window sizes or
    from the items' charged costs (Σ over billing periods of total_cost − true_up_amount;
    the true-up is charged at the period end, not in a point).

    WEIGHTED_SUM line items are left out: their cumulative cost also moves between events,
    so their points are not differences of one cost curve sampled at window edges.
    """
    points = warehouse.table("fct_priced_usage_points")
    periods = warehouse.table("fct_priced_usage")
    meters = warehouse.table("catalog_meters")
    return warehouse.query(
        f"""
        with charged as (
            select periods.tenant_id, periods.environment_id, periods.subscription_id,
                   periods.price_id,
                   sum(periods.total_cost - coalesce(periods.true_up_amount, 0)) as charged
            from {periods} as periods
            inner join {meters} as meters
                on periods.tenant_id = meters.tenant_id
                and periods.environment_id = meters.environment_id
                and periods.meter_id = meters.meter_id
            where meters.aggregation_type <> 'WEIGHTED_SUM'
            group by 1, 2, 3, 4
        ),
        point_totals as (
            select tenant_id, environment_id, subscription_id, price_id, window_size,
                   sum(cost) as total
            from {points}
            group by 1, 2, 3, 4, 5
        )
        select charged.tenant_id, charged.environment_id, charged.subscription_id,
               charged.price_id, point_totals.window_size, point_totals.total, charged.charged
        from charged
        inner join point_totals
            on charged.tenant_id = point_totals.tenant_id
            and charged.environment_id = point_totals.environment_id
            and charged.subscription_id = point_totals.subscription_id
            and charged.price_id = point_totals.price_id
        where point_totals.total <> charged.charged
        """
    )
