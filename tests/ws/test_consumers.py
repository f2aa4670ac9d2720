"""The WebSocket faces with Channels' WebsocketCommunicator over the real Redis channel layer:
replay then live, late joiners, the firehose, subscriptions, submission, and bad messages."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import DataError

import engine.events
from engine.events import event_message, order_group, outbox
from engine.services import OrderRequest, order_submit
from engine.wire import event_to_wire
from orders.models import OrderEvent
from orders.routing import websocket_urlpatterns
from tests.conftest import make_wallet
from tests.engine.test_pipeline import run_to_end

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.asyncio,
]

APP = URLRouter(websocket_urlpatterns)
FULL = ["pending", "routing", "building", "submitted", "confirmed"]


@database_sync_to_async
def submit(amount: str = "1.5") -> Any:
    order, _ = order_submit(
        request=OrderRequest(
            wallet_address=make_wallet(3),
            token_in="SOL",
            token_out="USDC",
            amount_in=Decimal(amount),
        )
    )
    return order


@database_sync_to_async
def execute(order: Any) -> Any:
    order = run_to_end(order)
    outbox.flush()
    return order


async def connect(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, path)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive_updates(ws: WebsocketCommunicator, n: int) -> list[dict[str, Any]]:
    return [json.loads(await ws.receive_from(timeout=10)) for _ in range(n)]


async def test_a_subscriber_gets_the_replay_then_every_live_update_in_order() -> None:
    order = await submit()
    ws = await connect(f"/ws/orders/{order.pk}")
    first = await receive_updates(ws, 1)
    assert [(e["seq"], e["status"]) for e in first] == [(1, "pending")]
    await execute(order)
    rest = await receive_updates(ws, 4)
    assert [e["status"] for e in rest] == FULL[1:]
    assert [e["seq"] for e in rest] == [2, 3, 4, 5]
    assert rest[0]["quotes"] and rest[1]["selectedDex"] and rest[1]["quote"]
    assert rest[2]["txHash"] and rest[3]["executedPrice"] and rest[3]["amountOut"]
    assert all(e["type"] == "order.update" and e["orderId"] == str(order.pk) for e in rest)
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_a_client_connecting_after_the_end_receives_every_event() -> None:
    order = await execute(await submit())
    for path in (f"/ws/orders/{order.pk}", f"/ws?orderId={order.pk}"):
        ws = await connect(path)
        events = await receive_updates(ws, 5)
        assert [e["status"] for e in events] == FULL
        assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
        assert await ws.receive_nothing(timeout=0.2)
        await ws.disconnect()


async def test_the_firehose_carries_every_order_until_the_client_subscribes() -> None:
    ws = await connect("/ws")
    a = await submit()
    (event,) = await receive_updates(ws, 1)
    assert event["orderId"] == str(a.pk) and event["status"] == "pending"

    await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": str(a.pk)}))
    assert json.loads(await ws.receive_from()) == {"type": "subscribed", "orderId": str(a.pk)}
    # The replay of the order's events (API.md), from seq 1 although the firehose showed it.
    (replayed,) = await receive_updates(ws, 1)
    assert (replayed["orderId"], replayed["seq"]) == (str(a.pk), 1)
    assert await ws.receive_nothing(timeout=0.3)

    b = await submit()  # not subscribed: not forwarded any more
    await execute(a)
    events = await receive_updates(ws, 4)
    assert {e["orderId"] for e in events} == {str(a.pk)}
    assert [e["seq"] for e in events] == [2, 3, 4, 5]

    await ws.send_to(text_data=json.dumps({"action": "unsubscribe", "orderId": str(a.pk)}))
    assert json.loads(await ws.receive_from()) == {"type": "unsubscribed", "orderId": str(a.pk)}
    await execute(b)
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_subscribing_replays_what_the_client_missed() -> None:
    order = await execute(await submit())
    ws = await connect("/ws")
    await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": str(order.pk)}))
    assert json.loads(await ws.receive_from())["type"] == "subscribed"
    assert [e["seq"] for e in await receive_updates(ws, 5)] == [1, 2, 3, 4, 5]
    await ws.disconnect()


async def test_subscribing_again_sends_nothing_twice() -> None:
    """Only the first subscribe on a connection replays; a second one sends what the client has
    not had (nothing here), and the live updates then follow, each once and in order."""
    order = await submit()
    ws = await connect("/ws")
    subscribe = json.dumps({"action": "subscribe", "orderId": str(order.pk)})
    await ws.send_to(text_data=subscribe)
    assert json.loads(await ws.receive_from())["type"] == "subscribed"
    assert [e["seq"] for e in await receive_updates(ws, 1)] == [1]

    await ws.send_to(text_data=subscribe)
    assert json.loads(await ws.receive_from())["type"] == "subscribed"
    assert await ws.receive_nothing(timeout=0.3)

    await execute(order)
    assert [e["seq"] for e in await receive_updates(ws, 4)] == [2, 3, 4, 5]
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_updates_sent_together_are_forwarded_one_by_one_and_a_gap_is_filled(
    monkeypatch,
) -> None:
    """Updates committed together reach the layer as one `order.updates` message; the consumer
    forwards them as if they had come one by one: a gap between two of them is read from
    PostgreSQL, and an update the client already has is not sent again."""
    order = await submit()
    ws = await connect(f"/ws/orders/{order.pk}")
    assert [e["seq"] for e in await receive_updates(ws, 1)] == [1]
    monkeypatch.setattr(
        engine.events, "_send_all", lambda messages, loop, before=None: None
    )  # all lost
    await execute(order)
    assert await ws.receive_nothing(timeout=0.3)

    events = await database_sync_to_async(
        lambda: {
            e.seq: event_message(event_to_wire(e)) for e in OrderEvent.objects.filter(order=order)
        }
    )()
    batch = {"type": "order.updates", "updates": [events[2], events[4], events[3]]}
    await get_channel_layer().group_send(order_group(str(order.pk)), batch)
    received = await receive_updates(ws, 4)
    assert [(e["seq"], e["status"]) for e in received] == list(enumerate(FULL, 1))[1:]
    assert await ws.receive_nothing(timeout=0.3)  # seq 3, late in the batch, not twice
    await ws.disconnect()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ('{"orderId": "x"}', "invalid_message"),
        ('{"action": "dance"}', "unknown_action"),
        ('{"action": "subscribe", "orderId": "nope"}', "invalid_order_id"),
        ('{"action": "subscribe"}', "invalid_order_id"),
        (json.dumps({"action": "subscribe", "orderId": str(uuid.uuid4())}), "not_found"),
        ("x" * 20_000, "invalid_message"),
    ],
)
async def test_a_bad_message_gets_an_error_and_the_socket_stays_open(message, error) -> None:
    ws = await connect("/ws")
    await ws.send_to(text_data=message)
    answer = json.loads(await ws.receive_from())
    assert answer["type"] == "error" and answer["error"] == error and answer["message"]
    await ws.send_to(text_data='{"action": "ping"}')
    assert json.loads(await ws.receive_from()) == {"type": "pong"}
    await ws.disconnect()


async def test_binary_frames_get_an_error_and_the_socket_stays_open() -> None:
    ws = await connect("/ws")
    await ws.send_to(bytes_data=b"\x00\x01")
    assert json.loads(await ws.receive_from())["error"] == "invalid_message"
    await ws.send_to(text_data='{"action": "ping"}')
    assert json.loads(await ws.receive_from()) == {"type": "pong"}
    await ws.disconnect()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/ws/orders/not-a-uuid", 4400),
        (f"/ws/orders/{uuid.uuid4()}", 4404),
        ("/ws?orderId=zzz", 4400),
        (f"/ws?orderId={uuid.uuid4()}", 4404),
    ],
)
async def test_an_unknown_or_malformed_order_in_the_path_is_closed_with_4xxx(path, code) -> None:
    ws = WebsocketCommunicator(APP, path)
    connected, _ = await ws.connect()
    assert connected
    assert json.loads(await ws.receive_from())["type"] == "error"
    closed = await ws.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": code}


async def test_an_order_submitted_over_the_socket_is_accepted_and_streamed() -> None:
    ws = await connect("/api/orders/execute")
    await ws.send_to(
        text_data=json.dumps(
            {
                "walletAddress": make_wallet(5),
                "tokenIn": "SOL",
                "tokenOut": "USDC",
                "amountIn": 0.25,
            }
        )
    )
    accepted = json.loads(await ws.receive_from())
    assert accepted["type"] == "order.accepted"
    order = accepted["order"]
    assert order["status"] == "pending" and order["amountIn"] == "0.250000000"
    assert (await receive_updates(ws, 1))[0]["seq"] == 1
    from orders.models import Order

    await execute(await database_sync_to_async(Order.objects.get)(pk=order["orderId"]))
    assert [e["status"] for e in await receive_updates(ws, 4)] == FULL[1:]
    await ws.disconnect()


@pytest.mark.parametrize(
    "message",
    ["{", json.dumps({"walletAddress": "x", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1})],
)
async def test_a_bad_order_over_the_socket_gets_an_error_and_a_4400_close(message) -> None:
    ws = await connect("/api/orders/execute")
    await ws.send_to(text_data=message)
    answer = json.loads(await ws.receive_from())
    assert answer["type"] == "error" and answer["error"] in {"malformed_json", "validation_error"}
    assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4400}


@pytest.fixture(autouse=True)
async def _close_thread_connections():  # type: ignore[no-untyped-def]
    """The consumers' database thread keeps a connection; close it so the test database can be
    dropped at the end of the run."""
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


async def test_a_database_error_that_is_not_an_outage_is_not_answered_as_one(monkeypatch) -> None:
    """Only the connection's errors get the 4503 "come back later"; a database error that would
    recur on every retry (here a value out of range in the replay) fails the consumer, which
    daphne closes with 1011 and logs."""
    import orders.consumers

    async def broken(order_id: str, seq: int) -> list[str]:
        raise DataError("integer out of range")

    monkeypatch.setattr(orders.consumers, "_events_after", broken)
    order = await submit()
    communicator = WebsocketCommunicator(APP, f"/ws/orders/{order.pk}")
    with pytest.raises(DataError):
        await communicator.connect()
        await communicator.receive_from(timeout=5)  # no service_unavailable message first
