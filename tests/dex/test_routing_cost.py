"""The cost of one routing decision: well under a millisecond of CPU, splits and two-hop
included. Run with `-s` to see the figures per pair."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from dex.pools import pools_among
from dex.router import Market
from dex.tokens import to_units, token_get

pytestmark = pytest.mark.django_db

CASES = [
    ("SOL", "USDC", "1.5"),  # both venues, no split worth it
    ("SOL", "USDC", "5000"),  # a split wins
    ("JUP", "USDC", "20000"),  # direct, split, and two-hop through SOL
    ("JUP", "BONK", "1000"),  # two-hop only
    ("WIF", "JUP", "50000"),  # two-hop with splits on both hops
    ("USDC", "USDT", "250000"),  # stables, two-hop via SOL too
]


def test_a_routing_decision_costs_well_under_a_millisecond_of_cpu() -> None:
    snapshot = pools_among({"SOL", "USDC", "USDT", "JUP", "BONK", "WIF"})
    worst = 0.0
    for symbol_in, symbol_out, amount in CASES:
        token_in, token_out = token_get(symbol_in), token_get(symbol_out)
        units = to_units(Decimal(amount), token_in)
        rounds = 200
        started = time.process_time()
        for _ in range(rounds):
            # A fresh Market each time: nothing is cached between decisions, as in route_best.
            decision = Market(snapshot).route(
                token_in=token_in, token_out=token_out, amount_in=units
            )
        cpu_us = (time.process_time() - started) / rounds * 1e6
        worst = max(worst, cpu_us)
        print(
            f"{symbol_in}->{symbol_out} {amount}: {cpu_us:.0f} us CPU, best {decision.best.dex} "
            f"{'/'.join(decision.best.route)}, {len(decision.quotes)} candidates"
        )
    assert worst < 1000


def test_route_best_with_its_query_stays_cheap() -> None:
    from dex.router import route_best

    sol, usdc = token_get("SOL"), token_get("USDC")
    route_best(token_in=sol, token_out=usdc, amount_in=10**9)  # warm caches
    rounds = 50
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        route_best(token_in=sol, token_out=usdc, amount_in=10**9)
    cpu_ms = (time.process_time() - cpu) / rounds * 1000
    wall_ms = (time.perf_counter() - wall) / rounds * 1000
    print(f"route_best SOL->USDC incl. its one query: {cpu_ms:.2f} ms CPU, {wall_ms:.2f} ms wall")
    assert cpu_ms < 5
