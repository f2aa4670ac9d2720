"""Smart order routing: every venue quoted, the best of single venue, split and two-hop chosen.

`route_best` is what the engine calls for one order: it loads the relevant pools in one query,
waits the venues' simulated quote latency once (they are asked in parallel, so the wait is the
slowest venue's, not the sum) and decides. `market_load` + `Market.route` are the same decision
on a snapshot loaded once, pure CPU, for the limit-order watcher that routes many orders per
tick. A decision costs well under a millisecond of CPU: Raydium is a closed form, Meteora a
bisection on a lazily built bin ladder, and the best split a golden-section search on integer
amounts (output is concave in input on both venues, so the sum is unimodal).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from decimal import Decimal, localcontext

from django.conf import settings

from dex import meteora, raydium
from dex.pools import PoolSnapshot, pools_among
from dex.types import (
    DexError,
    InsufficientLiquidityError,
    Leg,
    NoRouteError,
    Quote,
    RoutingDecision,
    Token,
)

logger = logging.getLogger("dex.router")

HUBS = ("SOL", "USDC")  # the intermediate tokens of two-hop routes, as on Jupiter
_GOLDEN_NUM, _GOLDEN_DEN = 382, 1000  # 1 - 1/phi, in integers: the amounts stay exact
_SPLIT_RESOLUTION_SHIFT = 12  # the split is searched to 1/4096 of the amount; finer gains nothing
_Q64 = 1 << 64


class _Side:
    """One pool traded in one direction: its output function and its mid price."""

    __slots__ = (
        "_ladder",
        "_rate",
        "_x",
        "_y",
        "cap",
        "mid_den",
        "mid_num",
        "out",
        "pool",
        "token_in",
        "token_out",
        "venue",
    )

    def __init__(self, pool: PoolSnapshot, token_in: str, now: int) -> None:
        self.pool = pool
        self.venue = pool.venue
        self.token_in = token_in
        self.token_out = pool.other(token_in)
        a_to_b = token_in == pool.symbol_a
        self._ladder: meteora.Ladder | None = None
        self.out: Callable[[int], int | None]
        if pool.dlmm is None:
            x, y = (pool.reserve_a, pool.reserve_b) if a_to_b else (pool.reserve_b, pool.reserve_a)
            self._x, self._y, self._rate = x, y, pool.fee_rate
            self.cap = raydium.max_amount_in(x, pool.fee_rate) if x > 0 and y > 0 else 0
            self.mid_num, self.mid_den = y, max(x, 1)
            self.out = self._raydium_out
        else:
            self._ladder = meteora.Ladder(pool.dlmm, swap_for_y=a_to_b, now=now)
            self.cap = -1  # lazily known: the ladder says when the bins run out
            price = self._ladder.mid_price_q64 or 0
            self.mid_num, self.mid_den = (price, _Q64) if a_to_b else (_Q64, max(price, 1))
            self.out = self._ladder.amount_out

    def _raydium_out(self, amount: int) -> int | None:
        if amount > self.cap:
            return None
        return raydium.amount_out(self._x, self._y, amount, self._rate)

    def capacity(self) -> int:
        """The largest input this pool can fill (builds a Meteora ladder to its end)."""
        if self._ladder is None:
            return self.cap
        return self._ladder.capacity()

    def detail(self, amount: int) -> tuple[int, int] | None:
        """(out, fee in the input token) or None when this pool cannot fill `amount`."""
        if self._ladder is None:
            if amount > self.cap:
                return None
            return raydium.amount_out(self._x, self._y, amount, self._rate), raydium.trade_fee(
                amount, self._rate
            )
        quoted = self._ladder.quote(amount)
        return None if quoted is None else (quoted[0], quoted[1])


# An allocation of one hop's input across pools: [(side, amount), ...]
_Allocation = list[tuple[_Side, int]]


def _best_split(first: _Side, second: _Side, amount: int) -> tuple[int, int] | None:
    """(amount to `first`, total out) maximising first.out(a) + second.out(amount - a), or None
    when no split fills the amount. Golden-section search over the integer a."""

    def total(a: int) -> int:
        one = first.out(a) if a else 0
        if one is None:
            return -1
        two = second.out(amount - a) if a < amount else 0
        if two is None:
            return -1
        return one + two

    lo, hi = 0, amount
    if first.out(amount) is None or second.out(amount) is None:
        # A pool that cannot fill it all bounds the split: search only where both can.
        lo = max(0, amount - second.capacity())
        hi = min(amount, first.capacity())
        if lo > hi:
            return None
    tolerance = max(amount >> _SPLIT_RESOLUTION_SHIFT, 2)
    c = hi - (hi - lo) * (_GOLDEN_DEN - _GOLDEN_NUM) // _GOLDEN_DEN
    d = lo + (hi - lo) * (_GOLDEN_DEN - _GOLDEN_NUM) // _GOLDEN_DEN
    c, d = min(c, d), max(c, d)
    fc, fd = total(c), total(d)
    seen = {c: fc, d: fd}
    while hi - lo > tolerance and c < d:
        if fc >= fd:
            hi, d, fd = d, c, fc
            c = hi - (hi - lo) * (_GOLDEN_DEN - _GOLDEN_NUM) // _GOLDEN_DEN
            fc = total(c)
            seen[c] = fc
        else:
            lo, c, fc = c, d, fd
            d = lo + (hi - lo) * (_GOLDEN_DEN - _GOLDEN_NUM) // _GOLDEN_DEN
            fd = total(d)
            seen[d] = fd
    for end in (lo, hi):  # the optimum may sit on a bound (one pool at its capacity)
        if end not in seen:
            seen[end] = total(end)
    best_a = max(seen, key=seen.__getitem__)
    if seen[best_a] < 0:
        return None
    return best_a, seen[best_a]


def _hop_candidates(sides: list[_Side], amount: int) -> list[tuple[int, _Allocation]]:
    """Every way this hop can be filled worth considering: each pool alone, and the best split
    of the two best pools when it beats both. Sorted best first."""
    singles: list[tuple[int, _Allocation]] = []
    for side in sides:
        out = side.out(amount)
        if out is not None:
            singles.append((out, [(side, amount)]))
    singles.sort(key=lambda c: -c[0])
    candidates = list(singles)
    if len(sides) >= 2:
        # Split across the two best pools (any two when none fills the amount alone).
        alone = {id(alloc[0][0]): out for out, alloc in singles}
        first, second = sorted(sides, key=lambda s: -alone.get(id(s), -1))[:2]
        split = _best_split(first, second, amount)
        if split is not None:
            a, out = split
            best_single = singles[0][0] if singles else -1
            if 0 < a < amount and out > best_single:
                candidates.insert(0, (out, [(first, a), (second, amount - a)]))
    return candidates


def _percentages(amounts: list[int]) -> list[int]:
    total = sum(amounts)
    shares = [a * 100 // total for a in amounts]
    shares[max(range(len(amounts)), key=amounts.__getitem__)] += 100 - sum(shares)
    return shares


class Market:
    """A snapshot of the pools among some tokens. Routing on it is pure CPU."""

    def __init__(self, pools: Iterable[PoolSnapshot], *, now: int | None = None) -> None:
        # `now` (unix seconds) is when Meteora's volatility is evaluated: the snapshot's time.
        self.now = int(time.time()) if now is None else now
        self._pairs: dict[frozenset[str], list[PoolSnapshot]] = {}
        for pool in pools:
            self._pairs.setdefault(frozenset((pool.symbol_a, pool.symbol_b)), []).append(pool)
        self._sides: dict[tuple[int, str], _Side] = {}
        # The Meteora ladders grow lazily; a Market shared between threads (a cached snapshot
        # in a threaded server) must not grow one from two threads at once.
        self._lock = threading.Lock()

    @property
    def pools(self) -> list[PoolSnapshot]:
        return [p for group in self._pairs.values() for p in group]

    def _sides_for(self, token_in: str, token_out: str) -> list[_Side]:
        sides = []
        for pool in self._pairs.get(frozenset((token_in, token_out)), ()):
            key = (pool.id, token_in)
            side = self._sides.get(key)
            if side is None:
                side = self._sides[key] = _Side(pool, token_in, self.now)
            sides.append(side)
        return sides

    def has_pair(self, a: str, b: str) -> bool:
        return bool(self._pairs.get(frozenset((a, b))))

    def route(self, *, token_in: Token, token_out: Token, amount_in: int) -> RoutingDecision:
        """The best route for `amount_in` base units of token_in, with every candidate."""
        with self._lock:
            return self._route(token_in=token_in, token_out=token_out, amount_in=amount_in)

    def _route(self, *, token_in: Token, token_out: Token, amount_in: int) -> RoutingDecision:
        if amount_in <= 0:
            raise ValueError("amount_in must be a positive number of base units")
        if token_in.symbol == token_out.symbol:
            raise NoRouteError(f"{token_in.symbol} cannot be swapped for itself")
        sym_in, sym_out = token_in.symbol, token_out.symbol
        candidates: list[Quote] = []
        any_path = False

        direct = self._sides_for(sym_in, sym_out)
        if direct:
            any_path = True
            for out, alloc in _hop_candidates(direct, amount_in):
                candidates.append(self._quote(token_in, token_out, [alloc], [amount_in, out], None))
            # One quote per venue even when the split is best: the API lists every venue's.
        for hub in HUBS:
            if hub in (sym_in, sym_out):
                continue
            first = self._sides_for(sym_in, hub)
            second = self._sides_for(hub, sym_out)
            if not first or not second:
                continue
            any_path = True
            hop1 = _hop_candidates(first, amount_in)
            if not hop1:
                continue
            mid_amount, alloc1 = hop1[0]  # more of the hub always buys more of token_out
            if mid_amount <= 0:
                continue
            hop2 = _hop_candidates(second, mid_amount)
            if not hop2:
                continue
            out, alloc2 = hop2[0]
            candidates.append(
                self._quote(
                    token_in, token_out, [alloc1, alloc2], [amount_in, mid_amount, out], hub
                )
            )

        if not any_path:
            raise NoRouteError(
                f"no venue can route {sym_in} to {sym_out}: "
                "no pool for the pair, nor through SOL or USDC"
            )
        if not candidates:
            raise InsufficientLiquidityError(
                f"the pools cannot fill {amount_in} base units of {sym_in} for {sym_out}"
            )
        # Best output first; on a tie the simpler route (fewer legs) wins.
        ranked = sorted(candidates, key=lambda q: (-q.amount_out, len(q.legs)))
        best = ranked[0]
        if best.amount_out <= 0:
            raise InsufficientLiquidityError(
                f"{amount_in} base units of {sym_in} is too small to buy any {sym_out}"
            )
        reason = self._reason(best, ranked, direct=bool(direct))
        return RoutingDecision(quotes=tuple(candidates), best=best, reason=reason)

    @staticmethod
    def _describe(quote: Quote) -> str:
        if len(quote.route) > 2:
            hops = "/".join(sorted({leg.dex for leg in quote.legs}))
            return f"two-hop via {quote.route[1]} ({hops})"
        if quote.dex == "split":
            return "split " + "/".join(f"{leg.dex} {leg.percent}%" for leg in quote.legs)
        return quote.dex

    def _reason(self, best: Quote, ranked: list[Quote], *, direct: bool) -> str:
        suffix = "" if direct else " (no direct pool)"
        if len(ranked) == 1:
            return f"{self._describe(best)} is the only route that can fill the order{suffix}"
        runner = next(
            (q for q in ranked[1:] if self._describe(q) != self._describe(best)), ranked[1]
        )
        if runner.amount_out <= 0:
            gain = "infinitely"
        else:
            with localcontext() as ctx:
                ctx.prec = 12
                ratio = (Decimal(best.amount_out) / runner.amount_out - 1) * 100
                gain = f"{ratio.quantize(Decimal('0.0001'))}%"
        return f"{self._describe(best)} pays {gain} more than {self._describe(runner)}{suffix}"

    def _quote(
        self,
        token_in: Token,
        token_out: Token,
        hops: list[_Allocation],
        amounts: list[int],
        hub: str | None,
    ) -> Quote:
        """Turn allocations into a Quote: legs, fees valued in token_out, price impact.

        `amounts` is the route's running total: amount in, then each hop's output."""
        legs: list[Leg] = []
        fee_out = Decimal(0)
        impact_factor = Decimal(1)
        single_venue_per_hop = True
        with localcontext() as ctx:
            ctx.prec = 34
            for index, allocation in enumerate(hops):
                alloc = [(side, amount) for side, amount in allocation if amount > 0]
                single_venue_per_hop = single_venue_per_hop and len(alloc) == 1
                # A fee paid in this hop's input is worth (final out / this hop's out) per unit.
                to_final = Decimal(amounts[-1]) / amounts[index + 1] if amounts[index + 1] else 0
                ideal = Decimal(0)
                shares = _percentages([amount for _, amount in alloc])
                for (side, amount), share in zip(alloc, shares, strict=True):
                    detail = side.detail(amount)
                    assert detail is not None  # the search only keeps feasible allocations
                    out, fee = detail
                    net = amount - fee
                    ideal += Decimal(net) * side.mid_num / side.mid_den
                    if net > 0:
                        fee_out += Decimal(fee) * out / net * to_final
                    legs.append(
                        Leg(
                            dex=side.venue,
                            pool=side.pool.address,
                            token_in=side.token_in,
                            token_out=side.token_out,
                            in_amount=amount,
                            out_amount=out,
                            fee=fee,
                            percent=share,
                        )
                    )
                if ideal > 0:
                    impact_factor *= Decimal(amounts[index + 1]) / ideal
            impact = max(Decimal(0), (1 - impact_factor) * 100).quantize(Decimal("0.01"))
        venues = {leg.dex for leg in legs}
        dex = legs[0].dex if len(venues) == 1 and single_venue_per_hop else "split"
        route = (
            (token_in.symbol, hub, token_out.symbol) if hub else (token_in.symbol, token_out.symbol)
        )
        return Quote(
            dex=dex,
            token_in=token_in,
            token_out=token_out,
            amount_in=amounts[0],
            amount_out=amounts[-1],
            fee=int(fee_out),
            price_impact=impact,
            route=route,
            legs=tuple(legs),
        )


def market_load(pairs: Iterable[tuple[Token, Token]]) -> Market:
    """Load, in one query, every pool needed to route the given pairs (directly or through the
    hubs), for many `Market.route` calls without touching the database again."""
    symbols = set(HUBS)
    for a, b in pairs:
        symbols.add(a.symbol)
        symbols.add(b.symbol)
    return Market(pools_among(symbols))


def _quote_latency() -> None:
    # The venues are asked in parallel, so the order waits for the slowest one, once.
    latency_ms = float(getattr(settings, "DEX_QUOTE_LATENCY_MS", 200) or 0)
    if latency_ms > 0:
        time.sleep(latency_ms / 1000)


def route_best(
    *, token_in: Token, token_out: Token, amount_in: int, reference: str = ""
) -> RoutingDecision:
    """Quote every venue (and split / two-hop candidates) and choose the best net output.
    `reference` names what the decision is for in the log line (the engine passes the order)."""
    market = market_load([(token_in, token_out)])
    _quote_latency()
    decision = market.route(token_in=token_in, token_out=token_out, amount_in=amount_in)
    decision_log(decision, reference=reference)
    return decision


def routes_best(
    requests: list[tuple[Token, Token, int, str]],
) -> list[RoutingDecision | DexError]:
    """`route_best` for several orders at once, each (token_in, token_out, amount_in,
    reference): every pool they need loaded in one query and the venues asked once (they are
    asked in parallel), each order routed on that one view of the market, as orders quoted at
    the same moment are. An order with no route gets its error in its place."""
    market = market_load([(token_in, token_out) for token_in, token_out, _, _ in requests])
    _quote_latency()
    decisions: list[RoutingDecision | DexError] = []
    for token_in, token_out, amount_in, reference in requests:
        try:
            decision = market.route(token_in=token_in, token_out=token_out, amount_in=amount_in)
        except DexError as error:
            decisions.append(error)
            continue
        decision_log(decision, reference=reference)
        decisions.append(decision)
    return decisions


def decision_log(decision: RoutingDecision, *, reference: str = "") -> None:
    """One structured line per decision: what it is for, every quote and the reason."""
    best = decision.best
    quotes = ",".join(
        f"{Market._describe(q).replace(' ', '_')}:{q.to_dict(legs=False)['amountOut']}"
        for q in decision.quotes
    )
    logger.info(
        "route ref=%s pair=%s/%s amount_in=%s best=%s amount_out=%s price=%s impact=%s%% fee=%s "
        "quotes=%s reason=%r",
        reference or "-",
        best.token_in.symbol,
        best.token_out.symbol,
        best.to_dict(legs=False)["amountIn"],
        Market._describe(best).replace(" ", "_"),
        best.to_dict(legs=False)["amountOut"],
        best.price,
        best.price_impact,
        best.to_dict(legs=False)["fee"],
        quotes,
        decision.reason,
    )


def token_has_pool(token: Token) -> bool:
    """Whether any venue has a pool for this token yet (a sniper order waits for the first)."""
    from django.db.models import Q

    from dex import models

    return models.Pool.objects.filter(
        Q(token_a__symbol=token.symbol) | Q(token_b__symbol=token.symbol)
    ).exists()
