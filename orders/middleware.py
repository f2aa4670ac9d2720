"""Guards in front of every view: bodies over 16 KiB are refused before they are read, and a
database or Redis outage answers 503 with a JSON body instead of a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from orders.errors import error_body

logger = logging.getLogger("orders.middleware")

#: What a database outage raises: the connection's errors (`OperationalError` also covers a
#: restart, a cancelled statement and a deadlock). Any other database error (a value out of
#: range, a constraint, bad SQL) is the same on every retry: a bug, not "try again shortly".
DATABASE_OUTAGE = (OperationalError, InterfaceError)


class RequestGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BYTES:
            return JsonResponse(
                error_body(
                    "payload_too_large",
                    f"the request body is {length} bytes; the limit is "
                    f"{settings.MAX_REQUEST_BYTES}",
                ),
                status=413,
            )
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """503 for an outage (`DATABASE_OUTAGE`, Redis); any other database error goes to
        Django's 500 handler (a JSON body, the traceback in the log)."""
        if isinstance(exception, DATABASE_OUTAGE):
            logger.warning("database unavailable path=%s error=%s", request.path, exception)
            database_pool_check()
            return _unavailable("database", exception)
        if isinstance(exception, redis.RedisError):
            logger.warning("redis unavailable path=%s error=%s", request.path, exception)
            return _unavailable("redis", exception)
        return None


def database_pool_check() -> None:
    """After a database error, test the pool's idle connections (psycopg's `ConnectionPool.check`)
    and replace the broken ones. A PostgreSQL restart breaks every connection daphne's pool holds
    (DB_POOL=1); without this, each of them would fail one more request with a 503 after
    PostgreSQL is back. With no pool (or PostgreSQL still down) it does nothing that matters."""
    pool = connection.pool
    if pool is None:
        return
    try:
        pool.check()
    except Exception:  # the check is a courtesy: the error being answered is the one to report
        logger.warning("checking the database pool failed", exc_info=True)


def _unavailable(dependency: str, exception: Exception) -> JsonResponse:
    response = JsonResponse(
        error_body(
            "service_unavailable",
            f"the {dependency} is unavailable; try again shortly",
            {
                "dependency": dependency,
                "reason": str(exception).strip().splitlines()[0][:200]
                if str(exception).strip()
                else type(exception).__name__,
            },
        ),
        status=503,
    )
    response["Retry-After"] = "5"
    return response
