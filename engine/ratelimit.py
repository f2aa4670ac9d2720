"""A global rate limit for starting orders, shared by every worker on every node.

Celery's own `rate_limit` is per worker instance, and it would count retried attempts against
new orders. This is GCRA (the generic cell rate algorithm) in one Redis script: each call reserves
the next free slot and says how long to wait for it, so N orders are spaced exactly 1/rate apart
however many workers ask, and a retry never spends an order's slot.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings

from engine.redis import redis_client

_GCRA = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
local wait = allow_at - now
if wait < 0 then wait = 0 end
local new_tat = tat + interval
redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return tostring(wait)
"""

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> float | None:
    """`"100/m"` → 1.666… per second; `"0"`, `""` or `None` → no limit."""
    if not rate or rate.strip() in {"0", "none", "None"}:
        return None
    count, _, period = rate.partition("/")
    seconds = _PERIODS[period.strip()[-1]] * float(period.strip()[:-1] or 1)
    per_second = float(count) / seconds
    if per_second <= 0:
        return None
    return per_second


@cache
def _script():  # type: ignore[no-untyped-def]
    return redis_client().register_script(_GCRA)


def rate_reserve(*, key: str = "orders", rate: str | None = None, burst: int = 1) -> float:
    """Reserve the next slot; returns the seconds to wait before starting (0.0 = start now)."""
    per_second = parse_rate(settings.ORDER_RATE_LIMIT if rate is None else rate)
    if per_second is None:
        return 0.0
    client = redis_client()
    wait = _script()(keys=[f"oe:ratelimit:{key}"], args=[1.0 / per_second, burst], client=client)
    return float(wait)
