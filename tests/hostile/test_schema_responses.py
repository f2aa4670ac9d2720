"""Real responses against the OpenAPI schema: an order in every state the API can show (pending from
the Redis cache, confirmed, failed with its retries, cancelled, requeued), the list in both
pagination modes, the quote, health and the errors, each validated by schemathesis against the
documented component. The fuzzing suite rarely reaches these (random ids are unknown orders)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.wsgi import get_wsgi_application
from rest_framework.authtoken.models import Token
from werkzeug.test import Client

from dex.types import TransientChainError
from engine import pipeline
from engine.events import outbox
from orders.models import Order
from tests.conftest import make_wallet
from tests.engine.test_pipeline import run_to_end

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

APP = get_wsgi_application()
SCHEMA = schemathesis.openapi.from_wsgi("/api/schema", APP)


def body(amount: str = "1.5", **extra: Any) -> dict[str, Any]:
    return {
        "walletAddress": make_wallet(5),
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": amount,
        **extra,
    }


def call(method: str, path: str, template: str, expect: int, **kw: Any) -> Any:
    """Send the request, check the status, validate the response against the operation."""
    outbox.flush()  # the Redis copy of an order is refreshed after the commit, off-thread
    response = Client(APP).open(path, method=method, **kw)
    assert response.status_code == expect, (path, response.status_code, response.get_data())
    SCHEMA[template][method].validate_response(response)
    return json.loads(response.get_data()) if response.get_data() else None


def submit(payload: dict[str, Any]) -> dict[str, Any]:
    return call(
        "POST",
        "/api/orders/execute",
        "/api/orders/execute",
        201,
        data=json.dumps(payload),
        content_type="application/json",
    )


def test_orders_in_every_state_match_the_order_component(monkeypatch, settings) -> None:
    settings.API_RATE_LIMIT = "0"
    detail = "/api/orders/{order_id}"
    pending = submit(body())
    assert pending["status"] == "pending" and pending["events"]
    # A live order is served from the Redis copy: the same component.
    call("GET", f"/api/orders/{pending['orderId']}", detail, 200)

    confirmed = run_to_end(Order.objects.get(pk=submit(body("2"))["orderId"]))
    shown = call("GET", f"/api/orders/{confirmed.pk}", detail, 200)
    assert shown["status"] == "confirmed" and shown["quote"]["legs"] and shown["txHash"]

    def down(tx):  # type: ignore[no-untyped-def]
        raise TransientChainError("the node rate-limited us", code="node_rate_limited")

    monkeypatch.setattr(pipeline, "transaction_send", down)
    failed = run_to_end(Order.objects.get(pk=submit(body("3"))["orderId"]))
    shown = call("GET", f"/api/orders/{failed.pk}", detail, 200)
    assert shown["status"] == "failed" and shown["error"]
    assert any(e.get("willRetry") for e in shown["events"])

    staff = get_user_model().objects.create_user("ops", password="pw-ops-12345", is_staff=True)
    token = Token.objects.create(user=staff)
    requeue = "/api/orders/{order_id}/requeue"
    auth = {"Authorization": f"Token {token.key}"}
    shown = call("POST", f"/api/orders/{failed.pk}/requeue", requeue, 200, headers=auth)
    assert shown["status"] == "pending"
    call("POST", f"/api/orders/{failed.pk}/requeue", requeue, 409, headers=auth)
    call("POST", f"/api/orders/{failed.pk}/requeue", requeue, 401)

    cancel = "/api/orders/{order_id}/cancel"
    shown = call("POST", f"/api/orders/{pending['orderId']}/cancel", cancel, 200)
    assert shown["status"] == "cancelled"
    call("POST", f"/api/orders/{pending['orderId']}/cancel", cancel, 409)
    call("POST", f"/api/orders/{uuid.uuid4()}/cancel", cancel, 404)
    call("GET", f"/api/orders/{uuid.uuid4()}", detail, 404)
    call("GET", "/api/orders/not-an-id", detail, 404)

    limit = submit(
        body("1", orderType="limit", limitPrice="100000", expiresAt="2099-01-01T00:00:00Z")
    )
    assert limit["limitPrice"] == "100000" and limit["expiresAt"].startswith("2099")


def test_the_list_matches_in_both_pagination_modes(settings) -> None:
    settings.API_RATE_LIMIT = "0"
    for amount in ("1", "2", "3"):
        submit(body(amount))
    run_to_end(Order.objects.order_by("created_at").first())
    first = call("GET", "/api/orders?limit=2", "/api/orders", 200)
    assert len(first["results"]) == 2 and first["nextCursor"]
    rest = call("GET", f"/api/orders?limit=2&cursor={first['nextCursor']}", "/api/orders", 200)
    assert len(rest["results"]) == 1 and rest["nextCursor"] is None
    paged = call("GET", "/api/orders?page=1&limit=2&status=pending", "/api/orders", 200)
    assert paged["count"] == 2 and paged["metrics"]["orders"]["confirmed"] == 1
    call("GET", "/api/orders?cursor=garbage", "/api/orders", 400)


def test_quote_health_and_submission_errors_match(settings) -> None:
    quote = call("GET", "/api/quote?tokenIn=SOL&tokenOut=USDC&amountIn=2", "/api/quote", 200)
    assert quote["best"]["legs"]
    call("GET", "/api/quote?tokenIn=SOL&tokenOut=USDC&amountIn=900000000", "/api/quote", 422)
    call("GET", "/api/quote?tokenIn=SOL&tokenOut=SOL&amountIn=1", "/api/quote", 400)
    health = call("GET", "/health", "/health", 503)  # no Celery worker in this process
    assert health["checks"]["workers"] == 0
    execute = "/api/orders/execute"
    json_body = {"content_type": "application/json"}
    call("POST", execute, execute, 400, data=json.dumps(body("NaN")), **json_body)
    call("POST", execute, execute, 400, data="{", **json_body)
    call("POST", execute, execute, 415, data="a=1", content_type="text/plain")
    call("POST", execute, execute, 413, data=json.dumps(body(pad="x" * 20_000)), **json_body)
    call("POST", execute, execute, 422, data=json.dumps(body("900000000")), **json_body)
    settings.API_RATE_LIMIT = "1/m"
    call("POST", execute, execute, 201, data=json.dumps(body()), **json_body)
    call("POST", execute, execute, 429, data=json.dumps(body()), **json_body)
