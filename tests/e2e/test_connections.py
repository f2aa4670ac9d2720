"""A Celery worker keeps its PostgreSQL connection across tasks. Celery's Django fixup closes it
after every task unless told otherwise, and each order then forked a new PostgreSQL backend."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from dex.models import ChainTransaction
from engine.services import OrderRequest, order_submit
from orders.models import Order
from tests.conftest import make_wallet

pytestmark = pytest.mark.e2e


def test_a_worker_reuses_its_database_connection_across_orders(services) -> None:
    services("worker", name="reuse", concurrency=2)
    db = connection.settings_dict["NAME"]
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:  # every backend that serves this test database while orders run
        with psycopg.connect(dbname="postgres", host="localhost", autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", [db]
                ).fetchall()
                seen.update(pid for (pid,) in rows)
                time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    orders = [
        order_submit(
            request=OrderRequest(
                wallet_address=make_wallet(n),
                token_in="SOL",
                token_out="USDC",
                amount_in=Decimal("0.05"),
            )
        )[0]
        for n in range(30)
    ]
    deadline = time.monotonic() + 60
    while Order.objects.filter(status="confirmed").count() < len(orders):
        assert time.monotonic() < deadline, "the orders did not all confirm"
        time.sleep(0.1)
    stop.set()
    watcher.join(5)
    assert ChainTransaction.objects.filter(state="landed").count() == len(orders)
    # This test's own connections and the worker's processes (main and two children):
    # a handful of backends, not one per order.
    assert len(seen) <= 8, f"{len(seen)} backends for {len(orders)} orders"
