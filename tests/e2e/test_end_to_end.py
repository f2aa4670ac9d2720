"""End to end on real processes: daphne and a Celery worker on free ports, five orders submitted
at once over HTTP, every transition of each received over a real WebSocket in order with
contiguous seq, and the same history found through GET."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import make_wallet

pytestmark = pytest.mark.e2e


async def _follow(port: int, order_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/orders/{order_id}") as ws:
        while (
            not events
            or events[-1]["status"] not in {"confirmed", "failed"}
            or (events[-1]["status"] == "failed" and events[-1].get("willRetry"))
        ):
            events.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
    return events


async def _scenario(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        bodies = [
            {
                "walletAddress": make_wallet(i),
                "tokenIn": "SOL",
                "tokenOut": "USDC",
                "amountIn": f"0.{i + 1}",
                "orderType": "market",
                "slippage": 1.0,
            }
            for i in range(5)
        ]
        responses = await asyncio.gather(
            *(client.post("/api/orders/execute", json=b) for b in bodies)
        )
        assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
        ids = [r.json()["orderId"] for r in responses]
        histories = await asyncio.gather(*(_follow(port, i) for i in ids))
        for order_id, events in zip(ids, histories, strict=True):
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert [e["status"] for e in events] == [
                "pending",
                "routing",
                "building",
                "submitted",
                "confirmed",
            ]
            assert {e["orderId"] for e in events} == {order_id}
            stored = (await client.get(f"/api/orders/{order_id}")).json()
            assert stored["status"] == "confirmed"
            assert [(e["seq"], e["status"]) for e in stored["events"]] == [
                (e["seq"], e["status"]) for e in events
            ]
            assert stored["txHash"] == events[-1]["txHash"]
        health = await client.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["checks"]["workers"] >= 1


def test_five_orders_at_once_over_http_and_websocket(services) -> None:
    _, port = services("daphne")
    services("worker", name="e2e", concurrency=4)
    asyncio.run(_scenario(port))
