"""What a run built, printed for people: counts, reconciliation, where to look next."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orchestration.warehouse import Warehouse


def _count(warehouse: Warehouse, table: str, where: str = "") -> int:
    if not warehouse.table_exists(table):
        return 0
    return warehouse.query(f"select count(*) from {warehouse.table(table)} {where}")[0][0]


def print_summary(warehouse: Warehouse, dataset: Any | None = None) -> None:
    t = warehouse.table
    read = warehouse.query(
        "select coalesce(sum(rows_read), 0), coalesce(sum(rows_accepted), 0), "
        f"coalesce(sum(rows_rejected), 0), coalesce(sum(rows_duplicate), 0), count(*) "
        f"from {t('raw_ingested_files')}"
    )[0]
    print(f"  files ingested        {read[4]:>12,}")
    print(f"  rows read             {read[0]:>12,}")
    print(f"  accepted              {read[1]:>12,}   (identical re-sends: {read[3]:,})")
    print(f"  rejected              {read[2]:>12,}   -> table raw_event_rejects")
    print(f"  distinct events       {_count(warehouse, 'int_events_deduplicated'):>12,}")
    print(f"  unmatched by a meter  {_count(warehouse, 'fct_unmatched_events'):>12,}"
          "   -> table fct_unmatched_events")
    print(f"  value errors          {_count(warehouse, 'fct_meter_event_errors'):>12,}"
          "   -> table fct_meter_event_errors")
    print("  meter_usage rows by window size (table fct_meter_usage):")
    for window, rows in warehouse.query(
        f"select window_size, count(*) from {t('fct_meter_usage')} group by 1 order by 2 desc"
    ):
        print(f"    {window:<8} {rows:>12,}")
    rejects = warehouse.query(
        f"select source_file, source_line, reason from {t('raw_event_rejects')} "
        "order by source_file, source_line limit 3"
    )
    if rejects:
        print("  first rejects:")
        for file, line, reason in rejects:
            print(f"    {file}:{line}: {reason}")
    sample = warehouse.query(
        f"select meter_id, external_customer_id, window_start, value from {t('fct_meter_usage')} "
        "where window_size = 'DAY' order by event_count desc limit 3"
    )
    if sample:
        print("  busiest customer-days:")
        for meter, customer, start, value in sample:
            shown = value.quantize(Decimal("0.000001")).normalize()
            print(f"    {meter} {customer} {start:%Y-%m-%d}: {shown:f}")
    if warehouse.is_duckdb:
        path = warehouse.config.duckdb_path
        print("\nLook at it:")
        print(f"  python -c \"import duckdb; print(duckdb.connect('{path}', read_only=True)"
              ".sql('from fct_meter_usage limit 10'))\"")
        print(f"  MH_DUCKDB_PATH={path} .venv/bin/dagster dev    # Dagster UI, port 3000")
        print("  any SQL/BI tool: open the DuckDB file read-only")
