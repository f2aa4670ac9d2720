"""Flower as `make run` and Compose start it: against a real worker on this test's Redis, behind
basic auth. It finds the worker through its API, reads the queues' lengths from the broker, and
refuses anyone without the password."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, free_port, service_env, wait_for_port

pytestmark = pytest.mark.e2e

USER, PASSWORD = "operator", "flower-test-password"


@pytest.fixture
def flower(services, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    service = Service(
        "flower",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--basic-auth={USER}:{PASSWORD}",
        ],
        service_env(),
        tmp_path,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        service.stop()


def test_flower_finds_the_worker_and_asks_for_the_password(services, flower: int) -> None:
    services("worker", name="flowerw", concurrency=1)
    base = f"http://127.0.0.1:{flower}"
    deadline = time.monotonic() + 30
    workers: dict = {}
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/api/workers", params={"refresh": "1"}, auth=(USER, PASSWORD))
        assert answer.status_code == 200, answer.text
        workers = answer.json()
        if any(name.startswith("flowerw@") for name in workers):
            break
        time.sleep(0.5)
    names = [name for name in workers if name.startswith("flowerw@")]
    assert names, workers
    worker = workers[names[0]]
    assert "engine.execute_order" in worker.get("registered", []), worker.keys()
    assert "orders" in [q["name"] for q in worker.get("active_queues", [])]
    # the broker page and its queue lengths read Redis through the broker URL's scheme
    lengths = httpx.get(f"{base}/api/queues/length", auth=(USER, PASSWORD))
    assert lengths.status_code == 200, lengths.text
    assert "orders" in [q["name"] for q in lengths.json()["active_queues"]]
    assert httpx.get(f"{base}/broker", auth=(USER, PASSWORD)).status_code == 200

    assert httpx.get(f"{base}/api/workers").status_code == 401
    assert httpx.get(f"{base}/api/workers", auth=(USER, "wrong")).status_code == 401
    assert httpx.get(f"{base}/").status_code == 401
