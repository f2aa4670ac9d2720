"""The engine's domain errors: one small hierarchy that the faces map to HTTP or WebSocket
answers. Services raise these, never HTTP errors."""

from __future__ import annotations

from typing import Any


class OrderError(Exception):
    code = "order_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class OrderNotFound(OrderError):
    code = "not_found"


class IllegalTransition(OrderError):
    """The state machine refused a status change."""

    code = "illegal_transition"


class OrderConflict(OrderError):
    """The order is not in a state that allows the request (cancel after routing, ...)."""

    code = "conflict"


class IdempotencyConflict(OrderError):
    code = "idempotency_conflict"


class OrderRejected(OrderError):
    """A well-formed order the market cannot take (no route, beyond any reserve)."""

    def __init__(self, message: str, *, code: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.code = code
