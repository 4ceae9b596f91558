"""Dependencies of the routes: settings, a read-only warehouse per request, the caller.

Authentication: the API key arrives as `x-api-key: <key>` (Flexprice),
`Authorization: Bearer <key>` (Stripe, Flexprice SDKs) or HTTP Basic with the key as user
name (`curl -u key:`). Its sha256 is looked up in `catalog_api_keys`; the key's tenant and
environment scope every query the request makes. Missing, unknown and revoked keys are 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from api.db import ReadOnlyWarehouse, catalog_query
from api.errors import unauthorized
from api.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_warehouse(request: Request) -> Iterator[ReadOnlyWarehouse]:
    with request.app.state.reader.open() as warehouse:
        yield warehouse


SettingsDep = Annotated[Settings, Depends(get_settings)]
WarehouseDep = Annotated[ReadOnlyWarehouse, Depends(get_warehouse)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant environment an API key belongs to."""

    tenant_id: str
    environment_id: str
    key_name: str


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The API key of a request, from x-api-key or the Authorization header."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            user = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user.partition(":")[0] or None
    return None


def authenticate(
    warehouse: WarehouseDep,
    x_api_key: Annotated[str | None, Header(description="API key (Flexprice)")] = None,
    authorization: Annotated[
        str | None, Header(description="Bearer <API key> (Stripe, SDKs)")
    ] = None,
) -> Principal:
    key = presented_key(x_api_key, authorization)
    if key is None:
        raise unauthorized("missing API key: send it as the x-api-key header or as "
                           "Authorization: Bearer <key>")
    p = warehouse.ph
    rows = catalog_query(
        warehouse,
        f"select tenant_id, environment_id, name, revoked "
        f"from {warehouse.table('catalog_api_keys')} where key_sha256 = {p} "
        "order by revoked, tenant_id, environment_id",
        [key_sha256(key)],
    )
    if not rows:
        raise unauthorized("unknown API key")
    active = [row for row in rows if not row[3]]
    if not active:
        raise unauthorized("this API key has been revoked")
    if len({(row[0], row[1]) for row in active}) > 1:
        raise unauthorized("this API key is registered for several environments; give each "
                           "environment its own key")
    tenant_id, environment_id, name, _ = active[0]
    return Principal(tenant_id, environment_id, name)


PrincipalDep = Annotated[Principal, Depends(authenticate)]
