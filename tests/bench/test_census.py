"""bench.census's PostgreSQL column: the CPU time of the census's own backend, read from /proc,
must be that backend's and must grow with the work the server does for it."""

from __future__ import annotations

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
