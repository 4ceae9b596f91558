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
