"""Every write the faces ask of the engine: submit, cancel, requeue. Keyword-only, typed, atomic;
they raise `OrderError`s and never HTTP errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.sql import CLOCK, CLOCK_CTE, column_list, db_values, mark_saved, placeholders
from dex.router import market_load
from dex.tokens import to_units, token_get
from dex.types import DexError, NoRouteError
from engine.errors import IdempotencyConflict, OrderConflict, OrderNotFound, OrderRejected
from engine.formatting import iso
from engine.rows import event_fields, event_time
from engine.tasks import order_dispatch
from engine.transitions import event_announce, order_transition
from orders.models import Order, OrderEvent, OrderStatus, OrderType

logger = logging.getLogger("engine.services")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A validated submission: well-formed fields, known tokens (as symbols)."""

    wallet_address: str
    token_in: str
    token_out: str
    amount_in: Decimal
    order_type: str = OrderType.MARKET
    slippage_bps: int = 100
    limit_price: Decimal | None = None
    expires_at: datetime | None = None

    def fingerprint(self) -> str:
        """What an Idempotency-Key is bound to. Amounts are normalised: `1.5` and `"1.50"` are
        the same order, and a retried request must not be refused as a different body."""
        fields = asdict(self)
        for name in ("amount_in", "limit_price"):
            if fields[name] is not None:
                fields[name] = format(fields[name].normalize(), "f")
        canonical = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


#: How stale the market snapshot used to vet submissions may be. Vetting only refuses what no
#: venue could fill; execution quotes the live pools again.
MARKET_SNAPSHOT_SECONDS = 1.0
_snapshots: dict[tuple[str, str], tuple[float, Any]] = {}


def _market_snapshot(token_in: Any, token_out: Any) -> Any:
    key = (token_in.symbol, token_out.symbol)
    now = time.monotonic()
    cached = _snapshots.get(key)
    if cached is None or now - cached[0] > MARKET_SNAPSHOT_SECONDS:
        cached = (now, market_load([(token_in, token_out)]))
        _snapshots[key] = cached
    return cached[1]


def _check_routable(request: OrderRequest) -> None:
    """A market or limit order must have a route now; a sniper order waits for one."""
    if request.order_type == OrderType.SNIPER:
        return
    token_in, token_out = token_get(request.token_in), token_get(request.token_out)
    try:
        _market_snapshot(token_in, token_out).route(
            token_in=token_in, token_out=token_out, amount_in=to_units(request.amount_in, token_in)
        )
    except NoRouteError as error:
        raise OrderRejected(
            f"no venue can route {request.token_in} to {request.token_out}",
            code="no_route",
            details={"tokenIn": request.token_in, "tokenOut": request.token_out},
        ) from error
    except DexError as error:
        raise OrderRejected(error.message, code=error.code) from error


def order_submit(
    *, request: OrderRequest, idempotency_key: str | None = None
) -> tuple[Order, bool]:
    """Create the order and its first event; dispatch it after the commit.

    Returns `(order, created)`: a replay of an `Idempotency-Key` returns the original order.
    """
    fingerprint = request.fingerprint()
    if idempotency_key:
        existing = _idempotent_replay(request.wallet_address, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    _check_routable(request)
    expires_at = request.expires_at
    if request.order_type != OrderType.MARKET and expires_at is None:
        expires_at = timezone.now() + timedelta(hours=settings.ORDER_LIMIT_DEFAULT_TTL_HOURS)
    order = Order(
        wallet_address=request.wallet_address,
        token_in=request.token_in,
        token_out=request.token_out,
        amount_in=request.amount_in,
        order_type=request.order_type,
        slippage_bps=request.slippage_bps,
        limit_price=request.limit_price,
        expires_at=expires_at,
        max_attempts=settings.ORDER_MAX_ATTEMPTS,
        idempotency_key=idempotency_key or None,
        request_fingerprint=fingerprint,
        last_seq=1,
    )
    # One statement writes the order and its first event, so on its own it needs no transaction
    # (no BEGIN/COMMIT round trips); inside a caller's transaction a savepoint keeps a lost
    # idempotency race from spoiling it. The hooks run after the commit either way.
    in_transaction = transaction.get_connection().in_atomic_block
    try:
        with transaction.atomic() if in_transaction else contextlib.nullcontext():
            order.created_event = _insert_created(order)  # type: ignore[attr-defined]
            event_announce(order, order.created_event)  # type: ignore[attr-defined]
            if order.order_type == OrderType.MARKET:
                order_dispatch(order.pk)
    except IntegrityError:
        if not idempotency_key:
            raise
        # Two requests with one key raced: the first insert won, answer as a replay.
        existing = _idempotent_replay(request.wallet_address, idempotency_key, fingerprint)
        if existing is None:
            raise
        return existing, False
    logger.info(
        "submitted order=%s type=%s pair=%s/%s amount=%s",
        order.pk,
        order.order_type,
        order.token_in,
        order.token_out,
        order.amount_in,
    )
    return order, True


def _insert_created(order: Order) -> OrderEvent:
    """Insert the new order and its first event, `pending` (no transition leads to it), in one
    statement: the order's INSERT as a CTE, the event's INSERT reading the order's id from it
    (see engine.rows). The order's `created_at` and `updated_at` and the event's time are the
    statement's (config.sql.CLOCK)."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    clocked = (Order._meta.get_field("created_at"), Order._meta.get_field("updated_at"))
    order_fields = [f for f in Order._meta.concrete_fields if f not in clocked]
    params = db_values(order, order_fields, connection, add=True)
    event = OrderEvent(order=order, seq=1, status=OrderStatus.PENDING, attempt=0, payload={})
    params += db_values(event, event_fields(), connection)
    pk = quote(Order._meta.pk.column)
    sql = (
        f"WITH {CLOCK_CTE}, new_order AS (INSERT INTO {quote(Order._meta.db_table)} "
        f"({column_list([*order_fields, *clocked], connection)}) "
        f"VALUES ({placeholders(len(order_fields))}, {CLOCK}, {CLOCK}) RETURNING {pk}) "
        f"INSERT INTO {quote(OrderEvent._meta.db_table)} "
        f"({quote(OrderEvent._meta.get_field('order').column)}, "
        f"{column_list([*event_fields(), event_time()], connection)}) "
        f"SELECT {pk}, {placeholders(len(event_fields()))}, {CLOCK} FROM new_order "
        f"RETURNING id, {quote(event_time().column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        event.pk, event.created_at = cursor.fetchone()
    order.created_at = order.updated_at = event.created_at
    mark_saved((order, event), connection)
    return event


def _idempotent_replay(wallet: str, key: str, fingerprint: str) -> Order | None:
    existing = Order.objects.filter(wallet_address=wallet, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request",
            details={"idempotencyKey": key, "orderId": str(existing.pk)},
        )
    return existing


def _get_locked(order_id: UUID | str) -> Order:
    try:
        return Order.objects.select_for_update().get(pk=order_id)
    except (Order.DoesNotExist, ValueError, ValidationError) as error:
        # A malformed id is no order either (Django's UUIDField raises ValidationError).
        raise OrderNotFound(f"no order {order_id}") from error


def order_cancel(*, order_id: UUID | str, reason: str = "cancelled by the client") -> Order:
    """Cancel an order that has not started routing (the row lock decides any race)."""
    with transaction.atomic():
        order = _get_locked(order_id)
        if order.status != OrderStatus.PENDING:
            raise OrderConflict(
                f"the order is {order.status}: only a pending order can be cancelled",
                details={"status": order.status},
            )
        order_transition(
            order, OrderStatus.CANCELLED, next_attempt_at=None, payload={"reason": reason}
        )
    return order


def order_requeue(*, order_id: UUID | str, by: str = "") -> Order:
    """Send a failed or expired order back to pending, history kept, and dispatch it again."""
    with transaction.atomic():
        order = _get_locked(order_id)
        if order.status not in (OrderStatus.FAILED, OrderStatus.EXPIRED):
            raise OrderConflict(
                f"the order is {order.status}: only a failed or expired order can be requeued",
                details={"status": order.status},
            )
        if order.next_attempt_at is not None:
            # Its failed attempt is followed by another already: a requeue would race it.
            raise OrderConflict(
                "the order is retrying on its own: requeue it if its last attempt fails",
                details={"status": order.status, "nextAttemptAt": iso(order.next_attempt_at)},
            )
        fields: dict[str, Any] = {
            "next_attempt_at": None,
            "max_attempts": order.attempts + settings.ORDER_MAX_ATTEMPTS,
            "error": "",
            "error_code": "",
        }
        if order.order_type != OrderType.MARKET:
            # A limit or sniper order waits for its condition again: until the client's own
            # expiry while it is still ahead, else for a fresh default period.
            fields["triggered_at"] = None
            now = timezone.now()
            if order.expires_at is None or order.expires_at <= now:
                fields["expires_at"] = now + timedelta(hours=settings.ORDER_LIMIT_DEFAULT_TTL_HOURS)
        order_transition(
            order, OrderStatus.PENDING, payload={"requeuedBy": by} if by else {}, **fields
        )
        if order.order_type == OrderType.MARKET:
            order_dispatch(order.pk)
    logger.info("requeued order=%s by=%s", order.pk, by or "-")
    return order
