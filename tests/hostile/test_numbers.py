"""Numbers a client may send, over HTTP (JSON literals and decimal strings), in the quote's query
and over the WebSocket: NaN, infinities, exponents, negative zero, underscores and non-ASCII
digits, more decimals than the token (or the price column) has, amounts beyond what PostgreSQL
or any pool holds. Each is refused with a 4xx naming the field, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orders.models import Order

pytestmark = pytest.mark.django_db

URL = "/api/orders/execute"


@pytest.fixture(autouse=True)
def _no_client_rate_limit(settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_RATE_LIMIT = "0"


def post_raw(api, payload: dict[str, Any], field: str, literal: str):  # type: ignore[no-untyped-def]
    """POST with `field` written as the raw JSON text `literal` (a number, not a string)."""
    payload[field] = "__LITERAL__"
    text = json.dumps(payload).replace('"__LITERAL__"', literal)
    return api.post(URL, data=text, content_type="application/json")


def refused(response, field: str, status: int = 400) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] and body["message"], body
    if status == 400:
        assert field in body["details"], body
        assert isinstance(body["details"][field], str) and body["details"][field], body
    assert not Order.objects.exists()
    return body


STRING_AMOUNTS = {
    "NaN": "finite",
    "nan": "finite",
    "-NaN": "finite",
    "sNaN": "finite",
    "Infinity": "finite",
    "-Infinity": "finite",
    "inf": "finite",
    "1e3": "exponent",
    "1E3": "exponent",
    "1e-3": "exponent",
    "1E+2": "exponent",
    "-0": "negative zero",
    "-0.0": "negative zero",
    "-0.000": "negative zero",
    "1_000": "digits",
    "1_0.5": "digits",
    "\uff11.\uff15": "digits",  # full-width one point five
    "\u0661": "digits",  # Arabic-Indic one
    "0x10": "number",
    "1,5": "number",
    "1.2.3": "number",
    "": "",
    " ": "",
}


@pytest.mark.parametrize(("text", "says"), list(STRING_AMOUNTS.items()))
def test_a_hostile_decimal_string_is_refused_with_a_clear_reason(api, order_payload, text, says):
    order_payload["amountIn"] = text
    body = refused(
        api.post(URL, data=json.dumps(order_payload), content_type="application/json"), "amountIn"
    )
    assert says in body["details"]["amountIn"], body


JSON_LITERALS = {
    "NaN": 400,
    "Infinity": 400,
    "-Infinity": 400,
    "1e3": 400,
    "1E-3": 400,
    "1.5e0": 400,
    "-0": 400,
    "-0.0": 400,
    "true": 400,
    "null": 400,
    "[1.5]": 400,
    '{"value": 1.5}': 400,
    "1" + "0" * 5000: 400,  # beyond Python's int-to-str limit as well as ORDER_MAX_AMOUNT
}


@pytest.mark.parametrize(("literal", "status"), list(JSON_LITERALS.items()))
def test_a_hostile_json_number_is_refused(api, order_payload, literal, status) -> None:
    response = post_raw(api, order_payload, "amountIn", literal)
    assert response.status_code == status, response.content
    assert response.json()["error"] in {"validation_error", "malformed_json"}
    assert not Order.objects.exists()


def test_a_small_json_number_is_not_mistaken_for_an_exponent(api, order_payload) -> None:
    """Python writes Decimal("0.0000001") as 1E-7; the client wrote plain digits."""
    response = post_raw(api, order_payload, "amountIn", "0.0000001")
    assert response.status_code == 201, response.content
    assert response.json()["amountIn"] == "0.000000100"


@pytest.mark.parametrize(
    ("token", "amount"), [("SOL", "1.0000000001"), ("USDC", "1.0000001"), ("BONK", "1.000001")]
)
def test_more_decimals_than_the_token_has_are_refused(api, order_payload, token, amount) -> None:
    order_payload.update(tokenIn=token, tokenOut="SOL" if token != "SOL" else "USDC")
    order_payload["amountIn"] = amount
    body = refused(
        api.post(URL, data=json.dumps(order_payload), content_type="application/json"), "amountIn"
    )
    assert "decimal places" in body["details"]["amountIn"]


def test_trailing_zeros_beyond_the_token_decimals_are_the_same_amount(api, order_payload) -> None:
    order_payload.update(tokenIn="USDC", tokenOut="SOL", amountIn="2.50000000000")
    response = api.post(URL, data=json.dumps(order_payload), content_type="application/json")
    assert response.status_code == 201 and response.json()["amountIn"] == "2.500000"


@pytest.mark.parametrize("amount", ["100000", "900000000"])
def test_an_amount_beyond_every_pool_is_refused_at_submission(api, order_payload, amount) -> None:
    order_payload["amountIn"] = amount
    body = refused(
        api.post(URL, data=json.dumps(order_payload), content_type="application/json"),
        "amountIn",
        status=422,
    )
    assert body["error"] == "insufficient_liquidity" and "cannot fill" in body["message"]


def test_an_amount_above_the_sane_maximum_is_refused(api, order_payload) -> None:
    order_payload["amountIn"] = "1000000001"
    refused(
        api.post(URL, data=json.dumps(order_payload), content_type="application/json"), "amountIn"
    )


@pytest.mark.parametrize(
    "price",
    [
        "1" + "0" * 30,  # beyond the price column (NUMERIC(40, 18)): used to be a 503
        "9" * 5000,
        "0." + "0" * 30 + "1",  # would be stored as 0: a limit order filled at any price
        "1_0",
        "NaN",
        "-1",
        "0",
        "1e2",
    ],
)
def test_a_limit_price_outside_what_can_be_stored_exactly_is_refused(api, order_payload, price):
    order_payload.update(orderType="limit", limitPrice=price)
    refused(
        api.post(URL, data=json.dumps(order_payload), content_type="application/json"), "limitPrice"
    )


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e1", "-0", "1_0", "50.01", "0.001"])
def test_a_hostile_slippage_is_refused(api, order_payload, value) -> None:
    order_payload["slippage"] = value
    refused(
        api.post(URL, data=json.dumps(order_payload), content_type="application/json"), "slippage"
    )


@pytest.mark.parametrize("literal", ["1.5", "1e2", "true", '"many"', "0", "5001", "-1"])
def test_a_hostile_slippage_bps_is_refused(api, order_payload, literal) -> None:
    del order_payload["slippage"]
    refused(post_raw(api, order_payload, "slippageBps", literal), "slippageBps")


@pytest.mark.parametrize(
    "amount", ["NaN", "inf", "-Infinity", "1e3", "-0", "1_0", "%EF%BC%91", "1.0000000001", ""]
)
def test_the_quote_refuses_the_same_numbers(api, amount) -> None:
    response = api.get(f"/api/quote?tokenIn=SOL&tokenOut=USDC&amountIn={amount}")
    assert response.status_code == 400, response.content
    assert "amountIn" in response.json()["details"]


def test_the_quote_refuses_an_amount_beyond_every_pool(api) -> None:
    response = api.get("/api/quote?tokenIn=SOL&tokenOut=USDC&amountIn=900000000")
    assert response.status_code == 422 and response.json()["error"] == "insufficient_liquidity"
