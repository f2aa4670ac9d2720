"""Fixtures for the fault tests: private Redis and PostgreSQL servers (never the machine's own on
6379 and 5432) and stacks of the engine's real processes, all stopped afterwards whatever
happened."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from scripts.faultkit import PrivatePostgres, Stack


def shared_test_database_url() -> str:
    db = connection.settings_dict
    host, port = db["HOST"] or "localhost", db["PORT"] or 5432
    return f"postgres://{db['USER'] or ''}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """`stacks(database_url, redis_url, **settings)`: a Stack whose processes are stopped after
    the test (before the test database is flushed, when the test uses it)."""
    made: list[Stack] = []

    def make(database_url: str, redis_url: str, **settings: Any) -> Stack:
        stack = Stack(database_url, redis_url, tmp_path, {k: str(v) for k, v in settings.items()})
        made.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in made:
            stack.close()
