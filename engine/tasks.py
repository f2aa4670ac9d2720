"""Celery tasks: another interface onto the engine, like the views. A task takes ids, calls the
engine and schedules itself again when the engine says when."""

from __future__ import annotations

import logging
import time
from functools import partial
from uuid import UUID

import redis
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from engine.events import outbox
from engine.lockstep import lockstep_size, orders_start
from engine.pipeline import Outcome, order_execute

logger = logging.getLogger("engine.tasks")


#: PostgreSQL or Redis down for a moment.
UNAVAILABLE = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError)
#: The options of the tasks that execute orders: acknowledged only once done (a killed worker's
#: message is delivered again), and tried again later when PostgreSQL or Redis is down for a
#: moment rather than dropped (the reconciler would find the order, but only once beat and the
#: database are back).
EXECUTION = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": None,
    "ignore_result": True,
    "autoretry_for": UNAVAILABLE,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
}


@shared_task(name="engine.execute_order", **EXECUTION)
def execute_order_task(self, order_id: str) -> str:  # type: ignore[no-untyped-def]
    outcome = order_execute(UUID(order_id))
    if outcome.run_at is None:
        return "done"
    # A retry of this task (visible as such in Flower): the order's own state, not Celery's
    # retry counter, decides what the next run does.
    raise self.retry(kwargs={"order_id": order_id}, args=(), countdown=_countdown(outcome))


def _countdown(outcome: Outcome) -> float:
    assert outcome.run_at is not None
    return max((outcome.run_at - timezone.now()).total_seconds(), 0.0)


def _execute_one(order_id: str, countdown: float | None = None) -> None:
    """One order's own `engine.execute_order` message, for now or in `countdown` seconds."""
    execute_order_task.apply_async(kwargs={"order_id": order_id}, countdown=countdown)


#: The most orders one `engine.execute_orders` message carries.
BATCH_MAX = 16
#: A batch goes on to its next order only while each takes less than this (wall clock): an order
#: that had to wait (a venue's answer, a lock) hands the rest on rather than hold them back.
BATCH_ORDER_SECONDS = 0.15


@shared_task(name="engine.execute_orders", **EXECUTION)
def execute_orders_task(self, order_ids: list[str]) -> str:  # type: ignore[no-untyped-def]
    """Orders dispatched together: one broker message, one delivery and one acknowledgement for
    all of them, advanced in this pool process.

    One order at a time (`lockstep_size` 1, the default: as many pool processes as
    ORDER_CONCURRENCY), or that many together (engine.lockstep). No order waits behind another's
    wait: the first order that would wait in place (for the chain, or for an attempt due within
    a second) hands the orders not yet started on, one message each, and then waits here; so
    does one that took longer than BATCH_ORDER_SECONDS. An order due later gets its own message
    for then. Running the batch again (a redelivery, or the retry after PostgreSQL or Redis
    failed) is harmless: each order resumes from its stored state."""
    size = lockstep_size()
    for start in range(0, len(order_ids), size):
        chunk, rest = order_ids[start : start + size], order_ids[start + size :]
        started = time.monotonic()
        left = _start_together(chunk) if len(chunk) > 1 else chunk
        waiting = []
        for order_id in left:
            try:
                outcome = order_execute(UUID(order_id), wait=False)
            except UNAVAILABLE:
                raise  # the whole batch again, later
            except Exception:
                # One order's bug must not hold the others: the reconciler resumes this one.
                logger.exception("executing order=%s in a batch failed", order_id)
                continue
            if outcome.would_wait:
                waiting.append(order_id)
            else:
                _schedule(order_id, outcome)
        if waiting:
            _hand_on(rest)
            for order_id in waiting:
                # Waits here, as a task would; what goes wrong now goes wrong as in that task.
                _schedule(order_id, order_execute(UUID(order_id)))
            return f"{start + len(chunk)} of {len(order_ids)}, the rest handed on"
        if rest and time.monotonic() - started > BATCH_ORDER_SECONDS * len(chunk):
            _hand_on(rest)
            return f"{start + len(chunk)} of {len(order_ids)}, the rest handed on"
    return f"{len(order_ids)} orders"


def _start_together(order_ids: list[str]) -> list[str]:
    """The orders started together (engine.lockstep), each finished one scheduled; returns the
    ids left to advance one at a time."""
    try:
        outcomes, left = orders_start(order_ids)
    except UNAVAILABLE:
        raise
    except Exception:
        logger.exception("executing orders=%s together failed", ",".join(order_ids))
        return order_ids
    for order_id, outcome in outcomes.items():
        _schedule(order_id, outcome)
    return left


def _hand_on(order_ids: list[str]) -> None:
    for order_id in order_ids:
        _execute_one(order_id)


def _schedule(order_id: str, outcome: Outcome) -> None:
    if outcome.run_at is not None:
        _execute_one(order_id, _countdown(outcome))


def _dispatch_now(order_ids: list[str]) -> None:
    """Send the orders the outbox gathered: one message per BATCH_MAX of them."""
    for start in range(0, len(order_ids), BATCH_MAX):
        chunk = order_ids[start : start + BATCH_MAX]
        if len(chunk) == 1:
            _execute_one(chunk[0])
        else:
            execute_orders_task.apply_async(kwargs={"order_ids": chunk})


def order_dispatch(order_id: str | UUID, *, countdown: float | None = None) -> None:
    """Queue the order for execution once the current transaction commits (from the outbox
    thread: the caller does not wait for the broker; a lost message is the reconciler's).
    Orders dispatched while the outbox is busy go out together, in one message, and so do
    orders that follow one another within DISPATCH_LINGER_MS (one message per linger at most:
    the first after a quiet spell goes at once)."""
    if countdown is None:
        linger = settings.DISPATCH_LINGER_MS / 1000
        transaction.on_commit(lambda: outbox.gather(_dispatch_now, str(order_id), linger=linger))
        return
    send = partial(_execute_one, str(order_id), countdown)
    transaction.on_commit(lambda: outbox.run(send))


@shared_task(name="engine.reconcile_orders", ignore_result=True)
def reconcile_orders_task() -> int:
    from engine.reconciler import orders_reconcile

    return orders_reconcile(stale_after=settings.ORDER_STALE_SECONDS)


@shared_task(name="engine.watch_orders", ignore_result=True, expires=5)
def watch_orders_task() -> int:
    from engine.watcher import orders_watch

    return len(orders_watch())
