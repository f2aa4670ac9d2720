"""The engine's rows as its hottest statements need them: the columns of an event that the
single-statement writes fill (`engine.services._insert_created`, `engine.transitions._write`,
both built with config.sql), an order by id (`order_load`), with the SQL the ORM compiled
once, and an order locked again without reading it again when it has not changed
(`order_relock`; `orders_relock` for orders executed together)."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import transaction
from django.db.models import Field

from config.sql import require_transaction, row_load
from orders.models import Order, OrderEvent


@cache
def event_fields() -> tuple[Field, ...]:
    """An event's columns apart from its id, its order and its time (`event_time`)."""
    return tuple(OrderEvent._meta.get_field(n) for n in ("seq", "status", "attempt", "payload"))


def event_time() -> Field:
    """An event's time: the time of the statement that writes it (config.sql.CLOCK)."""
    return OrderEvent._meta.get_field("created_at")


def order_load(order_id: Any, *, lock: bool = False) -> Order | None:
    """`Order.objects.filter(pk=order_id).first()` (`select_for_update()` with `lock`, inside the
    caller's transaction), without compiling the query again: the pipeline loads an order three
    times per attempt, and compiling its 30-column SELECT cost more CPU than running it."""
    order: Order | None = row_load(Order, "pk", order_id, lock=lock)
    return order


@cache
def _relock_sql() -> str:
    quote = transaction.get_connection().ops.quote_name
    meta = Order._meta
    return (
        f"SELECT {quote(meta.get_field('last_seq').column)}, "
        f"{quote(meta.get_field('updated_at').column)} FROM {quote(meta.db_table)} "
        f"WHERE {quote(meta.pk.column)} = %s FOR UPDATE"
    )


def order_relock(order: Order) -> Order | None:
    """The order's row locked (`SELECT … FOR UPDATE`, inside the caller's transaction): `order`
    itself if the row is still the version it was read at, else the row read again. None if the
    order is gone.

    Every write to an order moves its `updated_at` (and every transition its `last_seq`), so a
    row whose two match `order`'s holds what `order` holds: the pipeline locks an order it
    has just read or just written without reading its 30 columns and their JSON again."""
    connection = transaction.get_connection()
    require_transaction(connection)
    with connection.cursor() as cursor:
        cursor.execute(_relock_sql(), [Order._meta.pk.get_db_prep_value(order.pk, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    if row == (order.last_seq, order.updated_at):
        return order
    return order_load(order.pk, lock=True)


@cache
def _relock_many_sql() -> str:
    quote = transaction.get_connection().ops.quote_name
    meta = Order._meta
    pk = quote(meta.pk.column)
    return (
        f"SELECT {pk}, {quote(meta.get_field('last_seq').column)}, "
        f"{quote(meta.get_field('updated_at').column)} FROM {quote(meta.db_table)} "
        f"WHERE {pk} = ANY(%s) ORDER BY {pk} FOR UPDATE"
    )


def orders_relock(orders: list[Order]) -> dict[Any, Order]:
    """`order_relock` for several orders, their rows locked in one statement in id order (so
    two callers locking overlapping sets queue rather than deadlock). By pk; an order that is
    gone is missing."""
    connection = transaction.get_connection()
    require_transaction(connection)
    by_pk = {order.pk: order for order in orders}
    with connection.cursor() as cursor:
        cursor.execute(
            _relock_many_sql(),
            [[Order._meta.pk.get_db_prep_value(pk, connection) for pk in by_pk]],
        )
        rows = cursor.fetchall()
    locked: dict[Any, Order] = {}
    for pk, last_seq, updated_at in rows:
        order = by_pk[pk]
        if (last_seq, updated_at) == (order.last_seq, order.updated_at):
            locked[pk] = order
        else:
            again = order_load(pk, lock=True)
            if again is not None:
                locked[pk] = again
    return locked
