"""The read API application: `create_app(settings)`; `meterhouse serve` runs it with uvicorn.

Flexprice-compatible routes (POST /v1/meter-usage/analytics, POST /v1/events/analytics,
GET /v1/meters[/{id}]) and Stripe-compatible ones (GET /v1/billing/analytics/meter_usage,
GET /v1/billing/meters/{id}/event_summaries), read-only over the serving tables.
OpenAPI at /openapi.json, docs at /docs, the usage dashboard at /dashboard (api/dashboard/).
Design: docs/ARCHITECTURE.md, "Read API".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.db import database_error, make_reader
from api.errors import error_response, install_error_handlers
from api.routers import events, meter_usage, meters, stripe
from api.settings import Settings

DASHBOARD_DIR = Path(__file__).parent / "dashboard"

DESCRIPTION = """
Exact usage analytics over Meterhouse's serving tables, in the shapes of the Flexprice and
Stripe APIs. Authenticate with `x-api-key: <key>` or `Authorization: Bearer <key>`; a key
sees its own tenant environment only. Decimals are strings (Flexprice) or exact numbers
(Stripe). Ranges are half-open `[start, end)` and minute-aligned.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    reader = make_reader(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        reader.close()

    app = FastAPI(title="Meterhouse read API", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.reader = reader
    install_error_handlers(app)
    _install_database_errors(app)
    for module in (meter_usage, events, meters, stripe):
        app.include_router(module.router)

    @app.get("/health", tags=["Health"], summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # The usage dashboard: static files calling the endpoints above with the user's key.
    @app.get("/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse("/dashboard/" + (f"?{query}" if query else ""))

    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
    return app


def _install_database_errors(app: FastAPI) -> None:
    """Engine errors: 503 when the warehouse is busy, gone or not built yet, else 500."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        error = database_error(exc)
        return error_response(request, error.status, error.code, error.message)

    try:
        import duckdb

        app.add_exception_handler(duckdb.Error, handler)
    except ImportError:  # pragma: no cover
        pass
    try:
        import psycopg2

        app.add_exception_handler(psycopg2.Error, handler)
    except ImportError:  # pragma: no cover
        pass
