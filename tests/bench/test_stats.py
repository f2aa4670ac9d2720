"""The benchmark's arithmetic: percentiles, the seq-gap checker, the executing-at-once sweep and
throughput from event timestamps. Pure functions: no database, no network, no timing."""

from __future__ import annotations

import pytest

from bench.stats import (
    check_seqs,
    executing_intervals,
    history_ok,
    is_final,
    ladder,
    max_overlap,
    parse_ts,
    per_window,
    percentile,
    rate_per_second,
    steady_rate,
    summary,
)


def test_percentiles_interpolate_between_ranks_like_numpy() -> None:
    data = [1.0, 2.0, 3.0, 4.0]
    assert percentile(data, 0) == 1.0
    assert percentile(data, 100) == 4.0
    assert percentile(data, 50) == 2.5
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)


def test_a_percentile_of_nothing_or_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_reports_the_tail_and_is_empty_safe() -> None:
    s = summary([5.0, 1.0, 3.0])
    assert s["count"] == 3 and s["min"] == 1.0 and s["max"] == 5.0 and s["p50"] == 3.0
    assert s["mean"] == pytest.approx(3.0)
    empty = summary([])
    assert empty["count"] == 0 and empty["p99"] is None


def test_the_ladder_redraws_the_distribution_from_a_few_points() -> None:
    points = ladder(float(i) for i in range(1000))
    assert points[0] == [0, 0.0] and points[-1] == [100, 999.0]
    assert [q for q, _ in points][-3:] == [99.5, 99.9, 100]
    assert ladder([]) == []


def test_timestamps_parse_as_epoch_seconds_with_milliseconds() -> None:
    assert parse_ts("1970-01-01T00:00:01.250Z") == pytest.approx(1.25)


def test_a_failed_update_that_announces_a_retry_is_not_final() -> None:
    assert is_final({"status": "confirmed"})
    assert is_final({"status": "failed", "willRetry": False})
    assert not is_final({"status": "failed", "willRetry": True})
    assert not is_final({"status": "submitted"})
    assert is_final({"status": "cancelled"}) and is_final({"status": "expired"})


def test_a_complete_delivery_passes_the_seq_check() -> None:
    check = check_seqs([1, 2, 3, 4, 5], last=5)
    assert check.ok and check.received == 5


def test_a_gap_is_counted_as_missing() -> None:
    check = check_seqs([1, 2, 4, 5], last=5)
    assert check.missing == 1 and not check.ok


def test_updates_that_never_came_at_the_end_are_missing_too() -> None:
    assert check_seqs([1, 2, 3], last=5).missing == 2
    assert check_seqs([], last=3).missing == 3


def test_a_late_update_is_out_of_order_and_a_repeat_is_a_duplicate() -> None:
    check = check_seqs([1, 3, 2, 4, 4], last=4)
    assert check.out_of_order == 1
    assert check.duplicates == 1
    assert check.missing == 0


def test_without_a_known_last_seq_the_highest_received_is_the_end() -> None:
    assert check_seqs([1, 2, 3]).ok
    assert check_seqs([2, 3]).missing == 1


def test_a_persisted_history_must_be_contiguous_and_end_final() -> None:
    good = [{"seq": 1, "status": "pending"}, {"seq": 2, "status": "confirmed"}]
    assert history_ok(good)
    assert not history_ok([{"seq": 1, "status": "pending"}, {"seq": 3, "status": "confirmed"}])
    assert not history_ok([{"seq": 1, "status": "pending"}])
    assert not history_ok([])


def _events(*pairs: tuple[str, float], retry_at: int | None = None) -> list[dict[str, object]]:
    events = []
    for seq, (status, ts) in enumerate(pairs, start=1):
        event: dict[str, object] = {"seq": seq, "status": status, "ts": ts}
        if status == "failed":
            event["willRetry"] = seq == retry_at
        events.append(event)
    return events


def test_an_attempt_executes_from_routing_to_its_end() -> None:
    events = _events(("pending", 0), ("routing", 1), ("building", 2), ("confirmed", 4))
    assert executing_intervals(events) == [(1, 4)]


def test_a_retried_order_executes_once_per_attempt() -> None:
    events = _events(
        ("pending", 0),
        ("routing", 1),
        ("failed", 2),
        ("routing", 5),
        ("confirmed", 7),
        retry_at=3,
    )
    assert executing_intervals(events) == [(1, 2), (5, 7)]


def test_an_attempt_still_open_ends_where_told() -> None:
    events = _events(("pending", 0), ("routing", 1), ("submitted", 2))
    assert executing_intervals(events) == []
    assert executing_intervals(events, open_until=9) == [(1, 9)]


def test_intervals_read_timestamps_as_the_api_writes_them() -> None:
    events = [
        {"seq": 1, "status": "routing", "timestamp": "1970-01-01T00:00:01.000Z"},
        {"seq": 2, "status": "confirmed", "timestamp": "1970-01-01T00:00:03.500Z"},
    ]
    assert executing_intervals(events) == [(1.0, 3.5)]


def test_overlap_counts_what_runs_at_the_same_instant() -> None:
    assert max_overlap([(0, 10), (1, 2), (1.5, 3), (5, 6)]) == 3
    assert max_overlap([]) == 0


def test_back_to_back_attempts_do_not_overlap() -> None:
    assert max_overlap([(0, 1), (1, 2), (2, 3)]) == 1


def test_rates_from_timestamps() -> None:
    assert rate_per_second(100, 10.0, 20.0) == 10.0
    assert rate_per_second(5, 3.0, 3.0) is None
    assert rate_per_second(0, 0.0, 1.0) is None
    assert rate_per_second(5, None, 1.0) is None


def test_the_steady_rate_ignores_ramp_up_and_drain() -> None:
    # 100 completions one per second, with a slow start and a long tail added.
    times = [0.0, 30.0, *[100.0 + i for i in range(100)], 400.0]
    assert steady_rate(times) == pytest.approx(1.0, rel=0.05)
    assert steady_rate([1.0, 2.0]) is None


def test_completions_are_counted_per_minute_window() -> None:
    assert per_window([0, 10, 59.9, 60, 130], start=0) == [3, 1, 1]
    assert per_window([], start=0) == []
