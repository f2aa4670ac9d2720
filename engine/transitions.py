"""`order_transition`: the only way an order's status changes.

Inside the caller's transaction, on a row it has locked: check the state machine, write the new
state and the next event row, and arrange for the event to be published (and the cache
refreshed) only after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from config.sql import (
    CLOCK,
    CLOCK_CTE,
    column_list,
    db_values,
    mark_saved,
    placeholders,
    values_update,
)
from engine.cache import orders_cache_commands, orders_cache_store
from engine.errors import IllegalTransition
from engine.events import event_message, outbox
from engine.rows import event_fields, event_time
from engine.states import TERMINAL, transition_allowed
from engine.wire import event_public, event_to_wire, order_to_dict
from orders.models import Order, OrderEvent

logger = logging.getLogger("engine.transitions")


def order_is_final(order: Order) -> bool:
    """Terminal, and no retry scheduled."""
    return order.status in TERMINAL and order.next_attempt_at is None


@dataclass(frozen=True, slots=True)
class Step:
    """One transition: the new status, its event's payload, the order's fields it sets."""

    status: str
    payload: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)


def order_transition(
    order: Order, status: str, *, payload: dict[str, Any] | None = None, **fields: Any
) -> OrderEvent:
    """Move a locked order to `status`, setting `fields` on it, and record the event.

    The caller holds the row lock (`select_for_update`) inside `transaction.atomic()`.
    """
    return order_transitions(order, [Step(status, payload or {}, fields)])[0]


def order_transitions(order: Order, steps: list[Step]) -> list[OrderEvent]:
    """Several transitions in a row, in the caller's transaction on the locked order: each is
    checked by the state machine and gets its own event, and the order is written once."""
    return orders_transitions([(order, steps)])[0]


def orders_transitions(moves: list[tuple[Order, list[Step]]]) -> list[list[OrderEvent]]:
    """`order_transitions` for several locked orders at once (orders executed together,
    engine.lockstep): every order's steps checked and its events made as for one, and all of
    them written in one statement. Returns each order's events.

    The events and the orders' `updated_at` take one time, read by PostgreSQL as it runs the
    statement (config.sql.CLOCK): they become true together, at its commit, so their timestamp
    is as close to that as the engine can read it (the benchmark measures delivery from it).
    The transitions are logged once committed, after their updates are handed to the outbox: a
    transition rolled back is not logged as done, and the log lines are not written between the
    statement and its commit (a step of six orders writes eighteen)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_transition needs the caller's transaction")
    if not moves:
        return []
    written: list[tuple[Order, list[str], list[OrderEvent]]] = []
    lines: list[tuple[Any, ...]] = []
    for order, steps in moves:
        events, changed = _apply(order, steps, lines)
        written.append((order, changed, events))
    _write(written)
    for order, _, events in written:
        events_announce(order, events)
    transaction.on_commit(lambda: _log(lines))  # after the updates are handed to the outbox
    return [events for _, _, events in written]


def _log(lines: list[tuple[Any, ...]]) -> None:
    for line in lines:
        logger.info("transition order=%s seq=%d %s->%s attempt=%d%s", *line)


def _apply(
    order: Order, steps: list[Step], lines: list[tuple[Any, ...]]
) -> tuple[list[OrderEvent], list[str]]:
    """The steps applied to the order in memory: its events (their time set when written),
    and the columns they changed besides `updated_at`; each transition's log line added to
    `lines`."""
    events: list[OrderEvent] = []
    changed = {"status", "last_seq"}
    for step in steps:
        if not transition_allowed(order.status, step.status):
            raise IllegalTransition(
                f"an order cannot go from {order.status} to {step.status}",
                details={"orderId": str(order.id), "from": order.status, "to": step.status},
            )
        previous = order.status
        order.status = step.status
        order.last_seq += 1
        for name, value in step.fields.items():
            setattr(order, name, value)
        changed.update(step.fields)
        events.append(
            OrderEvent(
                order=order,
                seq=order.last_seq,
                status=step.status,
                attempt=order.attempts,
                payload=step.payload,
            )
        )
        lines.append(
            (
                order.id,
                order.last_seq,
                previous,
                step.status,
                order.attempts,
                f" error={order.error_code!r}" if step.status == "failed" else "",
            )
        )
    return events, sorted(changed)


def _write(written: list[tuple[Order, list[str], list[OrderEvent]]]) -> None:
    """The orders' changed columns and their new event rows in one statement: the events'
    INSERT and the orders' UPDATE as CTEs, returning the events' ids and the statement's time,
    which the events take as `created_at` and the orders as `updated_at` (see engine.rows). One
    order is updated by id; several by a VALUES list, one UPDATE per set of changed columns."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    fields = [OrderEvent._meta.get_field("order"), *event_fields()]
    events = [event for _, _, order_events in written for event in order_events]
    params = [v for event in events for v in db_values(event, fields, connection)]
    updated_at = Order._meta.get_field("updated_at")
    updates: list[str] = []
    if len(written) == 1:
        order, changed, _ = written[0]
        order_fields = [Order._meta.get_field(name) for name in changed]
        params += [*db_values(order, order_fields, connection), order.pk]
        sets = [f"{quote(f.column)} = %s" for f in order_fields]
        updates.append(
            f"UPDATE {quote(Order._meta.db_table)} "
            f"SET {', '.join(sets)}, {quote(updated_at.column)} = {CLOCK} "
            f"WHERE {quote(Order._meta.pk.column)} = %s"
        )
    else:
        by_columns: dict[tuple[str, ...], list[Order]] = {}
        for order, changed, _ in written:
            by_columns.setdefault(tuple(changed), []).append(order)
        for changed, orders in by_columns.items():
            order_fields = [Order._meta.get_field(name) for name in changed]
            rows = [(o.pk, db_values(o, order_fields, connection)) for o in orders]
            sql, values = values_update(
                Order, order_fields, rows, connection, expressions={updated_at: CLOCK}
            )
            updates.append(sql)
            params += values
    ctes = ", ".join(f"changed{index} AS ({sql})" for index, sql in enumerate(updates))
    row = f"({placeholders(len(fields))}, {CLOCK})"
    sql = (
        f"WITH {CLOCK_CTE}, inserted AS (INSERT INTO {quote(OrderEvent._meta.db_table)} "
        f"({column_list(fields, connection)}, {quote(event_time().column)}) "
        f"VALUES {', '.join([row] * len(events))} "
        f"RETURNING {quote(fields[0].column)}, seq, id), {ctes} "
        f"SELECT {quote(fields[0].column)}, seq, id, {CLOCK} FROM inserted"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
    ids = {(order_id, seq): pk for order_id, seq, pk, _ in returned}
    now = returned[0][3]
    for event in events:
        event.pk = ids[(event.order_id, event.seq)]
        event.created_at = now
    for order, _, _ in written:
        order.updated_at = now
    mark_saved(events, connection)


def event_announce(order: Order, event: OrderEvent) -> None:
    events_announce(order, [event])


def events_announce(order: Order, events: list[OrderEvent]) -> None:
    """After the commit, on the outbox thread: refresh the order's Redis copy, then publish
    the events (a client told of an update can read at least that update)."""
    messages = [event_message(event_to_wire(e)) for e in events]
    copy = (order_to_dict(order), [event_public(e) for e in events], not order_is_final(order))

    def after_commit() -> None:
        outbox.gather(orders_cache_store, copy, first=True, pipelined=orders_cache_commands)
        outbox.publish(messages)

    transaction.on_commit(after_commit)
