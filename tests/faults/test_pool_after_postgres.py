"""daphne as the Procfile runs it (DB_POOL=1: psycopg's pool) across a PostgreSQL restart. The
restart breaks every connection the pool holds; once PostgreSQL is back, the first request to
meet one gets a 503 (retryable, with Retry-After) and the pool is checked then, so the next
requests are served: not one 503 per stale connection."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from tests.conftest import make_wallet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_after_a_postgres_restart_one_request_at_most_meets_a_stale_connection(
    private_postgres, private_redis, stacks
) -> None:
    stack = stacks(private_postgres.url, private_redis.url)
    stack.manage("migrate", "--verbosity", "0")
    _, port = stack.daphne()  # DB_POOL=1, as the Procfile runs it
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        body = {"walletAddress": make_wallet(1), "tokenIn": "SOL", "tokenOut": "USDC"}
        created = client.post("/api/orders/execute", json={**body, "amountIn": "1"})
        assert created.status_code == 201, created.text

        def read(_: int) -> int:
            return httpx.get(f"{base}/api/orders?limit=5", timeout=10).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # the pool opens several
            assert set(pool.map(read, range(64))) == {200}

        private_postgres.stop("fast")  # every session ends: the pool's connections are dead
        private_postgres.start()
        time.sleep(0.5)
        codes = [client.get("/api/orders?limit=5").status_code for _ in range(10)]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(503) <= 1, codes  # one stale connection met, then the pool was checked
    assert codes[-1] == 200, codes
