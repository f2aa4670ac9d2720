"""`POST /api/orders/execute`: the happy path, idempotency, rate limiting, and every bad input
answered with a clear 4xx (never a 500)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import override_settings

from orders.models import Order

pytestmark = pytest.mark.django_db

URL = "/api/orders/execute"


def post(api, body: Any, **headers: str):  # type: ignore[no-untyped-def]
    return api.post(URL, data=json.dumps(body), content_type="application/json", headers=headers)


def test_submitting_answers_201_with_the_order_and_its_location(api, order_payload) -> None:
    response = post(api, order_payload)
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == f"/api/orders/{body['orderId']}"
    assert body["status"] == "pending"
    assert body["amountIn"] == "1.500000000" and body["slippage"] == "1.0"
    assert body["tokenIn"] == "SOL" and body["tokenOut"] == "USDC"
    assert body["events"][0]["seq"] == 1 and body["events"][0]["status"] == "pending"
    assert body["events"][0]["timestamp"].endswith("Z")
    assert Order.objects.filter(pk=body["orderId"]).exists()


def test_amounts_may_be_json_numbers_and_tokens_mint_addresses(api, order_payload) -> None:
    order_payload.update(
        amountIn=1.5,
        tokenIn="So11111111111111111111111111111111111111112",
        tokenOut="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        slippage=0.5,
    )
    body = post(api, order_payload).json()
    assert body["tokenIn"] == "SOL" and body["amountIn"] == "1.500000000"
    assert body["slippage"] == "0.5"


def test_slippage_bps_is_an_integer_alternative(api, order_payload) -> None:
    del order_payload["slippage"]
    order_payload["slippageBps"] = 125
    assert post(api, order_payload).json()["slippage"] == "1.25"


def test_the_same_idempotency_key_returns_the_original_order(api, order_payload) -> None:
    first = post(api, order_payload, **{"Idempotency-Key": "k-1"})
    again = post(api, order_payload, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["orderId"] == again.json()["orderId"]
    assert Order.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_a_conflict(api, order_payload) -> None:
    post(api, order_payload, **{"Idempotency-Key": "k-2"})
    order_payload["amountIn"] = "2"
    response = post(api, order_payload, **{"Idempotency-Key": "k-2"})
    assert response.status_code == 409 and response.json()["error"] == "idempotency_conflict"
    assert Order.objects.count() == 1


@override_settings(API_RATE_LIMIT="3/m")
def test_the_rate_limit_answers_429_with_retry_after(api, order_payload) -> None:
    codes = [post(api, order_payload).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    response = post(api, order_payload)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["error"] == "rate_limited" and body["message"]


BAD_FIELDS = [
    ("walletAddress", "not-base58-0OIl"),
    ("walletAddress", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),  # base58, but not 32 bytes
    ("walletAddress", None),
    ("tokenIn", "NOPE"),
    ("tokenOut", "SOL"),  # same as tokenIn
    ("amountIn", "0"),
    ("amountIn", "-1"),
    ("amountIn", "-0"),
    ("amountIn", "abc"),
    ("amountIn", "NaN"),
    ("amountIn", "Infinity"),
    ("amountIn", "1e3"),
    ("amountIn", True),
    ("amountIn", "1.0000000001"),  # SOL has 9 decimals
    ("amountIn", "100000000000000"),
    ("amountIn", [1]),
    ("orderType", "stop"),
    ("slippage", "0"),
    ("slippage", "50.5"),
    ("slippage", "-1"),
    ("slippage", "0.001"),
    ("slippageBps", 0),
    ("slippageBps", "many"),
    ("limitPrice", "100"),  # not allowed on a market order
    ("expiresAt", "2030-01-01T00:00:00Z"),  # not allowed on a market order
    ("unexpected", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_each_invalid_field_is_a_400_naming_it(api, order_payload, field, value) -> None:
    order_payload[field] = value
    response = post(api, order_payload)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "validation_error"
    assert field in body["details"], body
    assert body["message"]
    assert not Order.objects.exists()


@pytest.mark.parametrize("field", ["walletAddress", "tokenIn", "tokenOut", "amountIn"])
def test_each_missing_required_field_is_a_400_naming_it(api, order_payload, field) -> None:
    del order_payload[field]
    response = post(api, order_payload)
    assert response.status_code == 400 and field in response.json()["details"]


def test_a_limit_order_needs_its_limit_price(api, order_payload) -> None:
    order_payload["orderType"] = "limit"
    response = post(api, order_payload)
    assert response.status_code == 400 and "limitPrice" in response.json()["details"]


def test_an_expiry_in_the_past_is_refused(api, order_payload) -> None:
    order_payload.update(orderType="limit", limitPrice="1", expiresAt="2001-01-01T00:00:00Z")
    response = post(api, order_payload)
    assert response.status_code == 400 and "expiresAt" in response.json()["details"]


def test_malformed_json_is_a_400(api) -> None:
    response = api.post(URL, data='{"walletAddress": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


def test_nan_literals_are_malformed_json(api, order_payload) -> None:
    text = json.dumps(order_payload).replace('"1.5"', "NaN")
    response = api.post(URL, data=text, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("body", [[], "order", 1, None])
def test_a_body_that_is_not_an_object_is_a_400(api, body) -> None:
    response = post(api, body)
    assert response.status_code == 400 and response.json()["error"] == "validation_error"


def test_another_content_type_is_a_415(api, order_payload) -> None:
    response = api.post(
        URL, data="walletAddress=x", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_a_body_over_16_kib_is_a_413(api, order_payload) -> None:
    order_payload["padding"] = "x" * 17_000
    response = post(api, order_payload)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_other_methods_are_405(api) -> None:
    for method in ("get", "put", "delete", "patch"):
        response = getattr(api, method)(URL)
        assert response.status_code == 405, method
        assert response.json()["error"] == "method_not_allowed"


def test_a_pair_no_venue_can_route_is_422(api, order_payload) -> None:
    from dex.launch import token_register

    token_register(symbol="LONELY", mint="LoNeLy1111111111111111111111111111111111111", decimals=6)
    order_payload["tokenOut"] = "LONELY"
    response = post(api, order_payload)
    assert response.status_code == 422 and response.json()["error"] == "no_route"


def test_an_unknown_order_is_404_and_a_malformed_id_too(api) -> None:
    for path in (f"/api/orders/{uuid.uuid4()}", "/api/orders/not-a-uuid", "/api/nothing-here"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
