"""Several runs of one scenario read as one result (`python -m bench <scenario> --repeat N`).

On these shared two-core machines a latency tail moves from one run to the next by as much as the
distance to its target, so one run can pass or miss by luck. Each target names how several runs
are judged (`bench.scenarios.target`):

- "median": speed (a percentile, a rate, CPU per order) is judged on the median run. With an
  even number of runs it takes the worse of the two middle ones, so that it is always a value
  some run measured and never the lucky one.
- "every run": what must hold each time (nothing lost, nothing missing, every order accepted,
  never more executing at once than allowed) is judged on the worst run.

The result keeps every run's value of every target, and shows one run in full (its tables, its
distributions): the median run of the scenario's headline target (POST p99 for `api`).
"""

from __future__ import annotations

from typing import Any

from bench.scenarios import meets


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        raise ValueError("no runs to combine")
    if len(runs) == 1:
        return runs[0]
    names = [[t["name"] for t in run.get("targets", [])] for run in runs]
    if any(n != names[0] for n in names):
        raise ValueError("the runs do not have the same targets: not the same scenario")
    targets = []
    for i, first in enumerate(runs[0].get("targets", [])):
        values = [run["targets"][i]["value"] for run in runs]
        value = judged(values, first["op"], first["goal"], first["judge"])
        targets.append(
            {
                **first,
                "value": value,
                "ok": meets(value, first["op"], first["goal"]),
                "runs": values,
            }
        )
    shown = _shown(targets)
    result = {key: value for key, value in runs[shown].items() if key != "targets"}
    result["targets"] = targets
    result["repeats"] = {
        "runs": len(runs),
        "shown": shown + 1,
        "started_at": [run.get("started_at") for run in runs],
        "targets": {t["name"]: t["runs"] for t in targets},
    }
    return result


def judged(values: list[Any], op: str, goal: float, judge: str) -> Any:
    """The value a target is judged on: `None` if any run could not measure it."""
    if any(v is None for v in values):
        return None
    if judge == "median":
        ordered = sorted(values, key=lambda v: _badness(v, op, goal))
        return ordered[len(ordered) // 2]  # the upper middle: the worse of two
    if judge == "every run":
        return max(values, key=lambda v: _badness(v, op, goal))
    raise ValueError(f"unknown judge {judge!r}")


def _badness(value: Any, op: str, goal: float) -> float:
    """Larger is worse: a higher value for "<=", a lower one for ">=", a farther one for "=="."""
    if op == "<=":
        return float(value)
    if op == ">=":
        return -float(value)
    return abs(float(value) - goal)


def _shown(targets: list[dict[str, Any]]) -> int:
    """The index of the median run of the headline target (or of the first target judged by the
    median; the first run if there is none, or if that target went unmeasured in some run)."""
    by_median = [t for t in targets if t["judge"] == "median"]
    chosen = next((t for t in by_median if t.get("headline")), by_median[0] if by_median else None)
    if chosen is None or chosen["value"] is None:
        return 0
    return chosen["runs"].index(chosen["value"])
