"""Celery tasks of the market: an interface like a view, it only calls `dex.drift`."""

from __future__ import annotations

from celery import shared_task

from dex.drift import market_drift_step


@shared_task(name="dex.tasks.market_drift_task", ignore_result=True)
def market_drift_task() -> int:
    """One price-drift step for every pair (the beat schedule runs it periodically)."""
    return market_drift_step()
