"""Raydium's constant product: the known mainnet vector and the properties any trader relies on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dex import raydium

reserves = st.integers(min_value=10**3, max_value=10**18)
amounts = st.integers(min_value=0, max_value=10**17)
rates = st.sampled_from((0, 100, *raydium.CPMM_FEE_TIERS))
fast = settings(max_examples=300, deadline=None)


def test_the_known_mainnet_vector() -> None:
    # 8 100 000 000 in at 0.25 %: the fee is 20 250 000, 8 079 750 000 enters the curve.
    assert raydium.trade_fee(8_100_000_000, raydium.AMM_V4_FEE_RATE) == 20_250_000
    result = raydium.swap(10**13, 10**12, 8_100_000_000, raydium.AMM_V4_FEE_RATE)
    assert result.amount_in - result.fee == 8_079_750_000
    # y - ceil(x*y / (x + in')), computed by hand for this pool.
    x, y = 10**13, 10**12
    assert result.amount_out == y - -(-x * y // (x + 8_079_750_000))


def test_the_fee_is_rounded_up_and_the_output_down() -> None:
    assert raydium.trade_fee(1, 2_500) == 1  # the pool never gives a free unit
    assert raydium.trade_fee(400, 2_500) == 1
    assert raydium.trade_fee(401, 2_500) == 2
    # 1 unit in leaves nothing after the fee: nothing out.
    assert raydium.amount_out(10**9, 10**9, 1, 2_500) == 0
    # Without fee, 1:1 pool, 1 in: x*y/(x+1) rounds up, so the output rounds down to 0.
    assert raydium.amount_out(10**9, 10**9, 1, 0) == 0


@fast
@given(reserves, reserves, amounts, amounts, rates)
def test_output_grows_with_input(x: int, y: int, a: int, extra: int, rate: int) -> None:
    assert raydium.amount_out(x, y, a, rate) <= raydium.amount_out(x, y, a + extra, rate)


@fast
@given(reserves, reserves, amounts, rates)
def test_output_never_reaches_the_reserve_and_k_never_falls(
    x: int, y: int, a: int, rate: int
) -> None:
    result = raydium.swap(x, y, a, rate)
    assert 0 <= result.amount_out < y
    assert result.reserve_in_after * result.reserve_out_after >= x * y


@fast
@given(reserves, reserves, amounts, rates)
def test_fees_are_never_negative_and_add_up(x: int, y: int, a: int, rate: int) -> None:
    result = raydium.swap(x, y, a, rate)
    assert 0 <= result.fee <= a
    assert result.fee * raydium.FEE_DENOMINATOR >= a * rate  # at least the exact fee
    assert (result.fee - 1) * raydium.FEE_DENOMINATOR < a * rate or result.fee == 0
    net = a - result.fee
    # The output is what the net input buys on the curve, no more.
    assert result.amount_out == raydium.amount_out(x, y, a, rate)
    assert net == 0 or result.amount_out <= y * net // (x + net) + 1


@fast
@given(reserves, reserves, amounts, rates)
def test_a_swap_and_its_reverse_never_make_money(x: int, y: int, a: int, rate: int) -> None:
    there = raydium.swap(x, y, a, rate)
    back = raydium.swap(there.reserve_out_after, there.reserve_in_after, there.amount_out, rate)
    assert back.amount_out <= a


@fast
@given(reserves, rates)
def test_max_amount_in_is_the_largest_input_within_the_reserve(x: int, rate: int) -> None:
    gross = raydium.max_amount_in(x, rate)
    assert gross - raydium.trade_fee(gross, rate) <= x
    assert gross + 1 - raydium.trade_fee(gross + 1, rate) > x
