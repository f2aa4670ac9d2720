"""Limit orders against the real pools: they wait `pending` while the best route pays less than
`limitPrice`, trigger on the watcher's tick once it pays enough and then fill with
`minAmountOut = amountIn x limitPrice`; a price that falls back before the fill sends the order
back to waiting instead of burning its attempts; expiry at the boundary; the watcher's batching."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from dex.router import Market
from dex.types import TransientChainError
from engine import pipeline, watcher
from engine.watcher import orders_expire, orders_watch
from orders.models import Order, OrderStatus
from tests.lifecycle.conftest import (
    assert_history_consistent,
    best_out,
    run_to_end,
    statuses,
    tick,
    trade,
)

pytestmark = pytest.mark.django_db

SELL = ("SOL", "USDC", "3000")  # the same direction as the limit orders: the price falls ~2.6 %


def raise_price_until(limit: Decimal, order: Order, *, chunk: str = "100000") -> int:
    """Buy SOL with USDC in chunks until 1 SOL pays at least `limit`; between chunks the order
    must still be waiting. Returns the number of ticks the order waited through."""
    for waited in range(20):
        if best_out("SOL", "USDC", order.amount_in) / order.amount_in >= limit:
            return waited
        assert tick() == []
        order.refresh_from_db()
        assert order.status == OrderStatus.PENDING and order.triggered_at is None
        trade("USDC", "SOL", chunk)
    raise AssertionError("the price never reached the limit")


def test_a_limit_order_waits_until_the_price_reaches_its_limit_then_fills_at_least_it(
    limit_order,
) -> None:
    limit = (best_out("SOL", "USDC", "1") * Decimal("0.995")).quantize(Decimal("0.01"))
    trade(*SELL)
    assert best_out("SOL", "USDC", "1") < limit
    order = limit_order(limit)
    assert order.status == OrderStatus.PENDING and order.expires_at is not None

    waited = raise_price_until(limit, order)
    assert waited >= 1

    (filled,) = tick()
    assert filled.pk == order.pk
    assert filled.status == OrderStatus.CONFIRMED and filled.attempts == 1
    assert statuses(filled) == ["pending", "routing", "building", "submitted", "confirmed"]
    minimum = (filled.amount_in * limit).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
    assert Decimal(filled.quote["public"]["minAmountOut"]) == minimum
    assert filled.amount_out >= minimum and filled.executed_price >= limit
    assert_history_consistent(filled)


def test_a_limit_order_already_met_triggers_on_the_next_tick(limit_order) -> None:
    price = best_out("SOL", "USDC", "2") / 2
    order = limit_order(price * Decimal("0.99"), amount="2")
    (filled,) = tick()
    assert filled.pk == order.pk and filled.status == OrderStatus.CONFIRMED
    assert tick() == []


def test_a_limit_order_whose_price_is_gone_at_routing_waits_again_without_an_attempt(
    limit_order,
) -> None:
    price = best_out("SOL", "USDC", "1")
    order = limit_order(price * Decimal("0.99"))
    assert orders_watch() == [str(order.pk)]
    trade(*SELL)  # between the trigger and the worker picking the order up
    order = run_to_end(order)
    assert order.status == OrderStatus.PENDING
    assert order.triggered_at is None and order.attempts == 0
    assert statuses(order) == ["pending"]  # nothing a client could see has happened
    assert tick() == []

    raise_price_until(order.limit_price, order)
    (filled,) = tick()
    assert filled.status == OrderStatus.CONFIRMED and filled.attempts == 1
    assert statuses(filled) == ["pending", "routing", "building", "submitted", "confirmed"]


def test_a_limit_order_refused_on_chain_for_slippage_waits_again_and_keeps_its_budget(
    limit_order, monkeypatch
) -> None:
    price = best_out("SOL", "USDC", "1")
    order = limit_order(price * Decimal("0.99"))
    original_send = pipeline.transaction_send
    whales: list[str] = []

    def whale_first(tx):  # type: ignore[no-untyped-def]
        if not whales:  # a big seller lands between our quote and our landing
            whales.append(tx.signature)
            trade(*SELL)
        return original_send(tx)

    monkeypatch.setattr(pipeline, "transaction_send", whale_first)
    assert orders_watch() == [str(order.pk)]
    order = run_to_end(order)
    assert order.status == OrderStatus.PENDING and order.triggered_at is None
    assert statuses(order) == ["pending", "routing", "building", "submitted", "failed", "pending"]
    failed = order.events.get(status="failed").payload
    assert failed["errorCode"] == "slippage_exceeded"
    assert failed["willRetry"] is True and failed["waitingForLimit"] is True
    assert failed["nextAttemptAt"] is None and failed["txHash"]
    back = order.events.order_by("-seq").first().payload
    assert back["waitingFor"] == "limitPrice"
    assert order.attempts == 1 and order.max_attempts == 1 + 3
    assert order.error == "" and order.next_attempt_at is None
    assert tick() == []  # the price is below the limit now: it waits

    raise_price_until(order.limit_price, order)
    (filled,) = tick()
    assert filled.status == OrderStatus.CONFIRMED and filled.attempts == 2
    assert [s for _, s in filled.events.values_list("seq", "status")][-4:] == [
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]
    assert_history_consistent(filled)


def test_a_limit_order_retrying_after_a_transient_failure_waits_again_if_the_price_went(
    limit_order, monkeypatch
) -> None:
    order = limit_order(best_out("SOL", "USDC", "1") * Decimal("0.99"))
    original_send = pipeline.transaction_send

    def timeout_then_whale(tx):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(pipeline, "transaction_send", original_send)
        trade(*SELL)
        raise TransientChainError("the node rate-limited us", code="node_rate_limited")

    monkeypatch.setattr(pipeline, "transaction_send", timeout_then_whale)
    orders_watch()
    order = run_to_end(order)
    assert statuses(order) == ["pending", "routing", "building", "submitted", "failed", "pending"]
    first, second = order.events.filter(seq__gte=5).order_by("seq")
    assert first.payload["willRetry"] is True and first.payload["nextAttemptAt"]  # a retry...
    assert second.payload["waitingFor"] == "limitPrice"  # ...that found the price gone
    assert order.status == OrderStatus.PENDING and order.attempts == 1
    assert_history_consistent(order)


@pytest.mark.parametrize(
    ("offset", "expected"), [(+0.5, "pending"), (0, "expired"), (-1, "expired")]
)
def test_expiry_at_the_boundary(limit_order, offset: float, expected: str) -> None:
    """Just before expiresAt the order waits; at expiresAt and after it is expired."""
    order = limit_order(best_out("SOL", "USDC", "1") * 2)
    now = timezone.now()
    Order.objects.filter(pk=order.pk).update(expires_at=now + timedelta(seconds=offset))
    order.refresh_from_db()
    expiry = order.expires_at
    expired = orders_expire(now=now)  # the tick's clock, fixed: the boundary is exact
    order.refresh_from_db()
    assert order.status == expected and expired == (expected == "expired")
    if expected == "expired":
        assert statuses(order) == ["pending", "expired"]
        payload = order.events.get(status="expired").payload
        assert payload["expiresAt"].startswith(expiry.strftime("%Y-%m-%dT%H:%M:%S"))


def test_an_order_at_its_expiry_never_triggers_even_when_its_price_is_met(limit_order) -> None:
    order = limit_order(best_out("SOL", "USDC", "1") * Decimal("0.9"))
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now())
    assert orders_watch() == []  # the tick expires first
    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED and order.attempts == 0


def test_a_triggered_order_is_not_expired_under_its_worker(limit_order) -> None:
    order = limit_order(best_out("SOL", "USDC", "1") * Decimal("0.9"))
    assert orders_watch() == [str(order.pk)]
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert orders_expire() == 0
    assert run_to_end(order).status == OrderStatus.CONFIRMED


def test_a_market_order_is_never_expired(submit) -> None:
    order = submit()
    assert order.expires_at is None
    assert orders_expire() == 0


def test_the_watcher_quotes_each_pair_once_per_tick_and_routes_only_candidates(
    limit_order, monkeypatch
) -> None:
    price = best_out("SOL", "USDC", "1")
    far = [limit_order(price * 2, amount=str(n)) for n in (1, 2, 3, 4)]
    near = [
        limit_order(price * Decimal("0.98"), amount="1"),
        limit_order(price * Decimal("0.98"), amount="1.5"),
    ]
    jup = [
        limit_order(Decimal("1000"), token_in="JUP", token_out="USDC", amount=str(n))
        for n in (10, 20)
    ]
    routed: list[tuple[str, str, int]] = []
    loads: list[int] = []
    original_route, original_load = Market.route, watcher.market_load

    def counting_route(self, *, token_in, token_out, amount_in):  # type: ignore[no-untyped-def]
        routed.append((token_in.symbol, token_out.symbol, amount_in))
        return original_route(self, token_in=token_in, token_out=token_out, amount_in=amount_in)

    def counting_load(pairs):  # type: ignore[no-untyped-def]
        loads.append(1)
        return original_load(pairs)

    monkeypatch.setattr(Market, "route", counting_route)
    monkeypatch.setattr(watcher, "market_load", counting_load)
    triggered = orders_watch()
    assert triggered == [str(o.pk) for o in near]  # oldest first
    assert len(loads) == 1
    # One screen per pair (at its smallest amount), then the two candidates: the far SOL orders
    # and the JUP orders are never routed one by one.
    assert sorted((a, b) for a, b, _ in routed) == sorted([("SOL", "USDC")] * 3 + [("JUP", "USDC")])
    assert all(
        o.triggered_at is None for o in Order.objects.filter(pk__in=[o.pk for o in far + jup])
    )


def test_the_watcher_scans_every_waiting_order_in_batches(limit_order, monkeypatch) -> None:
    monkeypatch.setattr(watcher, "BATCH", 3)
    price = best_out("SOL", "USDC", "1")
    waiting = [limit_order(price * 2) for _ in range(7)]  # more than two batches that never trigger
    late = limit_order(price * Decimal("0.98"))
    assert orders_watch() == [str(late.pk)]
    assert (
        Order.objects.filter(pk__in=[o.pk for o in waiting], triggered_at__isnull=True).count() == 7
    )


def test_triggered_orders_are_dispatched_oldest_first_across_batches(
    limit_order, monkeypatch
) -> None:
    monkeypatch.setattr(watcher, "BATCH", 2)
    price = best_out("SOL", "USDC", "1")
    orders = [limit_order(price * Decimal("0.98"), amount=a) for a in ("1", "0.5", "2", "0.1", "1")]
    sent: list[str] = []
    monkeypatch.setattr(watcher, "order_dispatch", lambda order_id: sent.append(str(order_id)))
    assert orders_watch() == [str(o.pk) for o in orders]
    assert sent == [str(o.pk) for o in orders]
    assert orders_watch() == []  # triggered once only


def test_a_requeued_expired_limit_order_waits_again_with_a_fresh_expiry(limit_order) -> None:
    from engine.services import order_requeue

    order = limit_order(best_out("SOL", "USDC", "1") * 2)
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now())
    assert orders_expire() == 1
    order = order_requeue(order_id=order.pk, by="ops")
    assert order.status == OrderStatus.PENDING and order.triggered_at is None
    assert order.expires_at > timezone.now() + timedelta(hours=23)
    assert statuses(order) == ["pending", "expired", "pending"]
    assert tick() == []  # still waiting for its price
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


@override_settings(ORDER_MAX_ATTEMPTS=3)
def test_the_limit_is_the_protection_not_the_slippage(limit_order) -> None:
    """minAmountOut is amountIn x limitPrice whatever the slippage says."""
    price = best_out("SOL", "USDC", "1")
    order = limit_order(price * Decimal("0.5"), slippage_bps=1)
    (filled,) = tick()
    assert filled.pk == order.pk
    minimum = Decimal(filled.quote["public"]["minAmountOut"])
    assert minimum == (Decimal("1") * order.limit_price).quantize(
        Decimal("0.000001"), rounding=ROUND_CEILING
    )
    assert minimum < Decimal(filled.quote["public"]["amountOut"]) * Decimal("0.9999")


def test_a_freshly_triggered_order_is_not_taken_for_a_stalled_one(limit_order) -> None:
    from datetime import timedelta

    from engine.reconciler import orders_stalled

    order = limit_order(best_out("SOL", "USDC", "1") * Decimal("0.9"))
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(hours=1))
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert orders_watch() == [str(order.pk)]
    assert str(order.pk) not in orders_stalled(stale_after=30)  # its dispatch is on its way
    assert str(order.pk) in orders_stalled(stale_after=-1)  # ...and would be resumed if lost


def test_a_requeued_limit_order_keeps_its_own_expiry_while_it_is_ahead(
    limit_order, monkeypatch
) -> None:
    from engine.services import order_requeue

    def no_liquidity(**kw):  # type: ignore[no-untyped-def]
        from dex.types import InsufficientLiquidityError

        raise InsufficientLiquidityError("the pools cannot fill it")

    expires_at = timezone.now() + timedelta(hours=3)
    order = limit_order(best_out("SOL", "USDC", "1") * Decimal("0.9"), expires_at=expires_at)
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "route_best", no_liquidity)
        (failed,) = tick()
    assert failed.status == OrderStatus.FAILED and failed.error_code == "insufficient_liquidity"
    order = order_requeue(order_id=order.pk)
    assert order.status == OrderStatus.PENDING and order.expires_at == expires_at
    (filled,) = tick()
    assert filled.status == OrderStatus.CONFIRMED and filled.attempts == 2
