"""/health across a Redis restart: while Redis is gone it says so, and once Redis is back and the
worker has reconnected it says ok. Never a false alarm from a connection the web process kept
from before the restart ("Connection closed by server": the stale socket, not the service)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import shared_test_database_url

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.e2e,
    pytest.mark.slow,
]

STALE = "Connection closed by server"


def test_health_after_a_redis_restart_blames_no_stale_connection(private_redis, stacks) -> None:
    stack = stacks(shared_test_database_url(), private_redis.url)
    _, port = stack.daphne()
    stack.worker("w1", concurrency=1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        deadline = time.monotonic() + 30
        while (health := client.get("/health")).status_code != 200:  # every check used once
            assert time.monotonic() < deadline, health.text
            time.sleep(0.5)

        private_redis.kill()
        down = client.get("/health")
        assert down.status_code == 503, down.text
        private_redis.start()  # empty, same port

        answers = []
        deadline = time.monotonic() + 60
        while True:
            health = client.get("/health")
            answers.append(health.json())
            if health.status_code == 200:
                break
            assert time.monotonic() < deadline, answers
            time.sleep(0.5)
    stale = [a for a in answers if STALE in str(a)]
    assert not stale, stale  # only "the worker has not reconnected yet", never a dead socket
