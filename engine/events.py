"""What happens after a commit: events published to the channel layer, the Redis copy of the
order refreshed, tasks dispatched.

None of it may slow the request or the pipeline step that caused it, and none of it may happen
before the commit. So each process has one daemon thread, the *outbox*, that runs these side
effects in the order they were committed. On the pub/sub channel layer it publishes with
synchronous Redis clients of its own (`PubSubChannelLayer.group_send_blocking`); on another
layer it runs an event loop of its own. Either way it keeps its Redis connections open instead
of opening new ones per event.

All of it is best effort by design: PostgreSQL is the truth. A lost publish is healed by the
WebSocket replay, a lost cache write by the read-through to PostgreSQL, a lost dispatch by the
reconciler.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from channels.layers import get_channel_layer
from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from channels_redis.utils import _consistent_hash, _wrap_close, decode_hosts
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.fastjson import dumps

logger = logging.getLogger(__name__)

FIREHOSE_GROUP = "orders.firehose"


def order_group(order_id: str) -> str:
    return f"order.{order_id}"


def event_message(wire: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message for one wire event: serialised once here, sent as-is by every
    consumer (a firehose with thousands of clients must not re-encode it thousands of times)."""
    return {
        "type": "order.update",
        "order_id": wire["orderId"],
        "seq": wire["seq"],
        "text": dumps(wire),
    }


#: Adds a `first` send's commands for its items to a Redis pipeline on REDIS_URL (`pipelined`).
Pipelined = Callable[[Any, list[Any]], None]


@dataclass(frozen=True, slots=True)
class Gathered:
    """One item for `send`, which takes a list: the items queued for one `send` while the
    outbox was busy go out in one call, after the batch's messages, or with `first` before any
    of them, or with `linger` held a moment for the items that follow (`Outbox.gather`)."""

    send: Callable[[list[Any]], Any]
    item: Any
    first: bool = False
    linger: float = 0.0
    pipelined: Pipelined | None = None


class Outbox:
    """A FIFO of side effects run by one daemon thread per process (re-created after a fork)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], Any] | list[dict[str, Any]] | threading.Event] = (
            queue.Queue()
        )
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Lingering items (outbox thread only): held per `send` until `_held_until`.
        self._held: dict[Callable[[list[Any]], Any], list[Any]] = {}
        self._held_until: float | None = None
        self._last_call: dict[Callable[[list[Any]], Any], float] = {}

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.Queue()
                self._loop = asyncio.new_event_loop()
                self._held, self._held_until, self._last_call = {}, None, {}
                threading.Thread(target=self._run, name="outbox", daemon=True).start()
                self._pid = os.getpid()

    def start(self) -> None:
        """Start this process's outbox thread now rather than at its first effect."""
        self._ensure_thread()

    def run(self, effect: Callable[[], Any]) -> None:
        """Run a synchronous side effect on the outbox thread, after those queued before it."""
        self._ensure_thread()
        self._queue.put(effect)

    def gather(
        self,
        send: Callable[[list[Any]], Any],
        item: Any,
        *,
        first: bool = False,
        linger: float = 0.0,
        pipelined: Pipelined | None = None,
    ) -> None:
        """Queue `item` for `send`; items queued close together go to one call of `send`, after
        the messages queued with them (an order's dispatch after its first update). With
        `first`, that call comes before all the batch's messages instead: the orders' Redis
        copies, which a client told of an update must find refreshed (one round trip for the
        batch rather than one per order between its publishes).

        A `first` send that is all Redis commands on REDIS_URL can give them as `pipelined`:
        where the channel layer publishes on that server too, they then go in the pipeline that
        publishes the batch's first messages, ahead of its PUBLISHes (Redis runs a pipeline in
        order), instead of a round trip of their own before it.

        With `linger` (seconds), `send` is called at most once per `linger`: an item that comes
        within `linger` of the last call is held until then, with whatever joins it meanwhile
        (a steady stream of dispatches goes out a few orders per message instead of one). An
        item after a quiet spell goes at once. Messages and other effects are never held."""
        self._ensure_thread()
        self._queue.put(Gathered(send, item, first, linger, pipelined))

    def publish(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self._ensure_thread()
            self._queue.put(messages)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is done, the lingering dispatches released with
        it: at shutdown, in tests, and in a pool process between a step's commit and the work
        that follows (engine.lockstep), so that the step's updates go out first."""
        if self._pid != os.getpid():
            return
        done = threading.Event()
        self._queue.put(done)  # set once its batch's effects and messages are all out
        done.wait(timeout)

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        while True:
            try:
                item = self._queue.get(timeout=self._held_wait())
            except queue.Empty:
                self._release_held()
                continue
            batch = [item]
            while len(batch) < 256:  # whatever is already waiting goes out together
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # In the order queued: a task's dispatch after the update queued before it (the
            # worker's next update must not reach the firehose before this one). Messages queued
            # one after another go out together. The orders' cache refreshes, queued `first`,
            # all go before the batch's first message (a client that reads the order as soon as
            # it hears of an update must find at least that update).
            messages: list[dict[str, Any]] = []
            first: dict[Callable[[list[Any]], Any], list[Any]] = {}
            pipelined: dict[Callable[[list[Any]], Any], Pipelined | None] = {}
            for entry in batch:
                if isinstance(entry, Gathered) and entry.first:
                    first.setdefault(entry.send, []).append(entry.item)
                    pipelined[entry.send] = entry.pipelined
            gathered: dict[Callable[[list[Any]], Any], list[Any]] = {}
            for entry in batch:
                if isinstance(entry, list):
                    messages += entry
                    continue
                if isinstance(entry, Gathered):
                    if entry.linger > 0:
                        self._hold(entry)
                    elif not entry.first:
                        gathered.setdefault(entry.send, []).append(entry.item)
                    continue
                if messages:
                    self._send(messages, first, pipelined)
                    messages = []
                self._send_gathered(first)  # before any effect, as before any message
                if isinstance(entry, threading.Event):
                    self._send_gathered(gathered)  # a flush waits for these too
                    self._release_held()  # and for the lingering ones
                    entry.set()
                else:
                    try:
                        entry()
                    except Exception:
                        logger.warning("after-commit effect failed", exc_info=True)
            if messages:
                self._send(messages, first, pipelined)
            self._send_gathered(first)
            self._send_gathered(gathered)
            if self._held_wait() == 0:
                self._release_held()

    def _hold(self, entry: Gathered) -> None:
        self._held.setdefault(entry.send, []).append(entry.item)
        last = self._last_call.get(entry.send)
        due = time.monotonic() if last is None else last + entry.linger
        if self._held_until is None or due < self._held_until:
            self._held_until = due

    def _held_wait(self) -> float | None:
        """How long the outbox may wait for its next item: until the held items are due."""
        if self._held_until is None:
            return None
        return max(self._held_until - time.monotonic(), 0.0)

    def _release_held(self) -> None:
        held, self._held, self._held_until = self._held, {}, None
        now = time.monotonic()
        for send in held:
            self._last_call[send] = now
        self._send_gathered(held)

    @staticmethod
    def _send_gathered(gathered: dict[Callable[[list[Any]], Any], list[Any]]) -> None:
        for send, items in gathered.items():
            try:
                send(items)
            except Exception:
                logger.warning("after-commit effect failed", exc_info=True)
        gathered.clear()

    def _send(
        self,
        messages: list[dict[str, Any]],
        first: dict[Callable[[list[Any]], Any], list[Any]],
        pipelined: dict[Callable[[list[Any]], Any], Pipelined | None],
    ) -> None:
        """Publish `messages`, the `first` sends not yet made going before them: in the same
        pipeline where all of them can (`pipelined`, and a layer publishing on REDIS_URL),
        else each in a call of its own first."""
        assert self._loop is not None
        before = [(pipelined.get(send), items) for send, items in first.items()]
        joined = [(add, items) for add, items in before if add is not None]
        if joined and len(joined) == len(before) and _publishes_on_redis_url():
            first.clear()
        else:
            joined = []
        self._send_gathered(first)
        try:
            _send_all(messages, self._loop, joined)
        except Exception:
            logger.warning("publishing %d events failed", len(messages), exc_info=True)


def _publishes_on_redis_url() -> bool:
    """Whether the channel layer publishes from this thread on REDIS_URL's server and database
    (the settings' default), so that other commands for REDIS_URL can share its pipeline."""
    layer = get_channel_layer()
    return isinstance(layer, PubSubChannelLayer) and layer.publishes_on(settings.REDIS_URL)


def _send_all(
    messages: list[dict[str, Any]],
    loop: asyncio.AbstractEventLoop,
    before: list[tuple[Pipelined, list[Any]]] | None = None,
) -> None:
    """Send in commit order: per order (the consumers' seq check relies on it) and across
    orders too, so the firehose shows this process's events as they happened. `before`: Redis
    commands for REDIS_URL to run ahead of the PUBLISHes, in their pipeline (only given where
    the layer publishes there, `_publishes_on_redis_url`)."""
    layer = get_channel_layer()
    sends = group_sends(messages)
    if isinstance(layer, PubSubChannelLayer):
        # The whole batch in one pipeline: one round trip, and Redis runs it in order.
        if layer.can_send_blocking:  # from this thread: no event loop to run per batch
            layer.group_send_blocking(sends, before=before)
        else:
            loop.run_until_complete(layer.group_send_many(sends))
        return
    loop.run_until_complete(_send_each(layer, sends))


def group_sends(messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The channel-layer sends for updates committed one after another: one message per group
    that hears of them, the firehose's with all of them in commit order, each order's with its
    own in seq order. One update goes as it is (`order.update`); several go as one
    `order.updates` (the consumers forward its updates one by one, as if sent separately).

    A step of orders executed together commits a dozen or more updates at once; sent one
    message each, every one of them was a PUBLISH, a read of the subscriber connection and a
    turn of each consumer's receive loop in every daphne process, one after another."""
    by_order: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_order.setdefault(message["order_id"], []).append(message)
    sends = [(FIREHOSE_GROUP, _together(messages))]
    sends += [(order_group(order_id), _together(own)) for order_id, own in by_order.items()]
    return sends


def _together(messages: list[dict[str, Any]]) -> dict[str, Any]:
    if len(messages) == 1:
        return messages[0]
    return {"type": "order.updates", "updates": messages}


async def _send_each(layer: Any, sends: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in sends:  # another layer: one at a time, in order
        await layer.group_send(group, message)


outbox = Outbox()
atexit.register(outbox.flush, 2.0)


def events_publish(wires: Iterable[dict[str, Any]]) -> None:
    outbox.publish([event_message(w) for w in wires])


# --- the channel layer -----------------------------------------------------------------------
#
# channels_redis's pub/sub layer: a group message is one PUBLISH, each process holds one
# subscribing connection and fans messages out to its consumers in memory, and a consumer waiting
# for messages waits on an in-process queue, not on a Redis read (so no socket timeout can close
# an idle WebSocket). The core layer instead ran Lua and sorted-set work per group send and made
# every daphne pop its messages one by one (four round trips each, under one lock), which fell
# behind at a few hundred events per second. Three things are added here:
#
# - A group joined is a group subscribed: `group_add` returns once Redis has confirmed the
#   SUBSCRIBE, so a consumer's replay from PostgreSQL, which follows it, cannot miss an event
#   published in between (the upstream layer only writes the command).
# - Redis lost and back: the subscriptions are restored (redis-py) and every consumer of the
#   process is sent `layer.resync` once they are, so it reads what it missed from PostgreSQL
#   (pub/sub keeps nothing for a disconnected subscriber). One warning when the connection is
#   lost, one line when it is back, instead of a traceback a second.
# - `group_send_many`: many group messages in one pipeline, in order (the outbox's batches), and
#   `group_send_blocking`, the same from a thread with no event loop, on synchronous clients.

RESYNC = {"type": "layer.resync"}
SUBSCRIBE_CONFIRM_TIMEOUT = 5.0
PUBLISH_TIMEOUT = 5.0  # the connections have no socket timeout (config/settings.py says why)


class _Shard(RedisSingleShardConnection):
    def __init__(self, host: dict[str, Any], channel_layer: _LoopLayer) -> None:
        super().__init__(host, channel_layer)
        # channel → futures of the SUBSCRIBEs sent and not yet confirmed, oldest first (Redis
        # confirms each SUBSCRIBE of a channel in the order it was sent).
        self._unconfirmed: dict[str, deque[asyncio.Future[None]]] = {}
        self._lost = False
        self._resync_due = False

    async def subscribe(self, channel: str, *, confirmed: bool = False) -> None:
        waiter: asyncio.Future[None] | None = None
        async with self._lock:
            if channel not in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                waiter = asyncio.get_running_loop().create_future()
                pending = self._unconfirmed.setdefault(channel, deque())
                pending.append(waiter)
                try:
                    await self._pubsub.subscribe(channel)
                except BaseException:
                    pending.remove(waiter)
                    if not pending:
                        del self._unconfirmed[channel]
                    raise
                self._subscribed_to.add(channel)
            elif self._unconfirmed.get(channel):  # someone else's SUBSCRIBE is on its way
                waiter = self._unconfirmed[channel][-1]
        if confirmed and waiter is not None and not waiter.done():
            try:
                async with asyncio.timeout(SUBSCRIBE_CONFIRM_TIMEOUT):
                    await asyncio.shield(waiter)
            except TimeoutError:
                logger.warning("channel layer: no confirmation of SUBSCRIBE %s", channel)

    def _confirm(self, channel: str) -> None:
        pending = self._unconfirmed.get(channel)
        if pending:
            waiter = pending.popleft()
            if not pending:
                del self._unconfirmed[channel]
            if not waiter.done():
                waiter.set_result(None)

    async def publish(self, channel: str, message: bytes) -> None:
        await self.publish_many([(channel, message)])

    async def publish_many(self, items: list[tuple[str, bytes]]) -> None:
        async with asyncio.timeout(PUBLISH_TIMEOUT), self._lock:
            self._ensure_redis()
            for attempt in range(3):
                pipe = self._redis.pipeline(transaction=False)
                for channel, data in items:
                    pipe.publish(channel, data)
                try:
                    await pipe.execute()
                    return
                except redis.ConnectionError:
                    # After a Redis restart the pool's connections are dead: the failed one is
                    # dropped, the next attempt connects afresh. Publishing twice is harmless
                    # (consumers forward each seq once).
                    if attempt == 2:
                        raise

    async def _do_receiving(self) -> None:
        while True:
            if not (self._pubsub and self._pubsub.subscribed):
                await asyncio.sleep(0.1)
                continue
            try:  # returns as soon as something arrives; the timeout only bounds idle waits
                message = await self._pubsub.get_message(timeout=1.0)
            except Exception as error:  # Redis gone: redis-py reconnects on the next read
                if not self._lost:
                    logger.warning("channel layer: Redis connection lost (%s)", error)
                    self._lost = True
                await asyncio.sleep(0.5)
                continue
            if self._lost:  # reconnected, and redis-py has re-sent SUBSCRIBE for every channel
                self._lost = False
                self._resync_due = True
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._receive_message(message)
            elif kind == "subscribe":
                name = message["channel"]
                self._confirm(name.decode() if isinstance(name, bytes) else name)
                if self._resync_due:  # the resubscription is confirmed: nothing more is missed
                    self._resync_due = False
                    logger.info("channel layer: Redis is back, consumers catch up")
                    self.channel_layer.resync()


def _serialized(
    sends: list[tuple[str, dict[str, Any]]], serialize: Callable[[dict[str, Any]], bytes]
) -> Iterator[tuple[str, bytes]]:
    """Each (group, message) with the message serialised, once per message: an event goes to
    its order's group and to the firehose as the same bytes."""
    done: dict[int, bytes] = {}
    for group, message in sends:
        data = done.get(id(message))
        if data is None:
            data = done[id(message)] = serialize(message)
        yield group, data


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(host, self) for host in decode_hosts(kwargs.get("hosts"))]

    async def group_add(self, group: str, channel: str) -> None:
        if channel not in self.channels:
            raise RuntimeError("group_add() is only for channels of this process")
        group_channel = self._get_group_channel_name(group)
        self.groups.setdefault(group_channel, set()).add(channel)
        await self._get_shard(group_channel).subscribe(group_channel, confirmed=True)

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        by_shard: dict[_Shard, list[tuple[str, bytes]]] = {}
        for group, data in _serialized(sends, self.channel_layer.serialize):
            group_channel = self._get_group_channel_name(group)
            by_shard.setdefault(self._get_shard(group_channel), []).append((group_channel, data))
        for shard, items in by_shard.items():
            await shard.publish_many(items)

    async def receive(self, channel: str) -> dict[str, Any]:
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        try:
            data = await self.channels[channel].get()
        except (asyncio.CancelledError, GeneratorExit):
            # The consumer is gone (Channels cancels its receive): forget its channel. Quietly:
            # when Redis is down, or the loop is closing, the UNSUBSCRIBE cannot be sent.
            if self.channels.pop(channel, None) is not None:
                try:
                    await self._get_shard(channel).unsubscribe(channel)
                except BaseException as error:
                    logger.debug("channel layer: UNSUBSCRIBE %s failed: %r", channel, error)
            raise
        return self.channel_layer.deserialize(data)

    def resync(self) -> None:
        data = self.channel_layer.serialize(RESYNC)
        for pending in self.channels.values():
            pending.put_nowait(data)


def _redis_db(host: dict[str, Any]) -> str:
    """The database number of a channels_redis host entry (redis://h:6379/11, ?db=11, db=11)."""
    from urllib.parse import parse_qs, urlsplit

    if "address" not in host:
        return str(host.get("db", 0))
    parts = urlsplit(str(host["address"]))
    db = parse_qs(parts.query).get("db", [""])[0]
    if not db and parts.scheme != "unix":
        db = parts.path.strip("/")
    return db or "0"


class PubSubChannelLayer(RedisPubSubChannelLayer):
    """`CHANNEL_LAYERS` backend: channels_redis's pub/sub layer with the additions above.

    The prefix gets the Redis database number appended (`oe:ws` on database 11 names its
    channels `oe:ws:11:…`): pub/sub channels are server-wide, not per database, so two
    deployments or two test runs on one Redis server would otherwise hear each other. Give the
    hosts no socket timeout (see config/settings.py): nothing here waits on a Redis read without
    a bound of its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        hosts = decode_hosts(kwargs.get("hosts"))
        kwargs["prefix"] = f"{kwargs.get('prefix', 'asgi')}:{_redis_db(hosts[0])}:"
        super().__init__(*args, **kwargs)
        self.prefix: str = kwargs["prefix"]  # every channel and group of this layer starts so
        self._hosts = hosts
        self._blocking_clients: dict[int, redis.Redis] = {}
        self._blocking_pid: int | None = None

    def _get_layer(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """Send each (group, message) in order, in one round trip to Redis."""
        await self._get_layer().group_send_many(sends)

    @property
    def can_send_blocking(self) -> bool:
        """Whether `group_send_blocking` can reach the hosts (not through a Sentinel)."""
        return all("master_name" not in host for host in self._hosts)

    def group_send_blocking(
        self,
        sends: list[tuple[str, dict[str, Any]]],
        *,
        before: list[tuple[Pipelined, list[Any]]] | None = None,
    ) -> None:
        """`group_send_many` from a thread with no event loop, on a synchronous Redis client
        per host: the same PUBLISHes, in order, in one pipeline per host.

        The outbox thread publishes every committed batch; running an event loop for each cost
        it more CPU than the PUBLISHes themselves.

        `before`: (add commands to a pipeline, items), for a layer with one host
        (`publishes_on`): their commands go first in its pipeline, so they and the PUBLISHes
        are one round trip. Their replies are checked here: one that failed is logged, and the
        PUBLISHes stand."""
        by_host: dict[int, list[tuple[str, bytes]]] = {}
        for group, data in _serialized(sends, self.serialize):
            channel = f"{self.prefix}__group__{group}"  # RedisPubSubLoopLayer's group channel
            host = _consistent_hash(channel, len(self._hosts))
            by_host.setdefault(host, []).append((channel, data))
        if before:
            assert len(self._hosts) == 1, "commands before the PUBLISHes need one host"
            by_host.setdefault(0, [])
        for host, items in by_host.items():
            pipe = self._blocking_client(host).pipeline(transaction=False)
            for add, entries in before or ():
                add(pipe, entries)
            ahead = len(pipe)
            for channel, data in items:
                pipe.publish(channel, data)
            replies = pipe.execute(raise_on_error=False)
            for reply in replies[:ahead]:
                if isinstance(reply, Exception):
                    logger.warning("a command sent before the PUBLISHes failed: %r", reply)
            for reply in replies[ahead:]:
                if isinstance(reply, Exception):
                    raise reply
            before = None

    def publishes_on(self, url: str) -> bool:
        """Whether `group_send_blocking` publishes on this Redis URL's server and database,
        its only host: commands for that URL can then go in its pipeline."""
        return (
            self.can_send_blocking
            and len(self._hosts) == 1
            and self._hosts[0].get("address") == url
        )

    def connect_blocking(self) -> None:
        """Open `group_send_blocking`'s connections now (a process's warm-up) instead of at
        its first publish."""
        if self.can_send_blocking:
            for index in range(len(self._hosts)):
                self._blocking_client(index).ping()

    def _blocking_client(self, index: int) -> redis.Redis:
        if self._blocking_pid != os.getpid():  # forked: the parent's connections are not ours
            self._blocking_clients = {}
            self._blocking_pid = os.getpid()
        client = self._blocking_clients.get(index)
        if client is None:
            host = dict(self._hosts[index])
            # No wait without a bound, as the event loop's PUBLISH_TIMEOUT bounds the other path.
            host["socket_timeout"] = PUBLISH_TIMEOUT
            host.setdefault("socket_connect_timeout", PUBLISH_TIMEOUT)
            # A connection that breaks during a send (Redis restarting) is dropped and the send
            # tried once more, at once, on a new one (publishing twice is harmless: consumers
            # forward each seq once). No backoff: while Redis is down the outbox must not stall.
            host["retry"] = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            address = host.pop("address", None)
            pool = (
                redis.ConnectionPool.from_url(address, **host)
                if address is not None
                else redis.ConnectionPool(**host)
            )
            client = redis.Redis(connection_pool=pool)
            self._blocking_clients[index] = client
        return client

    def group_sizes(self) -> dict[str, int]:
        """The groups this process (this event loop) has joined, with how many of its channels
        are in each: pub/sub groups live in the process, Redis only sees one subscriber each."""
        layer = self._layers.get(asyncio.get_running_loop())
        if layer is None:
            return {}
        prefix = layer._get_group_channel_name("")
        return {name.removeprefix(prefix): len(members) for name, members in layer.groups.items()}
