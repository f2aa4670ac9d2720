"""Logs a person can read, checked on real processes: one structured line per transition (with
the order id, its seq and both statuses) in the process that made it, web or worker, and one
line per routing decision."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import make_wallet, until

pytestmark = pytest.mark.e2e


def test_one_line_per_transition_and_routing_decision_in_web_and_worker(services) -> None:
    web, port = services("daphne")
    worker = services("worker", name="logs", concurrency=1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        market = client.post(
            "/api/orders/execute",
            json={
                "walletAddress": make_wallet(61),
                "tokenIn": "SOL",
                "tokenOut": "USDC",
                "amountIn": "0.75",
            },
        ).json()["orderId"]
        waiting = client.post(
            "/api/orders/execute",
            json={
                "walletAddress": make_wallet(62),
                "tokenIn": "SOL",
                "tokenOut": "USDC",
                "amountIn": "0.5",
                "orderType": "limit",
                "limitPrice": "100000",
            },
        ).json()["orderId"]
        assert client.post(f"/api/orders/{waiting}/cancel").status_code == 200
        until(lambda: client.get(f"/api/orders/{market}").json().get("status") == "confirmed")
    until(lambda: f"order={market} seq=5 submitted->confirmed" in worker.log())

    web_log, worker_log = web.log(), worker.log()
    # The web process: one line per submission, and the transition it made itself (a cancel).
    for order_id in (market, waiting):
        assert len(re.findall(rf"submitted order={order_id} type=\w+ pair=SOL/USDC", web_log)) == 1
    assert web_log.count(f"transition order={waiting} seq=2 pending->cancelled") == 1
    # The worker: exactly one line per transition of the market order, in seq order.
    lines = re.findall(rf"transition order={market} seq=(\d+) (\w+)->(\w+) attempt=1", worker_log)
    assert lines == [
        ("2", "pending", "routing"),
        ("3", "routing", "building"),
        ("4", "building", "submitted"),
        ("5", "submitted", "confirmed"),
    ]
    # One routing decision line, with every venue's quote and the reason.
    decisions = re.findall(r"route ref=\S+ pair=SOL/USDC amount_in=0\.750000000 .*", worker_log)
    assert len(decisions) == 1
    assert "best=" in decisions[0] and "quotes=" in decisions[0] and "reason=" in decisions[0]
    assert f"ref=order={market} " in decisions[0]


def test_the_access_log_has_each_request_as_it_is_answered(services) -> None:
    """daphne writes its access log to stdout. Piped (honcho under `make run`, a file under nohup
    or a service manager) and without PYTHONUNBUFFERED, Python held those lines in 8 KB blocks:
    `make run` showed a request's line minutes later, or only at shutdown. The web process
    writes them line by line however it is started (config.asgi)."""
    web, port = services("daphne", env={"PYTHONUNBUFFERED": ""})  # empty: as if unset
    answer = httpx.get(f"http://127.0.0.1:{port}/api/orders/00000000-0000-0000-0000-0000000000aa")
    assert answer.status_code == 404
    until(
        lambda: '"GET /api/orders/00000000-0000-0000-0000-0000000000aa" 404' in web.log(),
        timeout=10,
    )
