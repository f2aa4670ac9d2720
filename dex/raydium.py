"""Raydium's constant-product venue (AMM v4 / CPMM), as its on-chain program computes a swap.

Pure functions on integer base units: no database, no clock, no randomness, so the math is
property-testable and cheap enough to call thousands of times per routing decision. Every
rounding goes in the pool's favour, as on chain: the fee is rounded up, the output down.
"""

from __future__ import annotations

from dataclasses import dataclass

FEE_DENOMINATOR = 1_000_000
AMM_V4_FEE_RATE = 2_500  # 0.25 %
CPMM_FEE_TIERS = (2_500, 10_000, 20_000, 40_000)  # 0.25 %, 1 %, 2 %, 4 %


@dataclass(frozen=True, slots=True)
class SwapResult:
    amount_in: int  # gross, what the trader pays
    fee: int  # in the input token; it stays in the pool for the LPs
    amount_out: int
    reserve_in_after: int
    reserve_out_after: int


def trade_fee(amount_in: int, fee_rate: int) -> int:
    """ceil(amount_in * rate / 1 000 000): the trader never pays less than the exact fee."""
    return -(-amount_in * fee_rate // FEE_DENOMINATOR)


def amount_out(reserve_in: int, reserve_out: int, amount_in: int, fee_rate: int) -> int:
    """Output of a swap: y - ceil(x·y / (x + in')) where in' is the input after the fee.

    The hot path of routing; kept to a handful of integer operations."""
    net = amount_in - (-(-amount_in * fee_rate // FEE_DENOMINATOR))
    if net <= 0:
        return 0
    return reserve_out - (-(-reserve_in * reserve_out // (reserve_in + net)))


def swap(reserve_in: int, reserve_out: int, amount_in: int, fee_rate: int) -> SwapResult:
    """Execute a swap on a pool state: the whole gross input (fee included) joins the reserve,
    which is why k grows with every trade."""
    if amount_in < 0:
        raise ValueError("amount_in must not be negative")
    if reserve_in <= 0 or reserve_out <= 0:
        raise ValueError("the pool has no liquidity")
    fee = trade_fee(amount_in, fee_rate)
    out = amount_out(reserve_in, reserve_out, amount_in, fee_rate)
    return SwapResult(
        amount_in=amount_in,
        fee=fee,
        amount_out=out,
        reserve_in_after=reserve_in + amount_in,
        reserve_out_after=reserve_out - out,
    )


def max_amount_in(reserve_in: int, fee_rate: int) -> int:
    """The largest gross input whose post-fee amount does not exceed the input reserve.

    Beyond it a single swap would take more than half of the output reserve; the router treats
    that as more than the pool can reasonably fill."""
    gross = reserve_in * FEE_DENOMINATOR // (FEE_DENOMINATOR - fee_rate) + 2
    while gross - trade_fee(gross, fee_rate) > reserve_in:
        gross -= 1
    return gross
