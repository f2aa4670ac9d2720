"""`order_transition`: the only way an order's status changes.

Inside the caller's transaction, on a row it has locked: check the state machine, write the new
state and the next event row, and arrange for the event to be published (and the cache
refreshed) only after the commit.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from engine.cache import order_cache_store
from engine.errors import IllegalTransition
from engine.events import event_message, outbox
from engine.states import TERMINAL, transition_allowed
from engine.wire import event_public, event_to_wire, order_to_dict
from orders.models import Order, OrderEvent

logger = logging.getLogger("engine.transitions")


def order_is_final(order: Order) -> bool:
    """Terminal, and no retry scheduled."""
    return order.status in TERMINAL and order.next_attempt_at is None


def order_transition(
    order: Order, status: str, *, payload: dict[str, Any] | None = None, **fields: Any
) -> OrderEvent:
    """Move a locked order to `status`, setting `fields` on it, and record the event.

    The caller holds the row lock (`select_for_update`) inside `transaction.atomic()`.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_transition needs the caller's transaction")
    if not transition_allowed(order.status, status):
        raise IllegalTransition(
            f"an order cannot go from {order.status} to {status}",
            details={"orderId": str(order.id), "from": order.status, "to": status},
        )
    now = timezone.now()
    previous = order.status
    order.status = status
    order.last_seq += 1
    order.updated_at = now
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=["status", "last_seq", "updated_at", *fields])
    event = OrderEvent.objects.create(
        order=order,
        seq=order.last_seq,
        status=status,
        attempt=order.attempts,
        payload=payload or {},
        created_at=now,
    )
    logger.info(
        "transition order=%s seq=%d %s->%s attempt=%d%s",
        order.id,
        event.seq,
        previous,
        status,
        order.attempts,
        f" error={order.error_code!r}" if status == "failed" else "",
    )
    event_announce(order, event)
    return event


def event_announce(order: Order, event: OrderEvent) -> None:
    """After the commit: publish the event and refresh the order's Redis copy (on the outbox
    thread, so neither delays the caller)."""
    message = event_message(event_to_wire(event))
    refresh = partial(
        order_cache_store,
        order_to_dict(order),
        [event_public(event)],
        live=not order_is_final(order),
    )

    def after_commit() -> None:
        outbox.run(refresh)  # queued first: the copy is fresh before anyone hears of the event
        outbox.publish([message])

    transaction.on_commit(after_commit)
