"""Reading orders: one with its history (cache while live, database after), the paginated list
with filters and metrics, cancel, requeue, quote and health."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from engine.cache import order_cache_get, orders_cache_store
from engine.events import outbox
from orders.models import Order, OrderStatus
from tests.engine.test_pipeline import run_to_end

pytestmark = pytest.mark.django_db


def test_get_returns_the_order_with_its_events(api, submit) -> None:
    order = run_to_end(submit())
    body = api.get(f"/api/orders/{order.pk}").json()
    assert body["orderId"] == str(order.pk) and body["status"] == "confirmed"
    assert [e["seq"] for e in body["events"]] == [1, 2, 3, 4, 5]
    assert body["txHash"] == order.tx_hash
    assert body["quote"]["minAmountOut"] and body["amountOut"] and body["executedPrice"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_live_order_is_served_from_the_cache_and_a_finished_one_from_postgres(
    api, submit
) -> None:
    order = submit()
    outbox.flush()  # the cache is written after the commit, off the request thread
    cached = order_cache_get(str(order.pk))
    assert cached is not None and cached["status"] == "pending"
    assert [e["seq"] for e in cached["events"]] == [1]
    assert api.get(f"/api/orders/{order.pk}").json() == cached
    run_to_end(order)
    outbox.flush()
    assert order_cache_get(str(order.pk)) is None
    assert api.get(f"/api/orders/{order.pk}").json()["status"] == "confirmed"


def test_one_cache_write_holds_several_orders_and_leaves_each_as_last_written() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())

    def event(order_id: str, seq: int, status: str) -> dict[str, object]:
        return {"orderId": order_id, "seq": seq, "status": status}

    orders_cache_store(
        [
            ({"orderId": a, "status": "pending"}, [event(a, 1, "pending")], True),
            ({"orderId": b, "status": "pending"}, [event(b, 1, "pending")], True),
            ({"orderId": a, "status": "routing"}, [event(a, 2, "routing")], True),
        ]
    )
    cached = order_cache_get(a)
    assert cached is not None and cached["status"] == "routing"
    assert [e["seq"] for e in cached["events"]] == [1, 2]
    assert order_cache_get(b) is not None
    # A final order's copy is dropped, in the same kind of write.
    orders_cache_store([({"orderId": b, "status": "confirmed"}, [event(b, 2, "confirmed")], False)])
    assert order_cache_get(b) is None and order_cache_get(a) is not None


def test_the_list_is_newest_first_paginated_filtered_and_carries_metrics(api, submit) -> None:
    orders = [submit(amount_in=Decimal(n)) for n in range(1, 6)]
    run_to_end(orders[0])
    first = api.get("/api/orders?limit=2").json()
    assert [o["orderId"] for o in first["results"]] == [str(o.pk) for o in orders[:-3:-1]]
    second = api.get(f"/api/orders?limit=2&cursor={first['nextCursor']}").json()
    assert [o["orderId"] for o in second["results"]] == [str(orders[2].pk), str(orders[1].pk)]
    page = api.get("/api/orders?limit=2&page=3").json()
    assert [o["orderId"] for o in page["results"]] == [str(orders[0].pk)]
    assert page["count"] == 5
    confirmed = api.get("/api/orders?status=confirmed").json()["results"]
    assert [o["orderId"] for o in confirmed] == [str(orders[0].pk)]
    metrics = first["metrics"]
    assert metrics["orders"]["pending"] == 4 and metrics["orders"]["confirmed"] == 1
    assert set(metrics["queue"]) == {"waiting", "active"}
    assert metrics["lastMinute"]["confirmed"] == 1
    assert metrics["latencyMs"]["p50"] is not None


@pytest.mark.parametrize(
    "query",
    [
        "status=bogus",
        "limit=0",
        "limit=1000",
        "cursor=%%%",
        "page=0",
        "orderType=x",
        # An OFFSET past bigint was a 503 from PostgreSQL (found by the schema fuzzer).
        "page=99999999999999999",
    ],
)
def test_bad_list_parameters_are_400(api, query) -> None:
    response = api.get(f"/api/orders?{query}")
    assert response.status_code == 400 and response.json()["error"] == "validation_error"
    assert response.json()["details"].keys() == {query.split("=")[0]}


def test_the_last_allowed_page_is_an_empty_list(api, submit) -> None:
    submit()
    response = api.get("/api/orders?page=1000000")
    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["count"] == 1


def test_cancel_a_pending_order_and_not_a_routed_one(api, submit) -> None:
    order = submit()
    response = api.post(f"/api/orders/{order.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.post(f"/api/orders/{order.pk}/cancel").status_code == 409
    done = run_to_end(submit())
    response = api.post(f"/api/orders/{done.pk}/cancel")
    assert response.status_code == 409 and response.json()["error"] == "conflict"
    assert api.post(f"/api/orders/{uuid.uuid4()}/cancel").status_code == 404


def test_requeue_is_for_staff_only(api, submit) -> None:
    order = submit()
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.FAILED)
    assert api.post(f"/api/orders/{order.pk}/requeue").status_code in (401, 403)
    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    api.force_authenticate(user)
    assert api.post(f"/api/orders/{order.pk}/requeue").status_code == 403
    staff = get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True)
    api.force_authenticate(staff)
    response = api.post(f"/api/orders/{order.pk}/requeue")
    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert api.post(f"/api/orders/{order.pk}/requeue").status_code == 409


def test_quote_lists_every_venue_and_the_best(api) -> None:
    body = api.get("/api/quote?tokenIn=SOL&tokenOut=USDC&amountIn=2").json()
    dexes = {q["dex"] for q in body["quotes"]}
    assert {"raydium", "meteora"} <= dexes
    best = body["best"]
    assert Decimal(best["amountOut"]) == max(Decimal(q["amountOut"]) for q in body["quotes"])
    assert best["legs"] and all("percent" in leg for leg in best["legs"])


@pytest.mark.parametrize(
    "query",
    [
        "",
        "tokenIn=SOL&tokenOut=SOL&amountIn=1",
        "tokenIn=SOL&tokenOut=USDC&amountIn=-1",
        "tokenIn=XXX&tokenOut=USDC&amountIn=1",
        "tokenIn=SOL&tokenOut=USDC&amountIn=nan",
    ],
)
def test_bad_quote_queries_are_400(api, query) -> None:
    response = api.get(f"/api/quote?{query}")
    assert response.status_code == 400


def test_health_without_a_worker_is_503_naming_the_check(api) -> None:
    response = api.get("/health")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok" and checks["redis"] == "ok" and checks["broker"] == "ok"
    assert checks["workers"] == 0 and "worker" in checks["workersError"]


def test_schema_and_docs_are_served(api) -> None:
    assert api.get("/api/schema").status_code == 200
    assert api.get("/api/docs").status_code == 200
