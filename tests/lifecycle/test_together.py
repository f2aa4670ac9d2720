"""Orders executed together on real processes: daphne and a Celery worker with fewer pool
processes than ORDER_CONCURRENCY. The worker counts its own pool (config.celery), so each
process starts its share of the orders at once; every order confirms with its full history, and
the events show no more than ORDER_CONCURRENCY executing at any moment."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from orders.models import Order, OrderEvent
from tests.conftest import make_wallet, until

pytestmark = pytest.mark.e2e

ORDERS = 24
AT_ONCE = 4  # ORDER_CONCURRENCY, on 2 pool processes: 2 together per process


async def submit_all(port: int) -> list[str]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/orders/execute",
                    json={
                        "tokenIn": "SOL",
                        "tokenOut": "USDC",
                        "amountIn": "0.05",
                        "walletAddress": make_wallet(200 + i),
                    },
                )
                for i in range(ORDERS)
            )
        )
    assert [r.status_code for r in responses] == [201] * ORDERS
    return [r.json()["orderId"] for r in responses]


def most_executing_at_once(ids: list[str]) -> int:
    """From the stored events: +1 at an attempt's `routing`, -1 at its end."""
    changes = []
    for event in OrderEvent.objects.filter(order_id__in=ids).order_by("created_at", "seq"):
        if event.status == "routing":
            changes.append((event.created_at, 1))
        elif event.status in {"confirmed", "failed"}:
            changes.append((event.created_at, -1))
    running = most = 0
    for _, change in sorted(changes, key=lambda c: (c[0], c[1])):  # ends before starts
        running += change
        most = max(most, running)
    return most


def test_a_worker_with_fewer_processes_executes_orders_together(services) -> None:
    _, port = services("daphne")
    worker = services(
        "worker",
        name="together",
        concurrency=2,
        env={"ORDER_CONCURRENCY": str(AT_ONCE), "DEX_EXECUTION_LATENCY_MS": "0"},
    )
    ids = asyncio.run(submit_all(port))
    with contextlib.suppress(AssertionError, TimeoutError):  # the assertions below tell
        until(lambda: Order.objects.filter(pk__in=ids, status="confirmed").count() == ORDERS)
    orders = Order.objects.filter(pk__in=ids)
    assert sorted(o.status for o in orders) == ["confirmed"] * ORDERS, worker.log()[-3000:]
    for order in orders:
        assert list(order.events.order_by("seq").values_list("status", flat=True)) == [
            "pending",
            "routing",
            "building",
            "submitted",
            "confirmed",
        ]
    assert "started together orders=2 of 2" in worker.log()
    assert most_executing_at_once(ids) <= AT_ONCE
