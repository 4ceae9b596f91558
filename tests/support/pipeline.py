"""Build a warehouse from generated cases and read results back, for reference comparisons.

A *case* is one tenant: a catalog environment (meters, customers, subscriptions) and its
events, each with the ingest_seq it would have got. Many cases share one warehouse and one
dbt build, because dbt start-up costs seconds (DEVELOPERS.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from models.catalog import Catalog, CatalogFile
from models.reference import RefEvent, RefMeter
from orchestration.calendar import write_calendars
from orchestration.catalog_tables import write_catalog
from orchestration.defs.dbt.project import run_dbt
from orchestration.ingest import ensure_raw_tables
from orchestration.subscription_periods import write_subscription_periods
from orchestration.warehouse import Warehouse, WarehouseConfig


@dataclass
class Case:
    """One tenant environment: its catalog (YAML-shaped dict) and its event versions."""

    tenant_id: str
    catalog: dict[str, Any]
    events: list[RefEvent] = field(default_factory=list)

    @property
    def environment_id(self) -> str:
        return self.catalog["environment_id"]

    def ref_meters(self) -> list[RefMeter]:
        return [ref_meter(self.tenant_id, self.environment_id, m) for m in self.catalog["meters"]]

    def customer_timezone(self, external_id: str) -> str:
        for customer in self.catalog.get("customers", []):
            if customer["external_id"] == external_id:
                return customer.get("timezone", "UTC")
        return "UTC"

    def customer_anchor(self, external_id: str) -> datetime | None:
        ids = {c["id"]: c["external_id"] for c in self.catalog.get("customers", [])}
        subs = sorted(
            (s for s in self.catalog.get("subscriptions", [])
             if ids.get(s["customer_id"]) == external_id),
            key=lambda s: (s["start_date"], s["id"]),
        )
        if not subs:
            return None
        return datetime.fromisoformat(subs[0].get("billing_anchor") or subs[0]["start_date"])


def ref_meter(tenant_id: str, environment_id: str, meter: dict[str, Any]) -> RefMeter:
    agg = meter["aggregation"]
    multiplier = agg.get("multiplier")
    return RefMeter(
        meter_id=meter["id"],
        event_name=meter["event_name"],
        aggregation_type=agg["type"],
        field=agg.get("field"),
        multiplier=Decimal(str(multiplier)) if multiplier is not None else None,
        bucket_size=agg.get("bucket_size"),
        group_by=agg.get("group_by"),
        filters=[(f["key"], [str(v) for v in f["values"]]) for f in meter.get("filters", [])],
        reset_usage=meter.get("reset_usage", "BILLING_PERIOD"),
        tenant_id=tenant_id,
        environment_id=environment_id,
    )


def _events_table(cases: list[Case]) -> pa.Table:
    rows = [e for case in cases for e in case.events]
    now = datetime.now(UTC)
    return pa.table({
        "tenant_id": [e.tenant_id for e in rows],
        "environment_id": [e.environment_id for e in rows],
        "event_id": [e.event_id for e in rows],
        "event_name": [e.event_name for e in rows],
        "external_customer_id": [e.external_customer_id for e in rows],
        "customer_id": pa.array([None] * len(rows), pa.string()),
        "source": [e.source for e in rows],
        "event_timestamp": pa.array([e.timestamp for e in rows], pa.timestamp("us", tz="UTC")),
        "properties": [json.dumps(e.properties, default=str) for e in rows],
        "ingest_seq": pa.array([e.ingest_seq for e in rows], pa.int64()),
        "ingested_at": pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")),
        "source_file": ["generated"] * len(rows),
        "source_line": pa.array(list(range(1, len(rows) + 1)), pa.int64()),
        "content_hash": [str(e.ingest_seq) for e in rows],
    })


def build_warehouse(config: WarehouseConfig, cases: list[Case]) -> None:
    """Catalog + events of all cases into the warehouse, calendars, then one dbt build."""
    catalog = Catalog(environments=[CatalogFile.model_validate(c.catalog) for c in cases])
    with Warehouse(config) as warehouse:
        write_catalog(warehouse, catalog)
        ensure_raw_tables(warehouse)
        with warehouse.transaction():
            warehouse.append_arrow("raw_events", _events_table(cases))
        write_calendars(warehouse)
        write_subscription_periods(warehouse)
    run_dbt(["build"], config)
