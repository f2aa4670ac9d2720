"""Orders dispatched together travel in one broker message (`engine.execute_orders`) and are
advanced one after another in one pool process, against real PostgreSQL and the real broker
(Redis): all of them confirmed by one delivery; the first that would wait in place hands the rest
on, one message each, and so does one that took long, so a batch never holds orders back behind
a wait; an order due later gets
its own message for then; one order's bug does not hold the others; a batch delivered twice
swaps nothing twice."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from dex.models import ChainTransaction
from engine import tasks
from engine.tasks import BATCH_MAX, execute_orders_task
from orders.models import Order, OrderStatus
from tests.conftest import orders_create, until

pytestmark = pytest.mark.django_db


def queued() -> list[tuple[str, dict[str, Any], bool]]:
    """The task messages waiting in the broker's `orders` queue: (task name, kwargs, has an eta),
    oldest first."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        raw = client.lrange("orders", 0, -1)
    finally:
        client.close()
    messages = []
    for item in reversed(raw):  # kombu LPUSHes, the worker BRPOPs: the oldest is last
        message = json.loads(item)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        headers = message["headers"]
        messages.append((headers["task"], kwargs, headers.get("eta") is not None))
    return messages


def statuses(ids: list[str]) -> list[str]:
    by_id = dict(Order.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [by_id[Order._meta.pk.to_python(i)] for i in ids]


def test_one_delivery_confirms_every_order_of_the_batch() -> None:
    ids = orders_create(5, first_wallet=40, amount="0.1")
    assert execute_orders_task(order_ids=ids) == "5 orders"
    assert statuses(ids) == [OrderStatus.CONFIRMED] * 5
    for order in Order.objects.filter(pk__in=ids):
        assert list(order.events.order_by("seq").values_list("status", flat=True)) == [
            "pending",
            "routing",
            "building",
            "submitted",
            "confirmed",
        ]
    assert queued() == []  # nothing handed on, nothing scheduled


@override_settings(DEX_EXECUTION_LATENCY_MS="150")
def test_the_first_order_that_would_wait_hands_the_rest_on_then_waits() -> None:
    ids = orders_create(3, first_wallet=45, amount="0.1")
    assert execute_orders_task(order_ids=ids) == "1 of 3, the rest handed on"
    # The first waited in place for its landing, as a single order's task does; the other two
    # were not started behind it: each has a message of its own, for any free pool process.
    assert statuses(ids) == [OrderStatus.CONFIRMED, OrderStatus.PENDING, OrderStatus.PENDING]
    assert queued() == [
        ("engine.execute_order", {"order_id": ids[1]}, False),
        ("engine.execute_order", {"order_id": ids[2]}, False),
    ]


@override_settings(DEX_QUOTE_LATENCY_MS=200)
def test_an_order_that_took_long_hands_the_rest_on() -> None:
    """The venues answer slowly: the rest of the batch is not held back behind each quote."""
    ids = orders_create(3, first_wallet=47, amount="0.1")
    assert execute_orders_task(order_ids=ids) == "1 of 3, the rest handed on"
    assert statuses(ids) == [OrderStatus.CONFIRMED, OrderStatus.PENDING, OrderStatus.PENDING]
    assert [(name, kw) for name, kw, _ in queued()] == [
        ("engine.execute_order", {"order_id": ids[1]}),
        ("engine.execute_order", {"order_id": ids[2]}),
    ]


@override_settings(ORDER_RATE_LIMIT="1/m")
def test_an_order_due_later_gets_its_own_message_for_then() -> None:
    ids = orders_create(2, first_wallet=50, amount="0.1")
    assert execute_orders_task(order_ids=ids) == "2 orders"
    first, second = Order.objects.get(pk=ids[0]), Order.objects.get(pk=ids[1])
    assert first.status == OrderStatus.CONFIRMED
    # The limiter's one start a minute went to the first: the second holds a reserved slot.
    assert second.status == OrderStatus.PENDING and second.next_attempt_at is not None
    assert queued() == [("engine.execute_order", {"order_id": ids[1]}, True)]


def test_one_orders_error_does_not_hold_the_others(monkeypatch, caplog) -> None:
    ids = orders_create(3, first_wallet=55, amount="0.1")
    real = tasks.order_execute

    def broken_for_the_second(order_id: Any, **kwargs: Any) -> Any:
        if str(order_id) == ids[1]:
            raise RuntimeError("a bug in one order")
        return real(order_id, **kwargs)

    monkeypatch.setattr(tasks, "order_execute", broken_for_the_second)
    assert execute_orders_task(order_ids=ids) == "3 orders"
    assert statuses(ids) == [OrderStatus.CONFIRMED, OrderStatus.PENDING, OrderStatus.CONFIRMED]
    assert f"executing order={ids[1]} in a batch failed" in caplog.text  # the reconciler's now


def test_a_batch_delivered_twice_swaps_each_order_once() -> None:
    ids = orders_create(4, first_wallet=60, amount="0.1")
    execute_orders_task(order_ids=ids)
    execute_orders_task(order_ids=ids)
    assert statuses(ids) == [OrderStatus.CONFIRMED] * 4
    for order_id in ids:
        swaps = ChainTransaction.objects.filter(reference__startswith=f"{order_id}:")
        assert swaps.filter(state="landed").count() == 1
        assert Order.objects.get(pk=order_id).events.count() == 5


@pytest.mark.parametrize(("n", "sizes"), [(1, [1]), (2, [2]), (BATCH_MAX + 3, [BATCH_MAX, 3])])
def test_gathered_dispatches_go_out_in_messages_of_at_most_batch_max(n, sizes) -> None:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]
    tasks._dispatch_now(ids)
    messages = queued()
    assert [len(kw.get("order_ids", [kw.get("order_id")])) for _, kw, _ in messages] == sizes
    assert [name for name, _, _ in messages] == [
        "engine.execute_order" if size == 1 else "engine.execute_orders" for size in sizes
    ]
    sent = [i for _, kw, _ in messages for i in kw.get("order_ids", [kw.get("order_id")])]
    assert sent == ids


def test_orders_dispatched_within_the_linger_share_one_message(
    settings, django_capture_on_commit_callbacks
) -> None:
    """DISPATCH_LINGER_MS: the first dispatch after a quiet spell goes at once; those within the
    linger of it wait and go out together (here released by the flush, as at shutdown)."""
    from engine.events import outbox

    settings.DISPATCH_LINGER_MS = 60_000
    outbox.flush()
    outbox._last_call.clear()  # a quiet spell (the outbox thread is idle after the flush)
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(3)]
    for order_id in ids:
        with django_capture_on_commit_callbacks(execute=True):
            tasks.order_dispatch(order_id)
        if order_id == ids[0]:
            until(queued, timeout=5)  # the first went out at once: wait for the outbox to send it
            assert [kw for _, kw, _ in queued()] == [{"order_id": ids[0]}]
    assert len(queued()) == 1  # the others are held
    outbox.flush()
    assert [kw for _, kw, _ in queued()] == [{"order_id": ids[0]}, {"order_ids": ids[1:]}]


def test_no_linger_dispatches_each_order_as_it_comes(
    settings, django_capture_on_commit_callbacks
) -> None:
    from engine.events import outbox

    settings.DISPATCH_LINGER_MS = 0
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(2)]
    for order_id in ids:
        with django_capture_on_commit_callbacks(execute=True):
            tasks.order_dispatch(order_id)
        outbox.flush()
    assert [kw for _, kw, _ in queued()] == [{"order_id": i} for i in ids]


@pytest.mark.parametrize(
    ("env", "linger"),
    [
        ({}, 0.0),  # the defaults: one order per process
        ({"ORDER_CONCURRENCY": "64", "WORKER_PROCESSES": "4"}, 60.0),  # 16 together
        ({"ORDER_CONCURRENCY": "64", "WORKER_PROCESSES": "4", "DISPATCH_LINGER_MS": "5"}, 5.0),
        ({"ORDER_CONCURRENCY": "64", "WORKER_PROCESSES": "4", "DISPATCH_LINGER_MS": ""}, 60.0),
        ({"ORDER_CONCURRENCY": "64", "WORKER_PROCESSES": "4", "DISPATCH_LINGER_MS": "0"}, 0.0),
    ],
)
def test_the_linger_defaults_on_only_when_orders_execute_together(env, linger) -> None:
    code = "from django.conf import settings; print(settings.DISPATCH_LINGER_MS)"
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ORDER_CONCURRENCY", "WORKER_PROCESSES", "DISPATCH_LINGER_MS")
    }
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(out.stdout.strip().splitlines()[-1]) == linger
