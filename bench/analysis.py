"""From what the clients recorded and what the engine persisted to the numbers the report shows:
latencies, throughput from the events' timestamps, lost orders, seq gaps per client, and how many
orders were executing at once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.client import Delivery, Drive
from bench.stats import (
    check_seqs,
    executing_intervals,
    history_ok,
    is_final,
    max_overlap,
    parse_ts,
    per_window,
    rate_per_second,
    steady_rate,
    summary,
)

# A timestamp has millisecond resolution (truncated): an update committed just after a client
# subscribed may carry a time up to 1 ms before the subscription.
TS_RESOLUTION = 0.001


def _round(d: dict[str, Any], places: int = 3) -> dict[str, Any]:
    return {k: round(v, places) if isinstance(v, float) else v for k, v in d.items()}


def _channel(
    deliveries: dict[str, list[Delivery]],
    last_seq: dict[str, int],
    *,
    live_after: dict[str, float] | None = None,
    skip_first: bool = False,
) -> tuple[dict[str, Any], list[float]]:
    """Seq checks and delivery latencies of one kind of client.

    `live_after[id]`: only updates committed after that instant count for latency (earlier ones
    were replayed from the database when the client subscribed). `skip_first`: the `pending`
    update of an order submitted over its socket comes by replay after `order.accepted`."""
    latencies: list[float] = []
    by_status: dict[str, list[float]] = {}
    totals = Counter()
    bad_orders = 0
    for order_id, last in last_seq.items():
        got = deliveries.get(order_id, [])
        check = check_seqs([d.seq for d in got], last=last)
        totals.update(check.as_dict())
        bad_orders += not check.ok
        since = (live_after or {}).get(order_id)
        for d in got:
            if skip_first and d.seq == 1:
                continue
            if since is not None and d.ts < since - TS_RESOLUTION:
                continue
            latencies.append((d.recv - d.ts) * 1000)
            by_status.setdefault(d.status, []).append(latencies[-1])
    return {
        "orders": len(last_seq),
        "updates_received": totals["received"],
        "missing": totals["missing"],
        "out_of_order": totals["out_of_order"],
        "duplicates": totals["duplicates"],
        "orders_with_gaps": bad_orders,
        "latency_ms": _round(summary(latencies)),
        "latency_ms_by_status": {
            status: {k: v for k, v in _round(summary(values)).items() if k in ("p50", "p99")}
            for status, values in by_status.items()
        },
    }, latencies


def analyse(
    drive: Drive,
    histories: dict[str, Any],
    *,
    firehose: bool,
    sockets: str | None,
    executing_limit: int | None = None,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """`sockets`: None, "submit" (each order submitted over its own socket) or "follow" (a
    socket opened on `/ws/orders/<id>` after the POST)."""
    runs = drive.runs
    answered = [r for r in runs if r.answered is not None]
    accepted = [r for r in runs if r.order_id]
    refused = Counter(
        str(r.http_status) if r.http_status else (r.error or "no answer").split(":")[0]
        for r in runs
        if not r.order_id
    )
    metrics: dict[str, Any] = {
        "submitted": len(runs),
        "accepted": len(accepted),
        "refused": dict(refused),
        "submit_latency_ms": _round(summary(r.latency_ms for r in accepted if r.latency_ms)),
        "submit_service_ms": _round(summary(r.service_ms for r in accepted if r.service_ms)),
        "unanswered": len(runs) - len(answered),
    }
    dist: dict[str, list[float]] = {
        "submit latency (ms)": [r.latency_ms for r in accepted if r.latency_ms is not None],
    }

    # What PostgreSQL says happened (GET /api/orders/<id> after the run).
    last_seq: dict[str, int] = {}
    lost: list[str] = []
    broken: list[str] = []
    statuses: Counter[str] = Counter()
    pending_ts: dict[str, float] = {}
    final_ts: dict[str, float] = {}
    first_start: dict[str, float] = {}
    intervals: list[tuple[float, float]] = []
    retries = 0
    for run in accepted:
        order_id = run.order_id
        assert order_id is not None
        history = histories.get(order_id)
        events = (history or {}).get("events") or []
        if not events or not is_final(events[-1]):
            lost.append(order_id)
            if events:
                last_seq[order_id] = events[-1]["seq"]
            continue
        if not history_ok(events):
            broken.append(order_id)
        last_seq[order_id] = events[-1]["seq"]
        statuses[events[-1]["status"]] += 1
        pending_ts[order_id] = parse_ts(events[0]["timestamp"])
        final_ts[order_id] = parse_ts(events[-1]["timestamp"])
        starts = [parse_ts(e["timestamp"]) for e in events if e["status"] == "routing"]
        if starts:
            first_start[order_id] = starts[0]
        retries += sum(1 for e in events if e["status"] == "failed" and e.get("willRetry"))
        intervals.extend(executing_intervals(events))

    finished = len(final_ts)
    window_start = min(pending_ts.values(), default=None)
    window_end = max(final_ts.values(), default=None)
    overall = rate_per_second(finished, window_start, window_end)
    steady = steady_rate(list(final_ts.values()))
    starts_sorted = sorted(first_start.values())
    start_rate = (
        rate_per_second(len(starts_sorted) - 1, starts_sorted[0], starts_sorted[-1])
        if len(starts_sorted) > 1
        else None
    )
    server_e2e = [(final_ts[i] - pending_ts[i]) * 1000 for i in final_ts]
    client_e2e = [
        (r.final_recv - r.due_wall) * 1000
        for r in accepted
        if r.final_recv is not None and r.due_wall is not None
    ]
    dist["submission → final, client (ms)"] = client_e2e
    metrics.update(
        {
            "final": finished,
            "final_statuses": dict(statuses),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "persisted_history_gaps": len(broken),
            "retried_attempts": retries,
            "throughput": {
                "orders_per_second": round(overall, 2) if overall else None,
                "orders_per_minute": round(overall * 60, 1) if overall else None,
                "steady_orders_per_second": round(steady, 2) if steady else None,
                "steady_orders_per_minute": round(steady * 60, 1) if steady else None,
                "new_orders_started_per_minute": round(start_rate * 60, 1) if start_rate else None,
                "window_seconds": round(window_end - window_start, 3)
                if window_start and window_end
                else None,
                "completed_per_minute_window": per_window(final_ts.values(), start=window_start)
                if window_start
                else [],
            },
            "max_executing_at_once": max_overlap(intervals),
            "executing_limit": executing_limit,
            "submission_to_final_server_ms": _round(summary(server_e2e)),
            "submission_to_final_client_ms": _round(summary(client_e2e)),
        }
    )

    deliveries: dict[str, Any] = {}
    all_latencies: list[float] = []
    if firehose:
        report, lat = _channel(drive.firehose_ours(), last_seq)
        report["reconnects"] = drive.firehose_drops
        report["other_orders_updates"] = drive.firehose_other
        deliveries["firehose"] = report
        dist["WebSocket delivery, firehose (ms)"] = lat
        all_latencies += lat
    if sockets:
        socket_deliveries = {r.order_id: r.socket for r in accepted if r.order_id}
        live_after = {
            r.order_id: r.subscribed_wall for r in accepted if r.order_id and r.subscribed_wall
        }
        report, lat = _channel(
            socket_deliveries,
            last_seq,
            live_after=live_after if sockets == "follow" else None,
            skip_first=sockets == "submit",
        )
        report["how"] = (
            "each order submitted over its own socket (ws://…/api/orders/execute); latency of "
            "the live updates (seq ≥ 2)"
            if sockets == "submit"
            else "a socket on /ws/orders/<id> opened after the POST answered; latency of the "
            "updates committed after it subscribed (earlier ones came by replay)"
        )
        deliveries["order sockets"] = report
        dist["WebSocket delivery, order sockets (ms)"] = lat
        all_latencies += lat
    if deliveries:
        metrics["deliveries"] = deliveries
        metrics["delivery_latency_ms"] = _round(summary(all_latencies))
        metrics["missing_updates"] = sum(d["missing"] for d in deliveries.values())
        metrics["out_of_order_updates"] = sum(
            d["out_of_order"] + d["duplicates"] for d in deliveries.values()
        )
    metrics["load_generator_loop_lag_ms"] = _round(summary(drive.loop_lag_ms))
    metrics["read_back_errors"] = drive.read_back_errors[:10]
    metrics["finals_found_by_polling"] = drive.polled_finals
    return metrics, dist
