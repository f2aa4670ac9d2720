"""What happens after a commit: events published to the channel layer, the Redis copy of the
order refreshed, tasks dispatched.

None of it may slow the request or the pipeline step that caused it, and none of it may happen
before the commit. So each process has one daemon thread, the *outbox*, that runs these side
effects in the order they were committed. It owns an event loop for the channel layer, which
keeps its Redis connections open instead of opening new ones per event.

All of it is best effort by design: PostgreSQL is the truth. A lost publish is healed by the
WebSocket replay, a lost cache write by the read-through to PostgreSQL, a lost dispatch by the
reconciler.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable
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


class Outbox:
    """A FIFO of side effects run by one daemon thread per process (re-created after a fork)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], Any] | list[dict[str, Any]] | threading.Event] = (
            queue.Queue()
        )
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.Queue()
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._run, name="outbox", daemon=True).start()
                self._pid = os.getpid()

    def run(self, effect: Callable[[], Any]) -> None:
        """Run a synchronous side effect on the outbox thread, after those queued before it."""
        self._ensure_thread()
        self._queue.put(effect)

    def publish(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self._ensure_thread()
            self._queue.put(messages)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is done (tests, shutdown)."""
        if self._pid != os.getpid():
            return
        done = threading.Event()
        self._queue.put(done)  # set once its batch's effects and messages are all out
        done.wait(timeout)

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 256:  # whatever is already waiting goes out together
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # Effects (the order's Redis copy) before the batch's messages: a client that reads
            # the order as soon as it hears of an update must find at least that update.
            for effect in batch:
                if callable(effect):
                    try:
                        effect()
                    except Exception:
                        logger.warning("after-commit effect failed", exc_info=True)
            messages = [m for i in batch if isinstance(i, list) for m in i]
            try:
                if messages:
                    self._loop.run_until_complete(_send_all(messages))
            except Exception:
                logger.warning("publishing %d events failed", len(messages), exc_info=True)
            for marker in batch:
                if isinstance(marker, threading.Event):
                    marker.set()


async def _send_all(messages: list[dict[str, Any]]) -> None:
    """Send in commit order: per order (the consumers' seq check relies on it) and across
    orders too, so the firehose shows this process's events as they happened."""
    layer = get_channel_layer()
    for message in messages:
        await layer.group_send(order_group(message["order_id"]), message)
        await layer.group_send(FIREHOSE_GROUP, message)


outbox = Outbox()
atexit.register(outbox.flush, 2.0)


def events_publish(wires: Iterable[dict[str, Any]]) -> None:
    outbox.publish([event_message(w) for w in wires])
