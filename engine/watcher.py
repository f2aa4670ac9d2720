"""Orders that wait: limit orders until the best route's price reaches their limit, sniper orders
until their token's first pool launches, both until they expire.

Run by beat every second. One tick loads the market once for every waiting pair, routes each
order on that snapshot (pure CPU), marks the triggered ones with a single conditional UPDATE and
dispatches them, oldest first. Nothing is parked as a long Celery countdown.
"""

from __future__ import annotations

import logging
from decimal import ROUND_CEILING, Decimal

from django.db import transaction
from django.utils import timezone

from dex.router import market_load, token_has_pool
from dex.tokens import to_units, token_get
from dex.types import DexError
from engine.formatting import iso
from engine.tasks import order_dispatch
from engine.transitions import order_transition
from orders.models import Order, OrderStatus, OrderType

logger = logging.getLogger("engine.watcher")

BATCH = 1000


def _limit_met(market, order: Order) -> bool:  # type: ignore[no-untyped-def]
    token_in, token_out = token_get(order.token_in), token_get(order.token_out)
    try:
        decision = market.route(
            token_in=token_in, token_out=token_out, amount_in=to_units(order.amount_in, token_in)
        )
    except DexError:
        return False
    wanted = (order.amount_in * order.limit_price).quantize(
        Decimal(1).scaleb(-token_out.decimals), rounding=ROUND_CEILING
    )
    return decision.best.amount_out >= to_units(wanted, token_out)


def orders_watch() -> list[str]:
    """One tick: returns the ids of the orders triggered, in dispatch order."""
    now = timezone.now()
    waiting = list(
        Order.objects.filter(
            status=OrderStatus.PENDING,
            order_type__in=[OrderType.LIMIT, OrderType.SNIPER],
            triggered_at__isnull=True,
        )
        .exclude(expires_at__lte=now)
        .order_by("created_at")[:BATCH]
    )
    if not waiting:
        return []
    limits = [o for o in waiting if o.order_type == OrderType.LIMIT]
    pairs = {(o.token_in, o.token_out) for o in limits}
    market = market_load([(token_get(a), token_get(b)) for a, b in pairs]) if pairs else None
    launched: dict[str, bool] = {}
    due: list[Order] = []
    for order in waiting:
        if order.order_type == OrderType.LIMIT:
            if _limit_met(market, order):
                due.append(order)
        else:
            if order.token_out not in launched:
                launched[order.token_out] = token_has_pool(token_get(order.token_out))
            if launched[order.token_out]:
                due.append(order)
    if not due:
        return []
    ids = [o.pk for o in due]
    with transaction.atomic():
        Order.objects.filter(
            pk__in=ids, status=OrderStatus.PENDING, triggered_at__isnull=True
        ).update(triggered_at=now)
        triggered = set(
            Order.objects.filter(pk__in=ids, triggered_at=now).values_list("pk", flat=True)
        )
        for order in due:  # oldest first
            if order.pk in triggered:
                order_dispatch(order.pk)
    logger.info("watcher triggered=%d waiting=%d", len(triggered), len(waiting))
    return [str(o.pk) for o in due if o.pk in triggered]


def orders_expire() -> int:
    """Move waiting orders past their `expiresAt` to `expired`; skips rows another process holds."""
    now = timezone.now()
    expired = 0
    with transaction.atomic():
        for order in (
            Order.objects.select_for_update(skip_locked=True)
            .filter(status=OrderStatus.PENDING, expires_at__lte=now)
            .order_by("expires_at")[:BATCH]
        ):
            order_transition(
                order,
                OrderStatus.EXPIRED,
                next_attempt_at=None,
                payload={"reason": "expiresAt passed", "expiresAt": iso(order.expires_at)},
            )
            expired += 1
    if expired:
        logger.info("expired orders=%d", expired)
    return expired
