"""A shortened chaos run (scripts/chaos.py): 60 orders over HTTP and WebSockets while a worker
node, Redis, PostgreSQL and the other worker node are killed and restarted, against private
servers. The script checks the invariants itself (every order terminal, at most one landed swap,
seq 1..n, exactly the accepted orders stored, every event delivered to its subscriber) and
exits 1 on any violation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_short_chaos_run_keeps_every_invariant() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--orders", "60", "--rate", "4", "--seed", "11"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = result.stdout + result.stderr[-3000:]
    assert result.returncode == 0, output
    summary = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    assert summary["orders"] == 60 and summary["violations"] == 0, output
    assert len(summary["chaos"]) == 8, output  # four faults inflicted, four recoveries
    assert summary["eventsReceived"] == summary["eventsStored"], output
