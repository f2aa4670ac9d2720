"""Price drift: a seeded random walk of the external prices, pools pulled toward them, venues
kept 2-5 % apart, and the same seed giving the same market."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from dex import meteora, models
from dex.drift import market_drift_step
from dex.pools import pools_reset_to_seed
from dex.tasks import market_drift_task

pytestmark = pytest.mark.django_db


def _pool_price(pool: models.Pool) -> Decimal:
    """token_b per token_a in whole tokens."""
    if pool.venue == "meteora":
        raw = meteora.raw_price(pool.bin_step, pool.active_id)
    else:
        raw = pool.reserve_b / pool.reserve_a
    return raw.scaleb(pool.token_a.decimals - pool.token_b.decimals)


def _snapshot() -> dict[str, tuple]:
    return {
        p.address: (p.reserve_a, p.reserve_b, p.active_id, p.spread_bps)
        for p in models.Pool.objects.all()
    } | {
        f"{p.token_a_id}/{p.token_b_id}": (p.price, p.step) for p in models.PairPrice.objects.all()
    }


def test_a_step_moves_every_pair_and_its_pools() -> None:
    before = _snapshot()
    moved = market_drift_task()
    assert moved == models.Pool.objects.count()
    after = _snapshot()
    for pair in models.PairPrice.objects.all():
        key = f"{pair.token_a_id}/{pair.token_b_id}"
        assert after[key][1] == before[key][1] + 1
        assert after[key][0] != before[key][0]
    changed = [k for k in before if before[k] != after[k]]
    assert len(changed) > len(before) // 2


def test_a_pool_with_an_empty_side_stops_only_its_own_pair(caplog) -> None:
    # A pool no launch can open any more (dex.launch refuses an empty side), written directly:
    # its price is undefined, so its pair cannot drift; every other pair still must.
    broken = models.Pool.objects.filter(venue="raydium", token_a__symbol="RAY").get()
    models.Pool.objects.filter(pk=broken.pk).update(reserve_a=0)
    broken_pair = models.PairPrice.objects.get(token_a__symbol="RAY")
    before = _snapshot()
    moved = market_drift_task()
    assert moved == models.Pool.objects.exclude(pk=broken.pk).count()
    after = _snapshot()
    for pair in models.PairPrice.objects.all():
        key = f"{pair.token_a_id}/{pair.token_b_id}"
        steps = 0 if pair.pk == broken_pair.pk else 1
        assert after[key][1] == before[key][1] + steps, pair
    assert f"drift skipped pair_id={broken_pair.pk}" in caplog.text


def test_the_same_seed_gives_the_same_market() -> None:
    for _ in range(2):
        market_drift_step()
    first = _snapshot()
    pools_reset_to_seed()
    for _ in range(2):
        market_drift_step()
    assert _snapshot() == first
    pools_reset_to_seed()
    with override_settings(DEX_SEED=8):
        for _ in range(2):
            market_drift_step()
    assert _snapshot() != first


def test_pools_follow_the_external_price_and_venues_stay_apart() -> None:
    for _ in range(8):
        market_drift_step()
    sol_usdc = models.PairPrice.objects.get(token_a__symbol="SOL", token_b__symbol="USDC")
    pools = list(
        models.Pool.objects.filter(token_a__symbol="SOL", token_b__symbol="USDC").select_related(
            "token_a", "token_b"
        )
    )
    prices = sorted(_pool_price(p) for p in pools)
    gap = prices[1] / prices[0] - 1
    assert Decimal("0.015") <= gap <= Decimal("0.055")
    for price in prices:
        assert abs(price / sol_usdc.price - 1) < Decimal("0.05")


def test_a_pool_pushed_by_a_trade_is_pulled_back() -> None:
    pool = models.Pool.objects.select_related("token_a", "token_b").get(
        venue="raydium", token_a__symbol="SOL", token_b__symbol="USDC"
    )
    seeded = _pool_price(pool)
    # A whale sells SOL: 20 % more SOL in the pool, price down ~30 %.
    k = pool.reserve_a * pool.reserve_b
    pool.reserve_a = pool.reserve_a * 6 // 5
    pool.reserve_b = k // pool.reserve_a
    pool.save()
    pushed = _pool_price(pool)
    market_drift_step()
    market_drift_step()
    pool.refresh_from_db()
    assert pushed < _pool_price(pool)
    assert abs(_pool_price(pool) / seeded - 1) < abs(pushed / seeded - 1) / 2


def test_a_drift_step_locks_each_pair_briefly(django_assert_max_num_queries) -> None:
    pairs = models.PairPrice.objects.count()
    # It holds pool locks that landings wait for: a few statements per pair, nothing per bin.
    with django_assert_max_num_queries(1 + pairs * 7):
        market_drift_step()
