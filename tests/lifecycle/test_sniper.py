"""Sniper orders: registered tokens without pools, orders that wait for the first pool, the launch
(`python manage.py launch_token` and `dex.launch.token_launch`), the tick that fires every waiting
sniper in submission order, and the first buyers really moving the new pool's price."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from dex.launch import mint_generate, token_launch, token_register
from engine.services import OrderRequest, order_cancel, order_submit
from engine.watcher import orders_watch
from orders.models import Order, OrderStatus
from tests.conftest import make_wallet
from tests.lifecycle.conftest import best_out, run_to_end, statuses, tick

pytestmark = pytest.mark.django_db

FULL = ["pending", "routing", "building", "submitted", "confirmed"]


def sniper(symbol: str, *, wallet: int, amount: str = "1", token_in: str = "SOL", **kw) -> Order:  # type: ignore[no-untyped-def]
    order, _ = order_submit(
        request=OrderRequest(
            wallet_address=make_wallet(wallet),
            token_in=token_in,
            token_out=symbol,
            amount_in=Decimal(amount),
            order_type="sniper",
            slippage_bps=kw.pop("slippage_bps", 500),
            **kw,
        )
    )
    return order


@pytest.fixture
def new_token() -> str:
    token_register(symbol="SNIPE", mint=mint_generate("SNIPE"), decimals=6, name="Snipe")
    return "SNIPE"


def test_snipers_wait_for_the_launch_then_fire_in_submission_order_moving_the_price(
    new_token,
) -> None:
    orders = [sniper(new_token, wallet=n) for n in range(3)]
    for _ in range(2):
        assert tick() == []
    assert all(o.triggered_at is None for o in Order.objects.filter(pk__in=[o.pk for o in orders]))

    out = StringIO()
    call_command("launch_token", new_token, stdout=out)
    assert "pool raydium" in out.getvalue() and "pool meteora" in out.getvalue()
    opening = best_out("SOL", new_token, "1")

    assert orders_watch() == [str(o.pk) for o in orders]  # one tick, submission order
    filled = [run_to_end(o) for o in orders]  # the worker takes them in dispatch order
    assert [o.status for o in filled] == [OrderStatus.CONFIRMED] * 3
    assert all(statuses(o) == FULL for o in filled)
    received = [o.amount_out for o in filled]
    assert received[0] > received[1] > received[2]  # each buyer pays more than the one before
    assert received[0] <= opening
    assert best_out("SOL", new_token, "1") < received[2]  # and leaves the price higher still
    assert orders_watch() == []


def test_a_launch_through_the_service_fires_waiting_snipers_on_the_next_tick(new_token) -> None:
    order = sniper(new_token, wallet=1)
    pools = token_launch(new_token, price=Decimal("0.000001"), reserve_in_quote=Decimal("200"))
    assert {p.venue for p in pools} == {"raydium", "meteora"}
    (filled,) = tick()
    assert filled.pk == order.pk and filled.status == OrderStatus.CONFIRMED
    assert filled.quote["public"]["route"] == ["SOL", new_token]


def test_a_sniper_paying_in_usdc_routes_through_sol_after_the_launch(new_token) -> None:
    order = sniper(new_token, wallet=2, token_in="USDC", amount="100")
    token_launch(new_token)
    (filled,) = tick()
    assert filled.pk == order.pk and filled.status == OrderStatus.CONFIRMED
    assert filled.quote["public"]["route"] == ["USDC", "SOL", new_token]


def test_a_sniper_for_a_token_that_already_trades_fires_at_once() -> None:
    order = sniper("BONK", wallet=3, amount="0.1")
    (filled,) = tick()
    assert filled.pk == order.pk and filled.status == OrderStatus.CONFIRMED


def test_a_cancelled_or_expired_sniper_never_fires(new_token) -> None:
    cancelled = sniper(new_token, wallet=4)
    order_cancel(order_id=cancelled.pk)
    expiring = sniper(new_token, wallet=5, expires_at=timezone.now())
    waiting = sniper(new_token, wallet=6)
    token_launch(new_token)
    assert [o.pk for o in tick()] == [waiting.pk]
    for order, status in ((cancelled, "cancelled"), (expiring, "expired")):
        order.refresh_from_db()
        assert order.status == status and order.attempts == 0
        assert statuses(order) == ["pending", status]


def test_launching_twice_opens_no_second_pool_and_fires_nothing_twice(new_token) -> None:
    order = sniper(new_token, wallet=7)
    token_launch(new_token)
    assert token_launch(new_token) == []
    (filled,) = tick()
    assert filled.pk == order.pk
    out = StringIO()
    call_command("launch_token", new_token, stdout=out)
    assert "already has pools" in out.getvalue()
    assert tick() == []
