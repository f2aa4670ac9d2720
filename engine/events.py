"""Publishing order events: after the commit that wrote them, to the channel-layer groups of the
order and of the firehose, and into the Redis copy of the active order.

The channel layer is a best-effort fan-out (clients replay from PostgreSQL), so publishing never
blocks or fails the pipeline: messages go to one long-lived event loop per process, which keeps
its Redis connections open instead of opening new ones for every event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer

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
        "text": json.dumps(wire, separators=(",", ":")),
    }


class _Publisher:
    """A daemon thread running an event loop, fed with group sends from synchronous code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="event-publisher", daemon=True
                )
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def publish(self, messages: Iterable[dict[str, Any]]) -> None:
        batch = list(messages)
        if batch:
            asyncio.run_coroutine_threadsafe(_send_all(batch), self._ensure_loop())

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything published so far has been handed to Redis (tests, shutdown)."""
        if self._loop is not None and self._pid == os.getpid():
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(timeout)
            future = asyncio.run_coroutine_threadsafe(_drain(), self._loop)
            future.result(timeout)


_pending: set[asyncio.Task[None]] = set()


async def _send_all(batch: list[dict[str, Any]]) -> None:
    layer = get_channel_layer()
    for message in batch:
        try:
            await asyncio.gather(
                layer.group_send(order_group(message["order_id"]), message),
                layer.group_send(FIREHOSE_GROUP, message),
            )
        except Exception:  # the fan-out is best effort: clients replay from the database
            logger.warning(
                "publish failed order=%s seq=%s", message["order_id"], message["seq"], exc_info=True
            )


async def _drain() -> None:
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current]
    if others:
        await asyncio.wait(others, timeout=5)


publisher = _Publisher()


def events_publish(wires: Iterable[dict[str, Any]]) -> None:
    publisher.publish(event_message(w) for w in wires)
