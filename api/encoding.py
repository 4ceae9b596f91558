"""How numbers and instants leave the API.

Flexprice shapes carry decimals as JSON strings in canonical form (DESIGN 3b.11: no exponent,
no trailing zeros). Stripe shapes carry numbers; `ExactJSONResponse` writes a Decimal as a
JSON number with all its digits instead of going through a float.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi.responses import JSONResponse

from models.catalog import canonical_decimal_text

_CENTS = Decimal("0.01")


def decimal_text(value: Decimal | int) -> str:
    """Canonical decimal text: "5", "1.5", "-0.25", "0"; never an exponent."""
    return canonical_decimal_text(Decimal(value))


def display_text(value: Decimal, conversion_rate: Decimal) -> str:
    """`total_usage_display`: value × rate, rounded half away from zero to 2 decimals."""
    return decimal_text((value * conversion_rate).quantize(_CENTS, rounding=ROUND_HALF_UP))


def rfc3339(value: datetime) -> str:
    """An instant in UTC as RFC 3339 with a Z: 2024-01-01T00:00:00Z."""
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return text + "Z"


def unix(value: datetime) -> int:
    return int(value.timestamp())


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        out.append(decimal_text(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, datetime):
        out.append(json.dumps(rfc3339(value)))
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def exact_json(value: Any) -> str:
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


class ExactJSONResponse(JSONResponse):
    """JSON where Decimals are numbers with every digit (Stripe's numeric values)."""

    def render(self, content: Any) -> bytes:
        if hasattr(content, "model_dump"):
            content = content.model_dump(mode="python")
        return exact_json(content).encode("utf-8")
