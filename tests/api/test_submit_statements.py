"""A submission writes the order and its first event in one statement: no BEGIN/COMMIT round trips
of its own, and rows exactly as the ORM reads them back."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import Order, OrderEvent, OrderStatus
from tests.conftest import make_wallet

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_submission_is_one_statement_and_reads_back_as_written(api) -> None:
    body = {
        "walletAddress": make_wallet(51),
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "1.25",
        "orderType": "market",
    }
    warm = api.post("/api/orders/execute", data=json.dumps(body), content_type="application/json")
    assert warm.status_code == 201, warm.content  # the token registry and pools are now cached
    with CaptureQueriesContext(connection) as queries:
        response = api.post(
            "/api/orders/execute", data=json.dumps(body), content_type="application/json"
        )
    assert response.status_code == 201, response.content
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["WITH"], [
        q["sql"][:60] for q in queries.captured_queries
    ]

    order = Order.objects.get(pk=response.json()["orderId"])
    assert order.status == OrderStatus.PENDING and order.last_seq == 1
    assert order.amount_in == Decimal("1.25") and order.request_fingerprint
    assert order.created_at is not None and order.updated_at >= order.created_at
    (event,) = OrderEvent.objects.filter(order=order)
    assert (event.seq, event.status, event.attempt, event.payload) == (1, "pending", 0, {})
    assert event.created_at == order.created_at
    assert response.json()["createdAt"].startswith(order.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
