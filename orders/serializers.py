"""Parsing what clients send. Serializers check the shape of each field and turn the body into an
`OrderRequest`; business rules (routes, idempotency) stay in the engine's services."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import base58
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from dex.tokens import token_get
from dex.types import UnknownTokenError
from engine.services import OrderRequest
from orders.models import Order, OrderStatus, OrderType

_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


class ExactDecimalField(serializers.Field):
    """A JSON number or a decimal string, kept exact. Refuses booleans, NaN, infinities,
    exponent notation and negative zero, with a sentence saying which."""

    default_error_messages = {
        "invalid": 'must be a number or a decimal string, like 1.5 or "1.5"',
        "not_finite": "must be a finite number",
        "exponent": "write the number in plain decimal notation, without an exponent",
        "negative_zero": "must not be negative zero",
        "not_plain": "write the number with the digits 0-9 and at most one decimal point",
    }

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, int | float | Decimal | str):
            self.fail("invalid")
        if isinstance(data, float):
            self.fail("invalid")  # the exact parser never yields floats; refuse them if it did
        # A JSON number is judged by how the client wrote it (see orders.parsers.JSONNumber).
        text = getattr(data, "literal", None) or (
            str(data).strip() if not isinstance(data, Decimal) else format(data, "")
        )
        if "e" in text.lower() and not any(w in text.lower() for w in ("inf", "nan")):
            self.fail("exponent")
        try:
            value = Decimal(text)
        except (InvalidOperation, ValueError):
            self.fail("invalid")
        if not value.is_finite():
            self.fail("not_finite")
        if not _PLAIN_DECIMAL.fullmatch(text):
            self.fail("not_plain")  # Decimal() also reads "1_000" and non-ASCII digits
        if value.is_zero() and value.is_signed():
            self.fail("negative_zero")
        return value

    def to_representation(self, value: Decimal) -> str:
        return format(value, "f")


def _token_field_value(value: str) -> str:
    try:
        return token_get(value).symbol
    except UnknownTokenError as error:
        raise serializers.ValidationError(
            f"unknown token {value!r}: use a symbol of the token registry or a mint address"
        ) from error


class OrderSubmitSerializer(serializers.Serializer):
    walletAddress = serializers.CharField(max_length=64, trim_whitespace=False)
    tokenIn = serializers.CharField(max_length=64)
    tokenOut = serializers.CharField(max_length=64)
    amountIn = ExactDecimalField()
    orderType = serializers.ChoiceField(choices=OrderType.values, default=OrderType.MARKET)
    slippage = ExactDecimalField(required=False)
    slippageBps = serializers.IntegerField(required=False, min_value=1, max_value=5000)
    limitPrice = ExactDecimalField(required=False, allow_null=True)
    expiresAt = serializers.DateTimeField(required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: "unknown field" for name in unknown})
        return super().to_internal_value(data)

    def validate_walletAddress(self, value: str) -> str:
        try:
            raw = base58.b58decode(value)
        except ValueError as error:
            raise serializers.ValidationError("must be a base58 Solana address") from error
        if len(raw) != 32 or not value:
            raise serializers.ValidationError("must be a base58 address that decodes to 32 bytes")
        return value

    def validate_tokenIn(self, value: str) -> str:
        return _token_field_value(value)

    def validate_tokenOut(self, value: str) -> str:
        return _token_field_value(value)

    def validate_amountIn(self, value: Decimal) -> Decimal:
        if value <= 0:
            raise serializers.ValidationError("must be greater than 0")
        if value > Decimal(settings.ORDER_MAX_AMOUNT):
            raise serializers.ValidationError(f"must be at most {settings.ORDER_MAX_AMOUNT} tokens")
        return value

    def validate_slippage(self, value: Decimal) -> Decimal:
        if not Decimal(0) < value <= Decimal(50):
            raise serializers.ValidationError("must be a percent above 0 and at most 50")
        if (value * 100) != (value * 100).to_integral_value():
            raise serializers.ValidationError("must have at most two decimal places (0.01 %)")
        return value

    def validate_limitPrice(self, value: Decimal | None) -> Decimal | None:
        if value is None:
            return value
        if value <= 0:
            raise serializers.ValidationError("must be greater than 0")
        # What the column stores exactly: beyond it PostgreSQL would refuse the row (a 503) or
        # round a tiny price to 0 (a limit order filled at any price).
        column = Order._meta.get_field("limit_price")
        places = -value.normalize().as_tuple().exponent
        if places > column.decimal_places:
            raise serializers.ValidationError(
                f"must have at most {column.decimal_places} decimal places"
            )
        if value >= Decimal(10) ** (column.max_digits - column.decimal_places):
            raise serializers.ValidationError(
                f"must be below 10^{column.max_digits - column.decimal_places}"
            )
        return value

    def validate_expiresAt(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        if attrs["tokenIn"] == attrs["tokenOut"]:
            errors["tokenOut"] = "must differ from tokenIn"
        decimals = token_get(attrs["tokenIn"]).decimals
        exponent = attrs["amountIn"].normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > decimals:
            errors["amountIn"] = f"{attrs['tokenIn']} has {decimals} decimal places; got more"
        both = "slippage" in attrs and "slippageBps" in attrs
        if both and attrs["slippage"] * 100 != attrs["slippageBps"]:
            errors["slippageBps"] = "give slippage or slippageBps, not two different values"
        order_type = attrs["orderType"]
        if order_type == OrderType.LIMIT and attrs.get("limitPrice") is None:
            errors["limitPrice"] = "is required for a limit order"
        if order_type != OrderType.LIMIT and attrs.get("limitPrice") is not None:
            errors["limitPrice"] = f"is only for limit orders, not {order_type} orders"
        if order_type == OrderType.MARKET and attrs.get("expiresAt") is not None:
            errors["expiresAt"] = "is only for limit and sniper orders"
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_request(self) -> OrderRequest:
        data = self.validated_data
        bps = data.get("slippageBps")
        if bps is None:
            bps = int(data.get("slippage", Decimal("1.0")) * 100)
        return OrderRequest(
            wallet_address=data["walletAddress"],
            token_in=data["tokenIn"],
            token_out=data["tokenOut"],
            amount_in=data["amountIn"],
            order_type=data["orderType"],
            slippage_bps=bps,
            limit_price=data.get("limitPrice"),
            expires_at=data.get("expiresAt"),
        )


class OrderListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=OrderStatus.values, required=False)
    walletAddress = serializers.CharField(required=False, max_length=64)
    orderType = serializers.ChoiceField(choices=OrderType.values, required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
    cursor = serializers.CharField(required=False, max_length=200)
    # Bounded so that the OFFSET it becomes fits PostgreSQL's bigint (a larger one was a 503);
    # past the last page the list is empty, and deep pages are what `cursor` is for.
    page = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # DRF reads `?status=` as "not given" and would list everything: say it is wrong instead.
        empty = sorted(name for name in self.fields if name in data and data.get(name) == "")
        if empty:
            raise serializers.ValidationError({name: "must not be empty" for name in empty})
        return super().to_internal_value(data)


class QuoteQuerySerializer(serializers.Serializer):
    tokenIn = serializers.CharField(max_length=64)
    tokenOut = serializers.CharField(max_length=64)
    amountIn = ExactDecimalField()

    def validate_tokenIn(self, value: str) -> str:
        return _token_field_value(value)

    def validate_tokenOut(self, value: str) -> str:
        return _token_field_value(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["tokenIn"] == attrs["tokenOut"]:
            raise serializers.ValidationError({"tokenOut": "must differ from tokenIn"})
        if attrs["amountIn"] <= 0:
            raise serializers.ValidationError({"amountIn": "must be greater than 0"})
        decimals = token_get(attrs["tokenIn"]).decimals
        exponent = attrs["amountIn"].normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > decimals:
            raise serializers.ValidationError(
                {"amountIn": f"{attrs['tokenIn']} has {decimals} decimal places; got more"}
            )
        return attrs
