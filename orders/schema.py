"""The OpenAPI components of the REST API (the faces' documentation, nothing else).

These serializers only describe what the views answer (`engine.wire.order_to_dict`, the list with
its metrics, the quote, health, the error body); no view parses or renders with them. They are
precise on purpose: the schemathesis suite (tests/hostile) checks every response against them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers

from orders.models import OrderStatus, OrderType

#: A decimal string as the API writes amounts and prices: plain notation, never an exponent.
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


class ExactDecimalFieldSchema(OpenApiSerializerFieldExtension):
    """`orders.serializers.ExactDecimalField` accepts a JSON number or a decimal string."""

    target_class = "orders.serializers.ExactDecimalField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "number"},
                {"type": "string", "pattern": r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$"},
            ],
            "description": 'A JSON number or a decimal string ("1.5"); no exponent, NaN or '
            "infinity.",
        }


def _decimal(**kw: Any) -> serializers.RegexField:
    return serializers.RegexField(DECIMAL_PATTERN, **kw)


@extend_schema_serializer(component_name="Error")
class ErrorSchema(serializers.Serializer):
    error = serializers.CharField(help_text="a stable, machine-readable code")
    message = serializers.CharField(help_text="one sentence for a person")
    details = serializers.DictField(child=serializers.JSONField(), help_text="per field, or {}")


@extend_schema_serializer(component_name="QuoteLeg")
class QuoteLegSchema(serializers.Serializer):
    dex = serializers.CharField()
    pool = serializers.CharField()
    tokenIn = serializers.CharField()
    tokenOut = serializers.CharField()
    inAmount = _decimal()
    outAmount = _decimal()
    fee = _decimal()
    percent = serializers.IntegerField(min_value=0, max_value=100)


@extend_schema_serializer(component_name="VenueQuote")
class VenueQuoteSchema(serializers.Serializer):
    """One venue's quote (`quotes[]`)."""

    dex = serializers.CharField()
    amountIn = _decimal()
    amountOut = _decimal()
    price = _decimal()
    priceImpact = _decimal()
    fee = _decimal()
    route = serializers.ListField(child=serializers.CharField())


@extend_schema_serializer(component_name="BestQuote")
class BestQuoteSchema(VenueQuoteSchema):
    """The chosen route, with its legs (`dex` is `split` when the order is split)."""

    legs = QuoteLegSchema(many=True)


@extend_schema_serializer(component_name="OrderQuote")
class OrderQuoteSchema(BestQuoteSchema):
    """The route an order was sent on, with the minimum it accepts."""

    minAmountOut = _decimal()


@extend_schema_serializer(component_name="OrderEvent")
class OrderEventSchema(serializers.Serializer):
    """One status change. Besides these, a step adds its own fields: `quotes`, `selectedDex`,
    `quote`, `transaction`, `txHash`, `executedPrice`, `amountOut`, `error`, `errorCode`,
    `willRetry`, `nextAttemptAt`, `reason`."""

    seq = serializers.IntegerField(min_value=1)
    status = serializers.ChoiceField(choices=OrderStatus.values)
    attempt = serializers.IntegerField(min_value=0)
    timestamp = serializers.DateTimeField()


@extend_schema_serializer(component_name="OrderSummary")
class OrderSummarySchema(serializers.Serializer):
    """An order as the list shows it (without its events)."""

    orderId = serializers.UUIDField()
    status = serializers.ChoiceField(choices=OrderStatus.values)
    orderType = serializers.ChoiceField(choices=OrderType.values)
    walletAddress = serializers.CharField()
    tokenIn = serializers.CharField()
    tokenOut = serializers.CharField()
    amountIn = _decimal()
    slippage = _decimal()
    limitPrice = _decimal(allow_null=True)
    expiresAt = serializers.DateTimeField(allow_null=True)
    attempts = serializers.IntegerField(min_value=0)
    nextAttemptAt = serializers.DateTimeField(allow_null=True)
    selectedDex = serializers.CharField(allow_null=True)
    quote = OrderQuoteSchema(allow_null=True)
    txHash = serializers.CharField(allow_null=True)
    executedPrice = _decimal(allow_null=True)
    amountOut = _decimal(allow_null=True)
    error = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


@extend_schema_serializer(component_name="Order")
class OrderSchema(OrderSummarySchema):
    """One order with its full event history, oldest first."""

    events = OrderEventSchema(many=True)


@extend_schema_serializer(component_name="QueueMetrics")
class QueueMetricsSchema(serializers.Serializer):
    waiting = serializers.IntegerField(allow_null=True, help_text="null when Redis is unreachable")
    active = serializers.IntegerField()


@extend_schema_serializer(component_name="LastMinute")
class LastMinuteSchema(serializers.Serializer):
    confirmed = serializers.IntegerField()
    failed = serializers.IntegerField()


@extend_schema_serializer(component_name="Latency")
class LatencySchema(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


@extend_schema_serializer(component_name="Metrics")
class MetricsSchema(serializers.Serializer):
    queue = QueueMetricsSchema()
    orders = serializers.DictField(child=serializers.IntegerField(), help_text="count per status")
    lastMinute = LastMinuteSchema()
    latencyMs = LatencySchema()


@extend_schema_serializer(component_name="OrderList")
class OrderListSchema(serializers.Serializer):
    results = OrderSummarySchema(many=True)
    nextCursor = serializers.CharField(allow_null=True)
    metrics = MetricsSchema()
    count = serializers.IntegerField(required=False, help_text="page mode only")
    page = serializers.IntegerField(required=False, help_text="page mode only")


@extend_schema_serializer(component_name="Quote")
class QuoteSchema(serializers.Serializer):
    tokenIn = serializers.CharField()
    tokenOut = serializers.CharField()
    amountIn = _decimal()
    quotes = VenueQuoteSchema(many=True)
    best = BestQuoteSchema()
    reason = serializers.CharField(required=False)


@extend_schema_serializer(component_name="HealthChecks")
class HealthChecksSchema(serializers.Serializer):
    database = serializers.CharField(help_text='"ok" or the error')
    redis = serializers.CharField(help_text='"ok" or the error')
    broker = serializers.CharField(help_text='"ok" or the error')
    workers = serializers.IntegerField(min_value=0, help_text="Celery workers that answered")
    workersError = serializers.CharField(required=False)


@extend_schema_serializer(component_name="Health")
class HealthSchema(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    checks = HealthChecksSchema()


ERROR = OpenApiResponse(ErrorSchema, description="`{error, message, details}`")
UNAVAILABLE = OpenApiResponse(
    ErrorSchema, description="PostgreSQL or Redis is unreachable; retry after `Retry-After`"
)
