"""Every lifecycle path through HTTP: submitting limit and sniper orders, cancel (200 only while
pending, 409 in every other status), requeue (staff only, by session or token; 401/403/409), a
requeued order that then succeeds with its history and attempt count continuing, and the
Idempotency-Key (a replay is the first answer, another body is a 409)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from dex.launch import mint_generate, token_register
from engine import pipeline
from engine.pipeline import order_execute
from engine.watcher import orders_expire
from orders.models import Order, OrderStatus
from tests.conftest import make_wallet
from tests.lifecycle.conftest import (
    assert_history_consistent,
    best_out,
    run_to_end,
    statuses,
    tick,
)

pytestmark = pytest.mark.django_db

URL = "/api/orders/execute"


def post(api: APIClient, body: dict[str, Any], **headers: str) -> Any:
    return api.post(URL, data=json.dumps(body), content_type="application/json", headers=headers)


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "walletAddress": make_wallet(9),
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "1",
        "orderType": "market",
    }
    data.update(overrides)
    return data


def limit_body(factor: str, **overrides: Any) -> dict[str, Any]:
    price = best_out("SOL", "USDC", "1") * Decimal(factor)
    return body(orderType="limit", limitPrice=str(price.quantize(Decimal("0.000001"))), **overrides)


def staff_client(*, token: bool) -> APIClient:
    user = get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True)
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    else:
        client.login(username="ops", password="pw-ops-123")
    return client


def fail_for_good(order_id: str, monkeypatch) -> Order:  # type: ignore[no-untyped-def]
    """Run the order with a venue that refuses every send until its attempts are spent."""

    def down(tx):  # type: ignore[no-untyped-def]
        from dex.types import TransientChainError

        raise TransientChainError("the RPC node rate-limited us", code="node_rate_limited")

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "transaction_send", down)
        order = run_to_end(Order.objects.get(pk=order_id))
    assert order.status == OrderStatus.FAILED and order.next_attempt_at is None
    return order


# --- submitting ------------------------------------------------------------------------------


def test_a_limit_order_over_http_waits_then_fills_and_get_shows_the_whole_story(api) -> None:
    response = post(api, limit_body("0.98"))
    assert response.status_code == 201, response.content
    order = response.json()
    assert order["status"] == "pending" and order["orderType"] == "limit"
    assert Decimal(order["limitPrice"]) > 0
    expires = timezone.datetime.fromisoformat(order["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < expires - timezone.now() <= timedelta(hours=24)

    assert [o.pk for o in tick()] == [UUID(order["orderId"])]
    detail = api.get(f"/api/orders/{order['orderId']}").json()
    assert detail["status"] == "confirmed" and detail["attempts"] == 1
    assert [e["status"] for e in detail["events"]] == [
        "pending",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]
    assert Decimal(detail["quote"]["minAmountOut"]) == Decimal(order["limitPrice"])
    assert Decimal(detail["amountOut"]) >= Decimal(order["limitPrice"])


def test_a_limit_order_with_its_own_expiry_over_http_expires_into_expired(api) -> None:
    expires_at = (timezone.now() + timedelta(seconds=30)).isoformat()
    order = post(api, limit_body("1.5", expiresAt=expires_at)).json()
    assert orders_expire(now=timezone.now() + timedelta(seconds=29)) == 0
    assert orders_expire(now=timezone.now() + timedelta(seconds=31)) == 1
    detail = api.get(f"/api/orders/{order['orderId']}").json()
    assert detail["status"] == "expired"
    assert [e["status"] for e in detail["events"]] == ["pending", "expired"]


def test_a_sniper_order_is_accepted_for_a_token_without_pools_and_a_market_order_is_not(
    api,
) -> None:
    token_register(symbol="FRESH", mint=mint_generate("FRESH"), decimals=6)
    sniper = post(api, body(orderType="sniper", tokenOut="FRESH", amountIn="0.5"))
    assert sniper.status_code == 201, sniper.content
    assert sniper.json()["status"] == "pending" and sniper.json()["expiresAt"]
    market = post(api, body(tokenOut="FRESH", amountIn="0.5"))
    assert market.status_code == 422 and market.json()["error"] == "no_route"
    assert tick() == []


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_a_waiting_limit_order_then_409_on_a_second_cancel(api) -> None:
    order = post(api, limit_body("1.5")).json()
    response = api.post(f"/api/orders/{order['orderId']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert [e["status"] for e in response.json()["events"]] == ["pending", "cancelled"]
    again = api.post(f"/api/orders/{order['orderId']}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert again.json()["details"]["status"] == "cancelled"
    assert tick() == []


def test_cancel_a_triggered_order_before_its_worker_routes_it(api) -> None:
    order = post(api, limit_body("0.98")).json()
    from engine.watcher import orders_watch

    assert orders_watch() == [order["orderId"]]
    assert api.post(f"/api/orders/{order['orderId']}/cancel").status_code == 200
    after = run_to_end(Order.objects.get(pk=order["orderId"]))  # the dispatched task arrives
    assert after.status == OrderStatus.CANCELLED and after.attempts == 0
    assert statuses(after) == ["pending", "cancelled"]


@pytest.mark.parametrize("status", ["submitted", "confirmed", "failed", "expired", "cancelled"])
def test_cancel_is_409_once_the_order_has_left_pending(api, status, monkeypatch) -> None:
    order_id = post(api, body() if status != "expired" else limit_body("2")).json()["orderId"]
    if status == "submitted":
        with override_settings(DEX_EXECUTION_LATENCY_MS="60000"):
            order_execute(order_id)  # sent; it lands in a minute
    elif status == "confirmed":
        run_to_end(Order.objects.get(pk=order_id))
    elif status == "failed":
        fail_for_good(order_id, monkeypatch)
    elif status == "expired":
        Order.objects.filter(pk=order_id).update(expires_at=timezone.now())
        orders_expire()
    else:
        api.post(f"/api/orders/{order_id}/cancel")
    assert Order.objects.get(pk=order_id).status == status
    before = statuses(Order.objects.get(pk=order_id))
    response = api.post(f"/api/orders/{order_id}/cancel")
    assert response.status_code == 409
    assert response.json() == {
        "error": "conflict",
        "message": f"the order is {status}: only a pending order can be cancelled",
        "details": {"status": status},
    }
    assert statuses(Order.objects.get(pk=order_id)) == before


def test_cancel_of_an_unknown_or_malformed_id_is_404_and_get_is_405(api) -> None:
    import uuid

    assert api.post(f"/api/orders/{uuid.uuid4()}/cancel").json()["error"] == "not_found"
    assert api.post("/api/orders/nope/cancel").status_code == 404
    order = post(api, body()).json()
    assert api.get(f"/api/orders/{order['orderId']}/cancel").status_code == 405


# --- requeue ---------------------------------------------------------------------------------


def test_requeue_answers_401_to_anonymous_and_403_to_non_staff_by_session_or_token(
    api, monkeypatch
) -> None:
    order_id = post(api, body()).json()["orderId"]
    fail_for_good(order_id, monkeypatch)
    url = f"/api/orders/{order_id}/requeue"

    anonymous = APIClient().post(url)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "not_authenticated"
    assert anonymous["WWW-Authenticate"] == "Token"
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert bad_token.post(url).status_code == 401

    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    by_session = APIClient()
    by_session.login(username="alice", password="pw-alice-123")
    assert by_session.post(url).status_code == 403
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    refused = by_token.post(url)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert Order.objects.get(pk=order_id).status == OrderStatus.FAILED


def test_requeue_by_a_browser_session_needs_its_csrf_token(api, monkeypatch) -> None:
    order_id = post(api, body()).json()["orderId"]
    fail_for_good(order_id, monkeypatch)
    get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True)
    browser = APIClient(enforce_csrf_checks=True)
    browser.login(username="ops", password="pw-ops-123")
    url = f"/api/orders/{order_id}/requeue"
    assert browser.post(url).status_code == 403
    from django.middleware.csrf import _get_new_csrf_string

    secret = _get_new_csrf_string()  # what the csrftoken cookie of a page would hold
    browser.cookies["csrftoken"] = secret
    response = browser.post(url, headers={"X-CSRFToken": secret})
    assert response.status_code == 200 and response.json()["status"] == "pending"


@pytest.mark.parametrize("token", [True, False], ids=["token", "session"])
def test_a_failed_order_requeued_by_staff_then_succeeds_with_its_history_kept(
    api, monkeypatch, token
) -> None:
    order_id = post(api, body()).json()["orderId"]
    failed = fail_for_good(order_id, monkeypatch)
    assert failed.attempts == 3
    before = statuses(failed)

    response = staff_client(token=token).post(f"/api/orders/{order_id}/requeue")
    assert response.status_code == 200, response.content
    requeued = response.json()
    assert requeued["status"] == "pending" and requeued["attempts"] == 3
    assert requeued["error"] is None and requeued["nextAttemptAt"] is None
    assert [e["status"] for e in requeued["events"]] == [*before, "pending"]
    assert requeued["events"][-1]["requeuedBy"] == "ops"

    done = run_to_end(Order.objects.get(pk=order_id))  # the dispatched task, as a worker runs it
    assert done.status == OrderStatus.CONFIRMED and done.attempts == 4
    assert statuses(done) == [
        *before,
        "pending",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]
    routing = done.events.filter(status="routing").order_by("seq")
    assert [e.attempt for e in routing] == [1, 2, 3, 4]
    assert_history_consistent(done)
    from dex.models import ChainTransaction

    assert ChainTransaction.objects.filter(reference__startswith=f"{order_id}:").count() == 1


def test_requeue_gives_a_fresh_budget_of_attempts(api, monkeypatch) -> None:
    order_id = post(api, body()).json()["orderId"]
    fail_for_good(order_id, monkeypatch)
    staff = staff_client(token=True)
    assert staff.post(f"/api/orders/{order_id}/requeue").status_code == 200
    again = fail_for_good(order_id, monkeypatch)
    assert again.attempts == 6 and again.status == OrderStatus.FAILED


def test_requeue_of_an_expired_limit_order_waits_for_its_price_again(api) -> None:
    order_id = post(api, limit_body("0.98")).json()["orderId"]
    Order.objects.filter(pk=order_id).update(expires_at=timezone.now())
    assert tick() == []  # expired on the tick, never triggered
    assert Order.objects.get(pk=order_id).status == OrderStatus.EXPIRED

    response = staff_client(token=True).post(f"/api/orders/{order_id}/requeue")
    assert response.status_code == 200 and response.json()["status"] == "pending"
    (filled,) = tick()
    assert filled.status == OrderStatus.CONFIRMED and filled.attempts == 1
    assert statuses(filled) == [
        "pending",
        "expired",
        "pending",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]


@pytest.mark.parametrize("status", ["pending", "confirmed", "cancelled", "retrying"])
def test_requeue_is_409_unless_the_order_failed_for_good_or_expired(
    api, status, monkeypatch
) -> None:
    order_id = post(api, body()).json()["orderId"]
    if status == "confirmed":
        run_to_end(Order.objects.get(pk=order_id))
    elif status == "cancelled":
        api.post(f"/api/orders/{order_id}/cancel")
    elif status == "retrying":
        from dex.types import TransientChainError

        def once(tx):  # type: ignore[no-untyped-def]
            raise TransientChainError("rpc timeout", code="rpc_timeout")

        with monkeypatch.context() as patched, override_settings(ORDER_RETRY_BACKOFF_SECONDS=60):
            patched.setattr(pipeline, "transaction_send", once)
            order_execute(order_id)  # the first attempt failed, the next one is scheduled
        assert Order.objects.get(pk=order_id).next_attempt_at is not None
    response = staff_client(token=True).post(f"/api/orders/{order_id}/requeue")
    assert response.status_code == 409 and response.json()["error"] == "conflict"


# --- idempotency -----------------------------------------------------------------------------


def test_a_replayed_idempotency_key_returns_the_first_answer_and_creates_nothing(api) -> None:
    payload = limit_body("1.5")
    first = post(api, payload, **{"Idempotency-Key": "order-42"})
    again = post(api, payload, **{"Idempotency-Key": "order-42"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert Order.objects.count() == 1


def test_the_same_order_written_differently_is_a_replay_not_a_conflict(api) -> None:
    first = post(api, body(amountIn="1.5"), **{"Idempotency-Key": "k"})
    again = post(api, body(amountIn=1.50), **{"Idempotency-Key": "k"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["orderId"] == first.json()["orderId"]


def test_a_replay_after_the_order_finished_returns_that_order_as_it_is_now(api) -> None:
    first = post(api, body(), **{"Idempotency-Key": "k-done"})
    run_to_end(Order.objects.get(pk=first.json()["orderId"]))
    again = post(api, body(), **{"Idempotency-Key": "k-done"})
    assert again.status_code == 200 and again.json()["status"] == "confirmed"
    assert Order.objects.count() == 1


def test_the_same_key_with_another_body_is_409_and_creates_nothing(api) -> None:
    first = post(api, body(), **{"Idempotency-Key": "k-2"})
    other = post(api, body(amountIn="2"), **{"Idempotency-Key": "k-2"})
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
    assert other.json()["details"]["orderId"] == first.json()["orderId"]
    assert Order.objects.count() == 1


def test_a_key_is_per_wallet(api) -> None:
    a = post(api, body(walletAddress=make_wallet(1)), **{"Idempotency-Key": "shared"})
    b = post(api, body(walletAddress=make_wallet(2)), **{"Idempotency-Key": "shared"})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["orderId"] != b.json()["orderId"]


def test_a_key_is_kept_for_at_least_a_day(api) -> None:
    first = post(api, body(), **{"Idempotency-Key": "k-old"})
    Order.objects.filter(pk=first.json()["orderId"]).update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    again = post(api, body(), **{"Idempotency-Key": "k-old"})
    assert again.status_code == 200 and again.json()["orderId"] == first.json()["orderId"]
