"""Celery tasks: another interface onto the engine, like the views. A task takes ids, calls the
engine and schedules itself again when the engine says when."""

from __future__ import annotations

import logging
from functools import partial
from uuid import UUID

import redis
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from engine.events import outbox
from engine.pipeline import order_execute

logger = logging.getLogger("engine.tasks")


@shared_task(
    bind=True,
    name="engine.execute_order",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
    # PostgreSQL or Redis down for a moment: try again later rather than drop the message (the
    # reconciler would find the order, but only once beat and the database are back).
    autoretry_for=(OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
)
def execute_order_task(self, order_id: str) -> str:  # type: ignore[no-untyped-def]
    outcome = order_execute(UUID(order_id))
    if outcome.run_at is None:
        return "done"
    countdown = max((outcome.run_at - timezone.now()).total_seconds(), 0.0)
    # A retry of this task (visible as such in Flower): the order's own state, not Celery's
    # retry counter, decides what the next run does.
    raise self.retry(kwargs={"order_id": order_id}, args=(), countdown=countdown)


def order_dispatch(order_id: str | UUID, *, countdown: float | None = None) -> None:
    """Queue the order for execution once the current transaction commits (from the outbox
    thread: the caller does not wait for the broker; a lost message is the reconciler's)."""
    send = partial(
        execute_order_task.apply_async, kwargs={"order_id": str(order_id)}, countdown=countdown
    )
    transaction.on_commit(lambda: outbox.run(send))


@shared_task(name="engine.reconcile_orders", ignore_result=True)
def reconcile_orders_task() -> int:
    from engine.reconciler import orders_reconcile

    return orders_reconcile(stale_after=settings.ORDER_STALE_SECONDS)


@shared_task(name="engine.watch_orders", ignore_result=True, expires=5)
def watch_orders_task() -> int:
    from engine.watcher import orders_watch

    return len(orders_watch())
