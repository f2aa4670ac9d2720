"""The load generator's HTTP connections (bench.client.HttpClients): never more than it was
given, each request on a connection of its own, and requests beyond them wait their turn in the
order they came."""

from __future__ import annotations

import asyncio

from bench.client import HttpClients


async def test_at_most_size_connections_lent_first_come_first_served() -> None:
    clients = HttpClients("http://127.0.0.1:1", size=2)
    started: list[str] = []
    lent: dict[str, int] = {}
    done = {name: asyncio.Event() for name in "abcd"}

    async def use(name: str) -> None:
        async with clients.lend() as client:
            started.append(name)
            lent[name] = id(client)
            await done[name].wait()

    tasks = []
    for name in "abcd":
        tasks.append(asyncio.create_task(use(name)))
        await asyncio.sleep(0)  # each asks in turn
    await asyncio.sleep(0.01)
    assert started == ["a", "b"]  # c and d wait: two connections are lent
    assert lent["a"] != lent["b"]

    done["b"].set()
    await asyncio.sleep(0.01)
    assert started == ["a", "b", "c"]  # the first to wait is the first served...
    assert lent["c"] == lent["b"]  # ...on the connection just given back
    done["a"].set()
    await asyncio.sleep(0.01)
    assert started == ["a", "b", "c", "d"] and lent["d"] == lent["a"]

    done["c"].set()
    done["d"].set()
    await asyncio.gather(*tasks)
    assert len({lent[n] for n in "abcd"}) == 2
    await clients.aclose()
