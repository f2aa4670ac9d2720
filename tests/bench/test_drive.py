"""The load generator against a real engine (daphne and a Celery worker started by the test):
every order submitted is found final, every update is delivered once and in order to the
firehose client and to each order's own socket, and the engine's processes are found and
measured. Small counts: this checks the benchmark's plumbing, never its speed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bench import scenarios

pytestmark = pytest.mark.e2e


def _options(port: int) -> scenarios.Options:
    return scenarios.Options(url=f"http://127.0.0.1:{port}", progress=False)


def _assert_clean(result: dict[str, Any], orders: int) -> None:
    m = result["metrics"]
    assert m["accepted"] == orders, m["refused"]
    assert m["final"] == orders and m["lost"] == 0
    assert m["persisted_history_gaps"] == 0
    assert m["missing_updates"] == 0 and m["out_of_order_updates"] == 0
    assert not m["timed_out"]
    groups = result["resources"]["groups"]
    assert groups["web"]["cpu_seconds"] > 0
    assert groups["worker-pool"]["processes"] >= 1
    assert result["engine"]["processes"]["worker"] is not None


def test_posted_orders_are_all_final_and_every_update_arrives(services, tmp_path) -> None:
    _, port = services("daphne")
    services("worker", name="bench", concurrency=2)
    options = _options(port)
    options.extra["deliveries"] = str(tmp_path / "deliveries.jsonl")
    result = asyncio.run(
        scenarios._drive(
            "capacity",
            options,
            orders=6,
            submit="http",
            rate=0,
            concurrency=3,
            follow=True,
            within=60,
        )
    )
    _assert_clean(result, 6)
    deliveries = result["metrics"]["deliveries"]
    assert deliveries["firehose"]["updates_received"] == 30
    assert deliveries["order sockets"]["updates_received"] == 30
    # --deliveries: every one of those updates, one JSON line each
    rows = [json.loads(line) for line in (tmp_path / "deliveries.jsonl").read_text().splitlines()]
    for channel in ("firehose", "order socket"):
        seqs: dict[str, list[int]] = {}
        for row in rows:
            if row["channel"] == channel:
                seqs.setdefault(row["orderId"], []).append(row["seq"])
                assert row["received"] >= row["committed"] and row["latencyMs"] >= 0
        assert len(seqs) == 6 and all(s == [1, 2, 3, 4, 5] for s in seqs.values()), seqs


def test_orders_submitted_over_their_own_sockets_receive_every_update(services) -> None:
    _, port = services("daphne")
    services("worker", name="bench", concurrency=2)
    result = asyncio.run(
        scenarios._drive("ws", _options(port), orders=5, submit="ws", rate=None, within=60)
    )
    _assert_clean(result, 5)
    assert result["metrics"]["deliveries"]["order sockets"]["updates_received"] == 25
    assert result["metrics"]["delivery_latency_ms"]["count"] > 0


def test_many_clients_stay_connected_until_every_order_is_final(services) -> None:
    _, port = services("daphne")
    services("worker", name="bench", concurrency=2)
    options = _options(port)
    options.extra = {"clients": 20, "rate": 50}
    result = asyncio.run(scenarios.ws_scale(options))
    _assert_clean(result, 20)
    connections = result["metrics"]["connections"]
    assert connections["connected"] == 20
    assert connections["still_open_when_all_final"] == 20
