"""The shapes clients see: an order as JSON and one event as a WebSocket update (API.md)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from dex.tokens import token_get
from engine.formatting import decimal_str, iso, percent_str
from orders.models import Order, OrderEvent


def _decimals(symbol: str) -> int | None:
    try:
        return token_get(symbol).decimals
    except Exception:  # a token removed from the registry must not break reading history
        return None


def event_to_wire(event: OrderEvent) -> dict[str, Any]:
    return {
        "type": "order.update",
        "orderId": str(event.order_id),
        "seq": event.seq,
        "status": event.status,
        "attempt": event.attempt,
        "timestamp": iso(event.created_at),
        **event.payload,
    }


def _price(order: Order) -> str | None:
    if order.executed_price is None:
        return None
    return decimal_str(order.executed_price.quantize(Decimal("1e-12")).normalize())


def order_to_dict(order: Order, events: Iterable[OrderEvent] | None = None) -> dict[str, Any]:
    dec_in, dec_out = _decimals(order.token_in), _decimals(order.token_out)
    data: dict[str, Any] = {
        "orderId": str(order.id),
        "status": order.status,
        "orderType": order.order_type,
        "walletAddress": order.wallet_address,
        "tokenIn": order.token_in,
        "tokenOut": order.token_out,
        "amountIn": decimal_str(order.amount_in, dec_in),
        "slippage": percent_str(order.slippage_bps),
        "limitPrice": decimal_str(order.limit_price.normalize()) if order.limit_price else None,
        "expiresAt": iso(order.expires_at),
        "attempts": order.attempts,
        "nextAttemptAt": iso(order.next_attempt_at),
        "selectedDex": order.selected_dex or None,
        "quote": order_quote_public(order),
        "txHash": order.tx_hash or None,
        "executedPrice": _price(order),
        "amountOut": decimal_str(order.amount_out, dec_out),
        "error": order.error or None,
        "createdAt": iso(order.created_at),
        "updatedAt": iso(order.updated_at),
    }
    if events is not None:
        data["events"] = [event_public(e) for e in events]
    return data


def order_quote_public(order: Order) -> dict[str, Any] | None:
    """The chosen route as the API shows it (the persisted form keeps exact integers too)."""
    if not order.quote:
        return None
    return order.quote.get("public")


def event_public(event: OrderEvent) -> dict[str, Any]:
    """An event inside the order's `events` list: the update without the envelope."""
    return {
        "seq": event.seq,
        "status": event.status,
        "attempt": event.attempt,
        "timestamp": iso(event.created_at),
        **event.payload,
    }
