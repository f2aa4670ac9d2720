"""The open-loop schedule (`bench.client.on_schedule`): each run is due at its own moment on a
fixed grid, and a slow consumer does not move the runs after it. Only the schedule's own
values are checked, never how long anything took."""

from __future__ import annotations

import asyncio

from bench.client import OrderRun, on_schedule


def _runs(n: int) -> list[OrderRun]:
    return [OrderRun(index=i, body={}) for i in range(n)]


async def test_each_run_is_due_a_rate_apart_with_its_index() -> None:
    runs = _runs(5)
    seen = [(i, run.index) async for i, run in on_schedule(runs, 200)]
    assert seen == [(i, i) for i in range(5)]
    due = [run.due for run in runs]
    wall = [run.due_wall for run in runs]
    assert all(d is not None for d in due) and all(w is not None for w in wall)
    for i in range(5):
        assert abs((due[i] - due[0]) - i / 200) < 1e-6
        assert abs((wall[i] - wall[0]) - i / 200) < 1e-6  # a float near 1.8e9 s is exact to 0.24 µs


async def test_a_consumer_that_falls_behind_does_not_shift_the_schedule() -> None:
    """Open loop: the third run is late in being handed out, but it stays due when the grid
    says, so its lateness counts in its latency."""
    runs = _runs(4)
    async for i, _ in on_schedule(runs, 1000):
        if i == 1:
            await asyncio.sleep(0.02)  # 20 runs' worth at 1 000 a second
    assert abs((runs[3].due - runs[0].due) - 0.003) < 1e-9


async def test_without_a_rate_every_run_is_due_at_once() -> None:
    runs = _runs(3)
    assert [i async for i, _ in on_schedule(runs, None)] == [0, 1, 2]
    assert runs[0].due == runs[1].due == runs[2].due
    assert runs[0].due_wall == runs[2].due_wall
