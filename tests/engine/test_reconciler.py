"""The reconciler resumes orders whose task was lost, and only those: a pending order queued
behind a backlog is not dispatched twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from engine.reconciler import orders_stalled
from engine.redis import redis_client
from orders.models import Order

pytestmark = pytest.mark.django_db


def _age(order: Order, seconds: float) -> None:
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_a_pending_order_behind_a_backlog_is_left_to_its_queued_message(submit) -> None:
    order = submit()
    _age(order, 120)
    redis_client().lpush(settings.CELERY_TASK_DEFAULT_QUEUE, b"another order's message")
    assert orders_stalled(stale_after=30) == []


def test_a_pending_order_whose_message_was_lost_is_resumed_once_the_queue_is_empty(submit) -> None:
    order = submit()
    _age(order, 120)
    redis_client().delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    assert orders_stalled(stale_after=30) == [str(order.pk)]


def test_a_fresh_pending_order_is_not_stalled(submit) -> None:
    submit()
    assert orders_stalled(stale_after=30) == []


@pytest.mark.parametrize("status", ["routing", "building", "submitted"])
def test_an_active_order_without_progress_is_resumed_even_behind_a_backlog(submit, status) -> None:
    order = submit()
    Order.objects.filter(pk=order.pk).update(status=status)
    _age(order, 120)
    redis_client().lpush(settings.CELERY_TASK_DEFAULT_QUEUE, b"another order's message")
    assert orders_stalled(stale_after=30) == [str(order.pk)]
