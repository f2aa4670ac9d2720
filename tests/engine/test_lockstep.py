"""Orders executed together (engine.lockstep), against real PostgreSQL and Redis: a pool process
whose share of ORDER_CONCURRENCY is more than one starts that many fresh market orders at once.
They travel exactly as orders executed alone do, in statements that do not grow with their
number; they land one after another on the pools; what is off the common path goes back to the
pipeline; a crash at any point leaves each order where it resumes, swapped once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dex.chain import transactions_send
from dex.models import ChainTransaction
from engine import lockstep, transitions
from engine.tasks import execute_orders_task
from engine.transitions import orders_transitions as real_transitions
from orders.models import Order, OrderStatus
from tests.conftest import make_wallet, order_create, orders_create
from tests.engine.test_batch import queued, statuses
from tests.engine.test_pipeline import Crash, _crash_before_commit

pytestmark = pytest.mark.django_db

#: Four orders together per pool process: 40 at once on 10 processes.
TOGETHER = override_settings(ORDER_CONCURRENCY=40, CELERY_WORKER_CONCURRENCY=10)


def history(order_id: str) -> list[tuple[int, str, list[str]]]:
    """The order's events: seq, status and the payload's keys."""
    events = Order.objects.get(pk=order_id).events.order_by("seq")
    return [(e.seq, e.status, sorted(e.payload)) for e in events]


def swaps(order_id: str) -> list[str]:
    return list(
        ChainTransaction.objects.filter(reference__startswith=f"{order_id}:").values_list(
            "state", flat=True
        )
    )


@pytest.mark.parametrize(
    ("order_concurrency", "processes", "size"),
    [(10, 10, 1), (10, 4, 2), (64, 4, 16), (3, 10, 1)],
)
def test_each_pool_process_executes_its_share_of_order_concurrency(
    order_concurrency, processes, size, monkeypatch
) -> None:
    monkeypatch.setattr(lockstep, "processes", processes)
    with override_settings(ORDER_CONCURRENCY=order_concurrency):
        assert lockstep.lockstep_size() == size


@TOGETHER
def test_orders_executed_together_travel_as_an_order_executed_alone() -> None:
    with override_settings(ORDER_CONCURRENCY=10):
        alone = orders_create(1, first_wallet=70, amount="0.1")
        execute_orders_task(order_ids=alone)
    together = orders_create(4, first_wallet=71, amount="0.1")
    assert execute_orders_task(order_ids=together) == "4 orders"
    assert statuses(together) == [OrderStatus.CONFIRMED] * 4
    for order_id in together:
        assert history(order_id) == history(alone[0])
        assert swaps(order_id) == ["landed"]
        order = Order.objects.get(pk=order_id)
        assert order.attempts == 1 and order.amount_out > 0
        assert order.tx_hash == order.events.get(status="confirmed").payload["txHash"]
    assert queued() == []


@TOGETHER
def test_a_step_written_together_has_one_time_read_by_its_statement(monkeypatch: Any) -> None:
    """The routing, building and submitted events of all the orders of one step, and the
    orders' updated_at, are written by one statement and become true at its commit: they carry
    one timestamp, the statement's own, read by PostgreSQL after every parameter was built (the
    benchmark measures delivery from it), not one per transition."""
    marks: list[tuple[str, Any]] = []
    real_values, real_write = transitions.db_values, transitions._write

    def db_values(*args: Any, **kwargs: Any) -> Any:
        values = real_values(*args, **kwargs)
        marks.append(("built", timezone.now()))
        return values

    def write(written: Any) -> None:
        real_write(written)
        marks.append(("written", timezone.now()))

    monkeypatch.setattr(transitions, "db_values", db_values)
    monkeypatch.setattr(transitions, "_write", write)
    ids = orders_create(4, first_wallet=86, amount="0.1")
    execute_orders_task(order_ids=ids)
    assert statuses(ids) == [OrderStatus.CONFIRMED] * 4
    written = [i for i, (kind, _) in enumerate(marks) if kind == "written"]
    assert len(written) == 2  # one statement for the first three steps of all four, one landing
    windows = []  # (the last parameter built, the statement returned) for each statement
    for start, end in zip([-1, written[0]], written, strict=True):
        built = [t for kind, t in marks[start + 1 : end] if kind == "built"]
        windows.append((max(built), marks[end][1]))
    times = {
        order_id: dict(Order.objects.get(pk=order_id).events.values_list("status", "created_at"))
        for order_id in ids
    }
    first = times[ids[0]]["routing"]
    landed = times[ids[0]]["confirmed"]
    assert windows[0][0] < first < windows[0][1]
    assert windows[1][0] < landed < windows[1][1]
    for order_id in ids:
        assert times[order_id]["routing"] == times[order_id]["building"] == first
        assert times[order_id]["submitted"] == first
        assert times[order_id]["confirmed"] == Order.objects.get(pk=order_id).updated_at == landed


@TOGETHER
def test_a_steps_updates_go_out_before_its_orders_are_sent(monkeypatch: Any) -> None:
    ids = orders_create(3, first_wallet=90, amount="0.1")
    calls: list[str] = []
    real_flush, real_send = lockstep.outbox.flush, lockstep.transactions_send

    def flush(*args: Any, **kwargs: Any) -> None:
        calls.append("updates out")
        real_flush(*args, **kwargs)

    def send(*args: Any, **kwargs: Any) -> Any:
        calls.append("sent")
        return real_send(*args, **kwargs)

    monkeypatch.setattr(lockstep.outbox, "flush", flush)
    monkeypatch.setattr(lockstep, "transactions_send", send)
    execute_orders_task(order_ids=ids)
    assert statuses(ids) == [OrderStatus.CONFIRMED] * 3
    assert calls == ["updates out", "sent"]


@TOGETHER
def test_the_statements_do_not_grow_with_the_orders_executed_together() -> None:
    """Loading, locking, writing the transitions, sending and landing: one statement per step
    for all of them (the fee estimate's count of recent transactions, sampled once a second,
    aside)."""
    counts = []
    for n, wallet in ((2, 80), (4, 82)):
        ids = orders_create(n, first_wallet=wallet, amount="0.1")
        with CaptureQueriesContext(connection) as queries:
            execute_orders_task(order_ids=ids)
        assert statuses(ids) == [OrderStatus.CONFIRMED] * n
        counts.append([q["sql"] for q in queries if "COUNT(*)" not in q["sql"]])
    assert len(counts[0]) == len(counts[1]) == 17, counts[1]


@TOGETHER
def test_orders_quoted_together_land_one_after_another_on_the_pool() -> None:
    """Quoted on one view of the market, the orders land in turn, each on the pool as the one
    before left it: with no slippage allowed, the first fills as quoted and the others, which
    would now receive less, fail that attempt and retry on a fresh quote."""
    ids = [
        str(order_create(wallet_address=make_wallet(90 + i), slippage_bps=0).pk) for i in range(3)
    ]
    lockstep_outcomes, left = lockstep.orders_start(ids)
    assert left == []
    orders = [Order.objects.get(pk=i) for i in ids]
    assert orders[0].status == OrderStatus.CONFIRMED
    for order in orders[1:]:
        assert order.status == OrderStatus.FAILED
        failed = order.events.get(status="failed").payload
        assert failed["errorCode"] == "slippage_exceeded" and failed["willRetry"] is True
        assert lockstep_outcomes[str(order.pk)].reason == "retry"
    assert [swaps(i) for i in ids] == [["landed"], ["failed"], ["failed"]]


@TOGETHER
def test_orders_off_the_common_path_go_back_to_the_pipeline() -> None:
    limit = order_create(
        wallet_address=make_wallet(95), order_type="limit", limit_price=Decimal("1000000")
    )
    market = orders_create(2, first_wallet=96, amount="0.1")
    confirmed = orders_create(1, first_wallet=98, amount="0.1")
    execute_orders_task(order_ids=confirmed)
    outcomes, left = lockstep.orders_start([str(limit.pk), *market, *confirmed])
    assert left == [str(limit.pk), *confirmed]
    assert set(outcomes) == set(market)
    assert statuses(market) == [OrderStatus.CONFIRMED] * 2
    assert execute_orders_task(order_ids=[str(limit.pk), *market, *confirmed]) == "4 orders"
    assert Order.objects.get(pk=limit.pk).status == OrderStatus.PENDING  # waits for its price


@TOGETHER
@override_settings(DEX_EXECUTION_LATENCY_MS="150")
def test_orders_that_must_wait_for_the_chain_wait_in_place_together() -> None:
    """Started together, their transactions land later: each waits in this process (it is
    executing, so its place is taken either way), and the orders not yet started are handed
    on first."""
    ids = orders_create(6, first_wallet=100, amount="0.1")
    assert execute_orders_task(order_ids=ids) == "4 of 6, the rest handed on"
    assert statuses(ids) == [OrderStatus.CONFIRMED] * 4 + [OrderStatus.PENDING] * 2
    assert [(name, kw) for name, kw, _ in queued()] == [
        ("engine.execute_order", {"order_id": ids[4]}),
        ("engine.execute_order", {"order_id": ids[5]}),
    ]


@TOGETHER
@override_settings(ORDER_RATE_LIMIT="2/m")
def test_the_rate_limit_starts_only_the_orders_it_has_slots_for() -> None:
    ids = orders_create(4, first_wallet=110, amount="0.1")
    assert execute_orders_task(order_ids=ids) == "4 orders"
    assert statuses(ids)[:1] == [OrderStatus.CONFIRMED]
    waiting = Order.objects.filter(pk__in=ids, status=OrderStatus.PENDING)
    assert waiting.count() == 3 and all(o.next_attempt_at for o in waiting)
    assert [(name, due_later) for name, _, due_later in queued()] == [
        ("engine.execute_order", True)
    ] * 3


def _crash_after_commit_before_send(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def die(txs):  # type: ignore[no-untyped-def]
        raise Crash()

    monkeypatch.setattr(lockstep, "transactions_send", die)


def _crash_after_send(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def send_then_die(txs):  # type: ignore[no-untyped-def]
        transactions_send(txs)
        raise Crash()

    monkeypatch.setattr(lockstep, "transactions_send", send_then_die)


def _crash_while_settling(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def die(moves):  # type: ignore[no-untyped-def]
        if moves and moves[0][1][0].status == OrderStatus.CONFIRMED:
            raise Crash()
        return real_transitions(moves)

    monkeypatch.setattr(lockstep, "orders_transitions", die)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(
    ("crash", "left_in"),
    [
        (_crash_before_commit, OrderStatus.PENDING),
        (_crash_after_commit_before_send, OrderStatus.SUBMITTED),
        (_crash_after_send, OrderStatus.SUBMITTED),
        (_crash_while_settling, OrderStatus.SUBMITTED),
    ],
)
def test_a_crash_at_any_point_of_orders_executed_together_swaps_each_once(
    monkeypatch, crash, left_in
) -> None:
    """Kill the process at each point (as a killed worker would), then deliver the message
    again: every order confirms, landed exactly once, with an unbroken history."""
    ids = orders_create(3, first_wallet=120, amount="0.1")
    with TOGETHER:
        with monkeypatch.context() as patch:
            crash(patch)
            with pytest.raises(Crash):
                execute_orders_task(order_ids=ids)
        assert statuses(ids) == [left_in] * 3
        execute_orders_task(order_ids=ids)
    assert statuses(ids) == [OrderStatus.CONFIRMED] * 3
    for order_id in ids:
        assert swaps(order_id) == ["landed"]
        seqs = [seq for seq, _, _ in history(order_id)]
        assert seqs == [1, 2, 3, 4, 5]


def test_a_crash_is_not_mistaken_for_one_orders_bug(monkeypatch: Any) -> None:
    """A bug in the lockstep gives its orders back to the pipeline (logged); a crash, like the
    database going away, is the whole message's to retry."""
    ids = orders_create(2, first_wallet=130, amount="0.1")

    def broken(order_ids: list[str]) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("engine.tasks.orders_start", broken)
    with TOGETHER:
        assert execute_orders_task(order_ids=ids) == "2 orders"
    assert statuses(ids) == [OrderStatus.CONFIRMED] * 2
