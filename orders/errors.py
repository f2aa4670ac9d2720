"""Every error a client can cause, as `{"error", "message", "details"}` with the right 4xx code:
DRF exceptions, the engine's domain errors, rate limiting, oversized bodies and unknown URLs."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from engine.errors import (
    IdempotencyConflict,
    IllegalTransition,
    OrderConflict,
    OrderError,
    OrderNotFound,
    OrderRejected,
)

logger = logging.getLogger("orders.errors")


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": code, "message": message, "details": details or {}}


def error_response(
    http_status: int, code: str, message: str, details: dict[str, Any] | None = None, **kw: Any
) -> Response:
    return Response(error_body(code, message, details), status=http_status, **kw)


class RateLimitedError(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many orders from this client; slow down")
        self.retry_after = max(int(retry_after), 1)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        items = [_flatten(v) for v in detail]
        return items[0] if len(items) == 1 and isinstance(items[0], str) else items
    return str(detail)


_DOMAIN_STATUS: list[tuple[type[OrderError], int]] = [
    (OrderNotFound, 404),
    (IdempotencyConflict, 409),
    (OrderConflict, 409),
    (IllegalTransition, 409),
    (OrderRejected, 422),
]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OrderError):
        code = next((s for cls, s in _DOMAIN_STATUS if isinstance(exc, cls)), 400)
        return error_response(code, exc.code, exc.message, exc.details)
    if isinstance(exc, Ratelimited):
        exc = RateLimitedError(60)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge("the request body is larger than 16 KiB")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django's handler500 answer (JSON, no trace)
    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail)
        if not isinstance(details, dict):
            details = {"nonFieldErrors": details if isinstance(details, list) else [details]}
        fields = ", ".join(details) or "the request"
        response.data = error_body("validation_error", f"invalid fields: {fields}", details)
        return response
    code = {
        exceptions.ParseError: "malformed_json",
        exceptions.UnsupportedMediaType: "unsupported_media_type",
        exceptions.NotFound: "not_found",
        exceptions.MethodNotAllowed: "method_not_allowed",
        exceptions.NotAuthenticated: "not_authenticated",
        exceptions.AuthenticationFailed: "not_authenticated",
        exceptions.PermissionDenied: "forbidden",
        exceptions.NotAcceptable: "not_acceptable",
    }.get(type(exc), getattr(exc, "default_code", "error"))
    message = str(getattr(exc, "detail", exc))
    if isinstance(exc, exceptions.UnsupportedMediaType):
        message = "send the order as JSON (Content-Type: application/json)"
    if isinstance(exc, exceptions.ParseError):
        message = f"the body is not valid JSON: {message.removeprefix('JSON parse error - ')}"
    response.data = error_body(code, message)
    if isinstance(exc, RateLimitedError):
        response["Retry-After"] = str(exc.retry_after)
    return response


# --- plain Django views for what never reaches DRF ---------------------------------------------


def ratelimited_view(request: HttpRequest, exception: Exception) -> JsonResponse:
    response = JsonResponse(error_body("rate_limited", "too many requests; slow down"), status=429)
    response["Retry-After"] = "60"
    return response


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"nothing at {request.path}"), status=404)


def server_error_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "the server failed to answer; the error was logged"),
        status=500,
    )


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(
            error_body("payload_too_large", "the request body is larger than 16 KiB"), status=413
        )
    return JsonResponse(error_body("bad_request", "the request could not be read"), status=400)
