"""Price drift: the world outside our pools moves, and arbitrageurs drag the pools along.

Each pair has an external price (`dex.models.PairPrice`) that takes one step of a seeded
geometric random walk per call; every pool of the pair is then pulled halfway (in log price)
toward that price shifted by its venue's spread, the way arbitrage bots would close most of the
gap between a pool and the centralised exchanges. The spreads themselves wander a little but the
venues of a pair stay 2-5 % apart. With DEX_SEED set, step n of a pair always draws the same
numbers (`Random(f"{seed}:drift:{pair}:{n}")`), so runs are reproducible.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from decimal import Decimal, localcontext

from django.conf import settings
from django.db import transaction

from dex import meteora, models
from dex.pools import PoolSnapshot, pool_save, pools_of_pair

logger = logging.getLogger("dex.drift")

PULL = Decimal("0.5")  # share of the log-price gap the arbitrageurs close per step
SPREAD_MIN_BPS, SPREAD_MAX_BPS = 200, 500  # between the two venues of a pair
SPREAD_STEP_BPS = 10
# Volatility per step in basis points: stables barely move, memecoins a lot.
_VOLATILITY_BPS = {"stable": 1, "lst": 2, "major": 15, "meme": 40}
_CLASS = {
    "USDC": "stable",
    "USDT": "stable",
    "JitoSOL": "lst",
    "mSOL": "lst",
    "SOL": "major",
    "JUP": "major",
    "RAY": "major",
    "PYTH": "major",
    "JTO": "major",
    "BONK": "meme",
    "WIF": "meme",
    "POPCAT": "meme",
}


def _volatility_bps(symbol_a: str, symbol_b: str) -> int:
    classes = {_CLASS.get(symbol_a, "meme"), _CLASS.get(symbol_b, "meme")}
    if classes == {"stable"}:
        return _VOLATILITY_BPS["stable"]
    if "lst" in classes and classes <= {"lst", "major"}:
        return _VOLATILITY_BPS["lst"]
    return max(_VOLATILITY_BPS[c] for c in classes if c != "stable")


def _rng(pair: str, step: int) -> random.Random:
    seed = getattr(settings, "DEX_SEED", None)
    if seed is None:
        return random.Random(secrets.randbits(64))
    return random.Random(f"{seed}:drift:{pair}:{step}")


def _pool_price(pool: PoolSnapshot, decimals_a: int, decimals_b: int) -> Decimal:
    """The pool's current price, token_b per token_a in whole tokens."""
    if pool.dlmm is not None:
        raw = meteora.raw_price(pool.dlmm.params.bin_step, pool.dlmm.active_id)
    else:
        raw = Decimal(pool.reserve_b) / Decimal(pool.reserve_a)
    return raw.scaleb(decimals_a - decimals_b)


def _nudge(
    pool: PoolSnapshot, target: Decimal, decimals_a: int, decimals_b: int, spread_bps: int
) -> None:
    """Move a pool halfway toward `target` (whole tokens), as an arbitrageur's trade would."""
    current = _pool_price(pool, decimals_a, decimals_b)
    if current <= 0:
        return
    goal = current * (target / current) ** PULL
    raw_goal = goal.scaleb(decimals_b - decimals_a)
    if pool.dlmm is not None:
        target_id = meteora.bin_id_for_price(raw_goal, pool.dlmm.params.bin_step)
        state = meteora.shift_to(pool.dlmm, target_id)
        pool_save(
            pool,
            reserve_a=state.reserve_x,
            reserve_b=state.reserve_y,
            dlmm=state,
            spread_bps=spread_bps,
        )
        return
    # Constant product: the arbitrage trade keeps k (fees aside) and lands the price on goal.
    k = pool.reserve_a * pool.reserve_b
    reserve_a = int((Decimal(k) / raw_goal).sqrt())
    if reserve_a <= 0:
        return
    pool_save(pool, reserve_a=reserve_a, reserve_b=k // reserve_a, dlmm=None, spread_bps=spread_bps)


def market_drift_step() -> int:
    """One step for every pair: move its external price, then its pools. Returns pools moved.

    One short transaction per pair, so a landing swap never waits for the whole market."""
    moved = 0
    for pair_id in models.PairPrice.objects.order_by("id").values_list("id", flat=True):
        try:
            moved += _drift_pair(pair_id)
        except ArithmeticError:
            # A pool whose numbers cannot move (an empty side) stops its own pair, not the
            # market: the pair's transaction is rolled back and the next pair drifts.
            logger.exception("drift skipped pair_id=%s", pair_id)
    logger.info("drift step pools_moved=%s", moved)
    return moved


@transaction.atomic
def _drift_pair(pair_id: int) -> int:
    with localcontext() as ctx:
        ctx.prec = 50
        # Lock order: the pair, then its pools by id (landings lock pools by id too).
        pair = (
            models.PairPrice.objects.select_for_update(of=("self",))
            .select_related("token_a", "token_b")
            .get(pk=pair_id)
        )
        a, b = pair.token_a, pair.token_b
        rng = _rng(f"{a.symbol}/{b.symbol}", pair.step)
        sigma = _volatility_bps(a.symbol, b.symbol) / 10_000
        # Geometric random walk; the float only draws the step, the price stays Decimal.
        factor = Decimal(repr(math.exp(rng.gauss(0.0, sigma) - sigma * sigma / 2)))
        pair.price = (pair.price * factor).quantize(Decimal(1).scaleb(-24))
        pair.step += 1
        pair.save(update_fields=["price", "step", "updated_at"])
        pools = pools_of_pair(a.id, b.id, lock=True)
        spreads = _wander_spreads(pools, rng)
        for pool in pools:
            target = pair.price * (1 + Decimal(spreads[pool.id]) / 10_000)
            _nudge(pool, target, a.decimals, b.decimals, spreads[pool.id])
        return len(pools)


def _wander_spreads(pools: list[PoolSnapshot], rng: random.Random) -> dict[int, int]:
    """Each venue's spread takes a small step, kept so that the venues stay 2-5 % apart."""
    spreads = {p.id: p.spread_bps for p in pools}
    if len(pools) != 2:
        return spreads
    first, second = pools
    proposal = {
        first.id: first.spread_bps + rng.randint(-SPREAD_STEP_BPS, SPREAD_STEP_BPS),
        second.id: second.spread_bps + rng.randint(-SPREAD_STEP_BPS, SPREAD_STEP_BPS),
    }
    if SPREAD_MIN_BPS <= abs(proposal[first.id] - proposal[second.id]) <= SPREAD_MAX_BPS:
        return proposal
    return spreads
