"""The engine's two hottest writes as single SQL statements: a new order with its first event
(`engine.services.order_submit`) and an order's new state with its new events
(`engine.transitions.order_transitions`). One round trip each and no ORM query compilation;
every value still goes through its field's own `get_db_prep_save`, as `save()` and
`bulk_create()` would write it."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from orders.models import OrderEvent


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
