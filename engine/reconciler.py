"""The reconciler: PostgreSQL is the source of truth, so an order whose task was lost (a worker
killed, Redis emptied) is found by its state and dispatched again. Dispatching is always safe:
the pipeline resumes from the persisted step and ignores duplicates."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from engine.queue import queue_depth
from engine.states import ACTIVE
from orders.models import Order, OrderStatus, OrderType

logger = logging.getLogger("engine.reconciler")

BATCH = 500


def orders_stalled(*, stale_after: float) -> list[str]:
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    due_or_unscheduled = Q(next_attempt_at__isnull=True, updated_at__lt=cutoff) | Q(
        next_attempt_at__lt=cutoff
    )
    runnable_pending = Q(status=OrderStatus.PENDING) & (
        Q(order_type=OrderType.MARKET) | Q(triggered_at__isnull=False)
    )
    stalled = Q(status__in=ACTIVE, updated_at__lt=cutoff) | Q(
        status=OrderStatus.FAILED, next_attempt_at__lt=cutoff
    )
    # A pending order with no scheduled time is waiting for its message in the queue. While
    # the queue holds messages it is a backlog being worked, not a loss: dispatching again would
    # only duplicate it (and each duplicate costs a worker slot). Once the queue is empty, a
    # pending order still untouched lost its message (Redis emptied): resume it.
    if not queue_depth():
        stalled |= runnable_pending & due_or_unscheduled
    else:
        stalled |= runnable_pending & Q(next_attempt_at__lt=cutoff)
    ids = Order.objects.filter(stalled).order_by("created_at").values_list("id", flat=True)
    return [str(i) for i in ids[:BATCH]]


def orders_reconcile(*, stale_after: float) -> int:
    from engine.tasks import execute_order_task

    ids = orders_stalled(stale_after=stale_after)
    for order_id in ids:
        execute_order_task.apply_async(kwargs={"order_id": order_id})
    if ids:
        logger.warning("reconciler resumed %d stalled orders first=%s", len(ids), ids[0])
    return len(ids)
