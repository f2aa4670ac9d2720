"""daphne and each pool process set up what their first request or task would otherwise set up
itself (config.warmup): connections, the token registry, the market query, their threads. A
step that fails is logged and left to the first request; a failed database step skips the steps
that need the database."""

from __future__ import annotations

import logging
import os
import re

import httpx
import pytest
import redis
from django.db import OperationalError, connection, transaction
from django.test import override_settings

import engine.redis
from config.handler import OneHopASGIHandler
from config.warmup import _run, pool_warm, web_warm
from dex import tokens
from engine.events import outbox
from tests.conftest import free_port, until


@pytest.fixture
def handler():
    handler = OneHopASGIHandler()
    yield handler
    handler.threads.shutdown(wait=True)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@override_settings(WARMUP=True, HTTP_THREADS=3)
def test_the_web_warm_up_starts_every_http_thread_and_opens_what_a_post_uses(
    handler, caplog
) -> None:
    tokens.token_cache_clear()
    engine.redis._client = None  # a new client, so that its connection is the warm-up's
    caplog.set_level(logging.INFO, logger="config.warmup")

    assert web_warm(handler) == []

    assert len(handler.threads._threads) == 3  # not one per request as they come
    assert all(thread.is_alive() for thread in handler.threads._threads)
    assert "SOL" in tokens._by_symbol  # the registry, loaded
    assert engine.redis.redis_client().connection_pool._created_connections == 1
    assert outbox._pid == os.getpid()  # the outbox thread is running
    assert re.search(r"web warmed up in \d+ ms$", caplog.messages[-1]), caplog.messages
    assert connection.connection is None  # the warm-up's own connection was handed back


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@override_settings(WARMUP=True)
def test_a_pool_process_warm_up_opens_its_own_connection_and_keeps_it() -> None:
    connection.close()
    tokens.token_cache_clear()

    assert pool_warm() == []

    assert connection.connection is not None and connection.is_usable()
    assert "USDC" in tokens._by_symbol


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@override_settings(WARMUP=True, HTTP_THREADS=2)
def test_redis_down_fails_only_its_steps_and_the_rest_still_runs(handler, caplog) -> None:
    closed_port = free_port()
    engine.redis._client = redis.Redis(port=closed_port, socket_connect_timeout=1)
    tokens.token_cache_clear()
    try:
        failed = web_warm(handler)
    finally:
        engine.redis._client = None
    assert failed == ["redis"]  # a real refusal, reported
    assert any("web warm-up: redis failed" in m for m in caplog.messages), caplog.messages
    assert len(handler.threads._threads) == 2 and "SOL" in tokens._by_symbol


def test_a_failed_database_step_skips_the_steps_that_need_the_database(caplog) -> None:
    ran: list[str] = []

    def database() -> None:
        raise OperationalError("connection refused")

    failed = _run(
        [
            ("database", database),
            ("token registry", lambda: ran.append("token registry")),
            ("redis", lambda: ran.append("redis")),
            ("market", lambda: ran.append("market")),
        ],
        process="test",
    )
    assert failed == ["database", "token registry", "market"]
    assert ran == ["redis"]  # what does not need the database still runs
    assert "test warm-up: database failed: connection refused" in caplog.messages
    assert caplog.messages[-1].endswith("(failed: database, token registry, market)")


@pytest.mark.django_db
@override_settings(WARMUP=False)
def test_with_warmup_off_nothing_is_touched(handler) -> None:
    with transaction.atomic():
        assert web_warm(handler) == [] and pool_warm() == []
        assert connection.in_atomic_block  # the caller's connection left as it was
    assert len(handler.threads._threads) == 0


@pytest.mark.e2e
def test_daphne_and_each_pool_process_warm_up_before_serving(services, order_payload) -> None:
    web, port = services("daphne")
    worker = services("worker", name="warm", concurrency=2)
    until(lambda: worker.log().count("worker pool process warmed up in") == 2, 60)
    assert re.search(r"web warmed up in \d+ ms\n", web.log()), web.log()[-2000:]
    assert "failed" not in web.log() and "warm-up" not in worker.log()

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        order_id = client.post("/api/orders/execute", json=order_payload).json()["orderId"]
        until(lambda: client.get(f"/api/orders/{order_id}").json()["status"] == "confirmed", 60)
