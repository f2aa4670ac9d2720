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
