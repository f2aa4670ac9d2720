"""From recorded client data and persisted histories to the report: lost orders, gaps per client,
latencies, the written files. Synthetic records: no engine, no network, no timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.analysis import analyse
from bench.client import Delivery, Drive, order_body, wallet
from bench.profile import summarise

T0 = 1_800_000_000.0  # an arbitrary epoch second


def iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


STEPS = ["pending", "routing", "building", "submitted", "confirmed"]


def history(start: float, statuses: list[str] = STEPS) -> list[dict[str, Any]]:
    return [
        {"seq": i + 1, "status": s, "timestamp": iso(start + i * 0.1)}
        for i, s in enumerate(statuses)
    ]


def delivered(events: list[dict[str, Any]], delay: float = 0.002) -> list[Delivery]:
    from bench.stats import is_final, parse_ts

    return [
        Delivery(
            seq=e["seq"],
            status=e["status"],
            ts=parse_ts(e["timestamp"]),
            recv=parse_ts(e["timestamp"]) + delay,
            final=is_final(e),
        )
        for e in events
    ]


MACHINE = {
    "cpu": "test",
    "cores": 2,
    "memory_gb": 1,
    "kernel": "x",
    "python": "3.11",
    "load_average_at_start": [0.0, 0.0, 0.0],
}


def answered_drive(orders: int) -> Drive:
    """`orders` orders POSTed a second apart, each answered 201 in 5 ms as order-<i>."""
    d = Drive(url="http://127.0.0.1:1", total=orders, progress=False)
    for i, run in enumerate(d.new_runs(order_body(n) for n in range(orders))):
        run.due, run.sent, run.answered = 10.0 + i, 10.0 + i, 10.005 + i
        run.due_wall = T0 + i
        run.http_status = 201
        run.order_id = f"order-{i}"
        d.by_id[run.order_id] = run
    return d


@pytest.fixture
def drive() -> Drive:
    return answered_drive(3)


def test_a_clean_run_has_nothing_lost_or_missing(drive: Drive) -> None:
    histories = {f"order-{i}": {"events": history(T0 + i)} for i in range(3)}
    for order_id, h in histories.items():
        drive.firehose[order_id] = delivered(h["events"])
    metrics, dist = analyse(drive, histories, firehose=True, sockets=None)
    assert metrics["lost"] == 0 and metrics["final"] == 3
    assert metrics["missing_updates"] == 0 and metrics["out_of_order_updates"] == 0
    assert metrics["final_statuses"] == {"confirmed": 3}
    assert metrics["submit_latency_ms"]["p50"] == pytest.approx(5.0)
    assert metrics["deliveries"]["firehose"]["latency_ms"]["max"] == pytest.approx(2.0, abs=0.01)
    assert metrics["max_executing_at_once"] == 1
    assert len(dist["WebSocket delivery, firehose (ms)"]) == 15


def test_an_order_that_never_ends_is_lost_and_a_dropped_update_is_missing(drive: Drive) -> None:
    histories = {
        "order-0": {"events": history(T0)},
        "order-1": {"events": history(T0 + 1)},
        "order-2": {"events": history(T0 + 2, STEPS[:3])},  # stuck in building
    }
    drive.firehose["order-0"] = delivered(histories["order-0"]["events"])
    gap = delivered(histories["order-1"]["events"])
    drive.firehose["order-1"] = [gap[0], gap[1], gap[3], gap[2], gap[4]]  # 3 after 4
    drive.firehose["order-2"] = delivered(histories["order-2"]["events"][:2])  # 3 never came
    drive.firehose["someone-else"] = delivered(history(T0))
    metrics, _ = analyse(drive, histories, firehose=True, sockets=None)
    assert metrics["lost"] == 1 and metrics["lost_ids"] == ["order-2"]
    firehose = metrics["deliveries"]["firehose"]
    assert firehose["missing"] == 1 and firehose["out_of_order"] == 1
    assert firehose["orders_with_gaps"] == 2
    assert firehose["other_orders_updates"] == 5


def test_replayed_updates_do_not_count_as_delivery_latency(drive: Drive) -> None:
    histories = {f"order-{i}": {"events": history(T0 + i)} for i in range(3)}
    for i, run in enumerate(drive.runs):
        events = histories[f"order-{i}"]["events"]
        run.socket = delivered(events, delay=0.003)
        # Subscribed after the first two updates were committed: those came by replay.
        run.subscribed_wall = T0 + i + 0.15
        run.socket[0].recv = run.socket[1].recv = T0 + i + 0.5
    metrics, dist = analyse(drive, histories, firehose=False, sockets="follow")
    sockets = metrics["deliveries"]["order sockets"]
    assert sockets["missing"] == 0 and sockets["updates_received"] == 15
    assert len(dist["WebSocket delivery, order sockets (ms)"]) == 9
    assert sockets["latency_ms"]["max"] == pytest.approx(3.0, abs=0.01)


def test_a_retried_order_counts_its_attempts_and_its_concurrency(drive: Drive) -> None:
    retried = history(T0, ["pending", "routing", "failed", "routing", "confirmed"])
    retried[2]["willRetry"] = True
    histories = {
        "order-0": {"events": retried},
        "order-1": {"events": history(T0 + 0.05)},
        "order-2": {"events": history(T0 + 10)},
    }
    metrics, _ = analyse(drive, histories, firehose=False, sockets=None)
    assert metrics["retried_attempts"] == 1
    assert metrics["max_executing_at_once"] == 2
    assert metrics["lost"] == 0


def test_refused_submissions_are_reported_by_status(drive: Drive) -> None:
    refused = drive.new_runs([order_body(9)])[0]
    refused.http_status, refused.error = 429, "rate limited"
    histories = {f"order-{i}": {"events": history(T0 + i)} for i in range(3)}
    metrics, _ = analyse(drive, histories, firehose=False, sockets=None)
    assert metrics["submitted"] == 4 and metrics["accepted"] == 3
    assert metrics["refused"] == {"429": 1}


def test_orders_alternate_directions_with_valid_wallets() -> None:
    import base58

    assert order_body(0)["tokenIn"] == "SOL" and order_body(1)["tokenIn"] == "USDC"
    assert len(base58.b58decode(wallet(12345))) == 32


def test_the_report_writes_json_markdown_and_a_plot(drive: Drive, tmp_path: Path) -> None:
    histories = {f"order-{i}": {"events": history(T0 + i)} for i in range(3)}
    for order_id, h in histories.items():
        drive.firehose[order_id] = delivered(h["events"])
    metrics, dist = analyse(drive, histories, firehose=True, sockets=None)
    result = {
        "scenario": "capacity",
        "started_at": "2026-01-01T00:00:00+00:00",
        "load": {"orders": 3},
        "engine": {"settings": {"mode": "capacity"}},
        "machine": MACHINE,
        "metrics": metrics,
        "resources": {
            "wall_seconds": 1.0,
            "groups": {
                "web": {
                    "cpu_seconds": 0.1,
                    "cpu_ms_per_order": 33.3,
                    "cpu_percent_of_one_core": 10.0,
                    "peak_rss_mb": 100.0,
                    "processes": 1,
                }
            },
            "engine_cpu_seconds": 0.1,
            "engine_cpu_ms_per_order": 33.3,
            "machine": None,
        },
        "targets": [{"name": "lost", "value": 0, "op": "==", "goal": 0, "unit": "", "ok": True}],
        "_distributions": dist,
    }
    paths = report.write(result, name="unit", command="python -m bench capacity", out=tmp_path)
    saved = json.loads(paths[0].read_text())
    assert "_distributions" not in saved
    assert saved["distributions_percentiles"]["WebSocket delivery, firehose (ms)"]
    markdown = paths[1].read_text()
    assert "| lost | 0 | == 0 | ✅ |" in markdown and "| web |" in markdown
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profiles_are_summarised_per_step_and_per_library(tmp_path: Path) -> None:
    site = "/venv/lib/python3.11/site-packages"
    stacks = tmp_path / "worker.txt"
    stacks.write_text(
        f'process 1:"celery";run ({site}/celery/app/trace.py:1);'
        f"order_execute (/repo/engine/pipeline.py:60);"
        f"execute ({site}/django/db/backends/utils.py:100) 30\n"
        f'process 1:"celery";order_execute (/repo/engine/pipeline.py:60);'
        f"dumps (/usr/lib/python3.11/json/__init__.py:200) 10\n"
        f'process 1:"celery";loop ({site}/kombu/asynchronous/hub.py:5) 60\n'
    )
    summary = summarise(stacks, rate=100, orders=10)
    assert summary["samples"] == 100
    assert summary["cpu_ms_per_order"] == 100.0
    scaled = summarise(stacks, rate=100, orders=10, measured_cpu=0.5)
    assert scaled["cpu_ms_per_order"] == 50.0
    assert scaled["libraries_self_ms_per_order"]["kombu"] == 30.0
    steps = summary["steps_inclusive_ms_per_order"]
    assert steps["task: order_execute (all steps)"] == 40.0
    assert steps["Django: cursor execute (incl. psycopg)"] == 30.0
    libraries = summary["libraries_self_ms_per_order"]
    assert libraries["kombu"] == 60.0 and libraries["django"] == 30.0
    assert libraries["stdlib: json"] == 10.0


def test_orders_executed_together_count_as_the_task_body_not_as_celery(tmp_path: Path) -> None:
    site = "/venv/lib/python3.11/site-packages"
    stacks = tmp_path / "worker.txt"
    stacks.write_text(
        f'process 1:"celery";run ({site}/celery/app/trace.py:1);'
        f"orders_start (/repo/engine/lockstep.py:70);_submit (/repo/engine/lockstep.py:120) 30\n"
        f'process 1:"celery";run ({site}/celery/app/trace.py:1) 10\n'
    )
    steps = summarise(stacks, rate=100, orders=10)["steps_inclusive_ms_per_order"]
    assert steps["task: orders executed together (engine.lockstep)"] == 30.0
    assert steps["  routing, building, submitted for all (one transaction)"] == 30.0
    assert steps["Celery/kombu/billiard outside the task body"] == 10.0
