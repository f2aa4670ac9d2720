"""Redis killed with SIGKILL in the middle of a run and started again empty on the same port (a
private redis-server: the machine's own is never touched). The queue, the unacknowledged and
scheduled tasks, the rate limiter's state, the channel layer and the order cache are all gone.
PostgreSQL is the source of truth: beat's reconciler finds the stalled orders and resumes them,
and orders submitted during the outage are not lost either. Every accepted order ends terminal
with at most one swap and contiguous events."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from django.db import connection

from scripts.faultkit import invariants, orders_not_final
from tests.conftest import make_wallet
from tests.faults.conftest import shared_test_database_url

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.e2e,
    pytest.mark.slow,
]


def order_body(i: int) -> dict[str, Any]:
    return {
        "walletAddress": make_wallet(i),
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": f"0.{i % 9 + 1}",
        "slippage": 1.0,
    }


def submit(client: httpx.Client, i: int) -> tuple[int, str | None]:
    """POST with an Idempotency-Key, retried as a client would on a 503 or a network error."""
    key = str(uuid.uuid4())
    for _ in range(20):
        try:
            response = client.post(
                "/api/orders/execute", json=order_body(i), headers={"Idempotency-Key": key}
            )
        except httpx.TransportError:
            time.sleep(0.5)
            continue
        assert response.status_code != 500, response.text
        if response.status_code in (200, 201):
            return response.status_code, response.json()["orderId"]
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "service_unavailable"
        time.sleep(0.5)
    return 503, None


def test_redis_lost_mid_run_loses_no_order(private_redis, stacks) -> None:
    stack = stacks(
        shared_test_database_url(),
        private_redis.url,
        DEX_EXECUTION_LATENCY_MS="1000-2000",
        ORDER_RATE_LIMIT="1200/m",  # some orders wait for their slot as scheduled tasks
    )
    _, port = stack.daphne()
    stack.worker("w1", concurrency=4)
    stack.beat()
    accepted: list[str] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for i in range(30):
            accepted.append(submit(client, i)[1])
        time.sleep(0.5)  # orders queued, waiting for a slot, routing, sent, landing

        private_redis.kill()  # everything in Redis is gone
        during = [submit(client, 100 + i) for i in range(5)]  # PostgreSQL still takes orders
        assert all(code == 201 for code, _ in during), during
        accepted += [order_id for _, order_id in during]
        time.sleep(2)
        private_redis.start()  # empty, same port

        for i in range(5):
            accepted.append(submit(client, 200 + i)[1])
        assert None not in accepted

        deadline = time.monotonic() + 120
        with psycopg.connect(_dsn(), autocommit=True) as conn:
            while orders_not_final(conn, accepted) and time.monotonic() < deadline:
                time.sleep(1)
            verdict = invariants(conn, expected_ids=accepted)
        assert verdict.ok, verdict.violations[:10]
        assert verdict.by_status == {"confirmed": len(accepted)}, verdict.by_status
        health = client.get("/health")
        assert health.status_code == 200, health.text  # worker, broker, Redis all back


def _dsn() -> str:
    db = connection.settings_dict
    return f"host={db['HOST'] or 'localhost'} port={db['PORT'] or 5432} dbname={db['NAME']}" + (
        f" user={db['USER']}" if db["USER"] else ""
    )
