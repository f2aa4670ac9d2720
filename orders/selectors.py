"""Reads that are more than a `get`: one order with its history, the paginated list, metrics."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from engine.states import ACTIVE
from orders.models import Order, OrderEvent, OrderStatus


class InvalidCursor(ValueError):
    pass


def order_get(order_id: str | UUID) -> Order | None:
    try:
        key = UUID(str(order_id))
    except ValueError:
        return None
    return Order.objects.filter(pk=key).first()


def order_events(order: Order, *, after_seq: int = 0) -> list[OrderEvent]:
    return list(OrderEvent.objects.filter(order_id=order.pk, seq__gt=after_seq).order_by("seq"))


def encode_cursor(order: Order) -> str:
    raw = json.dumps([order.created_at.isoformat(), str(order.pk)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, pk = json.loads(raw)
        when = parse_datetime(created)
        if when is None:
            raise ValueError(created)
        return when, UUID(pk)
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise InvalidCursor("the cursor is not one this API gave out") from error


def order_list(
    *,
    status: str | None = None,
    wallet_address: str | None = None,
    order_type: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    page: int | None = None,
) -> tuple[list[Order], str | None, int | None]:
    """Newest first. Keyset pagination with `cursor` (stable under inserts), or `page` numbers.

    Returns `(orders, next_cursor, total)`; `total` only in page mode (counting costs a scan).
    """
    query = Order.objects.all()
    if status:
        query = query.filter(status=status)
    if wallet_address:
        query = query.filter(wallet_address=wallet_address)
    if order_type:
        query = query.filter(order_type=order_type)
    query = query.order_by("-created_at", "-id")
    total = None
    if page is not None:
        total = query.count()
        rows = list(query[(page - 1) * limit : page * limit + 1])
    else:
        if cursor:
            created, pk = decode_cursor(cursor)
            query = query.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=pk))
        rows = list(query[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]) if more and rows else None
    return rows, next_cursor, total


def order_metrics() -> dict[str, Any]:
    """Counts per status, the last minute's outcomes, queue depth and end-to-end latency."""
    from engine.queue import queue_depth

    now = timezone.now()
    by_status = dict(
        Order.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    counts = {s: by_status.get(s, 0) for s in OrderStatus.values}
    last_minute = dict(
        OrderEvent.objects.filter(
            created_at__gte=now - timedelta(minutes=1),
            status__in=[OrderStatus.CONFIRMED, OrderStatus.FAILED],
        )
        .exclude(payload__contains={"willRetry": True})
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)
            FROM (
                SELECT extract(epoch FROM (updated_at - created_at)) * 1000 AS ms
                FROM orders_order
                WHERE status IN ('confirmed', 'failed', 'cancelled', 'expired')
                  AND next_attempt_at IS NULL
                  AND updated_at >= %s
                ORDER BY updated_at DESC
                LIMIT 1000
            ) recent
            """,
            [now - timedelta(minutes=15)],
        )
        p50, p95 = cursor.fetchone()
    return {
        "queue": {
            "waiting": queue_depth(),
            "active": sum(counts[s] for s in ACTIVE),
        },
        "orders": counts,
        "lastMinute": {
            "confirmed": last_minute.get(OrderStatus.CONFIRMED, 0),
            "failed": last_minute.get(OrderStatus.FAILED, 0),
        },
        "latencyMs": {
            "p50": round(p50, 1) if p50 is not None else None,
            "p95": round(p95, 1) if p95 is not None else None,
        },
    }
