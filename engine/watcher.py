"""Orders that wait: limit orders until the best route's price reaches their limit, sniper orders
until their token's first pool launches, both until they expire.

Run by beat every second (`engine.watch_orders`). One tick:

1. expires the waiting orders whose `expiresAt` has come (so expiry is at most a tick late, and an
   order never triggers at or after its expiry);
2. loads the market once for every waiting pair and quotes each pair once, at the smallest amount
   waiting on it: the price per unit only falls as the amount grows (the venues' output is
   concave), so an order whose limit is above that price cannot be met and is not routed at all;
3. routes the remaining candidates on the same snapshot (pure CPU, no quote latency);
4. marks the triggered orders (`triggered_at`) on rows it could lock, skipping rows a cancel or an
   expiry holds, and dispatches them after the commit, oldest first.

All waiting orders are scanned, in batches of `BATCH` by age: a thousand orders that never trigger
do not hide the thousand-and-first. Nothing is parked as a long Celery countdown.

Also here: `order_wait_again`, what the pipeline calls when a triggered limit order finds its price
gone before it filled, so that it waits for the limit again instead of spending its attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from dex.router import Market, market_load, token_has_pool
from dex.tokens import from_units, to_units, token_get
from dex.types import DexError, Quote, Token
from engine.formatting import decimal_str, iso
from engine.pipeline import limit_min_out
from engine.tasks import order_dispatch
from engine.transitions import order_transition
from orders.models import Order, OrderStatus, OrderType

logger = logging.getLogger("engine.watcher")

BATCH = 500
#: Headroom on the per-pair screen, against integer rounding at a small amount: an order within
#: 0.1 % of the screen's price is routed exactly rather than risk never triggering it.
SCREEN_SLACK = Decimal("1.001")


class Waiting(NamedTuple):
    """What the tick reads of one waiting order: a tuple, not a model instance (building ten
    thousand instances was most of a tick's time)."""

    pk: UUID
    created_at: datetime
    order_type: str
    token_in: str
    token_out: str
    amount_in: Decimal
    limit_price: Decimal | None


@dataclass(slots=True)
class _PairScreen:
    """The best price any order of one pair can get this tick: the best route's output per unit
    at the smallest waiting amount (None when even that could not be quoted)."""

    amount_in: int
    amount_out: int | None

    def may_meet(self, amount_in: int, wanted_out: int) -> bool:
        if self.amount_out is None:
            return True  # no screen: route the order itself
        ceiling = (Decimal(self.amount_out) * SCREEN_SLACK + 2) / Decimal(self.amount_in)
        return Decimal(wanted_out) <= ceiling * amount_in


class _Tick:
    """One watcher pass over one market snapshot."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        waiting_limits = _waiting(now).filter(order_type=OrderType.LIMIT)
        smallest = {
            (row["token_in"], row["token_out"]): row["smallest"]
            for row in waiting_limits.values("token_in", "token_out").annotate(
                smallest=Min("amount_in")
            )
        }
        self.market: Market | None = None
        self.screens: dict[tuple[str, str], _PairScreen] = {}
        if smallest:
            self.market = market_load([(token_get(a), token_get(b)) for a, b in smallest])
            for (a, b), amount in smallest.items():
                self.screens[(a, b)] = self._screen(token_get(a), token_get(b), amount)
        self.launched: dict[str, bool] = {}

    def _route(self, token_in: Token, token_out: Token, units: int) -> Quote | None:
        assert self.market is not None
        try:
            return self.market.route(token_in=token_in, token_out=token_out, amount_in=units).best
        except (DexError, ValueError):
            return None

    def _screen(self, token_in: Token, token_out: Token, amount: Decimal) -> _PairScreen:
        units = to_units(amount, token_in)
        best = self._route(token_in, token_out, units)
        return _PairScreen(amount_in=units, amount_out=best.amount_out if best else None)

    def limit_met(self, order: Waiting) -> bool:
        screen = self.screens.get((order.token_in, order.token_out))
        if screen is None or self.market is None:
            return False  # a pair that appeared after the snapshot: next tick
        token_in, token_out = token_get(order.token_in), token_get(order.token_out)
        units, wanted = (
            to_units(order.amount_in, token_in),
            limit_min_out(
                amount_in=order.amount_in, limit_price=order.limit_price, token_out=token_out
            ),
        )
        if not screen.may_meet(units, wanted):
            return False
        best = self._route(token_in, token_out, units)
        return best is not None and best.amount_out >= wanted

    def sniper_ready(self, order: Waiting) -> bool:
        if order.token_out not in self.launched:
            self.launched[order.token_out] = token_has_pool(token_get(order.token_out))
        return self.launched[order.token_out]


def _waiting(now: datetime):  # type: ignore[no-untyped-def]
    return Order.objects.filter(
        status=OrderStatus.PENDING,
        order_type__in=[OrderType.LIMIT, OrderType.SNIPER],
        triggered_at__isnull=True,
    ).exclude(expires_at__lte=now)


def _batches(now: datetime) -> Iterator[list[Waiting]]:
    """Every waiting order, oldest first, `BATCH` at a time (keyset on created_at, id)."""
    after: tuple[datetime, object] | None = None
    while True:
        query = _waiting(now).order_by("created_at", "id")
        if after is not None:
            query = query.filter(
                Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1])
            )
        fields = ("id", *Waiting._fields[1:])
        batch = [Waiting(*row) for row in query.values_list(*fields)[:BATCH]]
        if batch:
            yield batch
        if len(batch) < BATCH:
            return
        after = (batch[-1].created_at, batch[-1].pk)


def _trigger(due: list[Waiting]) -> list[str]:
    """Mark the due orders triggered where they are still waiting and unlocked; dispatch those,
    in the order given (oldest first), after the commit."""
    with transaction.atomic():
        now = timezone.now()
        free = set(
            Order.objects.select_for_update(skip_locked=True)
            .filter(
                pk__in=[o.pk for o in due],
                status=OrderStatus.PENDING,
                triggered_at__isnull=True,
            )
            .exclude(expires_at__lte=now)  # expiry is checked at the moment of the trigger
            .values_list("pk", flat=True)
        )
        # updated_at too: the reconciler judges a triggered order stale by it (update() skips
        # auto_now), and would otherwise dispatch it a second time at once.
        Order.objects.filter(pk__in=free).update(triggered_at=now, updated_at=now)
        for order in due:
            if order.pk in free:
                order_dispatch(order.pk)
    return [str(o.pk) for o in due if o.pk in free]


def orders_watch() -> list[str]:
    """One tick: expire what is due, then trigger what is met. Returns the ids of the orders
    triggered, in dispatch order (oldest first)."""
    orders_expire()
    now = timezone.now()
    tick: _Tick | None = None
    triggered: list[str] = []
    waiting = 0
    for batch in _batches(now):
        tick = tick or _Tick(now)
        waiting += len(batch)
        due = [
            order
            for order in batch
            if (
                tick.limit_met(order)
                if order.order_type == OrderType.LIMIT
                else tick.sniper_ready(order)
            )
        ]
        if due:
            triggered += _trigger(due)
    if triggered:
        logger.info("watcher triggered=%d waiting=%d", len(triggered), waiting)
    return triggered


def orders_expire(*, now: datetime | None = None) -> int:
    """Move waiting orders whose `expiresAt` is at or before `now` (default: the clock) to
    `expired`.

    Only orders still waiting: one the watcher has already triggered is being executed (the
    trigger won that race) and a cancel can still stop it before routing. Rows another process
    holds (a cancel, the trigger) are skipped and looked at again on the next tick.
    """
    expired = 0
    while True:
        with transaction.atomic():
            moment = now or timezone.now()
            batch = list(
                Order.objects.select_for_update(skip_locked=True)
                .filter(
                    status=OrderStatus.PENDING, triggered_at__isnull=True, expires_at__lte=moment
                )
                .order_by("expires_at")[:BATCH]
            )
            for order in batch:
                order_transition(
                    order,
                    OrderStatus.EXPIRED,
                    next_attempt_at=None,
                    payload={"reason": "expiresAt passed", "expiresAt": iso(order.expires_at)},
                )
        expired += len(batch)
        if len(batch) < BATCH:
            break
    if expired:
        logger.info("expired orders=%d", expired)
    return expired


def order_wait_again(
    order: Order, *, quote: Quote | None = None, error: DexError | None = None
) -> None:
    """A triggered limit order whose price fell back below its limit before it filled goes back to
    waiting for the watcher, instead of spending its attempts on swaps that cannot fill.

    The caller (the pipeline) holds the row lock inside its transaction. Either

    - the order is still `pending` (the price moved between the trigger and routing): nothing a
      client could see has happened, so no event: it is simply no longer triggered; or
    - it is `failed` on a retry that found the price gone (`quote`), or its swap was refused on
      chain with `slippage_exceeded` (`error`, the order still `submitted`): that attempt is
      recorded as `failed` with `willRetry` and `waitingForLimit`, then the order returns to
      `pending`. The attempt count continues (each attempt has its own reference on chain) and
      the budget of attempts starts afresh, as after an operator's requeue.
    """
    reason = "the best price fell back below limitPrice; waiting for it again"
    if order.status == OrderStatus.PENDING:
        order.triggered_at = None
        order.next_attempt_at = None
        order.save(update_fields=["triggered_at", "next_attempt_at", "updated_at"])
        logger.info("limit order waits again order=%s (not routed)", order.pk)
        return
    details: dict[str, object] = {"reason": reason, "waitingFor": "limitPrice"}
    if quote is not None:
        details["bestAmountOut"] = decimal_str(from_units(quote.amount_out, quote.token_out))
    if error is not None:
        order_transition(
            order,
            OrderStatus.FAILED,
            error=error.message,
            error_code=error.code,
            next_attempt_at=None,
            payload={
                "error": error.message,
                "errorCode": error.code,
                "willRetry": True,
                "nextAttemptAt": None,
                "waitingForLimit": True,
                **({"txHash": order.tx_hash} if order.tx_hash else {}),
            },
        )
    order_transition(
        order,
        OrderStatus.PENDING,
        triggered_at=None,
        next_attempt_at=None,
        max_attempts=order.attempts + settings.ORDER_MAX_ATTEMPTS,
        error="",
        error_code="",
        payload=details,
    )
    logger.info("limit order waits again order=%s attempt=%d", order.pk, order.attempts)
