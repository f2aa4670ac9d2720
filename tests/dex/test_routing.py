"""Routing on the seeded market: the best venue wins, splits and two-hop routes when they pay,
clear errors when nothing can fill."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.test import override_settings

from dex.router import market_load, route_best, token_has_pool
from dex.tokens import to_units, token_get
from dex.types import InsufficientLiquidityError, NoRouteError, Quote

pytestmark = pytest.mark.django_db


def _route(symbol_in: str, symbol_out: str, amount: str):
    token_in, token_out = token_get(symbol_in), token_get(symbol_out)
    return route_best(
        token_in=token_in, token_out=token_out, amount_in=to_units(Decimal(amount), token_in)
    )


def test_the_best_route_pays_the_most_of_every_quote() -> None:
    decision = _route("SOL", "USDC", "1.5")
    venues = {q.dex for q in decision.quotes}
    assert {"raydium", "meteora"} <= venues
    assert decision.best.amount_out == max(q.amount_out for q in decision.quotes)
    assert decision.best in decision.quotes
    assert decision.reason


def test_one_quote_per_venue_even_when_a_split_wins() -> None:
    decision = _route("SOL", "USDC", "5000")
    singles = [q for q in decision.quotes if q.dex in ("raydium", "meteora")]
    assert sorted(q.dex for q in singles) == ["meteora", "raydium"]
    assert decision.best.dex == "split"
    assert len(decision.best.legs) == 2
    assert sum(leg.in_amount for leg in decision.best.legs) == decision.best.amount_in
    assert sum(leg.percent for leg in decision.best.legs) == 100
    assert decision.best.amount_out > max(q.amount_out for q in singles)
    assert "split" in decision.reason


def test_a_pair_without_a_direct_pool_goes_through_a_hub() -> None:
    decision = _route("JUP", "BONK", "1000")
    assert decision.best.route == ("JUP", "SOL", "BONK")
    first, second = decision.best.legs
    assert (first.token_in, first.token_out, second.token_in, second.token_out) == (
        "JUP",
        "SOL",
        "SOL",
        "BONK",
    )
    assert second.in_amount == first.out_amount
    assert decision.best.amount_out == second.out_amount
    assert "no direct pool" in decision.reason


def test_a_token_without_pools_has_no_route() -> None:
    with pytest.raises(NoRouteError, match="no venue can route ORCA to USDC"):
        _route("ORCA", "USDC", "10")
    assert not token_has_pool(token_get("ORCA"))
    assert token_has_pool(token_get("JUP"))


def test_an_amount_beyond_the_pools_is_insufficient_liquidity() -> None:
    with pytest.raises(InsufficientLiquidityError):
        _route("SOL", "USDC", "10000000")


def test_an_amount_too_small_to_buy_anything_is_refused() -> None:
    with pytest.raises(InsufficientLiquidityError, match="too small"):
        _route("BONK", "SOL", "0.00001")


def test_a_token_cannot_be_swapped_for_itself() -> None:
    with pytest.raises(NoRouteError):
        _route("SOL", "SOL", "1")


def test_the_api_shape_uses_decimal_strings() -> None:
    best = _route("SOL", "USDC", "1.5").best
    data = best.to_dict()
    assert set(data) == {
        "dex",
        "amountIn",
        "amountOut",
        "price",
        "priceImpact",
        "fee",
        "route",
        "legs",
    }
    assert data["amountIn"] == "1.500000000"
    assert data["route"] == ["SOL", "USDC"]
    assert len(data["amountOut"].split(".")[1]) == 6
    exact = Decimal(data["amountOut"]) / Decimal("1.5")
    assert abs(Decimal(data["price"]) - exact) <= Decimal("0.000001")
    for value in (data["amountOut"], data["price"], data["priceImpact"], data["fee"]):
        assert isinstance(value, str)
        Decimal(value)
    leg = data["legs"][0]
    assert set(leg) == {
        "dex",
        "pool",
        "tokenIn",
        "tokenOut",
        "inAmount",
        "outAmount",
        "fee",
        "percent",
    }
    assert "legs" not in best.to_dict(legs=False)


def test_tiny_prices_are_written_without_an_exponent() -> None:
    data = _route("BONK", "SOL", "100000000").best.to_dict()
    assert "E" not in data["price"]
    assert Decimal(data["price"]) < Decimal("0.000001")


def test_quotes_round_trip_through_their_state() -> None:
    for quote in _route("JUP", "BONK", "1000").quotes + _route("SOL", "USDC", "5000").quotes:
        assert Quote.from_state(quote.to_state()) == quote


def test_routing_loads_the_pools_in_one_query(django_assert_num_queries) -> None:
    sol, usdc = token_get("SOL"), token_get("USDC")
    with django_assert_num_queries(1):
        route_best(token_in=sol, token_out=usdc, amount_in=10**9)


def test_a_loaded_market_routes_without_queries(django_assert_num_queries) -> None:
    sol, usdc, jup = token_get("SOL"), token_get("USDC"), token_get("JUP")
    market = market_load([(sol, usdc), (jup, usdc)])
    with django_assert_num_queries(0):
        first = market.route(token_in=sol, token_out=usdc, amount_in=10**9)
        market.route(token_in=jup, token_out=usdc, amount_in=10**9)
    assert first == route_best(token_in=sol, token_out=usdc, amount_in=10**9)


def test_each_decision_is_one_log_line_with_every_quote(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="dex.router"):
        decision = _route("SOL", "USDC", "5000")
    lines = [r.getMessage() for r in caplog.records if r.name == "dex.router"]
    assert len(lines) == 1
    assert "pair=SOL/USDC" in lines[0]
    assert "reason=" in lines[0]
    for quote in decision.quotes:
        assert quote.to_dict()["amountOut"] in lines[0]


@override_settings(DEX_QUOTE_LATENCY_MS=150)
def test_venues_are_quoted_in_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from dex import router

    slept: list[float] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(router.time, "sleep", recording_sleep)
    started = time.monotonic()
    decision = _route("SOL", "USDC", "1")
    elapsed = time.monotonic() - started
    assert {q.dex for q in decision.quotes} >= {"raydium", "meteora"}
    # Two venues quoted, one venue's latency waited: not the sum.
    assert sum(slept) == pytest.approx(0.150)
    assert elapsed >= 0.150
