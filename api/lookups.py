"""Catalog reads for the API, always scoped to the caller's tenant environment.

A meter or customer of another tenant is simply not found here, exactly like one that does
not exist, so the routes answer both with the same 404.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from api.db import catalog_lookup, catalog_query, environment_scope
from api.deps import Principal
from api.errors import not_found
from api.usage import CustomerCalendar, MeterInfo, environment_calendar
from orchestration.warehouse import Warehouse


@dataclass(frozen=True)
class Customer:
    id: str
    external_id: str
    name: str | None
    timezone: str
    parent_customer_id: str | None


@dataclass(frozen=True)
class Meter:
    id: str
    name: str
    event_name: str
    aggregation_type: str
    aggregation_field: str | None
    aggregation_expression: str | None
    multiplier: Decimal | None
    bucket_size: str | None
    group_by: str | None
    reset_usage: str
    status: str
    definition: dict[str, Any]
    tenant_id: str
    environment_id: str
    loaded_at: datetime | None

    def info(self) -> MeterInfo:
        return MeterInfo(self.tenant_id, self.environment_id, self.id, self.aggregation_type,
                         self.bucket_size, self.reset_usage)


@dataclass(frozen=True)
class Feature:
    id: str
    name: str
    meter_id: str
    unit_singular: str | None
    unit_plural: str | None
    reporting_unit_singular: str | None
    reporting_unit_plural: str | None
    reporting_conversion_rate: Decimal | None


_CUSTOMER_COLUMNS = "customer_id, external_id, name, timezone, parent_customer_id"


def _customers(warehouse: Warehouse, principal: Principal,
               key: tuple[str, str] | None = None) -> list[Customer]:
    """The environment's customers, or those whose `key` column has the value."""
    if key is not None:
        rows = catalog_lookup(warehouse, "catalog_customers", _CUSTOMER_COLUMNS,
                              environment_scope(principal.tenant_id, principal.environment_id),
                              [key], "customer_id")
    else:
        p = warehouse.ph
        rows = catalog_query(
            warehouse,
            f"select {_CUSTOMER_COLUMNS} from {warehouse.table('catalog_customers')} "
            f"where tenant_id = {p} and environment_id = {p} order by customer_id",
            [principal.tenant_id, principal.environment_id],
        )
    return [Customer(*row) for row in rows]


def customer_by_external_id(warehouse: Warehouse, principal: Principal, external_id: str,
                            param: str = "external_customer_id") -> Customer:
    found = _customers(warehouse, principal, ("external_id", external_id))
    if not found:
        raise not_found(f"customer with external id {external_id!r} not found", param)
    return found[0]


def customer_by_id(warehouse: Warehouse, principal: Principal, customer_id: str,
                   param: str = "customer") -> Customer:
    found = _customers(warehouse, principal, ("customer_id", customer_id))
    if not found:
        raise not_found(f"customer {customer_id!r} not found", param)
    return found[0]


def with_descendants(warehouse: Warehouse, principal: Principal,
                     customer: Customer) -> list[Customer]:
    """The customer, then its children, their children, ... (the catalog forbids cycles)."""
    children: dict[str, list[Customer]] = {}
    for other in _customers(warehouse, principal):
        if other.parent_customer_id:
            children.setdefault(other.parent_customer_id, []).append(other)
    family, queue, seen = [], [customer], {customer.id}
    while queue:
        current = queue.pop(0)
        family.append(current)
        for child in children.get(current.id, []):
            if child.id not in seen:
                seen.add(child.id)
                queue.append(child)
    return family


def meters(warehouse: Warehouse, principal: Principal, meter_id: str | None = None) -> list[Meter]:
    p = warehouse.ph
    where, params = "", []
    if meter_id is not None:
        where, params = f" and m.meter_id = {p}", [meter_id]
    rows = catalog_query(
        warehouse,
        "select m.meter_id, m.name, m.event_name, m.aggregation_type, m.aggregation_field, "
        "m.aggregation_expression, m.multiplier, m.bucket_size, m.group_by, m.reset_usage, "
        "m.status, m.definition_json, m.tenant_id, m.environment_id, e.loaded_at "
        f"from {warehouse.table('catalog_meters')} as m "
        f"left join {warehouse.table('catalog_environments')} as e "
        "on m.tenant_id = e.tenant_id and m.environment_id = e.environment_id "
        f"where m.tenant_id = {p} and m.environment_id = {p}{where} order by m.meter_id",
        [principal.tenant_id, principal.environment_id, *params],
    )
    return [Meter(*row[:11], json.loads(row[11]), *row[12:]) for row in rows]


def meter_by_id(warehouse: Warehouse, principal: Principal, meter_id: str,
                param: str = "meter_id") -> Meter:
    found = meters(warehouse, principal, meter_id)
    if not found:
        raise not_found(f"meter {meter_id!r} not found", param)
    return found[0]


def features(warehouse: Warehouse, principal: Principal) -> list[Feature]:
    p = warehouse.ph
    rows = catalog_query(
        warehouse,
        "select feature_id, name, meter_id, unit_singular, unit_plural, reporting_unit_singular, "
        "reporting_unit_plural, reporting_conversion_rate "
        f"from {warehouse.table('catalog_features')} "
        f"where tenant_id = {p} and environment_id = {p} order by feature_id",
        [principal.tenant_id, principal.environment_id],
    )
    return [Feature(*row) for row in rows]


def customer_calendar(warehouse: Warehouse, principal: Principal,
                      external_id: str) -> CustomerCalendar:
    """Timezone and MONTH anchor key of a customer's usage (UTC and '' when unknown)."""
    return environment_calendar(warehouse, principal.tenant_id, principal.environment_id,
                                external_id)
