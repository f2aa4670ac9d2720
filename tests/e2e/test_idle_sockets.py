"""An idle WebSocket stays open: the channel layer's 5 s blocking read for messages must not trip
the Redis socket timeout (redis-py 8's default is also 5 s), which closed idle clients with 1011
after about five seconds."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

pytestmark = pytest.mark.e2e


async def _idle_then_ping(port: int) -> list[dict]:
    sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/ws") for _ in range(3)]
    await asyncio.sleep(8)  # longer than the 5 s that used to close them
    answers = []
    for ws in sockets:
        await ws.send(json.dumps({"action": "ping"}))
        answers.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=5)))
        await ws.close()
    return answers


def test_idle_websocket_clients_stay_connected(services) -> None:
    _, port = services("daphne")
    assert asyncio.run(_idle_then_ping(port)) == [{"type": "pong"}] * 3
