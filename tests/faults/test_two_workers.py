"""Two worker nodes (two Celery worker processes with different hostnames, sharing the broker and
the database). The global order rate limit (engine/ratelimit.py, GCRA in Redis) holds across
both: measured on the `routing` events of first attempts, which start only when a slot is theirs,
at 600/minute to keep the test short. Celery's own `rate_limit` is per worker: with it, two nodes
would start orders twice as fast. And no order runs twice: one routing, one landed swap each."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import pytest

from dex.models import ChainTransaction
from engine.events import outbox
from engine.services import OrderRequest, order_submit
from orders.models import Order, OrderEvent, OrderStatus
from tests.conftest import make_wallet

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.e2e,
    pytest.mark.slow,
]

RATE_PER_MINUTE = 600
ORDERS = 100
#: Starts may bunch a little after a delay (a slot's task waited for a busy pool process, then
#: the next slots ran on time): allow one second of such lateness, far below the doubling that
#: per-worker limits would give.
LATENESS = 1.0
WINDOW = 5.0


def most_in_any_window(times: list[datetime], seconds: float) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while (times[end] - times[start]).total_seconds() >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_the_rate_limit_holds_across_two_worker_nodes_and_no_order_runs_twice(services) -> None:
    env = {
        "ORDER_RATE_LIMIT": f"{RATE_PER_MINUTE}/m",
        "DEX_EXECUTION_LATENCY_MS": "50-150",
        "DEX_QUOTE_LATENCY_MS": "5",
    }
    node_a = services("worker", name="node-a", concurrency=3, env=env)
    node_b = services("worker", name="node-b", concurrency=3, env=env)
    ids = []
    for i in range(ORDERS):  # all at once: the backlog is what the limit must pace
        order, _ = order_submit(
            request=OrderRequest(
                wallet_address=make_wallet(i),
                token_in="SOL",
                token_out="USDC",
                amount_in=Decimal("0.2"),
            )
        )
        ids.append(order.pk)
    outbox.flush()

    deadline = time.monotonic() + 120
    while Order.objects.filter(pk__in=ids, status=OrderStatus.CONFIRMED).count() < ORDERS:
        assert time.monotonic() < deadline, "orders did not all confirm"
        time.sleep(0.5)

    starts = sorted(
        OrderEvent.objects.filter(order_id__in=ids, status="routing", attempt=1).values_list(
            "created_at", flat=True
        )
    )
    assert len(starts) == ORDERS  # each order started once
    per_second = RATE_PER_MINUTE / 60
    span = (starts[-1] - starts[0]).total_seconds()
    # 100 starts at 10/s take 9.9 s; per-worker limits would have taken half of that.
    assert span >= 0.9 * (ORDERS - 1) / per_second, f"{ORDERS} orders started in {span:.2f} s"
    busiest = most_in_any_window(starts, WINDOW)
    print(f"{ORDERS} starts over {span:.2f} s, at most {busiest} in any {WINDOW:.0f} s")
    assert busiest <= per_second * (WINDOW + LATENESS), f"{busiest} started within {WINDOW} s"

    both = [n for n in (node_a, node_b) if "engine.execute_order" in n.log()]
    assert len(both) == 2, "both nodes should have executed orders"
    for order_id in ids:
        assert (
            ChainTransaction.objects.filter(
                reference__startswith=f"{order_id}:", state="landed"
            ).count()
            == 1
        )
        seqs = list(
            OrderEvent.objects.filter(order_id=order_id)
            .order_by("seq")
            .values_list("status", flat=True)
        )
        assert seqs == ["pending", "routing", "building", "submitted", "confirmed"], seqs
