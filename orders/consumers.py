"""WebSocket faces (API.md): one order's stream, the firehose with subscriptions, and order
submission over a socket.

The rule that makes "no gaps, no duplicates" true even though the channel layer may drop
messages: join the group first, then replay from PostgreSQL, then forward live events only when
their seq is the next one expected; a jump in seq is filled from the database.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from uuid import UUID

import redis
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import connection

from config.fastjson import dumps
from engine.events import FIREHOSE_GROUP, order_group
from engine.wire import event_to_wire
from orders.middleware import DATABASE_OUTAGE, database_pool_check
from orders.models import Order, OrderEvent

logger = logging.getLogger("orders.ws")

MAX_SUBSCRIPTIONS = 100
MAX_MESSAGE_BYTES = 16 * 1024
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 4503


def _parse_uuid(value: str | None) -> str | None:
    try:
        return str(UUID(str(value)))
    except ValueError:
        return None


# The consumers' database work (replays, WebSocket submissions) runs on threads of its own.
# Channels' default is thread-sensitive: one thread for the whole daphne process, so under load
# every socket's replay or submission queued behind every other's. Django connections are per
# thread; each call here hands its connection back when it ends (to the pool under daphne,
# DB_POOL=1; closed without one), so no idle thread holds a connection and at most DB_THREADS
# are in use at once, well under the pool's 16.
DB_THREADS = 8
_db_threads = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="ws-db")

_R = TypeVar("_R")


def _on_db_thread(func: Callable[..., _R]) -> Callable[..., Any]:
    """database_sync_to_async on the consumers' threads (not thread-sensitive)."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> _R:
        try:
            return func(*args, **kwargs)
        except DATABASE_OUTAGE:
            database_pool_check()  # as the HTTP side does: one stale connection, not all of them
            raise
        finally:
            connection.close()

    return database_sync_to_async(call, thread_sensitive=False, executor=_db_threads)


@_on_db_thread
def _order_exists(order_id: str) -> bool:
    return Order.objects.filter(pk=order_id).exists()


@_on_db_thread
def _events_after(order_id: str, seq: int) -> list[str]:
    events = OrderEvent.objects.filter(order_id=order_id, seq__gt=seq).order_by("seq")
    return [dumps(event_to_wire(e)) for e in events]


def _error(code: str, message: str, **extra: Any) -> str:
    return dumps({"type": "error", "error": code, "message": message, **extra})


class OrderFeedConsumer(AsyncWebsocketConsumer):
    """Shared machinery: per-order subscriptions with replay and seq bookkeeping."""

    async def connect(self) -> None:
        self.last_seq: dict[str, int] = {}  # orderId → last seq sent to this client
        self.firehose = False
        await self.accept()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """PostgreSQL or Redis down is answered as HTTP answers it (503): an error message and a
        4503 close that tells the client to come back, not a crashed consumer (1011). As over
        HTTP, only `DATABASE_OUTAGE` is an outage; another database error is a bug: the 1011.

        Channels' own dispatch first runs close_old_connections on its thread-sensitive thread,
        for every message: one hop through daphne's single sync thread per update delivered to
        each socket. These consumers never use that thread's connection (see _on_db_thread),
        so the handler is called directly."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        try:
            await handler(message)
        except (*DATABASE_OUTAGE, redis.RedisError) as error:
            if message["type"] == "websocket.disconnect":
                raise StopConsumer() from error  # the client has gone: nothing to tell it
            dependency = "redis" if isinstance(error, redis.RedisError) else "database"
            logger.warning(
                "ws %s unavailable path=%s error=%s", dependency, self.scope["path"], error
            )
            await self.send(
                text_data=_error(
                    "service_unavailable",
                    f"the {dependency} is unavailable; reconnect shortly",
                    dependency=dependency,
                )
            )
            await self.close(code=CLOSE_UNAVAILABLE)

    async def disconnect(self, code: int) -> None:
        groups = [order_group(order_id) for order_id in self.last_seq]
        if self.firehose:
            groups.append(FIREHOSE_GROUP)
        for group in groups:  # every one, even when Redis is down: the process forgets them all
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except redis.RedisError as error:
                logger.info("ws leaving %s with Redis unavailable: %s", group, error)

    async def layer_resync(self, message: dict[str, Any]) -> None:
        """The channel layer lost Redis and is back: whatever was published in between is gone,
        so each followed order is caught up from PostgreSQL (a firehose has nothing to replay)."""
        for order_id in list(self.last_seq):
            await self.catch_up(order_id)

    async def subscribe(self, order_id: str) -> None:
        """Follow the order: the first subscribe on a connection replays every one of its events
        from seq 1 (API.md), even those the firehose already showed on it; live events that the
        replay covered are then skipped by their seq. Subscribing again to an order already
        followed sends only what the client has not had yet (normally nothing): a flood of
        subscribes cannot make the server send the same history again and again."""
        if order_id not in self.last_seq:
            await self.channel_layer.group_add(order_group(order_id), self.channel_name)
            self.last_seq[order_id] = 0
            if self.firehose:  # from now on only the subscribed orders
                await self.channel_layer.group_discard(FIREHOSE_GROUP, self.channel_name)
                self.firehose = False
        await self.catch_up(order_id)

    async def unsubscribe(self, order_id: str) -> None:
        if self.last_seq.pop(order_id, None) is not None:
            await self.channel_layer.group_discard(order_group(order_id), self.channel_name)

    async def catch_up(self, order_id: str) -> None:
        """Send every persisted event this client has not seen yet, in seq order."""
        for text in await _events_after(order_id, self.last_seq.get(order_id, 0)):
            seq = json.loads(text)["seq"]
            if seq > self.last_seq.get(order_id, 0):
                await self.send(text_data=text)
                self.last_seq[order_id] = seq

    async def order_updates(self, message: dict[str, Any]) -> None:
        """Live events committed together (engine.events.group_sends), forwarded one by one."""
        for update in message["updates"]:
            await self.order_update(update)

    async def order_update(self, message: dict[str, Any]) -> None:
        """A live event from the channel layer."""
        order_id, seq = message["order_id"], message["seq"]
        if order_id in self.last_seq:
            last = self.last_seq[order_id]
            if seq == last + 1:
                await self.send(text_data=message["text"])
                self.last_seq[order_id] = seq
            elif seq > last + 1:
                await self.catch_up(order_id)  # a message was dropped: the database has it
        elif self.firehose:
            await self.send(text_data=message["text"])


class OrderStreamConsumer(OrderFeedConsumer):
    """`/ws/orders/<id>` and `/ws?orderId=<id>`: replay one order, then stream it."""

    async def connect(self) -> None:
        await super().connect()
        order_id = _parse_uuid(self.order_id_from_scope())
        if order_id is None:
            await self.send(text_data=_error("invalid_order_id", "the order id is not a UUID"))
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        if not await _order_exists(order_id):
            await self.send(text_data=_error("not_found", f"no order {order_id}", orderId=order_id))
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.subscribe(order_id)

    def order_id_from_scope(self) -> str | None:
        kwargs = self.scope["url_route"]["kwargs"]
        return kwargs.get("order_id")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await FirehoseConsumer.handle_client_message(self, text_data, bytes_data)


class FirehoseConsumer(OrderFeedConsumer):
    """`/ws`: every order's updates until the client subscribes to particular orders."""

    async def connect(self) -> None:
        await super().connect()
        from urllib.parse import parse_qs

        # keep_blank_values: `?orderId=` is a malformed id (4400), not a request for the firehose
        query = parse_qs(
            self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        if "orderId" in query:  # `/ws?orderId=<id>` is the single-order stream
            order_id = _parse_uuid(query["orderId"][0])
            if order_id is None:
                await self.send(text_data=_error("invalid_order_id", "orderId is not a UUID"))
                await self.close(code=CLOSE_BAD_REQUEST)
                return
            if not await _order_exists(order_id):
                await self.send(
                    text_data=_error("not_found", f"no order {order_id}", orderId=order_id)
                )
                await self.close(code=CLOSE_NOT_FOUND)
                return
            await self.subscribe(order_id)
            return
        self.firehose = True
        await self.channel_layer.group_add(FIREHOSE_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.handle_client_message(self, text_data, bytes_data)

    @staticmethod
    async def handle_client_message(
        consumer: OrderFeedConsumer, text_data: str | None, bytes_data: bytes | None
    ) -> None:
        """Every client message gets an answer; the connection stays open after an error."""
        if text_data is None:
            await consumer.send(text_data=_error("invalid_message", "send JSON text, not binary"))
            return
        if len(text_data) > MAX_MESSAGE_BYTES:
            await consumer.send(text_data=_error("invalid_message", "the message is too large"))
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # "[[[[…" 16 KiB deep overflows the decoder's stack
            await consumer.send(text_data=_error("invalid_message", "the message is not JSON"))
            return
        if not isinstance(message, dict) or not isinstance(message.get("action"), str):
            await consumer.send(
                text_data=_error(
                    "invalid_message",
                    "expected an object with an action: subscribe, unsubscribe or ping",
                )
            )
            return
        action = message["action"]
        if action == "ping":
            await consumer.send(text_data=dumps({"type": "pong"}))
            return
        if action not in ("subscribe", "unsubscribe"):
            await consumer.send(text_data=_error("unknown_action", f"unknown action {action!r}"))
            return
        order_id = _parse_uuid(message.get("orderId"))
        if order_id is None:
            await consumer.send(text_data=_error("invalid_order_id", "orderId must be a UUID"))
            return
        if action == "unsubscribe":
            await consumer.unsubscribe(order_id)
            await consumer.send(text_data=dumps({"type": "unsubscribed", "orderId": order_id}))
            return
        if order_id not in consumer.last_seq and len(consumer.last_seq) >= MAX_SUBSCRIPTIONS:
            await consumer.send(
                text_data=_error(
                    "too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} orders per connection"
                )
            )
            return
        if not await _order_exists(order_id):
            await consumer.send(
                text_data=_error("not_found", f"no order {order_id}", orderId=order_id)
            )
            return
        await consumer.send(text_data=dumps({"type": "subscribed", "orderId": order_id}))
        await consumer.subscribe(order_id)


class OrderExecuteConsumer(OrderFeedConsumer):
    """`ws://HOST/api/orders/execute`: the first message is the order; then its updates."""

    async def connect(self) -> None:
        await super().connect()
        self.order_id: str | None = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.order_id is not None:
            await FirehoseConsumer.handle_client_message(self, text_data, bytes_data)
            return
        status, body = await _submit_from_socket(text_data, self.scope)
        if status >= 400:
            await self.send(text_data=dumps({"type": "error", **body}))
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.order_id = body["orderId"]
        await self.send(text_data=dumps({"type": "order.accepted", "order": body}))
        await self.subscribe(self.order_id)


@_on_db_thread
def _submit_from_socket(text_data: str | None, scope: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Validate and submit exactly as `POST /api/orders/execute` does."""
    from rest_framework.exceptions import ValidationError

    from engine.errors import OrderError
    from engine.services import order_submit
    from engine.wire import order_to_dict
    from orders.errors import error_body
    from orders.parsers import loads_exact
    from orders.selectors import order_events
    from orders.serializers import OrderSubmitSerializer

    limited = _submission_rate_limited(scope)
    if limited is not None:
        return 429, limited
    if text_data is None:
        return 400, error_body("invalid_message", "send the order as JSON text, not binary")
    if len(text_data) > MAX_MESSAGE_BYTES:
        return 413, error_body("payload_too_large", "the order is larger than 16 KiB")
    try:
        data = loads_exact(text_data)
    except (ValueError, RecursionError) as error:
        return 400, error_body("malformed_json", f"the message is not valid JSON: {error}")
    if not isinstance(data, dict):
        return 400, error_body("validation_error", "the order must be a JSON object")
    serializer = OrderSubmitSerializer(data=data)
    try:
        serializer.is_valid(raise_exception=True)
    except ValidationError as error:
        from orders.errors import _flatten

        details = _flatten(error.detail)
        return 400, error_body("validation_error", f"invalid fields: {', '.join(details)}", details)
    try:
        order, _ = order_submit(request=serializer.to_request())
    except OrderError as error:
        return 422, error_body(error.code, error.message, error.details)
    return 201, order_to_dict(order, order_events(order))


def _submission_rate_limited(scope: dict[str, Any]) -> dict[str, Any] | None:
    """The HTTP submission limit, on the same per-client budget (a fresh socket per order must
    not escape it): the client's address and X-Forwarded-For come from the ASGI scope."""
    from django.http import HttpRequest

    from orders.errors import RateLimitedError, error_body
    from orders.views import enforce_rate_limit

    request = HttpRequest()
    request.method = "POST"
    request.META["REMOTE_ADDR"] = (scope.get("client") or ("",))[0] or ""
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            request.META["HTTP_X_FORWARDED_FOR"] = value.decode("latin-1")
    try:
        enforce_rate_limit(request)
    except RateLimitedError as error:
        return error_body(
            "rate_limited",
            "too many orders from this client; slow down",
            {"retryAfter": error.retry_after},
        )
    return None
