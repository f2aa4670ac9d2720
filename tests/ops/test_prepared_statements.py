"""PostgreSQL plans the engine's hot statements once per connection: parameters are bound by the
server and a statement run twice on a connection is prepared (psycopg's `prepare_threshold`). In
the capacity benchmark that cut PostgreSQL's CPU per order by a quarter (README, Performance).
DB_PREPARE_THRESHOLD=-1 turns it off for a pooler that cannot keep prepared statements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

from engine.rows import order_load

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_a_statement_run_twice_is_prepared_on_its_connection() -> None:
    connection.ensure_connection()
    assert connection.connection.prepare_threshold == 2
    for _ in range(3):
        order_load(uuid.uuid4())
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('FROM "orders_order"' in sql and "$1" in sql for sql in prepared), prepared


def options(**env: str) -> dict[str, object]:
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default']['OPTIONS'], default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_prepared_statements_are_on_by_default_and_can_be_turned_off() -> None:
    default = options()
    assert default["server_side_binding"] is True and default["prepare_threshold"] == 2
    assert options(DB_PREPARE_THRESHOLD="-1")["prepare_threshold"] is None
    assert options(DB_PREPARE_THRESHOLD="0")["prepare_threshold"] == 0
