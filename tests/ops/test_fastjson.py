"""JSON on the hot paths is written by orjson (`config.fastjson`): the JSON columns (through the
database backend `config.db`), the events sent to WebSocket clients and the orders' Redis copies.
It must write the JSON `json.dumps` wrote and refuse what it refused (README, Performance)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from config.fastjson import dumpb, dumps
from engine.cache import order_cache_get, orders_cache_store
from engine.events import event_message
from orders.models import OrderEvent, OrderStatus
from tests.conftest import order_create

PAYLOADS: list[Any] = [
    {},
    [],
    {"amountIn": "1.5", "legs": [{"venue": "raydium", "percent": 100}], "final": True},
    {"bins": [[-731, 0, 2721088435], [-732, 5442176870, 0]], "fee": None, "impact": 0.25},
    {"nested": {"deep": [{"a": [1, 2, {"b": "c"}]}]}, "empty": "", "zero": 0, "neg": -1},
]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("value", PAYLOADS)
def test_the_engines_payloads_come_out_as_json_dumps_wrote_them(value: Any) -> None:
    assert dumps(value) == compact(value)
    assert dumpb(value) == compact(value).encode()
    assert json.loads(dumps(value)) == value


def test_keys_that_are_not_strings_are_written_as_strings_as_json_dumps_does() -> None:
    assert (
        dumps({1: "a", 2: {3: "b"}}) == compact({1: "a", 2: {3: "b"}}) == '{"1":"a","2":{"3":"b"}}'
    )


def test_an_integer_past_64_bits_is_written_as_json_dumps_writes_it() -> None:
    value = {"liquidity": 2**70, "negative": -(2**65), "small": 5}
    assert dumps(value) == compact(value)
    assert json.loads(dumps(value)) == value


@pytest.mark.parametrize("value", [Decimal("1.5"), {"a": Decimal("1")}, {1, 2}, object()])
def test_what_json_cannot_hold_is_refused_with_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        dumps(value)


def test_non_ascii_text_is_the_same_json() -> None:
    value = {"note": "épargne ✓ 中文"}
    assert json.loads(dumps(value)) == value
    assert dumpb(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.django_db
def test_the_database_backend_writes_json_columns_with_it_and_postgresql_stores_the_same() -> None:
    assert connection.vendor == "postgresql"
    adapted = connection.ops.adapt_json_value({"a": 1}, None)
    assert adapted.dumps is dumpb
    order = order_create()
    payload = {
        "quote": {"amountOut": "150.25", "legs": [{"venue": "meteora", "percent": 100}]},
        "bins": [[-731, 0, 2721088435]],
        "liquidity": 2**70,
        "note": "épargne ✓",
        "keys": {1: "one"},
    }
    OrderEvent.objects.create(
        order=order, seq=2, status=OrderStatus.ROUTING, payload=payload, created_at=timezone.now()
    )
    stored = OrderEvent.objects.get(order=order, seq=2).payload
    assert stored == json.loads(json.dumps(payload))  # the keys as strings, as before
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT payload = %s::jsonb FROM orders_orderevent WHERE order_id = %s AND seq = 2",
            [json.dumps(payload), order.pk],
        )
        assert cursor.fetchone() == (True,)  # exactly the jsonb json.dumps's text gave


@pytest.mark.django_db
def test_a_json_column_with_a_value_json_cannot_hold_is_still_refused() -> None:
    order = order_create()
    with pytest.raises(TypeError):
        OrderEvent.objects.create(
            order=order,
            seq=2,
            status=OrderStatus.ROUTING,
            payload={"amount": Decimal("1.5")},
            created_at=timezone.now(),
        )


def test_the_websocket_text_and_the_redis_copy_carry_the_same_json() -> None:
    wire = {"orderId": "o-1", "seq": 1, "status": "pending", "payload": {"note": "✓"}}
    message = event_message(wire)
    assert json.loads(message["text"]) == wire
    orders_cache_store([({"orderId": "o-1", "status": "pending"}, [wire], True)])
    cached = order_cache_get("o-1")
    assert cached == {"orderId": "o-1", "status": "pending", "events": [wire]}
