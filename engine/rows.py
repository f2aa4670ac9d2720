"""The engine's two hottest writes as single SQL statements: a new order with its first event
(`engine.services.order_submit`) and an order's new state with its new events
(`engine.transitions.order_transitions`). One round trip each and no ORM query compilation;
every value still goes through its field's own `get_db_prep_save`, as `save()` and
`bulk_create()` would write it. And its hottest read, an order by id (`order_load`), with the
SQL the ORM compiled once."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from orders.models import Order, OrderEvent


@cache
def event_fields() -> tuple[Field, ...]:
    """An event's columns apart from its id and its order."""
    return tuple(
        OrderEvent._meta.get_field(n) for n in ("seq", "status", "attempt", "payload", "created_at")
    )


def db_values(
    instance: Model, fields: Iterable[Field], connection: BaseDatabaseWrapper, *, add: bool = False
) -> list[Any]:
    """The instance's values for `fields` as the database takes them (`add`: run each field's
    `pre_save` first, as an INSERT through the ORM does: defaults, auto_now_add)."""
    return [
        f.get_db_prep_save(
            f.pre_save(instance, add) if add else getattr(instance, f.attname), connection
        )
        for f in fields
    ]


def column_list(fields: Iterable[Field], connection: BaseDatabaseWrapper) -> str:
    return ", ".join(connection.ops.quote_name(f.column) for f in fields)


def placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def mark_saved(instances: Iterable[Model], connection: BaseDatabaseWrapper) -> None:
    """What the ORM records on an instance it has written."""
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias


#: lock → (SQL, field names, converters by column) as the ORM compiled `Order.objects.filter(pk=…)`
#: (with `select_for_update()` when locking), or None where its parameters were not just the id.
_order_loads: dict[bool, tuple[str, list[str], list[tuple[int, list[Any], Any]]] | None] = {}


def order_load(order_id: Any, *, lock: bool = False) -> Order | None:
    """`Order.objects.filter(pk=order_id).first()` (`select_for_update()` with `lock`, inside the
    caller's transaction), without compiling the query again: the pipeline loads an order three
    times per attempt, and compiling its 30-column SELECT cost more CPU than running it. The first
    call compiles it through the ORM and keeps the SQL, the columns and the fields' converters
    (JSON); if the compiled parameters are not exactly the id, the ORM does every load."""

    def queryset() -> Any:
        rows = Order.objects.filter(pk=order_id)
        return rows.select_for_update() if lock else rows

    connection = transaction.get_connection()
    if lock not in _order_loads:
        compiler = queryset().query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()  # select_for_update outside a transaction raises here
        names = [col.target.attname for col, _, _ in compiler.select]
        expected = [Order._meta.pk.get_db_prep_value(order_id, connection)]
        exact = list(params) == expected and names == [
            f.attname for f in Order._meta.concrete_fields
        ]
        converters = [
            (pos, convs, expr)
            for pos, (convs, expr) in compiler.get_converters(
                [col for col, _, _ in compiler.select]
            ).items()
        ]
        _order_loads[lock] = (sql, names, converters) if exact else None
    compiled = _order_loads[lock]
    if compiled is None:
        return queryset().first()
    if lock and not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "select_for_update cannot be used outside of a transaction."
        )
    sql, names, converters = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, [Order._meta.pk.get_db_prep_value(order_id, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for pos, convs, expr in converters:
        for convert in convs:
            values[pos] = convert(values[pos], expr, connection)
    return Order.from_db(connection.alias, names, values)
