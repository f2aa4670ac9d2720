"""Hostile WebSocket clients: garbage, binary and oversized frames, deeply nested JSON, floods of
subscribe messages, ids that do not exist. Every one gets an error message (or a 4xxx close on a
bad path), the consumer never crashes (a crash is re-raised by the communicator), and once the
client has gone, the channel layer's groups hold nothing of it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from engine.events import FIREHOSE_GROUP, order_group
from orders.consumers import MAX_SUBSCRIPTIONS
from orders.routing import websocket_urlpatterns
from tests.conftest import make_wallet, orders_create

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.asyncio,
]

APP = URLRouter(websocket_urlpatterns)


def group_members() -> dict[str, int]:
    """Every channel-layer group this process has joined, with how many of its consumers are in
    it (pub/sub groups live in the process: Redis sees one subscription per group)."""
    return get_channel_layer().group_sizes()


@database_sync_to_async
def submit_orders(n: int) -> list[str]:
    return orders_create(n, first_wallet=0, amount="0.1")


async def connect(path: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(APP, path)
    connected, _ = await ws.connect()
    assert connected
    return ws


async def connected_to_firehose() -> WebsocketCommunicator:
    ws = await connect("/ws")
    await still_alive(ws)  # the pong comes after connect() has joined the firehose group
    return ws


async def answer(ws: WebsocketCommunicator) -> dict[str, Any]:
    return json.loads(await ws.receive_from(timeout=30))


async def still_alive(ws: WebsocketCommunicator) -> None:
    await ws.send_to(text_data='{"action": "ping"}')
    assert await answer(ws) == {"type": "pong"}


HOSTILE_TEXT = [  # (an empty frame is sent over a real socket in test_ws_live)
    " ",
    "\x00\x01\x02",
    "null",
    "true",
    "1e999999",
    "NaN",
    '"subscribe"',
    "[" * 5000 + "]" * 5000,  # nested deeper than Python's recursion limit
    '{"a":' * 3000 + "1" + "}" * 3000,
    '{"action": null}',
    '{"action": ["subscribe"]}',
    '{"action": "subscribe", "orderId": {"$ne": null}}',
    '{"action": "subscribe", "orderId": 12345}',
    '{"action": "subscribe", "orderId": [1, 2]}',
    '{"action": "subscribe", "orderId": "' + "f" * 10_000 + '"}',
    '{"action": "subscribe", "orderId": "../../etc/passwd"}',
    '{"action": "subscribe", "orderId": "00000000-0000-0000-0000-000000000000"}',
    '{"action": "unsubscribe", "orderId": "00000000-0000-0000-0000-000000000000"}',
    '{"action": "' + "x" * 1000 + '"}',
    "\u202e\ufeff{}",
    "x" * (16 * 1024 + 1),
    "x" * (1024 * 1024),
]


@pytest.mark.parametrize("path", ["/ws", "/ws/orders/{order}"])
async def test_every_hostile_text_frame_is_answered_and_the_socket_stays_open(path) -> None:
    (order,) = await submit_orders(1)
    ws = await connect(path.format(order=order))
    if "orders/" in path:
        assert (await answer(ws))["seq"] == 1  # the replay
    for text in HOSTILE_TEXT:
        await ws.send_to(text_data=text)
        reply = await answer(ws)
        if reply["type"] == "unsubscribed":
            continue  # unsubscribing from an order one never followed is harmless
        assert reply["type"] == "error" and reply["error"] and reply["message"], (text[:40], reply)
        await still_alive(ws)
    await ws.disconnect()
    assert all(n == 0 for n in group_members().values()), group_members()


async def test_binary_frames_of_any_size_are_refused_with_a_message() -> None:
    ws = await connect("/ws")
    for data in (b"\x00", b'{"action": "ping"}', b"\xff" * (1024 * 1024)):
        await ws.send_to(bytes_data=data)
        reply = await answer(ws)
        assert reply["type"] == "error" and reply["error"] == "invalid_message"
    await still_alive(ws)
    await ws.disconnect()


async def test_a_flood_of_subscribes_is_capped_and_leaves_no_group_behind() -> None:
    ids = await submit_orders(3)
    ws = await connected_to_firehose()
    assert group_members() == {FIREHOSE_GROUP: 1}
    # The same order 500 times: one membership, no duplicate replay.
    for _ in range(500):
        await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": ids[0]}))
    replies = [await answer(ws) for _ in range(501)]  # 500 "subscribed" + the one replay
    assert sum(r["type"] == "subscribed" for r in replies) == 500
    assert [r["seq"] for r in replies if r["type"] == "order.update"] == [1]
    assert await ws.receive_nothing(timeout=0.2)
    # Orders that do not exist: an error each, no group created for any of them.
    unknown = [str(uuid.uuid4()) for _ in range(300)]
    for order_id in unknown:
        await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": order_id}))
    for order_id in unknown:
        reply = await answer(ws)
        assert reply["error"] == "not_found" and reply["orderId"] == order_id
    groups = group_members()
    assert not any(order_id in key for key in groups for order_id in unknown)
    assert groups == {order_group(ids[0]): 1}  # the firehose was left on subscribe
    await still_alive(ws)
    await ws.disconnect()
    assert all(n == 0 for n in group_members().values()), group_members()


async def test_subscriptions_per_connection_are_capped(monkeypatch) -> None:
    import orders.consumers

    monkeypatch.setattr(orders.consumers, "MAX_SUBSCRIPTIONS", 3)
    ids = await submit_orders(5)
    ws = await connect("/ws")
    for order_id in ids:
        await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": order_id}))
    replies = [await answer(ws) for _ in range(3 * 2 + 2)]  # 3 (subscribed + replay), 2 errors
    refused = [r for r in replies if r["type"] == "error"]
    assert [r["error"] for r in refused] == ["too_many_subscriptions"] * 2
    assert sum(1 for n in group_members().values() if n) == 3
    await ws.disconnect()
    assert all(n == 0 for n in group_members().values()), group_members()
    assert MAX_SUBSCRIPTIONS >= 3


@pytest.mark.parametrize(
    "path",
    [
        "/ws/orders/not-a-uuid",
        f"/ws/orders/{uuid.uuid4()}",
        "/ws?orderId=" + "z" * 5000,
        f"/ws?orderId={uuid.uuid4()}",
        "/ws?orderId=",
    ],
)
async def test_a_bad_path_is_closed_with_4xxx_and_joins_no_group(path) -> None:
    ws = WebsocketCommunicator(APP, path)
    connected, _ = await ws.connect()
    assert connected
    assert (await answer(ws))["type"] == "error"
    closed = await ws.receive_output(timeout=2)
    assert closed["type"] == "websocket.close" and 4000 <= closed["code"] <= 4999
    await ws.disconnect()
    assert all(n == 0 for n in group_members().values()), group_members()


@pytest.mark.parametrize(
    "message",
    [
        "[" * 5000,
        "[" * 5000 + "]" * 5000,
        "x" * (1024 * 1024),
        json.dumps({"walletAddress": make_wallet(1), "tokenIn": "SOL", "tokenOut": "USDC"}),
        json.dumps(
            {"walletAddress": make_wallet(1), "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 7}
        ).replace("7", "1e3"),
    ],
)
async def test_a_hostile_first_message_on_the_submit_socket_is_refused_with_4400(message) -> None:
    ws = await connect("/api/orders/execute")
    await ws.send_to(text_data=message)
    reply = await answer(ws)
    assert reply["type"] == "error" and reply["error"] and reply["message"]
    closed = await ws.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 4400}


async def test_a_binary_first_message_on_the_submit_socket_is_refused_with_4400() -> None:
    ws = await connect("/api/orders/execute")
    await ws.send_to(bytes_data=b"\x00" * 100)
    assert (await answer(ws))["type"] == "error"
    assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4400}


@pytest.fixture(autouse=True)
async def _close_thread_connections():  # type: ignore[no-untyped-def]
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()
