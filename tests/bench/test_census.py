"""bench.census: its PostgreSQL column (the CPU time of the census's own backend, read from
/proc) must be that backend's and must grow with the work the server does for it; and the census
runs, one order at a time or several together."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.db import connection

from bench.census import Backend

pytestmark = pytest.mark.django_db


def test_the_backend_cpu_is_this_connections_and_grows_with_its_work() -> None:
    backend = Backend(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert backend.pid == cursor.fetchone()[0]
        before = backend.cpu()
        assert before is not None and before >= 0
        cursor.execute("SELECT count(*) FROM generate_series(1, 5000000)")
        after = backend.cpu()
    assert after is not None and after - before >= 0.05  # 5 M rows: well over 50 ms of CPU


def test_a_backend_that_cannot_be_read_gives_none() -> None:
    backend = Backend(connection)
    backend.pid = 2**22 + 1  # past Linux's largest pid: no such process
    assert backend.cpu() is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(("together", "pause"), [(1, None), (2, None), (1, "5")])
def test_the_census_counts_orders_executed_one_at_a_time_and_together(together, pause) -> None:
    """The census run as documented, on this test's database and Redis: every order confirmed
    (it asserts so itself), and its table names the task's step; `--pause` sleeps between
    orders."""
    from tests.conftest import service_env

    env = service_env(DEX_QUOTE_LATENCY_MS="0", DEX_EXECUTION_LATENCY_MS="0")
    command = ["-m", "bench.census", "--orders", "4", "--warmup", "2", "--together", str(together)]
    command += ["--pause", pause] if pause else []
    result = subprocess.run(
        [sys.executable, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    step = "order_execute (the task)" if together == 1 else "execute_orders (the task, 2 together)"
    assert step in result.stdout
    how = "one at a time" if together == 1 else "2 together"
    how += f", {pause} ms pause after each" if pause else ""
    assert f"4 orders, {how}, in-process" in result.stdout
