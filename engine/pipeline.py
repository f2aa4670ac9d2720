"""The execution pipeline: advance one order from wherever it stands.

`order_execute` is safe to call any number of times, concurrently, and after any crash: it reads
the order's persisted state and performs the next step. Each step does its slow work (quoting,
building, waiting for the chain) outside any lock, then commits its result with a compare-and-set
on the locked row (the status and attempt it started from). A second delivery of the same task
therefore loses every race harmlessly, and only a transaction that was persisted is ever sent.

An order is swapped at most once: a new attempt starts only after the chain has said that the
previous attempt's signature failed, or that it never saw it (and it is never sent again).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, TypeGuard
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dex.chain import signature_status, transaction_build, transaction_send
from dex.router import route_best
from dex.tokens import from_units, to_units, token_get
from dex.types import (
    DexError,
    Quote,
    RoutingDecision,
    SignatureStatus,
    SlippageExceededError,
    Token,
    Transaction,
    TransientChainError,
)
from engine.formatting import decimal_str, iso
from engine.ratelimit import rate_reserve
from engine.rows import order_load, order_relock
from engine.transitions import Step, order_transition, order_transitions
from orders.models import Order, OrderStatus, OrderType

logger = logging.getLogger("engine.pipeline")

#: A delivery that arrives this much before its scheduled time is a duplicate: ignore it.
EARLY_TOLERANCE = timedelta(seconds=1)
#: How long a step may sleep in place waiting for the chain before handing back to the queue.
MAX_INLINE_WAIT = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the task should do next: nothing (`run_at` None) or run again at `run_at`.
    `would_wait`: the order is due at `run_at` (in under MAX_INLINE_WAIT) and `order_execute`
    was told not to wait for it in place."""

    run_at: datetime | None = None
    reason: str = ""
    would_wait: bool = False


DONE = Outcome()


def order_execute(order_id: UUID, *, wait: bool = True) -> Outcome:
    """Advance the order until it is terminal, waiting for a trigger, or due later.

    With `wait` False it never sleeps: where it would wait in place for the chain or for an
    attempt due within a second, it returns `would_wait` instead (a batch of orders hands the
    rest of the batch on before it waits; see engine.tasks.execute_orders_task)."""
    for _ in range(50):  # every pass commits a step or waits; the bound only stops a bug looping
        order = order_load(order_id)
        if order is None:
            return DONE
        outcome = _advance(order, wait=wait)
        if outcome is not None:
            return outcome
    logger.error("pipeline made no progress order=%s", order_id)
    return Outcome(run_at=timezone.now() + timedelta(seconds=5), reason="no progress")


def _advance(order: Order, *, wait: bool) -> Outcome | None:
    match order.status:
        case OrderStatus.PENDING:
            if order.order_type != OrderType.MARKET and order.triggered_at is None:
                return DONE  # the watcher dispatches it when its condition is met
            return attempt_due(order, reserve_slot=True, wait=wait) or _prepare(order, wait=wait)
        case OrderStatus.FAILED:
            if order.next_attempt_at is None:
                return DONE
            return attempt_due(order, reserve_slot=False, wait=wait) or _prepare(order, wait=wait)
        case OrderStatus.ROUTING | OrderStatus.BUILDING:
            return _interrupted(order)
        case OrderStatus.SUBMITTED:
            return _settle(order, wait=wait)
        case _:
            return DONE


def attempt_due(order: Order, *, reserve_slot: bool, wait: bool) -> Outcome | None:
    """None when the order may start its next attempt now; otherwise when to come back."""
    now = timezone.now()
    if order.next_attempt_at is None:
        if not reserve_slot:
            return None
        wait = rate_reserve()
        if wait <= 0:
            return None
        run_at = now + timedelta(seconds=wait)
        claimed = Order.objects.filter(
            pk=order.pk, status=order.status, next_attempt_at__isnull=True
        ).update(next_attempt_at=run_at, updated_at=now)  # update() skips auto_now
        return Outcome(run_at=run_at, reason="rate limit") if claimed else Outcome(run_at=now)
    if order.next_attempt_at - now > EARLY_TOLERANCE:
        return DONE  # a duplicate delivery: the scheduled one will come
    return wait_until(order.next_attempt_at, wait=wait)


def _locked(order: Order, *, status: str, attempts: int | None = None) -> Order | None:
    """The order's row, locked, if it is still where this step found it."""
    locked = order_relock(order)
    return locked if still_at(locked, status=status, attempts=attempts) else None


def still_at(row: Order | None, *, status: str, attempts: int | None = None) -> TypeGuard[Order]:
    """Whether a locked order's row is still where a step found it: the compare of every
    compare-and-set in the pipeline (and in engine.lockstep)."""
    return (
        row is not None and row.status == status and (attempts is None or row.attempts == attempts)
    )


def limit_min_out(*, amount_in: Decimal, limit_price: Decimal, token_out: Token) -> int:
    """`amountIn * limitPrice` in base units of tokenOut, rounded up: the least a limit order
    accepts, which is also its `minAmountOut` on chain (the watcher triggers on the same)."""
    wanted = (amount_in * limit_price).quantize(
        Decimal(1).scaleb(-token_out.decimals), rounding=ROUND_CEILING
    )
    return to_units(wanted, token_out)


def _min_amount_out(order: Order, quote: Quote) -> int:
    if order.order_type == OrderType.LIMIT and order.limit_price is not None:
        return limit_min_out(
            amount_in=order.amount_in, limit_price=order.limit_price, token_out=quote.token_out
        )
    keep = Decimal(10_000 - order.slippage_bps) / Decimal(10_000)
    return int((Decimal(quote.amount_out) * keep).to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt ready to start: its number, its route, the route as persisted and its signed
    transaction."""

    number: int
    decision: RoutingDecision
    quote_state: dict[str, Any]
    tx: Transaction


def _prepare(order: Order, *, wait: bool) -> Outcome | None:
    """Start an attempt: route, build and submit, in one transaction, then send.

    Nothing leaves the engine between choosing a route, building its transaction and storing
    its signature, so the three transitions (each checked by the state machine, each with its
    own event) commit together: fewer locks and commits per order, and the signature is stored
    before the transaction is sent.
    """
    status, attempts = order.status, order.attempts
    try:
        decision = _quote(order)
    except DexError as error:
        return attempt_failed(order, error)
    planned = attempt_plan(order, decision)
    if not isinstance(planned, Attempt):
        return planned
    with transaction.atomic():
        locked = _locked(order, status=status, attempts=attempts)
        if locked is None:
            return None
        order_transitions(locked, attempt_steps(planned))
    # Settle with the order as just committed (the settle step locks and checks it again).
    return attempt_send(planned.tx, wait=wait) or _settle(locked, wait=wait)


def attempt_plan(order: Order, decision: RoutingDecision) -> Attempt | Outcome | None:
    """The attempt on the route chosen, built and signed; or, where there is none to start,
    what became of the order (its limit no longer met, or the attempt failed)."""
    try:
        quote_state = _quote_state(order, decision)
        if order.order_type == OrderType.LIMIT and decision.best.amount_out < int(
            quote_state["minAmountOut"]
        ):
            return _wait_for_limit(order, quote=decision.best)
        tx = transaction_build(
            wallet=order.wallet_address,
            quote=decision.best,
            min_amount_out=int(quote_state["minAmountOut"]),
            reference=f"{order.pk}:{order.attempts + 1}",
        )
    except DexError as error:
        return attempt_failed(order, error)
    return Attempt(order.attempts + 1, decision, quote_state, tx)


def attempt_failed(order: Order, error: DexError) -> Outcome | None:
    """The attempt the order was about to start failed before anything was sent."""
    with transaction.atomic():
        locked = _locked(order, status=order.status, attempts=order.attempts)
        if locked is None:
            return None
        return _fail(locked, error, attempts=order.attempts + 1)


def attempt_steps(attempt: Attempt) -> list[Step]:
    """An attempt's first three transitions, committed together (see `_prepare`)."""
    decision, quote_state, tx = attempt.decision, attempt.quote_state, attempt.tx
    best, public = decision.best, quote_state["public"]
    return [
        Step(
            OrderStatus.ROUTING,
            {
                "quotes": [q.to_dict(legs=False) for q in decision.quotes],
                "selectedDex": best.dex,
                "quote": public,
                "reason": decision.reason,
            },
            {
                "attempts": attempt.number,
                "next_attempt_at": None,
                "selected_dex": best.dex,
                "tx_hash": "",
                "transaction": None,
                "quote": quote_state,
                "error": "",
                "error_code": "",
            },
        ),
        Step(
            OrderStatus.BUILDING,
            {"selectedDex": best.dex, "quote": public, "transaction": tx.summary()},
            {"transaction": tx.to_state()},
        ),
        Step(
            OrderStatus.SUBMITTED,
            {"txHash": tx.signature, "selectedDex": best.dex, "quote": public},
            {"tx_hash": tx.signature},
        ),
    ]


def _interrupted(order: Order) -> Outcome | None:
    """An order left in `routing` or `building` (a step that committed without the rest: not
    something this version writes). Nothing was sent, so the attempt fails and another starts."""
    with transaction.atomic():
        locked = _locked(order, status=order.status, attempts=order.attempts)
        if locked is None:
            return None
        return _fail(
            locked,
            TransientChainError("the attempt was interrupted before sending", code="interrupted"),
        )


def _quote(order: Order) -> RoutingDecision:
    token_in, token_out = token_get(order.token_in), token_get(order.token_out)
    return route_best(
        token_in=token_in,
        token_out=token_out,
        amount_in=to_units(order.amount_in, token_in),
        reference=f"order={order.pk}",
    )


def _quote_state(order: Order, decision: RoutingDecision) -> dict[str, Any]:
    """The chosen route as persisted on the order: the API's view and the exact state."""
    best = decision.best
    min_out = _min_amount_out(order, best)
    public = {
        **best.to_dict(legs=True),
        "minAmountOut": decimal_str(from_units(min_out, best.token_out)),
    }
    return {"public": public, "state": best.to_state(), "minAmountOut": str(min_out)}


def attempt_send(tx: Transaction, *, wait: bool) -> Outcome | None:
    try:
        lands_at = transaction_send(tx)  # the same signature: sending twice is harmless
    except TransientChainError as error:
        return _abandon_unsent(tx, error)
    return wait_until(lands_at, wait=wait)


def _settle(order: Order, *, wait: bool) -> Outcome | None:
    """Ask the chain about the submitted signature: confirm, fail, send, or wait."""
    tx = Transaction.from_state(order.transaction)
    with transaction.atomic():
        locked = _locked(order, status=OrderStatus.SUBMITTED, attempts=order.attempts)
        if locked is None or locked.tx_hash != tx.signature:
            return None
        status = signature_status(tx.signature)  # lands it now if due, in this transaction
        settled = settlement(locked, tx, status)
        if isinstance(settled, Step):
            order_transitions(locked, [settled])
            return DONE
        if settled is not None:
            return settled
    if status.state == "unknown":  # stored but never sent (a crash in between): send it now
        return attempt_send(tx, wait=wait)
    return wait_until(status.retry_at, wait=wait)


def settlement(order: Order, tx: Transaction, status: SignatureStatus) -> Step | Outcome | None:
    """What the chain's answer means for a locked, submitted order: the step that confirms it,
    the outcome of its failed attempt (recorded), or None while the chain does not know yet
    (pending, or never sent)."""
    if status.state == "landed":
        return _confirm_step(order, tx, status)
    if status.state == "failed":
        return _fail(order, status.error or TransientChainError("transaction failed"))
    if status.state == "unknown" and timezone.now() >= tx.last_valid_at:
        return _fail(
            order,
            TransientChainError(
                "the transaction expired before it was seen by the chain",
                code="blockhash_expired",
            ),
        )
    return None


def _abandon_unsent(tx: Transaction, error: DexError) -> Outcome | None:
    """The send failed. If the chain has the transaction after all, keep waiting for it;
    if it never saw it, fail this attempt: the transaction is never sent again."""
    with transaction.atomic():
        # The signature names the order's current attempt.
        locked = Order.objects.select_for_update().filter(tx_hash=tx.signature).first()
        if locked is None or locked.status != OrderStatus.SUBMITTED:
            return None
        status = signature_status(tx.signature)
        if status.state == "unknown":
            return _fail(locked, error)
    return None


def wait_until(when: datetime | None, *, wait: bool) -> Outcome | None:
    """None once `when` has come (sleeping until then if it is near); an Outcome to come back
    at `when` if it is far, or near and the caller must not wait."""
    if when is None:
        return None
    delay = (when - timezone.now()).total_seconds()
    if delay > MAX_INLINE_WAIT:
        return Outcome(run_at=when, reason="waiting for the chain")
    if delay > 0:
        if not wait:
            return Outcome(run_at=when, reason="due shortly", would_wait=True)
        time.sleep(delay)
    return None


def _confirm_step(order: Order, tx: Transaction, status: SignatureStatus) -> Step:
    quote = tx.quote
    amount_out = from_units(status.amount_out or 0, quote.token_out)
    price = amount_out / order.amount_in if order.amount_in else None
    return Step(
        OrderStatus.CONFIRMED,
        {
            "txHash": tx.signature,
            "selectedDex": order.selected_dex,
            "executedPrice": decimal_str(price.quantize(Decimal("1e-12")).normalize())
            if price is not None
            else None,
            "amountOut": decimal_str(amount_out),
        },
        {"amount_out": amount_out, "executed_price": price},
    )


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter: base·2^(n-1), plus up to a quarter of it at random."""
    base = settings.ORDER_RETRY_BACKOFF_SECONDS * (2 ** max(attempt - 1, 0))
    base = min(base, settings.ORDER_RETRY_BACKOFF_MAX_SECONDS)
    return base + random.uniform(0, base / 4)


def _wait_for_limit(order: Order, *, quote: Quote) -> Outcome | None:
    """A limit order whose price fell back below its limit after the trigger waits for it again
    (engine.watcher.order_wait_again) rather than send a swap that cannot fill."""
    from engine.watcher import order_wait_again  # the watcher dispatches through the tasks

    with transaction.atomic():
        locked = _locked(order, status=order.status, attempts=order.attempts)
        if locked is None:
            return None
        order_wait_again(locked, quote=quote)
    return DONE


def _fail(order: Order, error: DexError, *, attempts: int | None = None) -> Outcome:
    """Record a failed attempt on a locked order; schedule another when it is worth one."""
    if order.order_type == OrderType.LIMIT and isinstance(error, SlippageExceededError):
        # For a limit order minAmountOut is the limit itself: the price fell back below it
        # between the quote and the landing. Waiting for the limit again, not retrying at once.
        from engine.watcher import order_wait_again

        order_wait_again(order, error=error)
        return DONE
    attempts = order.attempts if attempts is None else attempts
    retry = error.transient and attempts < order.max_attempts
    next_at = timezone.now() + timedelta(seconds=retry_delay(attempts)) if retry else None
    order_transition(
        order,
        OrderStatus.FAILED,
        attempts=attempts,
        error=error.message,
        error_code=error.code,
        next_attempt_at=next_at,
        payload={
            "error": error.message,
            "errorCode": error.code,
            "willRetry": retry,
            "nextAttemptAt": iso(next_at),
            **({"txHash": order.tx_hash} if order.tx_hash else {}),
        },
    )
    return Outcome(run_at=next_at, reason="retry") if retry else DONE
