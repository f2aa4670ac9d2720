"""A worker killed with SIGKILL in the middle of an order, at every point where that can hurt:

- `routing`: inside the transaction that routes, builds and stores the signature (blocked on the
  event table, so nothing of it has committed);
- `submitted-unsent`: the signature is committed, the swap is being sent (blocked on the chain's
  insert): the transaction may or may not have left;
- `submitted-sent`: the chain has the swap, the worker sleeps until it lands
  (DEX_EXECUTION_LATENCY_MS);
- `landing`: the swap has landed inside the worker's transaction, which is blocked writing the
  `confirmed` event: the kill rolls the landing back.

The whole process group of a real Celery worker is killed with SIGKILL; a new worker (another
hostname) starts and the reconciler (as beat runs it) resumes the order. The simulated chain is
the witness: the order is confirmed, in its first attempt, with exactly one landed
`ChainTransaction` for `<orderId>:<attempt>`, and its events are 1..n with no gap or repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection

from dex.models import ChainTransaction
from engine.events import outbox
from engine.reconciler import orders_reconcile
from orders.models import Order, OrderEvent, OrderStatus
from tests.conftest import make_wallet, order_create

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FULL = ["pending", "routing", "building", "submitted", "confirmed"]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def side_connection() -> Iterator[psycopg.Connection]:
    """A second connection to the test database, for locks the worker must run into."""
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or None,
        host=db["HOST"] or "localhost",
        port=db["PORT"] or 5432,
        autocommit=False,
    ) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def blocked_on(table: str) -> bool:
    """A backend of the worker waits on a lock while writing `table` (the statement may start
    with a CTE: the order's UPDATE and its events' INSERT are one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE %s",
            [f'%INSERT INTO "{table}"%'],
        )
        return cursor.fetchone()[0] > 0


def submit() -> Order:
    order = order_create(wallet_address=make_wallet(9), amount_in=Decimal("0.5"))
    outbox.flush()  # the task is dispatched after the commit, from the outbox thread
    return order


def statuses(order: Order) -> list[str]:
    return list(order.events.order_by("seq").values_list("status", flat=True))


def events_of(order: Order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).values_list("status", flat=True))


def chain_rows(order: Order) -> list[tuple[str, str]]:
    return list(
        ChainTransaction.objects.filter(reference__startswith=f"{order.pk}:").values_list(
            "reference", "state"
        )
    )


def kill_routing(order: Order, side: psycopg.Connection) -> None:
    side.execute("LOCK TABLE orders_orderevent IN SHARE MODE")  # before the worker gets there
    wait_for("the worker blocked in route+build+submit", lambda: blocked_on("orders_orderevent"))
    assert statuses(order) == ["pending"]


def kill_submitted_unsent(order: Order, side: psycopg.Connection) -> None:
    # The chain's row for this attempt, uncommitted: the worker's send waits on its unique key.
    side.execute(
        "INSERT INTO dex_chaintransaction (signature, reference, tx, state, lands_at, "
        "fail_at_landing, error_code, error_message, created_at, updated_at) VALUES "
        "('placeholder', %s, '{}', 'pending', now(), '', '', '', now(), now())",
        [f"{order.pk}:1"],
    )
    wait_for("the worker blocked sending", lambda: blocked_on("dex_chaintransaction"))
    assert statuses(order)[-1] == "submitted" and chain_rows(order) == []


def kill_submitted_sent(order: Order, side: psycopg.Connection) -> None:
    wait_for("the chain to accept the swap", lambda: chain_rows(order))
    assert statuses(order)[-1] == "submitted"
    assert chain_rows(order) == [(f"{order.pk}:1", "pending")]


def kill_landing(order: Order, side: psycopg.Connection) -> None:
    wait_for("the chain to accept the swap", lambda: chain_rows(order))
    side.execute("LOCK TABLE orders_orderevent IN SHARE MODE")  # the confirmed event waits
    wait_for(
        "the worker blocked writing confirmed",
        lambda: blocked_on("orders_orderevent"),
        timeout=30,
    )
    assert statuses(order)[-1] == "submitted"


KILL_POINTS = {
    "routing": (kill_routing, "200"),
    "submitted-unsent": (kill_submitted_unsent, "200"),
    "submitted-sent": (kill_submitted_sent, "3000"),
    "landing": (kill_landing, "1500"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_worker_killed_mid_order_leaves_it_confirmed_and_swapped_once(services, point) -> None:
    arrange, latency = KILL_POINTS[point]
    env = {"DEX_EXECUTION_LATENCY_MS": latency, "DEX_QUOTE_LATENCY_MS": "5"}
    victim = services("worker", name="victim", concurrency=1, env=env)
    with side_connection() as side:
        order = submit()
        arrange(order, side)
        victim.stop(sig=9)  # SIGKILL to the worker's whole process group
        assert victim.proc.returncode == -9
        side.rollback()  # release the lock: the dead worker's transaction can only abort now
    rescuer = services("worker", name="rescuer", concurrency=2, env=env)

    # The task died unacknowledged; the reconciler (beat's engine.reconcile_orders) resumes it.
    # stale_after=0 instead of ORDER_STALE_SECONDS so that the test need not wait for it.
    def reconciled_and_done() -> bool:
        order.refresh_from_db()
        if order.status == OrderStatus.CONFIRMED:
            return True
        orders_reconcile(stale_after=0)
        outbox.flush()
        time.sleep(0.5)
        return False

    wait_for(f"the order to be confirmed after a kill at {point}", reconciled_and_done, 60)
    time.sleep(1.0)  # any late duplicate would land now
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED and order.attempts == 1
    assert statuses(order) == FULL, statuses(order)
    seqs = list(order.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert chain_rows(order) == [(f"{order.pk}:1", "landed")]
    landed = ChainTransaction.objects.get(reference=f"{order.pk}:1")
    assert landed.signature == order.tx_hash and landed.amount_out > 0
    assert "execute_order" in rescuer.log()
