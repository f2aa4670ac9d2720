"""Real health checks: a query on PostgreSQL, a PING on Redis, a connection to the broker, and a
ping answered by live Celery workers, each with a short timeout."""

from __future__ import annotations

from typing import Any

from django.db import connection

from config.celery import app as celery_app
from engine.redis import redis_client


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def health_checks(*, worker_timeout: float = 1.0) -> tuple[dict[str, Any], bool]:
    checks: dict[str, Any] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:
        checks["database"], healthy = _first_line(error), False
    try:
        redis_client().ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"], healthy = _first_line(error), False
    broker_errors: tuple[type[Exception], ...] = ()
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
            broker_errors = conn.connection_errors
        checks["broker"] = "ok"
    except Exception as error:
        checks["broker"], healthy = _first_line(error), False
    try:
        replies = _workers_ping(worker_timeout, broker_errors) if checks["broker"] == "ok" else []
        checks["workers"] = len(replies)
        if not replies:
            healthy = False
            checks["workersError"] = "no Celery worker answered the ping"
    except Exception as error:
        checks["workers"], healthy = 0, False
        checks["workersError"] = _first_line(error)
    return checks, healthy


def _workers_ping(timeout: float, errors: tuple[type[Exception], ...]) -> list[Any]:
    """The live workers' replies. A connection the broker pool kept from before a Redis restart
    fails its first command ("Connection closed by server", one of the broker's `errors`) and
    then reconnects: the broker has just answered, so one more try tells the truth about the
    workers instead of a false alarm."""
    try:
        return celery_app.control.ping(timeout=timeout) or []
    except errors:
        return celery_app.control.ping(timeout=timeout) or []
