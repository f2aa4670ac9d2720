"""Hostile WebSocket clients against a real daphne (real frames, real TCP): empty, oversized and
binary frames, a flood of subscribe messages without waiting for answers, and clients that
vanish without a close frame. The server answers each message, stays up, and once the clients
are gone Redis holds no subscription of theirs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis
import websockets
from channels.layers import get_channel_layer
from django.conf import settings

from engine.events import FIREHOSE_GROUP, order_group
from tests.conftest import orders_create

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def members() -> dict[str, int]:
    """Every channel of this deployment's layer that Redis has a subscriber for, with how many:
    each consumer's own channel and each group a consumer of the daphne process has joined."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        channels = client.pubsub_channels(f"{get_channel_layer().prefix}*")
        return {k.decode(): n for k, n in client.pubsub_numsub(*channels)} if channels else {}
    finally:
        client.close()


def groups_empty_within(seconds: float) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while (left := {k: n for k, n in members().items() if n}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


async def answer(ws) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(await asyncio.wait_for(ws.recv(), 20))


async def pong(ws) -> None:  # type: ignore[no-untyped-def]
    await ws.send('{"action": "ping"}')
    assert await answer(ws) == {"type": "pong"}


async def frames(port: int, order_id: str) -> None:
    url = f"ws://127.0.0.1:{port}/ws"
    async with websockets.connect(url, max_size=None) as ws:
        await pong(ws)
        just_under = 1024 * 1024 - 64  # daphne's websocket_max_message_size is 1 MiB
        for frame in ["", "x" * just_under, b"", b"\x00" * just_under, "[" * 16000]:
            await ws.send(frame)
            reply = await answer(ws)
            assert reply["type"] == "error" and reply["error"] == "invalid_message", reply
            await pong(ws)
        # 2 000 subscribes sent at once, half to orders that do not exist.
        ids = [order_id if i % 2 else str(uuid.uuid4()) for i in range(2000)]
        await asyncio.gather(
            *(ws.send(json.dumps({"action": "subscribe", "orderId": i})) for i in ids)
        )
        replies = [await answer(ws) for _ in range(2001)]  # + the one replay of seq 1
        kinds = {}
        for reply in replies:
            kinds[reply.get("error") or reply["type"]] = (
                kinds.get(reply.get("error") or reply["type"], 0) + 1
            )
        assert kinds == {"not_found": 1000, "subscribed": 1000, "order.update": 1}, kinds
        await pong(ws)


async def oversized(port: int) -> None:
    """Above daphne's 1 MiB message limit the transport drops the connection (1009 or an abrupt
    close) before the consumer sees anything; the server and other clients are unaffected."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as bystander:
        await pong(bystander)
        for frame in ("x" * (4 * 1024 * 1024), b"\x00" * (4 * 1024 * 1024)):
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
                await pong(ws)
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.send(frame)
                    await answer(ws)
                assert ws.close_code in (None, 1006, 1009), ws.close_code
        await pong(bystander)


async def vanish(port: int, order_id: str, n: int) -> None:
    """Clients that subscribe and then drop the TCP connection without a close frame."""
    sockets = []
    for _ in range(n):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/orders/{order_id}")
        assert (await answer(ws))["seq"] == 1
        sockets.append(ws)
    firehose = await websockets.connect(f"ws://127.0.0.1:{port}/ws")
    await pong(firehose)
    sockets.append(firehose)
    subscribed = members()  # n + 1 consumers' own channels, the order's group, the firehose
    assert len(subscribed) == n + 3 and set(subscribed.values()) == {1}, subscribed
    group = f"{get_channel_layer().prefix}__group__"
    assert {name for name in subscribed if name.startswith(group)} == {
        group + order_group(order_id),
        group + FIREHOSE_GROUP,
    }
    for ws in sockets:
        ws.transport.abort()


def test_real_frames_floods_and_vanishing_clients(services) -> None:
    (order_id,) = orders_create(1, first_wallet=4, amount="1")
    daphne, port = services("daphne")
    asyncio.run(frames(port, order_id))
    assert groups_empty_within(10) == {}
    asyncio.run(oversized(port))
    assert groups_empty_within(10) == {}
    asyncio.run(vanish(port, order_id, 20))
    assert groups_empty_within(10) == {}
    assert daphne.proc.poll() is None
    assert "Traceback" not in daphne.log(), daphne.log()[-3000:]
