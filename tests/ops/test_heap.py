"""daphne, the Celery worker and each of its pool processes freeze their startup objects out of
the garbage collector's full passes (config.heap): under load, those passes had paused daphne
for 60-94 ms every few seconds. Garbage made afterwards is still collected."""

from __future__ import annotations

import gc
import re
import weakref

import httpx
import pytest

from config.heap import heap_freeze
from tests.conftest import until


class Node:
    """A garbage-collected object that can be part of a reference cycle."""

    other: Node | None = None


def test_frozen_objects_leave_the_collector_and_later_cycles_are_still_collected() -> None:
    try:
        startup = Node()
        frozen = heap_freeze("test")
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is startup for o in gc.get_objects())  # no pass walks it any more

        later = Node()
        later.other = later  # a cycle: only the collector frees it
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()


def _frozen(log: str, process: str) -> list[int]:
    return [int(n) for n in re.findall(rf"{process}: (\d+) startup objects frozen", log)]


@pytest.mark.e2e
def test_the_web_the_worker_and_each_pool_process_freeze_then_execute_an_order(
    services, order_payload
) -> None:
    web, port = services("daphne")
    worker = services("worker", name="heap", concurrency=2)
    until(lambda: len(_frozen(worker.log(), "worker pool process")) == 2, 60)

    [in_web] = _frozen(web.log(), "web")
    [in_worker] = _frozen(worker.log(), "worker")
    in_pool = _frozen(worker.log(), "worker pool process")
    # Django, DRF, Channels and Celery: well over a hundred thousand objects each.
    assert in_web > 50_000 and in_worker > 50_000
    # A pool process inherits what its parent froze before the fork, and adds its own.
    assert all(n >= in_worker for n in in_pool), (in_worker, in_pool)

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        order_id = client.post("/api/orders/execute", json=order_payload).json()["orderId"]
        until(lambda: client.get(f"/api/orders/{order_id}").json()["status"] == "confirmed", 60)
