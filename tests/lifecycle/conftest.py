"""Helpers for the lifecycle tests: reading the market's price, moving it with real trades,
running the watcher's tick and the pipeline as beat and a worker would, and reading histories."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from dex.router import route_best
from dex.tokens import to_units, token_cache_clear, token_get
from engine.pipeline import order_execute
from engine.services import OrderRequest, order_submit
from engine.watcher import orders_watch
from orders.models import Order
from tests.conftest import make_wallet
from tests.engine.test_pipeline import run_to_end

__all__ = ["best_out", "flush_events", "history", "run_to_end", "tick"]


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    # Tokens a test registers are rolled back (or flushed) with it; the process cache must follow.
    token_cache_clear()
    yield
    token_cache_clear()


def flush_events() -> None:
    """Wait until every event committed so far has been handed to the channel layer."""
    from engine import events

    sink = getattr(events, "outbox", None) or events.publisher  # type: ignore[attr-defined]
    sink.flush()


def best_out(token_in: str, token_out: str, amount: Decimal | str) -> Decimal:
    """What the best route pays now for `amount` of token_in, in whole tokens of token_out."""
    a, b = token_get(token_in), token_get(token_out)
    decision = route_best(token_in=a, token_out=b, amount_in=to_units(Decimal(amount), a))
    return Decimal(decision.best.amount_out).scaleb(-b.decimals)


def trade(token_in: str, token_out: str, amount: Decimal | str, wallet: int = 200) -> Order:
    """A real market order, executed to the end: the way to move a pool's price."""
    order, _ = order_submit(
        request=OrderRequest(
            wallet_address=make_wallet(wallet),
            token_in=token_in,
            token_out=token_out,
            amount_in=Decimal(amount),
            slippage_bps=5000,
        )
    )
    order = run_to_end(order)
    assert order.status == "confirmed", (order.status, order.error)
    return order


def tick() -> list[Order]:
    """One watcher tick, then each triggered order executed as a worker would, in dispatch
    order. Returns the triggered orders, refreshed."""
    ids = orders_watch()
    return [run_to_end(Order.objects.get(pk=i)) for i in ids]


def history(order: Order) -> list[tuple[int, str]]:
    return list(order.events.order_by("seq").values_list("seq", "status"))


def statuses(order: Order) -> list[str]:
    return [status for _, status in history(order)]


def assert_history_consistent(order: Order) -> None:
    """seq 1..n with no gap, and every step one the state machine allows."""
    from engine.states import transition_allowed

    steps = history(order)
    assert [seq for seq, _ in steps] == list(range(1, len(steps) + 1))
    assert steps[0][1] == "pending"
    for (_, before), (_, after) in itertools.pairwise(steps):
        assert transition_allowed(before, after), (before, after, steps)
    order.refresh_from_db()
    assert order.last_seq == len(steps) and order.status == steps[-1][1]


@pytest.fixture
def limit_order(wallet: str) -> Callable[..., Order]:
    """Submit a limit order through the engine's service, as the API does."""

    def _submit(limit: Decimal | str, amount: str = "1", **overrides: Any) -> Order:
        fields: dict[str, Any] = {
            "wallet_address": wallet,
            "token_in": "SOL",
            "token_out": "USDC",
            "amount_in": Decimal(amount),
            "order_type": "limit",
            "limit_price": Decimal(limit),
        }
        fields.update(overrides)
        order, _ = order_submit(request=OrderRequest(**fields))
        return order

    return _submit


def in_seconds(seconds: float) -> Any:
    from datetime import timedelta

    return timezone.now() + timedelta(seconds=seconds)


_unused = order_execute
