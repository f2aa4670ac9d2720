"""Orders executed together: one pool process starting several fresh market orders in lockstep.

At most ORDER_CONCURRENCY orders execute at once per worker. When the worker has fewer pool
processes than that (WORKER_PROCESSES), each process executes its share of them together
(`lockstep_size`): the orders of one `engine.execute_orders` message are quoted on one view of
the market, and each step is written for all of them at once (one lock of their rows, one
INSERT of their events and one UPDATE of the orders per transaction, one landing of their
transactions that writes each pool once), where executing them one after another costs those
statements and round trips per order.

Every step is the pipeline's own (engine.pipeline: the same plan, the same transitions, the same
compare-and-set on rows locked as it locks them: orders, then the chain's transactions, then
pools, each set in one order), so a crash anywhere leaves each order where the pipeline can
resume it alone. Anything off the common path goes back to the pipeline, one order at a time:
orders that are not fresh market orders, an order that moved under the lock, a send refused or
due later, a landing the chain does not know yet.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction

from config.sql import rows_load
from dex.chain import signatures_status, transactions_send
from dex.router import routes_best
from dex.tokens import to_units, token_get
from dex.types import DexError, Transaction
from engine.events import outbox
from engine.pipeline import (
    DONE,
    Attempt,
    Outcome,
    attempt_due,
    attempt_failed,
    attempt_plan,
    attempt_send,
    attempt_steps,
    settlement,
    still_at,
    wait_until,
)
from engine.rows import orders_relock
from engine.transitions import Step, orders_transitions
from orders.models import Order, OrderStatus, OrderType

logger = logging.getLogger("engine.lockstep")

#: The worker's pool processes, as the worker started them (set by config.celery before it
#: forks its pool); None outside a worker: the setting says.
processes: int | None = None


def lockstep_size() -> int:
    """How many orders a pool process executes together: its share of ORDER_CONCURRENCY."""
    count = processes or settings.CELERY_WORKER_CONCURRENCY
    return max(1, settings.ORDER_CONCURRENCY // max(1, count))


def orders_start(order_ids: list[str]) -> tuple[dict[str, Outcome], list[str]]:
    """Start the fresh market orders among `order_ids` together and settle those whose
    transaction lands at once. Returns what became of each order it finished (confirmed,
    failed, or due later) and, in their given order, the ids it leaves to `order_execute`."""
    loaded = {order.pk: order for order in rows_load(Order, "pk", [UUID(i) for i in order_ids])}
    outcomes: dict[str, Outcome] = {}
    ready: list[Order] = []
    for order_id in dict.fromkeys(order_ids):  # each once, in the message's order
        order = loaded.get(UUID(order_id))
        if (
            order is None
            or order.status != OrderStatus.PENDING
            or order.order_type != OrderType.MARKET
            or order.next_attempt_at is not None
        ):
            continue
        due = attempt_due(order, reserve_slot=True, wait=False)  # the rate limit's slot
        if due is None:
            ready.append(order)
        else:
            outcomes[str(order.pk)] = due
    attempts = _plan(ready, outcomes)
    submitted = _submit(attempts)
    if submitted:
        logger.info("started together orders=%d of %d", len(submitted), len(order_ids))
        # Their routing, building and submitted updates go out before the orders are sent and
        # landed: the outbox thread would otherwise publish them while this thread works on,
        # both on one process's share of the CPU (bounded: a slow Redis holds this 50 ms at most).
        outbox.flush(timeout=0.05)
    due_now: list[tuple[Order, Transaction]] = []
    # Sent as a real RPC call is, outside any transaction: all at once where the network takes
    # them at once, one at a time otherwise.
    lands_at = transactions_send([tx for _, tx in submitted])
    for order, tx in submitted:
        if tx.signature in lands_at:
            sent = wait_until(lands_at[tx.signature], wait=False)
        else:
            sent = attempt_send(tx, wait=False)
        if sent is None:
            due_now.append((order, tx))
        elif not sent.would_wait:
            outcomes[str(order.pk)] = sent
    outcomes.update(_settle(due_now))
    return outcomes, [i for i in order_ids if i not in outcomes]


def _plan(orders: list[Order], outcomes: dict[str, Outcome]) -> list[tuple[Order, Attempt]]:
    """Every order routed on one view of the market, and its transaction built and signed."""
    if not orders:
        return []
    requests = []
    for order in orders:
        token_in = token_get(order.token_in)
        requests.append(
            (
                token_in,
                token_get(order.token_out),
                to_units(order.amount_in, token_in),
                f"order={order.pk}",
            )
        )
    attempts = []
    for order, decision in zip(orders, routes_best(requests), strict=True):
        planned: Attempt | Outcome | None
        if isinstance(decision, DexError):
            planned = attempt_failed(order, decision)
        else:
            planned = attempt_plan(order, decision)
        if isinstance(planned, Attempt):
            attempts.append((order, planned))
        elif planned is not None:
            outcomes[str(order.pk)] = planned
    return attempts


def _submit(attempts: list[tuple[Order, Attempt]]) -> list[tuple[Order, Transaction]]:
    """Each attempt's routing, building and submitted transitions, for all of them in one
    transaction: the orders locked in one statement and written in another."""
    if not attempts:
        return []
    with transaction.atomic():
        locked = orders_relock([order for order, _ in attempts])
        moves: list[tuple[Order, list[Step]]] = []
        submitted = []
        for order, attempt in attempts:
            row = locked.get(order.pk)
            if not still_at(row, status=order.status, attempts=order.attempts):
                continue  # moved since it was read: the pipeline looks at it again
            moves.append((row, attempt_steps(attempt)))
            submitted.append((row, attempt.tx))
        orders_transitions(moves)
    return submitted


def _settle(submitted: list[tuple[Order, Transaction]]) -> dict[str, Outcome]:
    """The chain's answers for the submitted orders, in one transaction: the confirmations
    written together, a failed attempt recorded as the pipeline records it."""
    if not submitted:
        return {}
    outcomes: dict[str, Outcome] = {}
    with transaction.atomic():
        locked = orders_relock([order for order, _ in submitted])
        current: list[tuple[Order, Transaction]] = []
        for order, tx in submitted:
            row = locked.get(order.pk)
            # As the pipeline's settle step checks: still submitted, and with this transaction.
            if still_at(row, status=OrderStatus.SUBMITTED, attempts=order.attempts) and (
                row.tx_hash == tx.signature
            ):
                current.append((row, tx))
        statuses = signatures_status([tx.signature for _, tx in current])
        confirmed: list[tuple[Order, list[Step]]] = []
        for row, tx in current:
            settled: Any = settlement(row, tx, statuses[tx.signature])
            if isinstance(settled, Step):
                confirmed.append((row, [settled]))
                outcomes[str(row.pk)] = DONE
            elif settled is not None:
                outcomes[str(row.pk)] = settled
        orders_transitions(confirmed)
    return outcomes
