"""The state machine: every legal transition is accepted and every illegal one refused, on real
rows, with one event per transition and seq rising by one."""

from __future__ import annotations

import itertools
import logging

import pytest
from django.db import transaction

from engine.errors import IllegalTransition
from engine.events import outbox
from engine.states import TRANSITIONS
from engine.transitions import order_transition
from orders.models import Order, OrderEvent, OrderStatus

LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in targets]
ILLEGAL = [
    (a, b)
    for a, b in itertools.product(OrderStatus.values, OrderStatus.values)
    if b not in TRANSITIONS[a]
]


def _order_in(status: str, submit) -> Order:  # type: ignore[no-untyped-def]
    order = submit()
    Order.objects.filter(pk=order.pk).update(status=status)
    order.refresh_from_db()
    return order


@pytest.mark.django_db
@pytest.mark.parametrize(("current", "new"), LEGAL)
def test_every_legal_transition_is_recorded_as_the_next_event(current, new, submit) -> None:
    order = _order_in(current, submit)
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        event = order_transition(locked, new, payload={"why": "test"})
    order.refresh_from_db()
    assert order.status == new
    assert event.seq == 2 and order.last_seq == 2
    assert list(order.events.values_list("seq", "status")) == [(1, "pending"), (2, new)]


@pytest.mark.django_db
@pytest.mark.parametrize(("current", "new"), ILLEGAL)
def test_every_illegal_transition_is_refused_and_changes_nothing(current, new, submit) -> None:
    order = _order_in(current, submit)
    with pytest.raises(IllegalTransition), transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_transition(locked, new)
    order.refresh_from_db()
    assert order.status == current
    assert OrderEvent.objects.filter(order=order).count() == 1


def test_terminal_success_and_cancel_have_no_way_out() -> None:
    assert TRANSITIONS[OrderStatus.CONFIRMED] == frozenset()
    assert TRANSITIONS[OrderStatus.CANCELLED] == frozenset()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_transition_outside_a_transaction_is_refused(submit) -> None:
    order = submit()
    with pytest.raises(RuntimeError):
        order_transition(order, OrderStatus.ROUTING)


@pytest.mark.django_db
def test_event_seq_is_unique_per_order(submit) -> None:
    from django.db import IntegrityError
    from django.utils import timezone

    order = submit()
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderEvent.objects.create(order=order, seq=1, status="routing", created_at=timezone.now())


class _RolledBack(Exception):
    pass


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_transition_is_logged_once_committed_and_not_if_rolled_back(
    submit, caplog, monkeypatch
) -> None:
    """The log says what happened: a transition is logged after its commit, once its update is
    handed to the outbox, and one whose transaction rolls back is not logged at all."""
    caplog.set_level(logging.INFO, logger="engine.transitions")
    order = submit()
    with pytest.raises(_RolledBack), transaction.atomic():
        order_transition(Order.objects.select_for_update().get(pk=order.pk), OrderStatus.ROUTING)
        raise _RolledBack
    assert "transition" not in caplog.text

    handed: list[str] = []  # the log as it was when the update was handed to the outbox
    publish = outbox.publish
    monkeypatch.setattr(outbox, "publish", lambda m: (handed.append(caplog.text), publish(m)))
    with transaction.atomic():
        order_transition(Order.objects.select_for_update().get(pk=order.pk), OrderStatus.ROUTING)
        assert "transition" not in caplog.text  # not before the commit
    assert len(handed) == 1 and "transition" not in handed[0]
    assert f"transition order={order.pk} seq=2 pending->routing attempt=0" in caplog.text
