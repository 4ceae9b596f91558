"""Errors in the spec's ErrorResponse shape: {code, message, http_status_code, details}.

Every failure the API returns goes through here: our own `ApiError`s, FastAPI's request
validation (bad types, unknown enum values, malformed JSON), unknown routes and methods, a
warehouse that is busy or gone (503), and, last, anything unexpected (a 500 that names no
internals). Bad input is always caught before it can reach the catch-all.

Stripe-compatible endpoints (`/v1/billing/...`) also carry Stripe's `error` object, so that
Stripe client libraries raise their usual exceptions with our message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("meterhouse.api")

VALIDATION_ERROR = "validation_error"
NOT_FOUND = "not_found"
PERMISSION_DENIED = "permission_denied"
INVALID_OPERATION = "invalid_operation"
SERVICE_UNAVAILABLE = "service_unavailable"
INTERNAL_ERROR = "internal_error"


class ErrorResponse(BaseModel):
    """`errors.ErrorResponse` of the Flexprice specs."""

    code: str = Field(examples=[VALIDATION_ERROR])
    message: str
    http_status_code: int
    details: dict[str, Any] = Field(default_factory=dict)


class ApiError(Exception):
    """An error to return as an ErrorResponse."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.param = param


def bad_request(message: str, param: str | None = None, **details: Any) -> ApiError:
    if param is not None:
        details.setdefault("field", param)
    return ApiError(400, VALIDATION_ERROR, message, details, param)


def not_found(message: str, param: str | None = None) -> ApiError:
    return ApiError(404, NOT_FOUND, message, {"field": param} if param else {}, param)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, PERMISSION_DENIED, message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, SERVICE_UNAVAILABLE, message)


# Error responses every route documents in the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key"},
    404: {"model": ErrorResponse, "description": "Unknown meter or customer"},
    503: {"model": ErrorResponse, "description": "Warehouse unavailable; retry"},
}

_STRIPE_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                 404: "invalid_request_error"}


def error_response(request: Request | None, status: int, code: str, message: str,
                   details: dict | None = None, param: str | None = None) -> JSONResponse:
    body: dict[str, Any] = ErrorResponse(
        code=code, message=message, http_status_code=status, details=details or {}
    ).model_dump()
    if request is not None and request.url.path.startswith("/v1/billing/"):
        stripe_error: dict[str, Any] = {
            "type": _STRIPE_TYPES.get(status, "api_error"), "message": message,
        }
        if param:
            stripe_error["param"] = param
        body["error"] = stripe_error
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple | list) -> str:
    """`('body', 'meter_ids', 0)` -> `meter_ids[0]`; the body/query prefix says nothing."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_message(errors: list[dict]) -> tuple[str, list[dict[str, str]]]:
    """A sentence naming every problem, and the problems as {field, message} objects."""
    problems: list[dict[str, str]] = []
    for error in errors:
        kind = error.get("type", "")
        field = _location(error.get("loc", ()))
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            problems.append({"field": "body", "message": f"request body is not valid JSON "
                                                         f"({reason})"})
            continue
        if kind == "missing" and not field:
            problems.append({"field": "body", "message": "a JSON request body is required"})
            continue
        message = str(error.get("msg", "invalid value"))
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append({"field": field or "body", "message": message})
    text = "; ".join(
        p["message"] if p["field"] == "body" else f"{p['field']}: {p['message']}"
        for p in problems
    )
    return text or "invalid request", problems


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure to an ErrorResponse."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, problems = validation_message(list(exc.errors()))
        param = problems[0]["field"] if len(problems) == 1 else None
        return error_response(request, 400, VALIDATION_ERROR, message,
                              {"errors": problems}, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(request, 404, NOT_FOUND,
                                  f"no route {request.method} {request.url.path}")
        if exc.status_code == 405:
            return error_response(request, 405, INVALID_OPERATION,
                                  f"method {request.method} is not allowed on "
                                  f"{request.url.path}")
        code = VALIDATION_ERROR if exc.status_code < 500 else INTERNAL_ERROR
        return error_response(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, INTERNAL_ERROR,
                              "internal error; the server log has the details")
