"""Meteora DLMM: bin prices, base and variable fees, the volatility accumulator, and the
properties of a swap across bins."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dex import meteora
from dex.types import InsufficientLiquidityError

fast = settings(max_examples=150, deadline=None)
NOW = 1_800_000_000

SOL_USDC = meteora.FeeParams(bin_step=10, base_factor=10_000)


def _pool(
    bin_step: int = 10, price: str = "0.15", value_y: int = 5_000_000 * 10**6, **fees: int
) -> meteora.PoolState:
    params = replace(SOL_USDC, bin_step=bin_step, **fees)
    active = meteora.bin_id_for_price(Decimal(price), bin_step)
    bins = meteora.bins_around(active_id=active, bin_step=bin_step, value_y=value_y)
    return meteora.PoolState(
        params=params, active_id=active, bins=bins, index_reference=active, last_update=NOW - 3600
    )


def test_bin_prices_follow_the_bin_step() -> None:
    assert meteora.price_q64(10, 0) == 1 << 64
    assert meteora.price_q64(10, 1) == int(Decimal("1.001") * (1 << 64))
    assert meteora.price_q64(25, -1) == int((1 << 64) / Decimal("1.0025"))
    # SOL (9 decimals) at 150 USDC (6 decimals) is 0.15 base units per lamport.
    bin_id = meteora.bin_id_for_price(Decimal("0.15"), 10)
    assert abs(meteora.raw_price(10, bin_id) - Decimal("0.15")) < Decimal("0.15") * Decimal(
        "0.0005"
    )


def test_the_known_fee_vectors() -> None:
    # baseFee = baseFactor * binStep * 10 = 1 000 000 / 1e9 = 0.1 %.
    assert meteora.base_fee(SOL_USDC) == 1_000_000
    # (350 000 * 10)^2 * 40 000 / 1e11 = 4 900 000, i.e. 0.49 %.
    assert meteora.variable_fee(SOL_USDC, 350_000) == 4_900_000
    assert meteora.total_fee(SOL_USDC, 0) == 1_000_000
    assert meteora.total_fee(SOL_USDC, 350_000) == 5_900_000
    wild = replace(SOL_USDC, variable_fee_control=10**9)
    assert meteora.total_fee(wild, 350_000) == meteora.MAX_FEE_RATE  # capped at 10 %


def test_a_swap_inside_one_bin_has_no_price_impact_and_pays_the_base_fee() -> None:
    pool = _pool()
    result = meteora.swap(pool, 10**9, swap_for_y=True, now=NOW)  # 1 SOL
    assert result.bins_crossed == 1
    assert result.fee == 10**6  # ceil(1e9 * 1e6 / 1e9): 0.1 %
    price = meteora.price_q64(10, pool.active_id)
    assert result.amount_out == ((10**9 - 10**6) * price) >> 64


def test_the_volatility_accumulator_raises_the_fee_of_a_sweep() -> None:
    pool = _pool()
    ladder = meteora.Ladder(pool, swap_for_y=True, now=NOW)
    ladder.capacity()
    assert ladder.fees[0] == meteora.base_fee(pool.params)
    assert ladder.fees == sorted(ladder.fees)  # every bin further away pays more
    assert ladder.fees[-1] > ladder.fees[0]
    big = meteora.swap(pool, 5_000 * 10**9, swap_for_y=True, now=NOW)
    assert big.bins_crossed > 5
    assert big.state.volatility_accumulator == min(
        (big.bins_crossed - 1) * 10_000, pool.params.max_volatility_accumulator
    )


def test_volatility_decays_with_time_since_the_last_swap() -> None:
    pool = meteora.swap(_pool(), 5_000 * 10**9, swap_for_y=True, now=NOW).state
    va = pool.volatility_accumulator
    assert va > 0
    # Within the filter period the reference stays: a burst keeps accumulating.
    assert meteora.references_at(pool, NOW + 5) == (pool.volatility_reference, pool.index_reference)
    # After it the reference moves to the active bin and the volatility is halved.
    assert meteora.references_at(pool, NOW + 60) == (va * 5_000 // 10_000, pool.active_id)
    # After the decay period it is forgotten.
    assert meteora.references_at(pool, NOW + 601) == (0, pool.active_id)


def test_a_swap_beyond_the_bins_is_refused() -> None:
    pool = _pool()
    capacity = meteora.Ladder(pool, swap_for_y=True, now=NOW).capacity()
    drained = meteora.swap(pool, capacity, swap_for_y=True, now=NOW)
    assert drained.amount_out == pool.reserve_y
    with pytest.raises(InsufficientLiquidityError):
        meteora.swap(pool, capacity + 1, swap_for_y=True, now=NOW)


pools = st.builds(
    _pool,
    bin_step=st.sampled_from((1, 10, 25, 100)),
    price=st.sampled_from(("0.15", "6.6", "0.0013", "1.0")),
    value_y=st.integers(min_value=10**6, max_value=10**14),
)
fractions = st.integers(min_value=0, max_value=10_000)  # of the capacity, in basis points


def _amount(pool: meteora.PoolState, swap_for_y: bool, bps: int) -> int:
    return meteora.Ladder(pool, swap_for_y=swap_for_y, now=NOW).capacity() * bps // 10_000


@fast
@given(pools, st.booleans(), fractions, fractions)
def test_output_grows_with_input(pool: meteora.PoolState, swap_for_y: bool, a: int, b: int) -> None:
    low, high = sorted((_amount(pool, swap_for_y, a), _amount(pool, swap_for_y, b)))
    ladder = meteora.Ladder(pool, swap_for_y=swap_for_y, now=NOW)
    assert ladder.amount_out(low) <= ladder.amount_out(high)


@fast
@given(pools, st.booleans(), fractions)
def test_output_never_reaches_the_reserve_before_the_bins_are_spent(
    pool: meteora.PoolState, swap_for_y: bool, bps: int
) -> None:
    amount = _amount(pool, swap_for_y, bps)
    reserve = pool.reserve_y if swap_for_y else pool.reserve_x
    result = meteora.swap(pool, amount, swap_for_y=swap_for_y, now=NOW)
    assert 0 <= result.amount_out <= reserve
    if bps < 10_000:
        assert result.amount_out < reserve


@fast
@given(pools, st.booleans(), fractions)
def test_fees_are_never_negative_and_add_up(
    pool: meteora.PoolState, swap_for_y: bool, bps: int
) -> None:
    amount = _amount(pool, swap_for_y, bps)
    result = meteora.swap(pool, amount, swap_for_y=swap_for_y, now=NOW)
    after = result.state
    assert 0 <= result.fee <= amount
    # Every unit paid is in the bins (net and fee alike); every unit received left them.
    if swap_for_y:
        assert after.reserve_x == pool.reserve_x + amount
        assert after.reserve_y == pool.reserve_y - result.amount_out
    else:
        assert after.reserve_y == pool.reserve_y + amount
        assert after.reserve_x == pool.reserve_x - result.amount_out
    # At least the base fee on what went through, never more than 10 %.
    assert (
        result.fee * meteora.FEE_PRECISION >= (amount - result.fee) * meteora.base_fee(pool.params)
        or amount < 10
    )
    assert (
        result.fee
        <= amount * meteora.MAX_FEE_RATE // meteora.FEE_PRECISION + 1 + (result.bins_crossed) * 2
    )


@fast
@given(pools, st.booleans(), fractions)
def test_a_swap_and_its_reverse_never_make_money(
    pool: meteora.PoolState, swap_for_y: bool, bps: int
) -> None:
    amount = _amount(pool, swap_for_y, bps)
    there = meteora.swap(pool, amount, swap_for_y=swap_for_y, now=NOW)
    back = meteora.swap(there.state, there.amount_out, swap_for_y=not swap_for_y, now=NOW)
    assert back.amount_out <= amount


@fast
@given(pools, st.booleans(), fractions)
def test_the_quote_ladder_and_the_swap_agree(
    pool: meteora.PoolState, swap_for_y: bool, bps: int
) -> None:
    amount = _amount(pool, swap_for_y, bps)
    ladder = meteora.Ladder(pool, swap_for_y=swap_for_y, now=NOW)
    result = meteora.swap(pool, amount, swap_for_y=swap_for_y, now=NOW)
    assert ladder.amount_out(amount) == result.amount_out
    assert ladder.quote(amount) == (result.amount_out, result.fee, result.bins_crossed)


def test_shifting_the_active_bin_converts_the_bins_passed() -> None:
    pool = _pool()
    target = pool.active_id - 20
    down = meteora.shift_to(pool, target)
    assert down.active_id == target
    assert down.reserve_y < pool.reserve_y and down.reserve_x > pool.reserve_x
    # The arbitrageur bought the Y above the new price: valued at the new price, the LPs lost.
    price = meteora.price_q64(10, target)
    value_before = pool.reserve_y + (pool.reserve_x * price >> 64)
    value_after = down.reserve_y + (down.reserve_x * price >> 64)
    assert value_after <= value_before
    far = meteora.shift_to(pool, pool.active_id + 500)  # beyond the bins: the LPs recentre
    assert min(far.bins) < far.active_id < max(far.bins)
