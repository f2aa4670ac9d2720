"""The pub/sub channel layer (engine.events.PubSubChannelLayer) against real redis-servers: a
group joined is a group Redis has subscribed, a Redis restart is followed by a resync that lets
consumers catch up from PostgreSQL, another database on the same server is not heard, batches
arrive in order, and WebSocket clients that leave leave no group behind. The outbox's commit
order is checked on both this layer and the core layer."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings

import engine.events
from engine.events import FIREHOSE_GROUP, PubSubChannelLayer, order_group, outbox
from orders.routing import websocket_urlpatterns
from scripts.faultkit import PrivateRedis
from tests.conftest import make_wallet, order_create, orders_create
from tests.engine.test_pipeline import run_to_end

pytestmark = pytest.mark.asyncio

PREFIX = "oe:ws"


def pubsub_config(url: str) -> dict[str, Any]:
    return {
        "BACKEND": "engine.events.PubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": url, "socket_timeout": None, "socket_connect_timeout": 2}],
            "prefix": PREFIX,
        },
    }


def make_layer(url: str) -> PubSubChannelLayer:
    return PubSubChannelLayer(**pubsub_config(url)["CONFIG"])


def use_layer(config: dict[str, Any]) -> Iterator[None]:
    """The engine's channel layer (consumers and the outbox) replaced for one test."""
    saved = settings.CHANNEL_LAYERS
    settings.CHANNEL_LAYERS = {"default": config}
    channel_layers.backends.clear()
    try:
        yield
    finally:
        settings.CHANNEL_LAYERS = saved
        channel_layers.backends.clear()


@pytest.fixture
def pubsub() -> Iterator[None]:
    yield from use_layer(pubsub_config(settings.REDIS_URL))


@pytest.fixture
def pubsub_on_private(private_redis: PrivateRedis) -> Iterator[PrivateRedis]:
    for _ in use_layer(pubsub_config(private_redis.url)):
        yield private_redis


# --- the layer ---------------------------------------------------------------------------------


async def test_group_add_returns_once_redis_has_subscribed(private_redis: PrivateRedis) -> None:
    """A consumer joins its group, then replays from PostgreSQL: an event published between the
    two must reach it, so the join must be in effect in Redis when group_add returns."""
    layer = make_layer(private_redis.url)
    channel = await layer.new_channel()
    assert private_redis.proc is not None
    private_redis.proc.kill(signal.SIGSTOP)  # Redis reads nothing: the SUBSCRIBE waits in a buffer
    try:
        joining = asyncio.create_task(layer.group_add("order.x", channel))
        await asyncio.sleep(0.5)
        assert not joining.done(), "group_add returned before Redis had the subscription"
    finally:
        private_redis.proc.kill(signal.SIGCONT)
    await asyncio.wait_for(joining, 10)
    client = redis.Redis.from_url(private_redis.url)
    try:
        group_channel = f"{PREFIX}:0:__group__order.x"
        assert client.pubsub_numsub(group_channel) == [(group_channel.encode(), 1)]
    finally:
        client.close()
    await layer.flush()


async def test_after_a_redis_restart_consumers_are_resynced_and_hear_again(
    private_redis: PrivateRedis,
) -> None:
    layer, publisher = make_layer(private_redis.url), make_layer(private_redis.url)
    channel = await layer.new_channel()
    await layer.group_add(FIREHOSE_GROUP, channel)
    await publisher.group_send(FIREHOSE_GROUP, {"type": "order.update", "n": 1})
    assert (await asyncio.wait_for(layer.receive(channel), 10))["n"] == 1

    private_redis.restart()  # empty: pub/sub keeps nothing for a subscriber that was away
    message = await asyncio.wait_for(layer.receive(channel), 20)
    assert message == {"type": "layer.resync"}
    await publisher.group_send(FIREHOSE_GROUP, {"type": "order.update", "n": 2})
    assert (await asyncio.wait_for(layer.receive(channel), 10))["n"] == 2  # subscribed again
    await layer.flush()
    await publisher.flush()


async def test_another_database_on_the_same_server_is_not_heard() -> None:
    """Pub/sub channels are server-wide, unlike keys: two deployments (or two test runs) on two
    databases of one Redis server, with the same configured prefix, must not hear each other."""
    ours = settings.REDIS_URL
    other = ours.rsplit("/", 1)[0] + "/" + ("12" if not ours.endswith("/12") else "13")
    layer, neighbour = make_layer(ours), make_layer(other)
    channel = await layer.new_channel()
    await layer.group_add(FIREHOSE_GROUP, channel)
    await neighbour.group_send(FIREHOSE_GROUP, {"type": "order.update", "n": "theirs"})
    await layer.group_send(FIREHOSE_GROUP, {"type": "order.update", "n": "ours"})
    assert (await asyncio.wait_for(layer.receive(channel), 10))["n"] == "ours"
    await layer.flush()
    await neighbour.flush()


@pytest.mark.parametrize("sender", ["event loop", "thread"])
async def test_a_batch_of_group_messages_arrives_in_order(sender: str) -> None:
    """Sent with `group_send_many` on an event loop, or with `group_send_blocking` from a thread
    with none (as the outbox thread sends): the same PUBLISHes, heard in the order sent."""
    layer, publisher = make_layer(settings.REDIS_URL), make_layer(settings.REDIS_URL)
    order_channel, firehose_channel = await layer.new_channel(), await layer.new_channel()
    await layer.group_add(order_group("a"), order_channel)
    await layer.group_add(FIREHOSE_GROUP, firehose_channel)
    sends = []
    for seq in range(1, 201):
        message = {"type": "order.update", "order_id": "a", "seq": seq}
        sends += [(order_group("a"), message), (FIREHOSE_GROUP, message)]
    if sender == "thread":
        assert publisher.can_send_blocking
        await asyncio.to_thread(publisher.group_send_blocking, sends)
    else:
        await publisher.group_send_many(sends)
    for channel in (order_channel, firehose_channel):
        seqs = [(await asyncio.wait_for(layer.receive(channel), 10))["seq"] for _ in range(200)]
        assert seqs == list(range(1, 201))
    await layer.flush()
    await publisher.flush()


def _listen(url: str, group: str) -> redis.client.PubSub:
    listener = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(f"{PREFIX}:{url.rsplit('/', 1)[-1]}:__group__{group}")
    listener.get_message(timeout=5)  # the confirmation
    return listener


def _heard(listener: redis.client.PubSub, layer: PubSubChannelLayer, n: int) -> list[Any]:
    heard = []
    while len(heard) < n:
        message = listener.get_message(timeout=10)
        assert message is not None, f"heard {len(heard)} of {n}"
        heard.append(layer.deserialize(message["data"]))
    return heard


async def test_a_blocking_send_after_a_redis_restart_connects_again(
    private_redis: PrivateRedis,
) -> None:
    """The pooled connection died with the server: the next send connects afresh."""
    publisher = make_layer(private_redis.url)
    publisher.group_send_blocking([(FIREHOSE_GROUP, {"type": "order.update", "seq": 1})])
    private_redis.kill()
    private_redis.start()
    listener = _listen(private_redis.url, FIREHOSE_GROUP)
    publisher.group_send_blocking([(FIREHOSE_GROUP, {"type": "order.update", "seq": 2})])
    assert [m["seq"] for m in _heard(listener, publisher, 1)] == [2]
    listener.close()


async def test_a_forked_process_sends_on_connections_of_its_own(monkeypatch) -> None:
    publisher = make_layer(settings.REDIS_URL)
    publisher.group_send_blocking([(FIREHOSE_GROUP, {"type": "order.update", "seq": 1})])
    parent = publisher._blocking_client(0)
    assert publisher._blocking_client(0) is parent
    monkeypatch.setattr(engine.events.os, "getpid", lambda: -1)
    assert publisher._blocking_client(0) is not parent


async def test_commands_before_a_blocking_send_share_its_pipeline_and_run_ahead(caplog) -> None:
    """`before`'s commands go first in the pipeline of the PUBLISHes: one round trip, run in
    order, so a listener that hears a message finds what they wrote. A command that fails is
    logged and the PUBLISHes stand."""
    publisher = make_layer(settings.REDIS_URL)
    assert publisher.publishes_on(settings.REDIS_URL)
    assert not publisher.publishes_on(settings.REDIS_URL + "1")
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("oe:test:before", "oe:test:wrong")
    client.set("oe:test:wrong", "a string")
    listener = _listen(settings.REDIS_URL, FIREHOSE_GROUP)
    seen: list[Any] = []
    rounds: list[int] = []
    pipeline_class = type(publisher._blocking_client(0).pipeline())
    real_execute = pipeline_class.execute

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        rounds.append(len(self))
        return real_execute(self, *args, **kwargs)

    def add(pipe: Any, items: list[str]) -> None:
        seen.append(items)
        pipe.set("oe:test:before", ",".join(items))
        pipe.zadd("oe:test:wrong", {"x": 1})  # WRONGTYPE: logged, not raised

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline_class, "execute", execute)
        publisher.group_send_blocking(
            [(FIREHOSE_GROUP, {"type": "order.update", "seq": 1})], before=[(add, ["a", "b"])]
        )
    assert seen == [["a", "b"]]
    assert rounds == [3]  # SET, ZADD and PUBLISH in one pipeline
    assert [m["seq"] for m in _heard(listener, publisher, 1)] == [1]
    assert client.get("oe:test:before") == b"a,b"
    assert "a command sent before the PUBLISHes failed" in caplog.text
    client.delete("oe:test:before", "oe:test:wrong")
    listener.close()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("shared", [True, False], ids=["one pipeline", "a round trip each"])
async def test_an_orders_cache_refresh_goes_in_the_pipeline_of_its_updates(
    monkeypatch, shared: bool
) -> None:
    """Where the channel layer publishes on REDIS_URL, the orders' Redis copies are written in
    the pipeline that publishes their updates, ahead of the PUBLISHes; elsewhere they are
    written by a round trip of their own first. Either way the copy is there when the update
    is heard."""
    import engine.transitions
    from engine.cache import order_cache_get

    stores: list[int] = []
    real_store = engine.transitions.orders_cache_store
    monkeypatch.setattr(
        engine.transitions,
        "orders_cache_store",
        lambda entries: (stores.append(len(entries)), real_store(entries)),
    )
    if not shared:
        monkeypatch.setattr(PubSubChannelLayer, "publishes_on", lambda self, url: False)
    layer = make_layer(settings.REDIS_URL)
    channel = await layer.new_channel()
    await layer.group_add(FIREHOSE_GROUP, channel)
    order = await database_sync_to_async(order_create)(wallet_address=make_wallet(61))
    message = await asyncio.wait_for(layer.receive(channel), 10)
    assert message["order_id"] == str(order.pk) and message["seq"] == 1
    cached = await asyncio.to_thread(order_cache_get, str(order.pk))
    assert cached is not None and [e["seq"] for e in cached["events"]] == [1]
    await asyncio.to_thread(outbox.flush)
    assert stores == ([] if shared else [1])
    await layer.flush()


async def test_a_layer_behind_a_sentinel_sends_through_its_event_loop() -> None:
    layer = PubSubChannelLayer(
        hosts=[{"master_name": "main", "sentinels": [("127.0.0.1", 26379)]}], prefix=PREFIX
    )
    assert not layer.can_send_blocking


# --- the outbox, on either layer ----------------------------------------------------------------


@pytest.fixture(params=["core", "pubsub"])
def any_layer(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "core":
        yield from (request.param for _ in use_layer(settings.CHANNEL_LAYERS["default"]))
    else:
        yield from (request.param for _ in use_layer(pubsub_config(settings.REDIS_URL)))


def updates(messages: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(order, seq) of every update in channel-layer messages, `order.updates` unpacked."""
    unpacked = []
    for message in messages:
        unpacked += message["updates"] if message["type"] == "order.updates" else [message]
    return [(m["order_id"], m["seq"]) for m in unpacked]


async def test_the_outbox_publishes_a_batch_in_commit_order(any_layer: str) -> None:
    """Events of two orders, interleaved as committed and handed over as one batch: the firehose
    gets them all as committed, in one message, and each order's group its own, in seq order,
    in one message."""
    layer = channel_layers["default"]
    a_channel, b_channel, firehose = [await layer.new_channel() for _ in range(3)]
    await layer.group_add(order_group("a"), a_channel)
    await layer.group_add(order_group("b"), b_channel)
    await layer.group_add(FIREHOSE_GROUP, firehose)
    committed = [("a" if i % 3 else "b", i) for i in range(1, 301)]
    release = await outbox_held()  # all of them in one batch
    outbox.publish([{"type": "order.update", "order_id": o, "seq": i} for o, i in committed])
    release.set()
    await asyncio.to_thread(outbox.flush)

    async def heard(channel: str) -> list[dict[str, Any]]:  # the first message: all of them
        return [await asyncio.wait_for(layer.receive(channel), 10)]

    assert updates(await heard(firehose)) == committed
    assert updates(await heard(a_channel)) == [c for c in committed if c[0] == "a"]
    assert updates(await heard(b_channel)) == [c for c in committed if c[0] == "b"]
    for channel, group in ((a_channel, "a"), (b_channel, "b")):
        await layer.group_discard(order_group(group), channel)
    await layer.group_discard(FIREHOSE_GROUP, firehose)


@pytest.fixture
def done(monkeypatch) -> list[str]:
    """What the outbox did, in order: `publish <seq>` for each update it published, and whatever
    the test's own effects append."""
    done: list[str] = []
    real_send_all = engine.events._send_all

    def recording_send_all(messages: list[dict[str, Any]], loop: Any, before: Any = None) -> None:
        real_send_all(messages, loop, before)
        done.extend(f"publish {m['seq']}" for m in messages)

    monkeypatch.setattr(engine.events, "_send_all", recording_send_all)
    return done


async def outbox_held() -> threading.Event:
    """Keep the outbox thread busy until the returned event is set: what is queued meanwhile
    goes out as one batch."""
    busy, release = threading.Event(), threading.Event()
    outbox.run(lambda: (busy.set(), release.wait(10)))
    assert await asyncio.to_thread(busy.wait, 10)
    return release


def recorder(done: list[str], label: str) -> Callable[[list[str]], None]:
    """A gathered `send` that records each call as `<label> <item>,<item>…`."""
    return lambda items: done.append(f"{label} {','.join(items)}")


async def test_the_outbox_runs_what_was_queued_in_the_order_queued(done: list[str]) -> None:
    """A task dispatched after an update was queued must not leave before that update: the
    worker's next update would otherwise reach the firehose first (`routing` before `pending`)."""
    release = await outbox_held()  # everything below waits in one batch
    outbox.run(lambda: done.append("refresh 1"))
    outbox.publish([{"type": "order.update", "order_id": "a", "seq": 1}])
    outbox.run(lambda: done.append("dispatch"))
    outbox.run(lambda: done.append("refresh 2"))
    outbox.publish([{"type": "order.update", "order_id": "a", "seq": 2}])
    release.set()
    await asyncio.to_thread(outbox.flush)
    assert done == ["refresh 1", "publish 1", "dispatch", "refresh 2", "publish 2"]


async def test_the_outbox_gathers_items_queued_together_into_one_call(done: list[str]) -> None:
    """Dispatches queued while the outbox is busy go out in one call (one broker message for
    many orders), after the updates queued with them; a flush waits for them too."""
    dispatch = recorder(done, "dispatch")
    release = await outbox_held()
    for seq, order_id in ((1, "a"), (2, "b"), (3, "c")):
        outbox.publish([{"type": "order.update", "order_id": order_id, "seq": seq}])
        outbox.gather(dispatch, order_id)
    release.set()
    await asyncio.to_thread(outbox.flush)
    assert done == ["publish 1", "publish 2", "publish 3", "dispatch a,b,c"]

    done.clear()
    outbox.gather(dispatch, "d")  # alone: a call of its own, and flush waits for it
    await asyncio.to_thread(outbox.flush)
    assert done == ["dispatch d"]


async def test_refreshes_queued_first_go_out_in_one_call_before_the_batchs_updates(
    done: list[str],
) -> None:
    """The orders' cache refreshes (gathered `first`) queued while the outbox is busy are written
    in one call before any update of the batch is published, whatever order they came in; the
    dispatches still follow the updates queued before them."""
    refresh = recorder(done, "refresh")
    dispatch = recorder(done, "dispatch")
    release = await outbox_held()
    for seq, order_id in ((1, "a"), (2, "b"), (3, "a")):
        outbox.gather(refresh, f"{order_id}{seq}", first=True)
        outbox.publish([{"type": "order.update", "order_id": order_id, "seq": seq}])
        outbox.gather(dispatch, order_id)
    release.set()
    await asyncio.to_thread(outbox.flush)
    assert done == ["refresh a1,b2,a3", "publish 1", "publish 2", "publish 3", "dispatch a,b,a"]


async def wait_for(done: list[str], entry: str) -> None:
    """Until the outbox has done `entry` (ten seconds at most)."""
    for _ in range(1000):
        if entry in done:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{entry!r} never came: {done}")


async def test_a_lingering_item_after_a_quiet_spell_goes_at_once_and_the_next_are_held(
    done: list[str],
) -> None:
    """With `linger`, the first item goes out at once; those that come within `linger` of that
    call are held, together, until it has passed (or a flush); messages are never held."""
    dispatch = recorder(done, "dispatch")
    outbox.gather(dispatch, "a", linger=60.0)
    await wait_for(done, "dispatch a")  # not held: nothing had gone out for this send yet

    outbox.gather(dispatch, "b", linger=60.0)
    outbox.publish([{"type": "order.update", "order_id": "c", "seq": 1}])
    outbox.gather(dispatch, "c", linger=60.0)
    await wait_for(done, "publish 1")  # the update went out; the dispatches wait
    await asyncio.to_thread(outbox.flush)  # a flush releases them, in one call
    assert done == ["dispatch a", "publish 1", "dispatch b,c"]


async def test_held_items_go_out_once_the_linger_has_passed(done: list[str]) -> None:
    """No flush needed: the outbox wakes up for the held items when they are due."""
    dispatch = recorder(done, "dispatch")
    outbox.gather(dispatch, "a", linger=0.2)
    await wait_for(done, "dispatch a")
    outbox.gather(dispatch, "b", linger=0.2)
    outbox.gather(dispatch, "c", linger=0.2)
    await wait_for(done, "dispatch b,c")
    assert done == ["dispatch a", "dispatch b,c"]


# --- WebSocket clients on the pub/sub layer -----------------------------------------------------


def redis_groups(url: str) -> list[str]:
    """The group channels subscribed in Redis under this test run's prefix."""
    client = redis.Redis.from_url(url)
    try:
        return sorted(c.decode() for c in client.pubsub_channels(f"{PREFIX}:*__group__*"))
    finally:
        client.close()


@database_sync_to_async
def _orders(n: int) -> list[str]:
    return orders_create(n, first_wallet=20, amount="0.1")


async def _follow(ids: list[str]) -> WebsocketCommunicator:
    """A firehose client that then subscribes to each order (which leaves the firehose)."""
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
    assert (await ws.connect())[0]
    await ws.send_to(text_data='{"action": "ping"}')
    assert json.loads(await ws.receive_from(timeout=10)) == {"type": "pong"}
    for order_id in ids:
        await ws.send_to(text_data=json.dumps({"action": "subscribe", "orderId": order_id}))
        assert json.loads(await ws.receive_from(timeout=10))["type"] == "subscribed"
        assert json.loads(await ws.receive_from(timeout=10))["seq"] == 1
    return ws


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_a_client_that_leaves_leaves_no_group_behind(pubsub) -> None:
    ids = await _orders(2)
    ws = await _follow(ids)
    layer = channel_layers["default"]
    assert layer.group_sizes() == {order_group(i): 1 for i in ids}
    assert len(redis_groups(settings.REDIS_URL)) == 2
    await ws.disconnect()
    assert layer.group_sizes() == {}
    assert redis_groups(settings.REDIS_URL) == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_a_client_that_leaves_while_redis_is_down_leaves_no_group_behind(
    pubsub_on_private: PrivateRedis,
) -> None:
    ids = await _orders(3)
    ws = await _follow(ids)
    layer = channel_layers["default"]
    assert len(layer.group_sizes()) == 3
    pubsub_on_private.kill()
    await asyncio.sleep(1)  # the layer has seen the connection go
    await ws.disconnect()
    assert layer.group_sizes() == {}


@database_sync_to_async
def _submit() -> Any:
    return order_create(wallet_address=make_wallet(9), amount_in=Decimal("0.5"))


@database_sync_to_async
def _execute(order: Any) -> None:
    run_to_end(order)
    outbox.flush()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_a_follower_gets_what_was_published_while_redis_was_down(
    pubsub_on_private: PrivateRedis,
) -> None:
    order = await _submit()
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/orders/{order.pk}")
    assert (await ws.connect())[0]
    assert json.loads(await ws.receive_from(timeout=10))["seq"] == 1

    pubsub_on_private.kill()
    await _execute(order)  # every publish fails: the events are only in PostgreSQL
    pubsub_on_private.start()
    events = [json.loads(await ws.receive_from(timeout=20)) for _ in range(4)]
    assert [e["seq"] for e in events] == [2, 3, 4, 5]
    assert events[-1]["status"] == "confirmed"
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


@pytest.fixture(autouse=True)
async def _close_thread_connections():  # type: ignore[no-untyped-def]
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()
