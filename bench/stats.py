"""The benchmark's arithmetic, kept free of I/O so that it can be unit-tested: percentiles, the
seq-gap checker, the executing-at-once sweep and throughput from event timestamps."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

#: Statuses after which an order changes no more by itself (a `failed` event that announces
#: another attempt is not one of them: see `is_final`).
TERMINAL = frozenset({"confirmed", "failed", "cancelled", "expired"})
#: Events that end an attempt that was executing.
ATTEMPT_END = frozenset({"confirmed", "failed", "cancelled", "expired"})
#: The steps an order's history should show as it executes.
EXECUTING = frozenset({"routing", "building", "submitted"})

LADDER = (*range(0, 100), 99.5, 99.9, 100)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, interpolating linearly between the
    two nearest ranks (numpy's default), so that p50 of [1, 2] is 1.5."""
    if not sorted_values:
        raise ValueError("percentile of nothing")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def summary(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, mean, min, p50, p90, p95, p99, p99.9 and max; None for each when there is nothing."""
    data = sorted(values)
    keys = ("mean", "min", "p50", "p90", "p95", "p99", "p999", "max")
    if not data:
        return {"count": 0, **dict.fromkeys(keys)}
    return {
        "count": len(data),
        "mean": sum(data) / len(data),
        "min": data[0],
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "p999": percentile(data, 99.9),
        "max": data[-1],
    }


def ladder(values: Iterable[float]) -> list[list[float]]:
    """[[q, value], ...] for q = 0, 1, ... 99, 99.5, 99.9, 100: the distribution's shape in a
    few hundred bytes of JSON, enough to redraw its CDF."""
    data = sorted(values)
    if not data:
        return []
    return [[q, round(percentile(data, q), 4)] for q in LADDER]


def parse_ts(text: str) -> float:
    """An API timestamp (ISO-8601 UTC, `Z`) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def is_final(event: dict[str, Any]) -> bool:
    """True when this update is the order's last: a terminal status, except a `failed` that
    announces another attempt (`willRetry: true`)."""
    if event.get("status") not in TERMINAL:
        return False
    return not (event["status"] == "failed" and event.get("willRetry"))


@dataclass(frozen=True, slots=True)
class SeqCheck:
    """What one client received of one order, against what it should have received."""

    received: int
    missing: int
    out_of_order: int
    duplicates: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.out_of_order or self.duplicates)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def check_seqs(seqs: Sequence[int], *, last: int | None = None, first: int = 1) -> SeqCheck:
    """Check the seqs one client received for one order, in the order it received them.

    `last` is the order's last seq as persisted (defaults to the highest received): every seq
    from `first` to `last` should arrive exactly once and in rising order."""
    top = max(seqs, default=first - 1) if last is None else last
    seen: set[int] = set()
    duplicates = out_of_order = 0
    highest = first - 1
    for seq in seqs:
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            out_of_order += 1
        highest = max(highest, seq)
    missing = sum(1 for seq in range(first, top + 1) if seq not in seen)
    return SeqCheck(
        received=len(seqs), missing=missing, out_of_order=out_of_order, duplicates=duplicates
    )


def history_ok(events: Sequence[dict[str, Any]]) -> bool:
    """A persisted history is seq 1, 2, 3, ... with no gap, ending final."""
    seqs = [e["seq"] for e in events]
    return seqs == list(range(1, len(seqs) + 1)) and bool(events) and is_final(events[-1])


def executing_intervals(
    events: Sequence[dict[str, Any]], *, open_until: float | None = None
) -> list[tuple[float, float]]:
    """[start, end) of every attempt of one order: from its `routing` event to the event that
    ended the attempt (confirmed, failed, ...). An attempt still open ends at `open_until`."""
    intervals: list[tuple[float, float]] = []
    start: float | None = None
    for event in sorted(events, key=lambda e: e["seq"]):
        ts = event["ts"] if "ts" in event else parse_ts(event["timestamp"])
        if event["status"] == "routing":
            if start is not None:  # a routing without an end: the history is broken; close it
                intervals.append((start, ts))
            start = ts
        elif event["status"] in ATTEMPT_END and start is not None:
            intervals.append((start, ts))
            start = None
    if start is not None and open_until is not None:
        intervals.append((start, open_until))
    return intervals


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals [start, end) open at one instant (an end at t closes before a start at
    t opens, so back-to-back attempts do not count twice)."""
    points: list[tuple[float, int]] = []
    for start, end in intervals:
        points.append((start, 1))
        points.append((end, -1))
    points.sort(key=lambda p: (p[0], p[1]))
    current = best = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def rate_per_second(count: int, start: float | None, end: float | None) -> float | None:
    """count / (end - start); None when the window is empty or undefined."""
    if start is None or end is None or end <= start or count <= 0:
        return None
    return count / (end - start)


def steady_rate(times: Sequence[float], *, trim: float = 0.1) -> float | None:
    """Completions per second between the `trim` and `1 - trim` quantiles of their times: the
    rate once the pipeline is full, without the ramp-up and the drain."""
    data = sorted(times)
    if len(data) < 10:
        return None
    low = int(len(data) * trim)
    high = int(len(data) * (1 - trim)) - 1
    return rate_per_second(high - low, data[low], data[high])


def per_window(times: Iterable[float], *, start: float, width: float = 60.0) -> list[int]:
    """How many of `times` fall in each window of `width` seconds from `start`."""
    counts: list[int] = []
    for t in sorted(times):
        index = int((t - start) // width)
        if index < 0:
            continue
        while len(counts) <= index:
            counts.append(0)
        counts[index] += 1
    return counts
