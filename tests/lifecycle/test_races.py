"""Races run with real concurrency: threads, each with its own PostgreSQL connection, released
together by a barrier against committed data. The row lock and the state machine must decide:
exactly one of cancel, trigger (then execution) and expiry wins, every client's answer agrees with
the history, and the history is contiguous and legal. Also: concurrent requests with one
Idempotency-Key create one order, concurrent watcher ticks trigger each order once, concurrent
requeues requeue once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from dex.models import ChainTransaction
from engine.services import OrderRequest, order_submit
from engine.watcher import orders_expire, orders_watch
from orders.models import Order
from tests.conftest import make_wallet
from tests.lifecycle.conftest import assert_history_consistent, best_out, run_to_end, statuses

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

T = TypeVar("T")
ROUNDS = 6
TERMINAL_WINNERS = {"cancelled", "expired", "confirmed"}


def race(*actions: Callable[[], T]) -> list[T]:
    """Run the actions at the same moment, one thread each, and return their results in order.
    Each thread closes its own database connection when it is done."""
    barrier = threading.Barrier(len(actions))

    def run(action: Callable[[], T]) -> T:
        try:
            barrier.wait(timeout=10)
            return action()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        futures = [pool.submit(run, action) for action in actions]
        return [f.result(timeout=60) for f in futures]


def limit(factor: str, *, wallet: int = 20, expires_in: float | None = None) -> Order:
    order, _ = order_submit(
        request=OrderRequest(
            wallet_address=make_wallet(wallet),
            token_in="SOL",
            token_out="USDC",
            amount_in=Decimal("0.5"),
            order_type="limit",
            limit_price=best_out("SOL", "USDC", "0.5") / 2 * Decimal(factor),
            expires_at=timezone.now() + timedelta(seconds=expires_in) if expires_in else None,
        )
    )
    return order


def cancel(order_id: Any) -> Callable[[], int]:
    return lambda: APIClient().post(f"/api/orders/{order_id}/cancel").status_code


def trigger_and_execute(order_id: Any) -> Callable[[], list[str]]:
    """What beat and a worker do: a watcher tick, then the dispatched task."""

    def act() -> list[str]:
        triggered = orders_watch()
        if str(order_id) in triggered:
            run_to_end(Order.objects.get(pk=order_id))
        return triggered

    return act


def swaps(order: Order) -> int:
    return ChainTransaction.objects.filter(reference__startswith=f"{order.pk}:").count()


def assert_one_winner(order: Order, cancel_status: int | None = None) -> str:
    order.refresh_from_db()
    assert_history_consistent(order)
    history = statuses(order)
    winners = [s for s in history if s in TERMINAL_WINNERS]
    assert len(winners) == 1, history
    assert order.status == winners[0]
    if order.status == "confirmed":
        assert history == ["pending", "routing", "building", "submitted", "confirmed"]
        assert swaps(order) == 1
    else:
        assert history == ["pending", order.status] and swaps(order) == 0
    if cancel_status is not None:
        assert cancel_status == (200 if order.status == "cancelled" else 409), (
            cancel_status,
            history,
        )
    return order.status


def test_cancel_against_trigger_and_execution_exactly_one_wins() -> None:
    outcomes = []
    for _ in range(ROUNDS):
        order = limit("0.98")  # met: the next tick triggers it
        cancelled, _ = race(cancel(order.pk), trigger_and_execute(order.pk))
        outcomes.append(assert_one_winner(order, cancelled))
    assert set(outcomes) <= {"cancelled", "confirmed"}


def test_cancel_against_expiry_exactly_one_wins() -> None:
    outcomes = []
    for _ in range(ROUNDS):
        order = limit("1.5")
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now())
        cancelled, _ = race(cancel(order.pk), orders_expire)
        outcomes.append(assert_one_winner(order, cancelled))
    assert set(outcomes) <= {"cancelled", "expired"}


def test_cancel_trigger_and_expiry_all_at_once_exactly_one_wins() -> None:
    """An order met by the market and expiring now, cancelled by its client at that moment."""
    for _ in range(ROUNDS):
        order = limit("0.98", expires_in=0.3)
        # Expiry falls inside the race: the clock, not a fixture, decides the boundary.
        wait = (order.expires_at - timezone.now()).total_seconds()
        threading.Event().wait(max(wait - 0.05, 0))
        cancelled, _, _ = race(cancel(order.pk), trigger_and_execute(order.pk), orders_expire)
        assert_one_winner(order, cancelled)


def test_two_cancels_at_once_one_200_one_409() -> None:
    for _ in range(ROUNDS):
        order = limit("1.5")
        answers = sorted(race(cancel(order.pk), cancel(order.pk)))
        assert answers == [200, 409]
        assert statuses(order) == ["pending", "cancelled"]


def test_concurrent_watcher_ticks_trigger_each_order_exactly_once() -> None:
    orders = [limit("0.98", wallet=n) for n in range(8)]
    first, second = race(orders_watch, orders_watch)
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(str(o.pk) for o in orders)
    for ids in (first, second):  # each tick dispatches its share oldest first
        created = [Order.objects.get(pk=i).created_at for i in ids]
        assert created == sorted(created)


@override_settings(API_RATE_LIMIT="0")
def test_concurrent_requests_with_one_idempotency_key_create_one_order() -> None:
    body = {
        "walletAddress": make_wallet(31),
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "0.25",
        "orderType": "market",
    }
    for round_ in range(ROUNDS):
        key = f"double-click-{round_}"

        def request(key: str = key) -> tuple[int, str]:
            response = APIClient().post(
                "/api/orders/execute",
                data=json.dumps(body),
                content_type="application/json",
                headers={"Idempotency-Key": key},
            )
            return response.status_code, response.json()["orderId"]

        answers = race(request, request, request, request)
        assert sorted(status for status, _ in answers) == [200, 200, 200, 201], answers
        assert len({order_id for _, order_id in answers}) == 1
        assert Order.objects.filter(idempotency_key=key).count() == 1
    assert Order.objects.count() == ROUNDS


def test_two_staff_requeues_at_once_requeue_once() -> None:
    staff = get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True)
    token = Token.objects.create(user=staff).key
    for _ in range(ROUNDS):
        order = limit("1.5")
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now())
        assert orders_expire() == 1

        def requeue(order_id: Any = order.pk) -> int:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
            return client.post(f"/api/orders/{order_id}/requeue").status_code

        assert sorted(race(requeue, requeue)) == [200, 409]
        assert statuses(order) == ["pending", "expired", "pending"]
