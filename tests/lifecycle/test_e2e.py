"""The lifecycle on real processes: daphne and a Celery worker on free ports, the watcher driven by
real `engine.watch_orders` task messages through the broker (as beat would send them, without a
beat process), clients on real HTTP and WebSocket connections. Snipers fire after a launch and
the first buyers move the price, a limit order sent over the socket fills, a waiting one is
cancelled, another expires; every transition arrives on each order's socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from django.db import connections

from dex.launch import mint_generate, token_launch, token_register
from dex.models import ChainTransaction
from engine.tasks import watch_orders_task
from orders.models import Order
from tests.conftest import make_wallet
from tests.lifecycle.conftest import best_out

pytestmark = pytest.mark.e2e

FINAL = {"confirmed", "cancelled", "expired"}
TOKEN = "LIVE"


def finished(events: list[dict[str, Any]]) -> bool:
    if not events:
        return False
    last = events[-1]
    return last["status"] in FINAL or (last["status"] == "failed" and not last.get("willRetry"))


async def follow(ws: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not finished(events):
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
        if message.get("type") == "order.update":
            events.append(message)
    return events


async def follow_order(port: int, order_id: str) -> list[dict[str, Any]]:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/orders/{order_id}") as ws:
        return await follow(ws)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run database work from a worker thread with its own connection, closed afterwards."""

    def work() -> Any:
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return asyncio.to_thread(work)


async def beat(stop: asyncio.Event) -> int:
    """What beat does every second, twice as often: send the watcher's task to the broker."""
    sent = 0
    while not stop.is_set():
        await asyncio.to_thread(watch_orders_task.apply_async)
        sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    return sent


async def scenario(port: int, limit: Decimal) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        async def submit(**fields: Any) -> str:
            body = {"walletAddress": make_wallet(60), "tokenIn": "SOL", "amountIn": "1"}
            body.update(fields)
            response = await http.post("/api/orders/execute", json=body)
            assert response.status_code == 201, response.text
            return response.json()["orderId"]

        snipers = [
            await submit(
                tokenOut=TOKEN, orderType="sniper", slippage=5, walletAddress=make_wallet(n)
            )
            for n in range(3)
        ]
        far = str(limit * 3)
        to_cancel = await submit(tokenOut="USDC", orderType="limit", limitPrice=far)
        expiry = time.time() + 2
        to_expire = await submit(
            tokenOut="USDC",
            orderType="limit",
            limitPrice=far,
            expiresAt=datetime.fromtimestamp(expiry, UTC).isoformat(),
        )
        followers = {
            i: asyncio.create_task(follow_order(port, i)) for i in [*snipers, to_cancel, to_expire]
        }

        # A limit order sent over the socket: accepted, then its whole life on that connection.
        socket = await websockets.connect(f"ws://127.0.0.1:{port}/api/orders/execute")
        await socket.send(
            json.dumps(
                {
                    "walletAddress": make_wallet(70),
                    "tokenIn": "SOL",
                    "tokenOut": "USDC",
                    "amountIn": "0.5",
                    "orderType": "limit",
                    "limitPrice": str(limit),
                }
            )
        )
        accepted = json.loads(await socket.recv())
        assert accepted["type"] == "order.accepted", accepted
        limit_id = accepted["order"]["orderId"]
        followers[limit_id] = asyncio.create_task(follow(socket))

        stop = asyncio.Event()
        ticks = asyncio.create_task(beat(stop))
        cancel = await http.post(f"/api/orders/{to_cancel}/cancel")
        assert cancel.status_code == 200, cancel.text

        await asyncio.sleep(1.5)  # a few ticks with nothing to launch: the snipers wait
        for order_id in snipers:
            assert (await http.get(f"/api/orders/{order_id}")).json()["status"] == "pending"
        launched_at = time.time()
        await in_thread(token_launch, TOKEN)

        histories = dict(zip(followers, await asyncio.gather(*followers.values()), strict=True))
        stop.set()
        await ticks
        await socket.close()
        stored = {i: (await http.get(f"/api/orders/{i}")).json() for i in histories}
    return {
        "histories": histories,
        "stored": stored,
        "snipers": snipers,
        "cancelled": to_cancel,
        "expired": to_expire,
        "limit": limit_id,
        "launched_at": launched_at,
        "expiry": expiry,
    }


def test_the_lifecycle_on_real_daphne_and_a_celery_worker(services) -> None:
    token_register(symbol=TOKEN, mint=mint_generate(TOKEN), decimals=6)
    limit = (best_out("SOL", "USDC", "0.5") / Decimal("0.5") * Decimal("0.97")).quantize(
        Decimal("0.01")
    )
    _, port = services("daphne")
    services("worker", name="life", concurrency=2)
    result = asyncio.run(scenario(port, limit))
    histories, stored = result["histories"], result["stored"]
    fill = ["pending", "routing", "building", "submitted", "confirmed"]

    for order_id, events in histories.items():  # every transition arrived, in order, once
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
        assert [(e["seq"], e["status"]) for e in events] == [
            (e["seq"], e["status"]) for e in stored[order_id]["events"]
        ]
    assert [e["status"] for e in histories[result["cancelled"]]] == ["pending", "cancelled"]
    assert [e["status"] for e in histories[result["expired"]]] == ["pending", "expired"]
    expired_at = histories[result["expired"]][-1]["timestamp"]
    assert expired_at >= stored[result["expired"]]["expiresAt"]
    assert [e["status"] for e in histories[result["limit"]]] == fill
    assert Decimal(stored[result["limit"]]["amountOut"]) >= limit / 2

    snipers = [Order.objects.get(pk=i) for i in result["snipers"]]
    assert all(o.status == "confirmed" for o in snipers), [(o.status, o.error) for o in snipers]
    assert len({o.triggered_at for o in snipers}) == 1  # one tick fired them all
    assert all(o.triggered_at.timestamp() >= result["launched_at"] for o in snipers)
    landings = sorted(
        ChainTransaction.objects.filter(
            reference__in=[f"{o.pk}:{o.attempts}" for o in snipers], state="landed"
        ),
        key=lambda row: row.landed_at,
    )
    assert len(landings) == 3
    received = [row.amount_out for row in landings]
    assert received[0] > received[1] > received[2]  # the first buyers moved the price
    delays = [o.triggered_at.timestamp() - result["launched_at"] for o in snipers]
    print(f"\nsnipers triggered {max(delays):.3f} s after the launch")
