"""The web process lets a thread hold the interpreter lock for 1 ms before another waiting for it
gets it, instead of Python's 5 (`WEB_SWITCH_INTERVAL_MS`): daphne's event loop thread, which
delivers every update, no longer waits that long behind an HTTP thread running a view. The entry
point daphne loads is imported in a process of its own, as daphne imports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, service_env

PRINT_INTERVAL = "import config.asgi, sys; print(sys.getswitchinterval())"


def _web_entry_point(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRINT_INTERVAL],
        cwd=ROOT,
        env=service_env(WARMUP="0", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("setting", "seconds"), [(None, 0.001), ("2.5", 0.0025)])
def test_the_web_process_switches_threads_every_millisecond_unless_told(
    setting: str | None, seconds: float
) -> None:
    done = _web_entry_point(**({"WEB_SWITCH_INTERVAL_MS": setting} if setting else {}))
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) == pytest.approx(seconds)


@pytest.mark.django_db
@pytest.mark.parametrize("setting", ["0", "-1", "5000", "abc", "nan", ""])
def test_a_switch_interval_that_is_not_a_sensible_number_of_milliseconds_is_refused(
    setting: str,
) -> None:
    done = _web_entry_point(WEB_SWITCH_INTERVAL_MS=setting)
    assert done.returncode != 0
    assert f"WEB_SWITCH_INTERVAL_MS is {setting!r}" in done.stderr
    assert "number of milliseconds from 0.01 to 1000" in done.stderr
