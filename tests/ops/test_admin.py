"""The Django admin as an operator uses it: the order list (columns, filters, search, a query
count that does not grow with the number of orders), one order's history, the requeue and cancel
actions through the engine's services, the market's pools and the simulated chain."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dex.models import ChainTransaction, Pool
from engine.pipeline import order_execute
from engine.transitions import order_transition
from orders.models import Order, OrderStatus
from tests.conftest import make_wallet

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:orders_order_changelist"


def run_to_end(order: Order) -> Order:
    for _ in range(10):
        outcome = order_execute(order.pk)
        if outcome.run_at is None:
            break
        time.sleep(max((outcome.run_at - timezone.now()).total_seconds(), 0))
    order.refresh_from_db()
    return order


def fail(order: Order, message: str = "the venue refused the swap") -> Order:
    """A final failure, written through the state machine as the pipeline writes one."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_transition(
            locked,
            OrderStatus.FAILED,
            error=message,
            error_code="insufficient_liquidity",
            next_attempt_at=None,
            payload={"error": message, "errorCode": "insufficient_liquidity", "willRetry": False},
        )
    return locked


def page(client: Any, name: str, *args: Any, **params: str) -> str:
    response = client.get(reverse(name, args=args), params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def ids_on(html: str) -> set[str]:
    return set(re.findall(r'<code title="([0-9a-f-]{36})">', html))


def test_staff_only(client) -> None:
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_order_list_shows_what_an_operator_scans_for(admin_client, submit) -> None:
    confirmed = run_to_end(submit())
    pending = submit(amount_in=Decimal("2.5"))
    html = page(admin_client, CHANGELIST)
    assert {str(confirmed.pk), str(pending.pk)} <= ids_on(html)
    for text in (
        "SOL → USDC",
        "2.5 SOL",
        "1/3",
        "0/3",
        confirmed.selected_dex,
        "oe-status--confirmed",
    ):
        assert text in html
    assert confirmed.tx_hash[:6] in html and confirmed.tx_hash in html  # short, full on hover
    # The events' status column must not leak in: the order list is one row per order.
    assert html.count(str(confirmed.pk)) >= 1


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status__exact": "confirmed"}, {"confirmed"}),
        ({"status__exact": "pending"}, {"pending", "limit"}),
        ({"order_type__exact": "limit"}, {"limit"}),
        ({"venue": "none"}, {"pending", "limit"}),
        ({"retry": "retried"}, set()),
    ],
)
def test_the_filters(admin_client, submit, params: dict[str, str], expected: set[str]) -> None:
    orders = {
        "confirmed": run_to_end(submit()),
        "pending": submit(),
        "limit": submit(order_type="limit", limit_price=Decimal("1000")),
    }
    shown = ids_on(page(admin_client, CHANGELIST, **params))
    assert shown == {str(orders[name].pk) for name in expected}


def test_the_venue_and_date_filters(admin_client, submit) -> None:
    confirmed = run_to_end(submit())
    # As the date filter's own links write them: aware datetimes (a bare date is naive).
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    venue = page(admin_client, CHANGELIST, venue=confirmed.selected_dex)
    assert ids_on(venue) == {str(confirmed.pk)}
    dated = page(admin_client, CHANGELIST, created_at__gte=str(today))
    assert str(confirmed.pk) in ids_on(dated)
    future = page(admin_client, CHANGELIST, created_at__gte=str(today.replace(year=2999)))
    assert ids_on(future) == set()


def test_search_by_id_prefix_wallet_and_signature(admin_client, submit) -> None:
    mine = run_to_end(submit(wallet_address=make_wallet(42)))
    other = submit(wallet_address=make_wallet(43))
    for term in (str(mine.pk), str(mine.pk)[:8], make_wallet(42), mine.tx_hash, mine.tx_hash[:20]):
        assert ids_on(page(admin_client, CHANGELIST, q=term)) == {str(mine.pk)}, term
    assert ids_on(page(admin_client, CHANGELIST, q=make_wallet(43))) == {str(other.pk)}
    assert ids_on(page(admin_client, CHANGELIST, q="not-an-id!")) == set()


def test_the_list_costs_the_same_queries_for_3_or_40_orders(admin_client, submit) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            page(admin_client, CHANGELIST)
        return len(captured)

    for _ in range(3):
        submit()
    few = queries()
    for _ in range(37):
        submit()
    assert queries() == few
    assert few <= 8  # session, user, the page, its count: no per-row queries


def test_one_order_shows_its_events_in_seq_order_with_payloads(admin_client, submit) -> None:
    order = run_to_end(submit())
    html = page(admin_client, "admin:orders_order_change", order.pk)
    events = html[html.find('id="events-group"') :]
    positions = [
        events.find(f"<p>{s}</p>")
        for s in ("Pending", "Routing", "Building", "Submitted", "Confirmed")
    ]
    assert -1 not in positions and positions == sorted(positions), positions
    assert '<pre class="oe-json">' in html and "&quot;quotes&quot;" in html
    assert "instructions, CU limit" in html  # the building event's one-line summary
    assert order.tx_hash in html
    assert "Requeue</button>" not in html and "Cancel order</button>" not in html


def _act(client: Any, action: str, orders: list[Order]) -> list[str]:
    response = client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(o.pk) for o in orders]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_requeue_goes_through_the_engine_and_reports_what_it_skipped(admin_client, submit) -> None:
    failed = fail(submit())
    pending = submit()
    confirmed = run_to_end(submit())
    notes = _act(admin_client, "requeue_orders", [failed, pending, confirmed])
    assert notes[0] == f"Requeued 1 order: {str(failed.pk)[:8]}."
    assert any(
        n.startswith("Skipped 1 order (the order is pending: only a failed or expired order")
        and str(pending.pk)[:8] in n
        for n in notes
    ), notes
    assert any("confirmed" in n and str(confirmed.pk)[:8] in n for n in notes), notes
    failed.refresh_from_db()
    assert failed.status == "pending"
    last = failed.events.order_by("-seq").first()
    assert (last.seq, last.status, last.payload) == (3, "pending", {"requeuedBy": "admin"})
    assert failed.max_attempts == failed.attempts + 3
    pending.refresh_from_db()
    confirmed.refresh_from_db()
    assert (pending.status, confirmed.status) == ("pending", "confirmed")


def test_cancel_goes_through_the_engine_and_reports_what_it_skipped(admin_client, submit) -> None:
    waiting = submit(order_type="limit", limit_price=Decimal("1000"))
    done = run_to_end(submit())
    notes = _act(admin_client, "cancel_orders", [waiting, done])
    assert notes[0] == f"Cancelled 1 order: {str(waiting.pk)[:8]}."
    assert "only a pending order can be cancelled" in notes[1]
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"
    assert waiting.events.get(seq=2).payload == {"reason": "cancelled by operator admin"}


def test_one_order_page_has_the_buttons_that_apply(admin_client, submit) -> None:
    failed = fail(submit())
    html = page(admin_client, "admin:orders_order_change", failed.pk)
    assert "Requeue</button>" in html and "Cancel order</button>" not in html
    url = reverse("admin:orders_order_requeue", args=[failed.pk])
    assert admin_client.get(url).status_code == 405  # a write is a POST, with its CSRF token
    response = admin_client.post(url, follow=True)
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        f"Requeued 1 order: {str(failed.pk)[:8]}."
    ]
    failed.refresh_from_db()
    assert failed.status == "pending"
    again = admin_client.post(url, follow=True)
    assert "Skipped 1 order (the order is pending" in str(next(iter(again.context["messages"])))


def test_nobody_adds_edits_or_deletes_orders_here(admin_client, submit) -> None:
    order = submit()
    assert admin_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:orders_order_delete", args=[order.pk])).status_code == 403
    )
    admin_client.post(
        reverse("admin:orders_order_change", args=[order.pk]), {"status": "confirmed"}
    )
    order.refresh_from_db()
    assert order.status == "pending"


def test_the_events_list_and_its_search(admin_client, submit) -> None:
    order = run_to_end(submit())
    html = page(admin_client, "admin:orders_orderevent_changelist", q=str(order.pk)[:8])
    assert html.count(f'title="{order.pk}"') == 5


# --- the market ----------------------------------------------------------------------------------


def test_pools_show_reserves_in_whole_tokens_and_the_current_price(admin_client) -> None:
    with CaptureQueriesContext(connection) as captured:
        html = page(admin_client, "admin:dex_pool_changelist", q="USDC")
    assert len(captured) <= 8  # tokens joined, not fetched per row
    rows = re.findall(r"<tr>.*?</tr>", html, re.S)
    sol_usdc = [r for r in rows if "SOL/USDC" in r]
    assert len(sol_usdc) == 2  # Raydium and Meteora
    for row in sol_usdc:
        price = Decimal(re.search(r"([\d,]+\.\d+) USDC/SOL", row).group(1).replace(",", ""))
        assert Decimal(100) < price < Decimal(200)  # the seed prices SOL near 150 USDC
        assert re.search(r"[\d,]+(\.\d+)? SOL</td>", row) and " USDC</td>" in row
    pool = Pool.objects.filter(venue="meteora").first()
    detail = page(admin_client, "admin:dex_pool_change", pool.pk)
    assert "Bins:" in detail and "Price (B per A):" in detail


def test_the_chain_transactions_are_listed_read_only(admin_client, submit) -> None:
    order = run_to_end(submit())
    tx = ChainTransaction.objects.get(signature=order.tx_hash)
    html = page(admin_client, "admin:dex_chaintransaction_changelist", q=str(order.pk))
    assert order.tx_hash in html and "landed" in html
    assert f"{order.amount_out.normalize():,f}".rstrip("0")[:5] in html.replace(",", "")
    detail = page(admin_client, "admin:dex_chaintransaction_change", tx.pk)
    assert "&quot;instructions&quot;" in detail
    assert admin_client.get(reverse("admin:dex_chaintransaction_add")).status_code == 403


def test_launch_a_token_from_the_admin(admin_client) -> None:
    url = reverse("admin:dex_pool_launch")
    assert "Launch a token" in page(admin_client, "admin:dex_pool_changelist")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(
        url,
        {"symbol": "ZAPP", "quote_symbol": "SOL", "venues": ["raydium", "meteora"], "decimals": 6},
        follow=True,
    )
    notes = [str(m) for m in response.context["messages"]]
    assert notes and notes[0].startswith("Launched ZAPP: opened raydium ZAPP/SOL, meteora ZAPP/SOL")
    assert Pool.objects.filter(token_a__symbol="ZAPP").count() == 2
    refused = admin_client.post(
        url, {"symbol": "SOL", "quote_symbol": "SOL", "venues": ["raydium"], "decimals": 6}
    )
    assert refused.status_code == 200 and "errornote" in refused.content.decode()
    # A price and liquidity that would leave a pool with an empty side: said on the form.
    empty = admin_client.post(
        url,
        {
            "symbol": "DUST",
            "quote_symbol": "SOL",
            "venues": ["raydium", "meteora"],
            "liquidity": "0.000000001",
            "decimals": 6,
        },
    )
    assert empty.status_code == 200
    assert "change the price or the liquidity" in empty.content.decode()
    assert not Pool.objects.filter(token_a__symbol="DUST").exists()


def test_the_pool_list_shows_reserves_of_any_size(admin_client) -> None:
    # The largest a launch allows, 10^30 base units, and more: the list still renders.
    pool = Pool.objects.filter(venue="raydium").first()
    Pool.objects.filter(pk=pool.pk).update(reserve_a=10**39, reserve_b=10**30)
    html = page(admin_client, "admin:dex_pool_changelist")
    assert f"{10**39 // 10**pool.token_a.decimals:,}" in html


def test_an_action_on_something_that_is_not_an_order_id_does_nothing_and_says_so(
    admin_client, submit
) -> None:
    failed = fail(submit())
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "requeue_orders", "_selected_action": [str(failed.pk), "abc", "\x00"]},
        follow=True,
    )
    assert response.status_code == 200
    notes = [str(m) for m in response.context["messages"]]
    assert notes == ["Nothing was done: not an order id: 'abc', '\\x00'."], notes
    failed.refresh_from_db()
    assert failed.status == "failed"
