"""engine.rows.order_load: an order by id with the SQL the ORM compiled once. It must give exactly
what the ORM gives (every field, JSON and decimals included), take the row lock when asked, and
refuse a lock outside a transaction as the ORM does.

engine.rows.order_relock: the row locked again, and read again only when another write has
changed it since the order in hand was read or written."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from config import sql
from engine import pipeline
from engine.rows import order_load, order_relock
from engine.services import order_cancel
from orders.models import Order, OrderStatus
from tests.engine.test_pipeline import run_to_end

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def fields(order: Order) -> dict[str, object]:
    return {f.attname: getattr(order, f.attname) for f in Order._meta.concrete_fields}


def test_an_order_loads_as_the_orm_loads_it(submit) -> None:
    order = run_to_end(submit())  # quote, transaction and amounts all set
    assert order.quote and order.transaction and order.amount_out
    for lock in (False, True):
        with transaction.atomic():
            loaded = order_load(order.pk, lock=lock)
            again = order_load(str(order.pk), lock=lock)  # compiled by now; an id as text too
        assert loaded is not None and again is not None
        assert fields(loaded) == fields(again) == fields(Order.objects.get(pk=order.pk))
        assert not loaded._state.adding and loaded._state.db == "default"
    assert sql._loads[(Order, "pk", False)] is not None
    assert sql._loads[(Order, "pk", True)] is not None
    assert order_load(uuid.uuid4()) is None


def assert_row_locked(order: Order) -> None:
    """Another connection cannot lock the order's row now."""
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"], host=db["HOST"] or "localhost", user=db["USER"] or None
    ) as other:
        other.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("SELECT 1 FROM orders_order WHERE id = %s FOR UPDATE", [order.pk])


def test_a_lock_is_a_row_lock_and_needs_a_transaction(submit) -> None:
    order = submit()
    with pytest.raises(TransactionManagementError):
        order_load(order.pk, lock=True)
    with transaction.atomic():
        assert order_load(order.pk, lock=True) is not None
        assert_row_locked(order)


def test_a_relock_of_an_unchanged_order_keeps_it_and_reads_two_columns(submit) -> None:
    order = order_load(submit().pk)
    assert order is not None
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert order_relock(order) is order
        assert_row_locked(order)
    [statement] = [q["sql"] for q in queries.captured_queries]
    assert statement.endswith("FOR UPDATE")
    assert statement.startswith('SELECT "last_seq", "updated_at" FROM "orders_order"')
    with pytest.raises(TransactionManagementError):  # like any row lock
        order_relock(order)


def test_a_relock_reads_an_order_a_transition_changed_since(submit) -> None:
    order = order_load(submit().pk)
    assert order is not None
    order_cancel(order_id=order.pk)
    with transaction.atomic():
        locked = order_relock(order)
        assert locked is not None and locked is not order
        assert_row_locked(order)
    assert (locked.status, locked.last_seq) == (OrderStatus.CANCELLED, 2)
    assert fields(locked) == fields(Order.objects.get(pk=order.pk))


def test_a_relock_reads_an_order_the_rate_limiter_scheduled_since(submit, monkeypatch) -> None:
    """The rate limiter's claim writes no event: it moves `updated_at`, as every write must."""
    order = order_load(submit().pk)
    assert order is not None
    monkeypatch.setattr(pipeline, "rate_reserve", lambda: 5.0)
    outcome = pipeline.attempt_due(order_load(order.pk), reserve_slot=True, wait=False)
    assert outcome is not None and outcome.reason == "rate limit"
    with transaction.atomic():
        locked = order_relock(order)
    assert locked is not None and locked is not order
    assert locked.next_attempt_at == outcome.run_at and locked.last_seq == order.last_seq


def test_a_relock_of_a_deleted_order_is_none(submit) -> None:
    order = order_load(submit().pk)
    assert order is not None
    Order.objects.filter(pk=order.pk).delete()
    with transaction.atomic():
        assert order_relock(order) is None


def test_several_orders_load_in_one_statement_as_the_orm_loads_them(submit) -> None:
    orders = [run_to_end(submit()), submit(), submit()]
    ids = [o.pk for o in orders]
    for lock in (False, True):
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            loaded = sql.rows_load(Order, "pk", [*ids, uuid.uuid4()], lock=lock)  # one is gone
            if lock:
                for order in orders:
                    assert_row_locked(order)
        assert len(queries) == 1 and ("FOR UPDATE" in queries[0]["sql"]) is lock
        assert [o.pk for o in loaded] == sorted(ids)  # in id order: the lock order too
        for order in loaded:
            assert fields(order) == fields(Order.objects.get(pk=order.pk))
    with pytest.raises(TransactionManagementError):
        sql.rows_load(Order, "pk", ids, lock=True)
    assert sql.rows_load(Order, "pk", []) == []
