"""A client that reacts to a WebSocket update by reading the order over HTTP must see at least
that update: `GET /api/orders/<id>` of a live order is served from its Redis copy, which is
refreshed after the commit on the outbox thread, so that refresh has to happen before the update
is published: in the pipeline that publishes it, ahead of the PUBLISH, where the channel layer
publishes on REDIS_URL (the default), else in a round trip of its own first. That round trip is
slowed down here to make the race deterministic."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

import engine.transitions
from engine.cache import order_cache_get
from engine.events import PubSubChannelLayer, order_group, outbox
from engine.services import OrderRequest, order_submit
from tests.conftest import make_wallet
from tests.engine.test_pipeline import run_to_end

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.asyncio,
]


@pytest.mark.parametrize("shared", [True, False], ids=["one pipeline", "a round trip each"])
async def test_an_update_is_published_only_after_the_order_cache_shows_it(
    monkeypatch, shared: bool
) -> None:
    real_store = engine.transitions.orders_cache_store

    def slow_store(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.2)  # a slow Redis round trip
        real_store(*args, **kwargs)

    monkeypatch.setattr(engine.transitions, "orders_cache_store", slow_store)
    if not shared:
        monkeypatch.setattr(PubSubChannelLayer, "publishes_on", lambda self, url: False)
    order, _ = await database_sync_to_async(order_submit)(
        request=OrderRequest(
            wallet_address=make_wallet(6),
            token_in="SOL",
            token_out="USDC",
            amount_in=Decimal("0.3"),
        )
    )
    await asyncio.to_thread(outbox.flush)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(order_group(str(order.pk)), channel)

    runner = asyncio.create_task(asyncio.to_thread(run_to_end, order))
    stale = []
    seen = 0
    while seen < 5:
        message = await asyncio.wait_for(layer.receive(channel), 20)
        together = message["updates"] if message["type"] == "order.updates" else [message]
        update = json.loads(together[-1]["text"])  # the latest the message tells of
        seen = update["seq"]
        cached = await asyncio.to_thread(order_cache_get, str(order.pk))
        if cached is not None and cached["events"][-1]["seq"] < update["seq"]:
            stale.append((update["seq"], update["status"], cached["status"]))
    await runner
    assert not stale, f"notified of a state the API did not show yet: {stale}"


@pytest.fixture(autouse=True)
async def _close_thread_connections():  # type: ignore[no-untyped-def]
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()
