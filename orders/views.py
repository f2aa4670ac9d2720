"""The REST API (API.md). Views stay thin: parse with a serializer, call one service or selector,
render."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dex.router import route_best
from dex.tokens import to_units, token_get
from dex.types import DexError, NoRouteError
from engine.cache import order_cache_get
from engine.health import health_checks
from engine.services import order_cancel, order_requeue, order_submit
from engine.wire import order_to_dict
from orders import schema
from orders.errors import RateLimitedError, error_response
from orders.selectors import (
    InvalidCursor,
    order_events,
    order_get,
    order_list,
    order_metrics,
)
from orders.serializers import (
    OrderListQuerySerializer,
    OrderSubmitSerializer,
    QuoteQuerySerializer,
)

logger = logging.getLogger("orders.api")

ERROR_SCHEMA = schema.ERROR
#: Every endpoint that touches PostgreSQL or Redis answers 503 while either is down.
UNAVAILABLE = {503: schema.UNAVAILABLE}


def client_address(group: str, request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind trusted proxies (API_TRUST_PROXY) the
    X-Forwarded-For entry API_PROXY_HOPS from the right. Not the first entry: a client writes
    that one itself, and a fresh fake address per request would escape the rate limit."""
    if settings.API_TRUST_PROXY:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(hops) >= settings.API_PROXY_HOPS >= 1:
            candidate = hops[-settings.API_PROXY_HOPS]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass  # not an address our proxy wrote: fall back to the peer
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def submission_rate(group: str, request: HttpRequest) -> str | None:
    rate = settings.API_RATE_LIMIT
    return None if not rate or rate.strip() == "0" else rate


def enforce_rate_limit(request: HttpRequest) -> None:
    usage = get_usage(
        request,
        group="orders.submit",
        key=client_address,
        rate=submission_rate,
        method=["POST"],
        increment=True,
    )
    if usage is not None and usage["should_limit"]:
        raise RateLimitedError(usage["time_left"])


def order_response(order: Any, *, http_status: int = 200, **kw: Any) -> Response:
    return Response(order_to_dict(order, order_events(order)), status=http_status, **kw)


class OrderExecuteView(APIView):
    """Submit an order. The same path speaks WebSocket (see the consumers)."""

    @extend_schema(
        request=OrderSubmitSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="the same key with the same body returns the original order",
            )
        ],
        responses={
            201: schema.OrderSchema,
            200: schema.OrderSchema,
            400: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
            413: ERROR_SCHEMA,
            415: ERROR_SCHEMA,
            422: ERROR_SCHEMA,
            429: ERROR_SCHEMA,
            **UNAVAILABLE,
        },
        summary="Submit a market, limit or sniper order",
    )
    def post(self, request: Request) -> Response:
        enforce_rate_limit(request._request)
        serializer = OrderSubmitSerializer(data=_json_object(request.data))
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and not (0 < len(key) <= 255):
            return error_response(
                400,
                "validation_error",
                "Idempotency-Key is too long",
                {"Idempotency-Key": "at most 255 characters"},
            )
        order, created = order_submit(request=serializer.to_request(), idempotency_key=key)
        headers = {"Location": f"/api/orders/{order.pk}"}
        if created:  # a new order has exactly its first event: no need to read it back
            body = order_to_dict(order, [order.created_event])
            return Response(body, status=status.HTTP_201_CREATED, headers=headers)
        return order_response(order, headers=headers)


def _json_object(data: Any) -> Any:
    if not isinstance(data, dict):
        raise serializers.ValidationError(
            {"nonFieldErrors": ["the body must be a JSON object describing one order"]}
        )
    return data


class OrderDetailView(APIView):
    @extend_schema(
        responses={200: schema.OrderSchema, 404: ERROR_SCHEMA, **UNAVAILABLE},
        summary="One order with its full event history",
    )
    def get(self, request: Request, order_id: str) -> Response:
        cached = order_cache_get(order_id) if _is_uuid(order_id) else None
        if cached is not None:
            return Response(cached)
        order = order_get(order_id)
        if order is None:
            return error_response(404, "not_found", f"no order {order_id}")
        return order_response(order)


def _is_uuid(value: str) -> bool:
    from uuid import UUID

    try:
        UUID(value)
    except ValueError:
        return False
    return True


class OrderListView(APIView):
    @extend_schema(
        parameters=[OrderListQuerySerializer],
        responses={200: schema.OrderListSchema, 400: ERROR_SCHEMA, **UNAVAILABLE},
        operation_id="orders_list",
        summary="Orders, newest first, with metrics",
    )
    def get(self, request: Request) -> Response:
        query = OrderListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            orders, next_cursor, total = order_list(
                status=params.get("status"),
                wallet_address=params.get("walletAddress"),
                order_type=params.get("orderType"),
                limit=params["limit"],
                cursor=params.get("cursor"),
                page=params.get("page"),
            )
        except InvalidCursor as error:
            return error_response(400, "validation_error", str(error), {"cursor": str(error)})
        body: dict[str, Any] = {
            "results": [order_to_dict(o) for o in orders],
            "nextCursor": next_cursor,
            "metrics": order_metrics(),
        }
        if total is not None:
            body["count"] = total
            body["page"] = params["page"]
        return Response(body)


class OrderCancelView(APIView):
    @extend_schema(
        request=None,
        responses={
            200: schema.OrderSchema,
            404: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
            **UNAVAILABLE,
        },
        summary="Cancel an order that has not started routing",
    )
    def post(self, request: Request, order_id: str) -> Response:
        if not _is_uuid(order_id):
            return error_response(404, "not_found", f"no order {order_id}")
        return order_response(order_cancel(order_id=order_id))


class IsStaff(permissions.BasePermission):
    message = "only staff may requeue orders"

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class OrderRequeueView(APIView):
    # Token first: an anonymous client is told how to authenticate (401 with WWW-Authenticate:
    # Token); with the session first DRF would answer 403 to everyone. A signed-in non-staff user
    # gets 403. A browser session still needs its CSRF token.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]

    @extend_schema(
        request=None,
        responses={
            200: schema.OrderSchema,
            401: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            404: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
            **UNAVAILABLE,
        },
        summary="Staff: send a failed or expired order back to pending",
    )
    def post(self, request: Request, order_id: str) -> Response:
        if not _is_uuid(order_id):
            return error_response(404, "not_found", f"no order {order_id}")
        return order_response(order_requeue(order_id=order_id, by=request.user.get_username()))


class QuoteView(APIView):
    @extend_schema(
        parameters=[QuoteQuerySerializer],
        responses={200: schema.QuoteSchema, 400: ERROR_SCHEMA, 422: ERROR_SCHEMA, **UNAVAILABLE},
        summary="Every venue's quote and the best route, without executing",
    )
    def get(self, request: Request) -> Response:
        query = QuoteQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        token_in = token_get(query.validated_data["tokenIn"])
        token_out = token_get(query.validated_data["tokenOut"])
        amount = query.validated_data["amountIn"]
        try:
            decision = route_best(
                token_in=token_in, token_out=token_out, amount_in=to_units(amount, token_in)
            )
        except NoRouteError as error:
            return error_response(
                422,
                "no_route",
                str(error),
                {"tokenIn": token_in.symbol, "tokenOut": token_out.symbol},
            )
        except DexError as error:
            return error_response(422, error.code, str(error))
        return Response(
            {
                "tokenIn": token_in.symbol,
                "tokenOut": token_out.symbol,
                "amountIn": format(amount, "f"),
                "quotes": [q.to_dict(legs=False) for q in decision.quotes],
                "best": decision.best.to_dict(legs=True),
                "reason": decision.reason,
            }
        )


class HealthView(APIView):
    authentication_classes: list[Any] = []

    @extend_schema(
        responses={200: schema.HealthSchema, 503: schema.HealthSchema},
        summary="Database, Redis, broker and worker checks",
    )
    def get(self, request: Request) -> Response:
        checks, healthy = health_checks()
        connection.close_if_unusable_or_obsolete()
        return Response(
            {"status": "ok" if healthy else "unavailable", "checks": checks},
            status=200 if healthy else 503,
        )
