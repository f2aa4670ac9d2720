"""The Celery worker and its pool run below the web process's CPU priority (WORKER_NICE, default
10), so a backlog of orders cannot take the CPU that answering new requests needs; 0 keeps the
priority the worker was started with."""

from __future__ import annotations

import os
import time

import psutil
import pytest

pytestmark = pytest.mark.slow


def pool_niceness(worker_pid: int, children: int) -> list[int]:
    """The niceness of the worker's main process and of each of its pool processes."""
    main = psutil.Process(worker_pid)
    deadline = time.monotonic() + 30
    while len(main.children()) < children and time.monotonic() < deadline:
        time.sleep(0.1)
    pool = main.children()
    assert len(pool) == children, pool
    return [main.nice(), *(p.nice() for p in pool)]


@pytest.mark.parametrize(("setting", "added"), [(None, 10), ("3", 3), ("0", 0)])
def test_the_worker_and_its_pool_yield_the_cpu_to_the_web(services, setting, added) -> None:
    env = {} if setting is None else {"WORKER_NICE": setting}
    worker = services("worker", name=f"nice{added}", concurrency=2, env=env)
    assert pool_niceness(worker.proc.pid, 2) == [min(os.nice(0) + added, 19)] * 3
