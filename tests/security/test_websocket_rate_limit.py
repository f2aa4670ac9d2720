"""Submitting over the WebSocket (`ws://HOST/api/orders/execute`) spends the same per-client
budget as `POST /api/orders/execute`: opening a fresh socket per order must not escape the
submission rate limit."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from orders.models import Order
from orders.routing import websocket_urlpatterns
from tests.conftest import make_wallet

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.asyncio,
]

APP = URLRouter(websocket_urlpatterns)
ORDER = {"walletAddress": make_wallet(2), "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "0.1"}


async def submit_over_socket(peer: str) -> dict:  # type: ignore[type-arg]
    ws = WebsocketCommunicator(APP, "/api/orders/execute")
    ws.scope["client"] = (peer, 50000)
    connected, _ = await ws.connect()
    assert connected
    await ws.send_to(text_data=json.dumps(ORDER))
    reply = json.loads(await ws.receive_from(timeout=10))
    await ws.disconnect()
    return reply


async def test_a_fresh_socket_per_order_does_not_escape_the_limit(settings) -> None:
    settings.API_RATE_LIMIT = "2/m"
    replies = [await submit_over_socket("198.51.100.20") for _ in range(3)]
    assert [r["type"] for r in replies] == ["order.accepted", "order.accepted", "error"]
    assert replies[2]["error"] == "rate_limited" and replies[2]["message"]
    assert await database_sync_to_async(Order.objects.count)() == 2
    # Another client has its own budget.
    assert (await submit_over_socket("198.51.100.21"))["type"] == "order.accepted"


async def test_http_and_websocket_share_one_budget(settings) -> None:
    settings.API_RATE_LIMIT = "2/m"

    def post_over_http() -> int:
        from django.test import Client

        return (
            Client()
            .post(
                "/api/orders/execute",
                json.dumps(ORDER),
                content_type="application/json",
                REMOTE_ADDR="198.51.100.30",
            )
            .status_code
        )

    assert await database_sync_to_async(post_over_http)() == 201
    assert (await submit_over_socket("198.51.100.30"))["type"] == "order.accepted"
    assert (await submit_over_socket("198.51.100.30"))["error"] == "rate_limited"
    assert await database_sync_to_async(post_over_http)() == 429


@pytest.fixture(autouse=True)
async def _close_thread_connections():  # type: ignore[no-untyped-def]
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()
