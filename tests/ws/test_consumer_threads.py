"""The consumers' database work does not run on daphne's one thread-sensitive thread (where
every socket's replay and submission used to queue behind every other's), and it leaves no
connection held once done, however many sockets did it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connection

from orders.routing import websocket_urlpatterns
from tests.conftest import make_wallet, orders_create

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.asyncio,
]

APP = URLRouter(websocket_urlpatterns)


def create_orders(n: int) -> list[str]:
    ids = orders_create(n, first_wallet=40, amount="0.2")
    connection.close()
    return ids


@pytest.fixture
async def sync_thread_busy() -> AsyncIterator[None]:
    """Daphne's thread-sensitive thread, held by something slow for the whole test."""
    release = threading.Event()
    holding = asyncio.ensure_future(sync_to_async(release.wait)())
    await asyncio.sleep(0.1)
    try:
        yield
    finally:
        release.set()
        await holding


async def test_a_replay_does_not_wait_for_the_sync_thread(sync_thread_busy) -> None:
    (order_id,) = await asyncio.to_thread(create_orders, 1)  # not on the busy thread
    ws = WebsocketCommunicator(APP, f"/ws/orders/{order_id}")
    assert (await ws.connect(timeout=5))[0]
    assert json.loads(await ws.receive_from(timeout=5))["seq"] == 1
    await ws.send_to(text_data='{"action": "ping"}')
    assert json.loads(await ws.receive_from(timeout=5)) == {"type": "pong"}
    await ws.disconnect()


async def test_a_submission_over_the_socket_does_not_wait_for_the_sync_thread(
    sync_thread_busy,
) -> None:
    ws = WebsocketCommunicator(APP, "/api/orders/execute")
    assert (await ws.connect(timeout=5))[0]
    body = {"walletAddress": make_wallet(60), "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1}
    await ws.send_to(text_data=json.dumps(body))
    assert json.loads(await ws.receive_from(timeout=5))["type"] == "order.accepted"
    await ws.disconnect()


@database_sync_to_async
def backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


async def test_many_sockets_leave_no_connection_held() -> None:
    """Each socket's replay and subscribe ran on the consumers' threads; none of those threads
    keeps a connection once done (the count is PostgreSQL's own)."""
    ids = await asyncio.to_thread(create_orders, 5)
    before = await backends()
    sockets = [WebsocketCommunicator(APP, f"/ws/orders/{ids[i % 5]}") for i in range(40)]
    await asyncio.gather(*(ws.connect(timeout=10) for ws in sockets))
    for ws in sockets:
        assert json.loads(await ws.receive_from(timeout=10))["seq"] == 1
    for ws in sockets:
        await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": ids[1]}))
    for i, ws in enumerate(sockets):
        assert json.loads(await ws.receive_from(timeout=10))["type"] == "subscribed"
        if i % 5 != 1:
            assert json.loads(await ws.receive_from(timeout=10))["orderId"] == ids[1]  # replay
    for _ in range(50):  # a backend whose client has closed takes a moment to leave
        if await backends() == before:
            break
        await asyncio.sleep(0.1)
    assert await backends() == before
    for ws in sockets:
        await ws.disconnect()


@pytest.fixture(autouse=True)
async def _close_thread_connections():  # type: ignore[no-untyped-def]
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()
