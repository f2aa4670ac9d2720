"""Every lifecycle transition is an event on the WebSocket like any other: Channels'
WebsocketCommunicator over the real Redis channel layer, with the orders driven by the watcher's
tick and the pipeline as beat and a worker would. Limit orders submitted over the socket, cancel,
expiry, requeue, a limit order that waits again, and snipers firing on the firehose."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from dex.launch import mint_generate, token_launch, token_register
from dex.types import TransientChainError
from engine import pipeline
from engine.services import OrderRequest, order_submit
from engine.watcher import orders_expire, orders_watch
from orders.models import Order
from orders.routing import websocket_urlpatterns
from tests.conftest import make_wallet
from tests.lifecycle.conftest import best_out, flush_events, run_to_end, trade

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.asyncio,
]

APP = URLRouter(websocket_urlpatterns)
FILL = ["routing", "building", "submitted", "confirmed"]
SELL = ("SOL", "USDC", "3000")


def in_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run synchronous engine work off the event loop, then wait until its events are out."""

    def work(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        flush_events()
        return result

    return database_sync_to_async(work)


async def connect(path: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(APP, path)
    connected, _ = await ws.connect()
    assert connected
    return ws


async def updates(ws: WebsocketCommunicator, n: int) -> list[dict[str, Any]]:
    return [json.loads(await ws.receive_from(timeout=10)) for _ in range(n)]


@in_thread
def tick_and_run() -> list[str]:
    ids = orders_watch()
    for order_id in ids:
        run_to_end(Order.objects.get(pk=order_id))
    return ids


@in_thread
def submit_limit(factor: str, *, wallet: int = 40) -> str:
    order, _ = order_submit(
        request=OrderRequest(
            wallet_address=make_wallet(wallet),
            token_in="SOL",
            token_out="USDC",
            amount_in=Decimal("1"),
            order_type="limit",
            limit_price=best_out("SOL", "USDC", "1") * Decimal(factor),
        )
    )
    return str(order.pk)


def staff_api() -> APIClient:
    user = get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture(autouse=True)
async def _close_thread_connections():  # type: ignore[no-untyped-def]
    yield
    await database_sync_to_async(connections.close_all)()


async def test_a_limit_order_sent_over_the_socket_waits_then_streams_its_fill() -> None:
    limit = (await in_thread(best_out)("SOL", "USDC", "1")) * Decimal("0.99")
    await in_thread(trade)(*SELL)  # the market is below the limit now
    ws = await connect("/api/orders/execute")
    await ws.send_to(
        text_data=json.dumps(
            {
                "walletAddress": make_wallet(41),
                "tokenIn": "SOL",
                "tokenOut": "USDC",
                "amountIn": "1",
                "orderType": "limit",
                "limitPrice": str(limit.quantize(Decimal("0.000001"))),
            }
        )
    )
    accepted = json.loads(await ws.receive_from(timeout=10))
    assert accepted["type"] == "order.accepted" and accepted["order"]["orderType"] == "limit"
    (pending,) = await updates(ws, 1)
    assert (pending["seq"], pending["status"]) == (1, "pending")

    for _ in range(20):  # buyers come back; between their trades the order keeps waiting
        if await in_thread(best_out)("SOL", "USDC", "1") >= limit:
            break
        assert await tick_and_run() == []
        assert await ws.receive_nothing(timeout=0.1)
        await in_thread(trade)("USDC", "SOL", "100000")
    assert await tick_and_run() == [accepted["order"]["orderId"]]
    events = await updates(ws, 4)
    assert [e["status"] for e in events] == FILL
    assert [e["seq"] for e in events] == [2, 3, 4, 5]
    assert Decimal(events[1]["quote"]["minAmountOut"]) >= limit
    assert Decimal(events[3]["amountOut"]) >= limit
    await ws.disconnect()


async def test_a_cancel_is_an_event_on_the_order_stream() -> None:
    order_id = await submit_limit("1.5")
    ws = await connect(f"/ws/orders/{order_id}")
    assert [e["status"] for e in await updates(ws, 1)] == ["pending"]
    response = await in_thread(lambda: APIClient().post(f"/api/orders/{order_id}/cancel"))()
    assert response.status_code == 200
    (cancelled,) = await updates(ws, 1)
    assert cancelled["status"] == "cancelled" and cancelled["seq"] == 2
    assert cancelled["reason"] and cancelled["orderId"] == order_id
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_expiry_then_requeue_then_fill_stream_as_events_on_the_firehose() -> None:
    order_id = await submit_limit("0.98")
    ws = await connect("/ws")
    await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": order_id}))
    assert json.loads(await ws.receive_from())["type"] == "subscribed"
    assert [e["status"] for e in await updates(ws, 1)] == ["pending"]

    def expire() -> int:
        Order.objects.filter(pk=order_id).update(expires_at=timezone.now())
        return orders_expire()

    assert await in_thread(expire)() == 1
    (expired,) = await updates(ws, 1)
    assert expired["status"] == "expired" and expired["expiresAt"] and expired["seq"] == 2

    response = await in_thread(lambda: staff_api().post(f"/api/orders/{order_id}/requeue"))()
    assert response.status_code == 200
    (requeued,) = await updates(ws, 1)
    assert requeued["status"] == "pending" and requeued["requeuedBy"] == "ops"

    assert await tick_and_run() == [order_id]
    events = await updates(ws, 4)
    assert [e["status"] for e in events] == FILL
    assert [e["seq"] for e in events] == [4, 5, 6, 7]
    await ws.disconnect()


async def test_a_failed_order_requeued_streams_every_attempt_with_contiguous_seq(
    monkeypatch,
) -> None:
    @in_thread
    def submit_and_fail() -> str:
        order, _ = order_submit(
            request=OrderRequest(
                wallet_address=make_wallet(42),
                token_in="SOL",
                token_out="USDC",
                amount_in=Decimal("0.3"),
            )
        )

        def down(tx):  # type: ignore[no-untyped-def]
            raise TransientChainError("the RPC node rate-limited us", code="node_rate_limited")

        with monkeypatch.context() as patched:
            patched.setattr(pipeline, "transaction_send", down)
            run_to_end(order)
        return str(order.pk)

    order_id = await submit_and_fail()
    ws = await connect(f"/ws?orderId={order_id}")
    replay = await updates(ws, 13)  # pending + 3 x (routing, building, submitted, failed)
    assert replay[-1]["status"] == "failed" and replay[-1]["willRetry"] is False
    assert [e["attempt"] for e in replay if e["status"] == "failed"] == [1, 2, 3]

    response = await in_thread(lambda: staff_api().post(f"/api/orders/{order_id}/requeue"))()
    assert response.status_code == 200
    await in_thread(lambda: run_to_end(Order.objects.get(pk=order_id)))()
    live = await updates(ws, 5)
    assert [e["status"] for e in live] == ["pending", *FILL]
    assert [e["seq"] for e in live] == list(range(14, 19))
    assert [e["attempt"] for e in live] == [3, 4, 4, 4, 4]
    await ws.disconnect()


async def test_a_limit_order_whose_fill_falls_below_its_limit_streams_failed_then_pending(
    monkeypatch,
) -> None:
    order_id = await submit_limit("0.99")
    ws = await connect(f"/ws/orders/{order_id}")
    await updates(ws, 1)
    original_send = pipeline.transaction_send

    def whale_first(tx):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(pipeline, "transaction_send", original_send)
        trade(*SELL)
        return original_send(tx)

    monkeypatch.setattr(pipeline, "transaction_send", whale_first)
    assert await tick_and_run() == [order_id]
    events = await updates(ws, 5)
    assert [e["status"] for e in events] == [
        "routing",
        "building",
        "submitted",
        "failed",
        "pending",
    ]
    failed, waiting = events[3], events[4]
    assert failed["errorCode"] == "slippage_exceeded" and failed["willRetry"] is True
    assert failed["waitingForLimit"] is True and failed["nextAttemptAt"] is None
    assert waiting["waitingFor"] == "limitPrice" and waiting["attempt"] == 1
    assert await tick_and_run() == []  # below its limit now: it waits, silently
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_snipers_fire_on_the_firehose_in_submission_order_after_the_launch() -> None:
    @in_thread
    def submit_snipers() -> list[str]:
        token_register(symbol="WSNIPE", mint=mint_generate("WSNIPE"), decimals=6)
        ids = []
        for n in range(3):
            order, _ = order_submit(
                request=OrderRequest(
                    wallet_address=make_wallet(50 + n),
                    token_in="SOL",
                    token_out="WSNIPE",
                    amount_in=Decimal("1"),
                    order_type="sniper",
                    slippage_bps=500,
                )
            )
            ids.append(str(order.pk))
        return ids

    ws = await connect("/ws")
    ids = await submit_snipers()
    assert [(e["orderId"], e["status"]) for e in await updates(ws, 3)] == [
        (i, "pending") for i in ids
    ]
    assert await tick_and_run() == []
    assert await ws.receive_nothing(timeout=0.2)

    await in_thread(token_launch)("WSNIPE")
    assert await tick_and_run() == ids
    events = await updates(ws, 12)
    routing = [e["orderId"] for e in events if e["status"] == "routing"]
    assert routing == ids
    confirmed = [e for e in events if e["status"] == "confirmed"]
    assert [e["orderId"] for e in confirmed] == ids
    amounts = [Decimal(e["amountOut"]) for e in confirmed]
    assert amounts[0] > amounts[1] > amounts[2]
    await ws.disconnect()
