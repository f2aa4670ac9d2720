"""Meteora's DLMM venue (Dynamic Liquidity Market Maker), as its on-chain program computes a swap.

Liquidity sits in discrete bins. Bin `i` trades at the constant price `(1 + binStep/10000)^i`
(token Y base units per token X base unit, so the tokens' decimals are folded in), and inside a bin
the curve is constant sum: no slippage until the bin is empty, then the swap crosses into the next
bin. Each bin charges `ceil(in * totalFee / 1e9)` with

    totalFee    = min(baseFee + variableFee, 10 %)            (1e9 = 100 %)
    baseFee     = baseFactor * binStep * 10
    variableFee = ceil((volatilityAccumulator * binStep)² * variableFeeControl / 1e11)

and the volatility accumulator counts the bins crossed away from a reference bin, decaying with
the time since the last swap (filter and decay periods, reduction factor), so a burst of trading
that sweeps many bins pays a rising fee, like on mainnet.

Pure functions on integer state: no database, no clock (the caller passes `now` in unix seconds),
no randomness. Prices are Q64.64 fixed-point integers as on chain; all rounding favours the pool.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from functools import lru_cache

from dex.types import InsufficientLiquidityError

FEE_PRECISION = 1_000_000_000  # 1e9 = 100 %
MAX_FEE_RATE = 100_000_000  # 10 %
BASIS_POINT_MAX = 10_000
SCALE_OFFSET = 64
ONE_Q64 = 1 << SCALE_OFFSET


@dataclass(frozen=True, slots=True)
class FeeParams:
    """A pool's static fee parameters (the program's `StaticParameters`)."""

    bin_step: int  # basis points between neighbouring bins
    base_factor: int
    filter_period: int = 30  # seconds: swaps closer than this keep the same reference
    decay_period: int = 600  # seconds: after this long the volatility is forgotten
    reduction_factor: int = 5_000  # of 10 000: how much volatility survives a filter period
    variable_fee_control: int = 40_000
    max_volatility_accumulator: int = 350_000


@dataclass(frozen=True, slots=True)
class PoolState:
    """A DLMM pool: bins `{id: (x, y)}`, the active bin and the volatility state."""

    params: FeeParams
    active_id: int
    bins: dict[int, tuple[int, int]]
    volatility_accumulator: int = 0
    volatility_reference: int = 0
    index_reference: int = 0
    last_update: int = 0  # unix seconds of the last swap
    bin_ids: tuple[int, ...] = field(default=())  # sorted; derived from `bins` when empty

    def __post_init__(self) -> None:
        if not self.bin_ids:
            object.__setattr__(self, "bin_ids", tuple(sorted(self.bins)))

    @property
    def reserve_x(self) -> int:
        return sum(x for x, _ in self.bins.values())

    @property
    def reserve_y(self) -> int:
        return sum(y for _, y in self.bins.values())


@dataclass(frozen=True, slots=True)
class SwapResult:
    amount_in: int  # gross, fees included
    fee: int  # in the input token; it stays in the bins for the LPs
    amount_out: int
    bins_crossed: int
    state: PoolState  # the pool after the swap


# --- prices ------------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def price_q64(bin_step: int, bin_id: int) -> int:
    """Bin price as Q64.64: floor((1 + binStep/10000)^id * 2^64), computed in exact decimal
    arithmetic so that every process agrees to the last unit."""
    with localcontext() as ctx:
        ctx.prec = 60
        base = Decimal(BASIS_POINT_MAX + bin_step) / BASIS_POINT_MAX
        return int(base**bin_id * ONE_Q64)


def bin_id_for_price(raw_price: Decimal, bin_step: int) -> int:
    """The bin whose price is nearest a raw price (Y base units per X base unit)."""
    if raw_price <= 0:
        raise ValueError("price must be positive")
    estimate = round(math.log(raw_price) / math.log1p(bin_step / BASIS_POINT_MAX))
    target = int(raw_price * ONE_Q64)
    # The float estimate can be one off; settle it with the exact prices.
    return min(
        (estimate - 1, estimate, estimate + 1),
        key=lambda i: abs(price_q64(bin_step, i) - target),
    )


def raw_price(bin_step: int, bin_id: int) -> Decimal:
    """A bin's price as a Decimal, Y base units per X base unit."""
    with localcontext() as ctx:
        ctx.prec = 40
        return Decimal(price_q64(bin_step, bin_id)) / ONE_Q64


# --- fees --------------------------------------------------------------------------------------


def base_fee(params: FeeParams) -> int:
    return params.base_factor * params.bin_step * 10


def variable_fee(params: FeeParams, volatility_accumulator: int) -> int:
    square = (volatility_accumulator * params.bin_step) ** 2
    return -(-square * params.variable_fee_control // 100_000_000_000)


def total_fee(params: FeeParams, volatility_accumulator: int) -> int:
    return min(base_fee(params) + variable_fee(params, volatility_accumulator), MAX_FEE_RATE)


def references_at(state: PoolState, now: int) -> tuple[int, int]:
    """(volatility_reference, index_reference) at the start of a swap at `now`: within the filter
    period nothing changes (a burst keeps accumulating); after it the reference bin moves to the
    active one and the volatility decays by the reduction factor, or resets after the decay
    period."""
    elapsed = now - state.last_update
    if elapsed < state.params.filter_period:
        return state.volatility_reference, state.index_reference
    if elapsed < state.params.decay_period:
        reference = state.volatility_accumulator * state.params.reduction_factor // BASIS_POINT_MAX
        return reference, state.active_id
    return 0, state.active_id


# --- quoting: the ladder -------------------------------------------------------------------------


class Ladder:
    """The bins a swap in one direction would cross, accumulated lazily.

    For a given starting state and time the fee of every bin is fixed (it depends only on how far
    the bin is from the reference), so the gross input that empties bins 0..k-1 is a prefix sum;
    quoting an amount is then a bisection plus one partial bin. The router quotes one pool dozens
    of times per decision (split search), which is why this exists; `swap` uses it too, so quote
    and execution can never disagree."""

    __slots__ = (
        "_ids",
        "_next",
        "cum_fee",
        "cum_gross",
        "cum_out",
        "fees",
        "ids",
        "index_reference",
        "outs",
        "prices",
        "state",
        "swap_for_y",
        "vas",
        "volatility_reference",
    )

    def __init__(self, state: PoolState, *, swap_for_y: bool, now: int) -> None:
        self.state = state
        self.swap_for_y = swap_for_y
        self.volatility_reference, self.index_reference = references_at(state, now)
        active = state.active_id
        ids = state.bin_ids
        if swap_for_y:
            # Selling X takes Y from the active bin and the bins below it.
            self._ids = ids[: bisect_right(ids, active)][::-1]
        else:
            self._ids = ids[bisect_right(ids, active - 1) :]
        self._next = 0
        self.ids: list[int] = []
        self.prices: list[int] = []
        self.fees: list[int] = []
        self.vas: list[int] = []
        self.outs: list[int] = []  # what each bin can give
        self.cum_gross: list[int] = [0]
        self.cum_out: list[int] = [0]
        self.cum_fee: list[int] = [0]

    def _extend_to(self, amount_in: int) -> None:
        """Add bins until their total gross input reaches `amount_in` (or bins run out)."""
        params = self.state.params
        bins = self.state.bins
        bin_step = params.bin_step
        base = base_fee(params)
        control = params.variable_fee_control
        max_va = params.max_volatility_accumulator
        vr = self.volatility_reference
        ir = self.index_reference
        ids = self._ids
        index = self._next
        swap_for_y = self.swap_for_y
        cum_gross = self.cum_gross
        while cum_gross[-1] < amount_in and index < len(ids):
            bin_id = ids[index]
            index += 1
            x, y = bins[bin_id]
            available = y if swap_for_y else x
            if available <= 0:
                continue
            price = price_q64(bin_step, bin_id)
            va = min(vr + abs(ir - bin_id) * BASIS_POINT_MAX, max_va)
            fee_rate = min(
                base + -(-((va * bin_step) ** 2) * control // 100_000_000_000), MAX_FEE_RATE
            )
            if swap_for_y:
                max_in = -(-(available << SCALE_OFFSET) // price)
            else:
                max_in = -(-(available * price) >> SCALE_OFFSET)
            max_fee = -(-max_in * fee_rate // (FEE_PRECISION - fee_rate))
            self.ids.append(bin_id)
            self.prices.append(price)
            self.fees.append(fee_rate)
            self.vas.append(va)
            self.outs.append(available)
            cum_gross.append(cum_gross[-1] + max_in + max_fee)
            self.cum_out.append(self.cum_out[-1] + available)
            self.cum_fee.append(self.cum_fee[-1] + max_fee)
        self._next = index

    @property
    def mid_price_q64(self) -> int | None:
        """Price of the first bin with liquidity in this direction: the pool's mid for impact."""
        self._extend_to(1)
        return self.prices[0] if self.prices else None

    def capacity(self) -> int:
        """The largest gross input this direction can absorb."""
        self._extend_to(1 << 200)
        return self.cum_gross[-1]

    def _partial(self, k: int, remaining: int) -> tuple[int, int]:
        """(out, fee) of `remaining` gross input entering bin k without emptying it."""
        fee = -(-remaining * self.fees[k] // FEE_PRECISION)
        net = remaining - fee
        if net <= 0:
            return 0, remaining
        if self.swap_for_y:
            return (net * self.prices[k]) >> SCALE_OFFSET, fee
        return (net << SCALE_OFFSET) // self.prices[k], fee

    def amount_out(self, amount_in: int) -> int | None:
        """Output for a gross input, or None when the bins cannot absorb it. The hot path."""
        cum_gross = self.cum_gross
        if cum_gross[-1] < amount_in:
            self._extend_to(amount_in)
            if cum_gross[-1] < amount_in:
                return None
        k = bisect_right(cum_gross, amount_in) - 1
        remaining = amount_in - cum_gross[k]
        if remaining == 0:
            return self.cum_out[k]
        return self.cum_out[k] + self._partial(k, remaining)[0]

    def quote(self, amount_in: int) -> tuple[int, int, int] | None:
        """(out, fee, bins touched) for a gross input, or None when it cannot be absorbed."""
        self._extend_to(amount_in)
        cum_gross = self.cum_gross
        if cum_gross[-1] < amount_in:
            return None
        k = bisect_right(cum_gross, amount_in) - 1
        remaining = amount_in - cum_gross[k]
        if remaining == 0:
            return self.cum_out[k], self.cum_fee[k], k
        out, fee = self._partial(k, remaining)
        return self.cum_out[k] + out, self.cum_fee[k] + fee, k + 1


def swap(state: PoolState, amount_in: int, *, swap_for_y: bool, now: int) -> SwapResult:
    """Execute a swap and return the pool's next state. Raises InsufficientLiquidityError when
    the bins in that direction cannot absorb the whole input (the program would fail too)."""
    if amount_in < 0:
        raise ValueError("amount_in must not be negative")
    if amount_in == 0:
        return SwapResult(0, 0, 0, 0, state)
    ladder = Ladder(state, swap_for_y=swap_for_y, now=now)
    quoted = ladder.quote(amount_in)
    if quoted is None:
        raise InsufficientLiquidityError(
            f"the DLMM pool's bins can absorb at most {ladder.capacity()} base units"
        )
    out, fee, touched = quoted
    bins = dict(state.bins)
    full = bisect_right(ladder.cum_gross, amount_in) - 1  # bins emptied completely
    for k in range(full):
        bin_id = ladder.ids[k]
        x, y = bins[bin_id]
        paid = ladder.cum_gross[k + 1] - ladder.cum_gross[k]
        bins[bin_id] = (x + paid, 0) if swap_for_y else (0, y + paid)
    if touched > full:
        bin_id = ladder.ids[full]
        remaining = amount_in - ladder.cum_gross[full]
        part_out, _ = ladder._partial(full, remaining)
        x, y = bins[bin_id]
        bins[bin_id] = (
            (x + remaining, y - part_out) if swap_for_y else (x - part_out, y + remaining)
        )
    last = max(touched, 1) - 1
    new_state = replace(
        state,
        bins=bins,
        bin_ids=state.bin_ids,
        active_id=ladder.ids[last],
        volatility_accumulator=ladder.vas[last],
        volatility_reference=ladder.volatility_reference,
        index_reference=ladder.index_reference,
        last_update=now,
    )
    return SwapResult(
        amount_in=amount_in,
        fee=fee,
        amount_out=out,
        bins_crossed=touched,
        state=new_state,
    )


# --- liquidity shapes (seeding, launches, rebalancing) -------------------------------------------


def bins_around(
    *, active_id: int, bin_step: int, value_y: int, half_width: int = 69
) -> dict[int, tuple[int, int]]:
    """A bell-shaped ("curve") distribution worth `value_y` Y base units: Y in the bins below the
    active one, X above it, half of each in the active bin, more liquidity near the price."""
    weights = {k: half_width + 1 - abs(k) for k in range(-half_width, half_width + 1)}
    side_total = sum(w for k, w in weights.items() if k < 0) + weights[0] / 2
    half_value = value_y // 2
    bins: dict[int, tuple[int, int]] = {}
    for k, w in weights.items():
        bin_id = active_id + k
        share = int(half_value * w / side_total) if k != 0 else int(half_value * w / side_total / 2)
        y = share if k <= 0 else 0
        x = 0
        if k >= 0:
            x = (share << SCALE_OFFSET) // price_q64(bin_step, bin_id)
        if x or y:
            bins[bin_id] = (x, y)
    return bins


def shift_to(state: PoolState, target_id: int, *, recentre_below: int = 10) -> PoolState:
    """Move the active bin to `target_id` as a fee-free arbitrageur would: every bin passed is
    converted at its own price. If that leaves fewer than `recentre_below` liquid bins on either
    side, the LPs recentre: the pool's value is redistributed around the new price."""
    if target_id == state.active_id:
        return state
    bins = dict(state.bins)
    step = state.params.bin_step
    if target_id < state.active_id:
        for bin_id in state.bin_ids:
            if target_id < bin_id <= state.active_id:
                x, y = bins[bin_id]
                if y:
                    bins[bin_id] = (x + ((y << SCALE_OFFSET) // price_q64(step, bin_id)), 0)
    else:
        for bin_id in state.bin_ids:
            if state.active_id <= bin_id < target_id:
                x, y = bins[bin_id]
                if x:
                    bins[bin_id] = (0, y + ((x * price_q64(step, bin_id)) >> SCALE_OFFSET))
    below = sum(1 for i, (_, y) in bins.items() if i <= target_id and y > 0)
    above = sum(1 for i, (x, _) in bins.items() if i >= target_id and x > 0)
    if below < recentre_below or above < recentre_below:
        price = price_q64(step, target_id)
        value_y = sum(y + ((x * price) >> SCALE_OFFSET) for x, y in bins.values())
        bins = bins_around(active_id=target_id, bin_step=step, value_y=value_y)
    return replace(state, bins=bins, bin_ids=tuple(sorted(bins)), active_id=target_id)
