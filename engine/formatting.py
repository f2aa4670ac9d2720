"""How the engine writes times and numbers for clients: ISO-8601 UTC with milliseconds, and
decimal strings, never floats."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decimal_str(value: Decimal | None, places: int | None = None) -> str | None:
    """`Decimal("1.5"), 9` → `"1.500000000"`; no exponent notation ever."""
    if value is None:
        return None
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    return format(value, "f")


def percent_str(bps: int) -> str:
    """Basis points as a percent string with at least one decimal: 100 → "1.0", 125 → "1.25"."""
    text = format((Decimal(bps) / 100).quantize(Decimal("0.01")), "f").rstrip("0")
    return text + "0" if text.endswith(".") else text
