"""JSON text on the engine's hot paths, written by orjson: the JSON columns PostgreSQL stores
(`config.db`), the events sent to WebSocket clients and the orders' Redis copies. On the engine's
own payloads (an order's events, its route and transaction, a pool's bins) it encodes about six
times faster than the standard library: a tenth of the task's CPU per order in `bench.census
--together 16` (README, Performance).

The same JSON as `json.dumps(value, separators=(",", ":"))`: compact, dict keys that are not
strings written as strings, and a value JSON cannot hold (a Decimal, a set, a model) refused with
a TypeError. What orjson refuses and the standard library writes, an integer past 64 bits, is
written by the standard library. Two differences the engine never meets: non-ASCII text comes out
as UTF-8 rather than as \\u escapes (the same JSON to any reader), and a float NaN or infinity as
null rather than as the `NaN` PostgreSQL would refuse. It also writes datetimes and UUIDs (as ISO
text), which the standard library refuses.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumpb(value: Any) -> bytes:
    """`value` as compact JSON, UTF-8 encoded."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # An integer past 64 bits (the standard library writes it), or a value nothing can
        # write: then the standard library raises its own TypeError, as it always did here.
        return json.dumps(value, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    return dumpb(value).decode()
