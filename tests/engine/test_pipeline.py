"""The execution pipeline against real PostgreSQL and the simulated chain: the happy path,
slippage, retries with backoff, permanent failures, and resuming after a crash at every step."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from dex.chain import transaction_send as real_send
from dex.models import ChainTransaction
from dex.types import InsufficientLiquidityError, TransientChainError
from engine import pipeline
from engine.pipeline import order_execute, retry_delay
from orders.models import Order, OrderStatus

pytestmark = pytest.mark.django_db


def run_to_end(order: Order, max_runs: int = 10) -> Order:
    """Call the pipeline as the task would, honouring the times it asks to be called again."""
    for _ in range(max_runs):
        outcome = order_execute(order.pk)
        if outcome.run_at is None:
            break
        time.sleep(max((outcome.run_at - timezone.now()).total_seconds(), 0))
    order.refresh_from_db()
    return order


def statuses(order: Order) -> list[str]:
    return list(order.events.order_by("seq").values_list("status", flat=True))


def landed(order: Order) -> int:
    return ChainTransaction.objects.filter(
        reference__startswith=f"{order.pk}:", state="landed"
    ).count()


def test_a_market_order_travels_pending_to_confirmed(submit) -> None:
    order = run_to_end(submit())
    assert order.status == OrderStatus.CONFIRMED
    assert statuses(order) == ["pending", "routing", "building", "submitted", "confirmed"]
    assert list(order.events.values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    assert order.attempts == 1 and order.tx_hash and order.amount_out > 0
    assert order.selected_dex in {"raydium", "meteora", "split"}
    assert landed(order) == 1
    routing = order.events.get(status="routing").payload
    assert len(routing["quotes"]) >= 2 and routing["selectedDex"] == order.selected_dex
    building = order.events.get(status="building").payload
    assert building["transaction"]["instructions"]
    confirmed = order.events.get(status="confirmed").payload
    assert confirmed["txHash"] == order.tx_hash and Decimal(confirmed["amountOut"]) > 0


def test_the_fill_respects_min_amount_out(submit) -> None:
    order = run_to_end(submit())
    assert order.amount_out >= Decimal(order.quote["public"]["minAmountOut"])


def test_slippage_past_min_amount_out_fails_the_attempt_and_a_retry_requotes(submit) -> None:
    """A whale's trade lands between the victim's quote and its landing."""
    victim = submit(amount_in=Decimal("20"), slippage_bps=1)
    original = pipeline.transaction_send
    calls: list[Any] = []

    def send_after_a_whale(tx):  # type: ignore[no-untyped-def]
        if not calls:
            calls.append(tx)
            run_to_end(submit(amount_in=Decimal("400"), slippage_bps=5000))
        return original(tx)

    pipeline.transaction_send = send_after_a_whale
    try:
        victim = run_to_end(victim)
    finally:
        pipeline.transaction_send = original
    history = list(victim.events.order_by("seq").values_list("status", "payload"))
    failed = [p for s, p in history if s == "failed"]
    assert failed and failed[0]["errorCode"] == "slippage_exceeded"
    assert "slippage" in failed[0]["error"]
    assert victim.status == OrderStatus.CONFIRMED and victim.attempts == 2
    assert landed(victim) == 1


def test_a_venue_failing_twice_then_succeeding_takes_three_attempts(submit, monkeypatch) -> None:
    failures = {"left": 2}

    def flaky_send(tx):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise TransientChainError("rpc timeout", code="rpc_timeout")
        return real_send(tx)

    monkeypatch.setattr(pipeline, "transaction_send", flaky_send)
    order = run_to_end(submit())
    assert order.status == OrderStatus.CONFIRMED
    assert order.attempts == 3
    assert statuses(order) == [
        "pending",
        "routing",
        "building",
        "submitted",
        "failed",
        "routing",
        "building",
        "submitted",
        "failed",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]
    fails = list(order.events.filter(status="failed").values_list("payload", flat=True))
    assert all(f["willRetry"] and f["errorCode"] == "rpc_timeout" for f in fails)
    assert landed(order) == 1


def test_a_venue_that_always_fails_gives_failed_after_exactly_three_attempts(
    submit, monkeypatch
) -> None:
    def down(tx):  # type: ignore[no-untyped-def]
        raise TransientChainError("the node rate-limited us", code="node_rate_limited")

    monkeypatch.setattr(pipeline, "transaction_send", down)
    order = run_to_end(submit())
    assert order.status == OrderStatus.FAILED
    assert order.attempts == 3
    assert order.error == "the node rate-limited us" and order.error_code == "node_rate_limited"
    assert order.next_attempt_at is None
    last = order.events.order_by("-seq").first()
    assert last.status == "failed" and last.payload["willRetry"] is False
    assert order.events.filter(status="routing").count() == 3
    assert landed(order) == 0


def test_a_permanent_error_fails_at_once_without_retry(submit, monkeypatch) -> None:
    def no_liquidity(**kw):  # type: ignore[no-untyped-def]
        raise InsufficientLiquidityError("the pools cannot fill 1.5 SOL")

    monkeypatch.setattr(pipeline, "route_best", no_liquidity)
    order = run_to_end(submit())
    assert order.status == OrderStatus.FAILED and order.attempts == 1
    assert order.error_code == "insufficient_liquidity"
    assert statuses(order) == ["pending", "failed"]


def test_the_backoff_grows_with_each_attempt() -> None:
    with override_settings(ORDER_RETRY_BACKOFF_SECONDS=1.0, ORDER_RETRY_BACKOFF_MAX_SECONDS=60):
        delays = [retry_delay(n) for n in (1, 2, 3, 4)]
    assert 1.0 <= delays[0] <= 1.25
    assert 2.0 <= delays[1] <= 2.5
    assert 4.0 <= delays[2] <= 5.0
    assert delays == sorted(delays)


class Crash(BaseException):
    """What a killed worker looks like to the code that was running."""


def _crash_before_commit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def build_then_die(**kw):  # type: ignore[no-untyped-def]
        raise Crash()

    monkeypatch.setattr(pipeline, "transaction_build", build_then_die)


def _crash_after_commit_before_send(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def die(tx):  # type: ignore[no-untyped-def]
        raise Crash()

    monkeypatch.setattr(pipeline, "transaction_send", die)


def _crash_after_send(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def send_then_die(tx):  # type: ignore[no-untyped-def]
        real_send(tx)
        raise Crash()

    monkeypatch.setattr(pipeline, "transaction_send", send_then_die)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(
    ("crash", "left_in"),
    [
        (_crash_before_commit, "pending"),
        (_crash_after_commit_before_send, "submitted"),
        (_crash_after_send, "submitted"),
    ],
)
def test_resuming_after_a_crash_at_any_point_swaps_exactly_once(
    submit, monkeypatch, crash, left_in
) -> None:
    """Kill the pipeline at each point (as a killed worker would), then run it again as the
    redelivered task or the reconciler does: the order confirms, and lands exactly once."""
    order = submit()
    with monkeypatch.context() as patch:
        crash(patch)
        with pytest.raises(Crash):
            order_execute(order.pk)
    order.refresh_from_db()
    assert order.status == left_in
    order = run_to_end(order)
    assert order.status == OrderStatus.CONFIRMED
    assert order.attempts == 1
    assert landed(order) == 1
    seqs = list(order.events.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("status", ["routing", "building"])
def test_an_order_left_mid_attempt_fails_that_attempt_and_tries_again(submit, status) -> None:
    order = submit()
    Order.objects.filter(pk=order.pk).update(status=status, attempts=1)
    order = run_to_end(order)
    assert order.status == OrderStatus.CONFIRMED and order.attempts == 2
    failed = order.events.get(status="failed").payload
    assert failed["errorCode"] == "interrupted" and failed["willRetry"] is True
    assert landed(order) == 1


def test_a_second_delivery_of_a_finished_order_does_nothing(submit) -> None:
    order = run_to_end(submit())
    events = order.events.count()
    order_execute(order.pk)
    order.refresh_from_db()
    assert order.events.count() == events and landed(order) == 1
