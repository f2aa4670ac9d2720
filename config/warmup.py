"""A served process made ready before its first request or task, instead of by it.

Everything a request or an order task touches first is set up lazily: connections (PostgreSQL,
the Redis clients, the broker's producer), the token registry, the market query, the outbox
thread, the HTTP threads, the Celery app (finalized at the first dispatch). A fresh daphne
answered its first POSTs in 20-23 ms against 7-10 ms for the next ones, one at a time (12.7 and
10.0 ms warmed up), and a pool process took 42 ms over its first order task against
10; under a steady 100 POST/s from a cold start those first uses fell together, and the first
0.3 s of requests took 10-75 ms each: 13 of a 3 000-request run's slowest 29.

So daphne (`config.asgi`, before it serves) and each pool process (`worker_process_init`) run
those first uses at startup. Each step is best effort: one that fails (PostgreSQL or Redis
down) is logged and left to the first request, which then answers 503 as before, and a failed
database step skips the steps that need the database. WARMUP=0 turns it off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

#: A 32-byte base58 address (the system program's) for the request validated at startup.
_WALLET = "11111111111111111111111111111111"


def web_warm(handler: Any) -> list[str]:
    """daphne's warm-up: its HTTP threads started, and everything the POST view touches first.
    Returns the steps that failed."""
    if not settings.WARMUP:
        return []
    pair: list[Any] = []
    try:
        return _run(
            [
                ("database", connection.ensure_connection),
                ("http threads", lambda: _start_threads(handler.threads, settings.HTTP_THREADS)),
                *_common_steps(pair),
                ("request validation", lambda: _validate_sample(pair)),
                ("django cache", _django_cache),
                ("task dispatch", _task_dispatch),
            ],
            process="web",
        )
    finally:
        connection.close()  # this thread serves no request: its connection goes back to the pool


def pool_warm() -> list[str]:
    """A pool process's warm-up: its own PostgreSQL connection (kept: CONN_MAX_AGE), the token
    registry, the market query, its Redis clients and its outbox thread."""
    if not settings.WARMUP:
        return []
    return _run(
        [("database", connection.ensure_connection), *_common_steps([])],
        process="worker pool process",
    )


def _common_steps(pair: list[Any]) -> list[tuple[str, Callable[[], Any]]]:
    """The steps both kinds of process run; the registry step leaves its first two tokens in
    `pair` for the steps after it (one query for all of them)."""
    return [
        ("token registry", lambda: _tokens(pair)),
        ("market", lambda: _market(pair)),
        ("redis", _redis),
        ("channel layer", _channel_layer),
        ("outbox", _outbox),
    ]


_NEEDS_DATABASE = {"token registry", "market", "request validation"}


def _run(steps: list[tuple[str, Callable[[], Any]]], *, process: str) -> list[str]:
    started = time.perf_counter()
    failed: list[str] = []
    database_down = False
    for name, step in steps:
        if database_down and name in _NEEDS_DATABASE:
            failed.append(name)
            continue
        try:
            step()
        except Exception as error:  # a warm-up never stops a process from starting
            logger.warning("%s warm-up: %s failed: %s", process, name, error)
            failed.append(name)
            database_down = database_down or isinstance(error, DatabaseError)
    logger.info(
        "%s warmed up in %.0f ms%s",
        process,
        (time.perf_counter() - started) * 1000,
        f" (failed: {', '.join(failed)})" if failed else "",
    )
    return failed


def _start_threads(executor: Any, count: int) -> None:
    """Start the executor's `count` threads: it starts one per task submitted while none is idle,
    and each of these waits until all of them are running."""
    barrier = threading.Barrier(count + 1)
    futures = [executor.submit(barrier.wait, 10) for _ in range(count)]
    barrier.wait(10)
    for future in futures:
        future.result(timeout=10)


def _tokens(pair: list[Any]) -> None:
    from dex.tokens import token_list

    pair[:] = token_list()[:2]


def _market(pair: list[Any]) -> None:
    from dex.router import market_load

    if len(pair) == 2:
        market_load([(pair[0], pair[1])])


def _validate_sample(pair: list[Any]) -> None:
    """The order serializer run once on a well-formed request (it builds its fields and
    validators on first use); valid or not, nothing is written."""
    from orders.serializers import OrderSubmitSerializer

    if len(pair) < 2:
        return
    body = {
        "walletAddress": _WALLET,
        "tokenIn": pair[0].symbol,
        "tokenOut": pair[1].symbol,
        "amountIn": "1",
        "orderType": "market",
    }
    OrderSubmitSerializer(data=body).is_valid()


def _redis() -> None:
    from engine.redis import redis_client

    redis_client().ping()


def _django_cache() -> None:
    from django.core.cache import cache

    cache.get("warmup")


def _channel_layer() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    connect = getattr(layer, "connect_blocking", None)
    if connect is not None:
        connect()


def _task_dispatch() -> None:
    """What the first dispatch would do on the outbox thread: the Celery app finalized (its
    task registry built, a few modules imported), the execution tasks bound, the result
    backend looked up (through the installed packages' entry points), and a producer from the
    pool `apply_async` takes its producers from opened. Done there, under the first requests,
    that held the interpreter lock for tens of milliseconds (a py-spy profile of a cold start)."""
    from config.celery import app
    from engine.tasks import execute_order_task, execute_orders_task

    app.finalize(auto=True)
    for task in (execute_order_task, execute_orders_task):
        task.backend  # noqa: B018 - a property that loads the backend once
    app.amqp.router  # noqa: B018 - likewise, the router every message goes through
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=1)


def _outbox() -> None:
    from engine.events import outbox

    outbox.start()
