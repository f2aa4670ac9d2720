"""The state machine: every legal transition is accepted and every illegal one refused, on real
rows, with one event per transition and seq rising by one."""

from __future__ import annotations

import contextlib
import itertools
import logging

import pytest
from django.db import connection, transaction
from django.utils import timezone

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


@contextlib.contextmanager
def _statement_windows(monkeypatch, module):  # type: ignore[no-untyped-def]
    """Records (the last parameter built, the statement returned) around each write through
    `module`'s `db_values` that reads the statement's clock."""
    windows: list[list[object]] = [[None, None]]
    real_values = module.db_values

    def db_values(*args, **kwargs):  # type: ignore[no-untyped-def]
        values = real_values(*args, **kwargs)
        windows[-1][0] = timezone.now()
        return values

    def after(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        result = execute(sql, params, many, context)
        if "clock_timestamp()" in sql:
            windows[-1][1] = timezone.now()
            windows.append([None, None])
        return result

    monkeypatch.setattr(module, "db_values", db_values)
    with connection.execute_wrapper(after):
        yield windows


@pytest.mark.django_db
def test_a_new_order_and_its_pending_event_take_their_statements_time(submit, monkeypatch) -> None:
    """The order's createdAt and updatedAt and its pending event's timestamp are one time, read
    by PostgreSQL as it writes them, after every parameter was built (the benchmark measures
    delivery from it)."""
    from engine import services

    with _statement_windows(monkeypatch, services) as windows:
        order = submit()
    built, returned = windows[0]
    event = order.events.get()
    assert built < event.created_at < returned
    assert order.created_at == order.updated_at == event.created_at
    order.refresh_from_db()
    assert order.created_at == order.updated_at == event.created_at


@pytest.mark.django_db
def test_a_transition_takes_its_statements_time(submit, monkeypatch) -> None:
    """An order's transitions written together take one time, the statement's, as the order's
    updated_at: the row as written, so the next step finds it unchanged (engine.rows)."""
    from engine import transitions
    from engine.rows import order_relock
    from engine.transitions import Step, order_transitions

    order = submit()
    with _statement_windows(monkeypatch, transitions) as windows, transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        events = order_transitions(locked, [Step(OrderStatus.ROUTING), Step(OrderStatus.BUILDING)])
        assert order_relock(locked) is locked  # as written: not read again
    built, returned = windows[0]
    stored = dict(order.events.values_list("seq", "created_at"))
    assert built < stored[2] < returned
    assert stored[2] == stored[3] == events[0].created_at == events[1].created_at
    assert Order.objects.get(pk=order.pk).updated_at == locked.updated_at == stored[2]
