"""engine.rows.order_load: an order by id with the SQL the ORM compiled once. It must give exactly
what the ORM gives (every field, JSON and decimals included), take the row lock when asked, and
refuse a lock outside a transaction as the ORM does."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from config import sql
from engine.rows import order_load
from orders.models import Order
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


def test_a_lock_is_a_row_lock_and_needs_a_transaction(submit) -> None:
    order = submit()
    with pytest.raises(TransactionManagementError):
        order_load(order.pk, lock=True)
    db = connection.settings_dict
    with transaction.atomic():
        assert order_load(order.pk, lock=True) is not None
        with psycopg.connect(
            dbname=db["NAME"], host=db["HOST"] or "localhost", user=db["USER"] or None
        ) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT 1 FROM orders_order WHERE id = %s FOR UPDATE", [order.pk])
