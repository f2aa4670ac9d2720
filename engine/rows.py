"""The engine's rows as its hottest statements need them: the columns of an event that the
single-statement writes fill (`engine.services._insert_created`, `engine.transitions._write`,
both built with config.sql), and an order by id (`order_load`), with the SQL the ORM compiled
once."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db.models import Field

from config.sql import row_load
from orders.models import Order, OrderEvent


@cache
def event_fields() -> tuple[Field, ...]:
    """An event's columns apart from its id and its order."""
    return tuple(
        OrderEvent._meta.get_field(n) for n in ("seq", "status", "attempt", "payload", "created_at")
    )


def order_load(order_id: Any, *, lock: bool = False) -> Order | None:
    """`Order.objects.filter(pk=order_id).first()` (`select_for_update()` with `lock`, inside the
    caller's transaction), without compiling the query again: the pipeline loads an order three
    times per attempt, and compiling its 30-column SELECT cost more CPU than running it."""
    order: Order | None = row_load(Order, "pk", order_id, lock=lock)
    return order
