"""The admin in a real browser, as an operator uses it: log in, find an order, cancel a waiting
one with the action and read what it did, open an order's history, look at the pools. The
screenshots land in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.browser.test_dashboard import submit_over_http, wait_final
from tests.conftest import make_wallet

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def operator(transactional_db: None) -> tuple[str, str]:
    """A staff user daphne can log in: its password hashed as the real settings hash (the test
    settings' fast MD5 hasher is unknown to the daphne process)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    password = "operator-password"
    user = get_user_model().objects.create(username="operator", is_staff=True, is_superuser=True)
    user.password = PBKDF2PasswordHasher().encode(password, PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])
    return "operator", password


def test_an_operator_cancels_a_waiting_order_from_the_admin(
    operator: tuple[str, str], services, browser, artifacts: Path
) -> None:
    _, port = services("daphne")
    services("worker", name="adminb", concurrency=1)
    done = submit_over_http(port, 4, first_wallet=170)
    wait_final(port, done)
    waiting = httpx.post(
        f"http://127.0.0.1:{port}/api/orders/execute",
        json={
            "walletAddress": make_wallet(180),
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amountIn": "3",
            "orderType": "limit",
            "limitPrice": "100000",
        },
    ).json()["orderId"]

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    base = f"http://127.0.0.1:{port}"
    page.goto(f"{base}/admin/login/?next=/admin/orders/order/")
    page.fill("#id_username", operator[0])
    page.fill("#id_password", operator[1])
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 5
    page.screenshot(path=str(artifacts / "admin-orders.png"))

    page.check(f"input[name=_selected_action][value='{waiting}']")
    page.check(f"input[name=_selected_action][value='{done[0]}']")
    page.select_option("select[name=action]", "cancel_orders")
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist li")
    messages = page.locator("ul.messagelist li").all_inner_texts()
    assert messages[0] == f"Cancelled 1 order: {waiting[:8]}."
    assert "Skipped 1 order (the order is confirmed" in messages[1] and done[0][:8] in messages[1]
    page.screenshot(path=str(artifacts / "admin-actions.png"))

    page.goto(f"{base}/admin/orders/order/{done[0]}/change/")
    page.wait_for_selector("#events-group")
    statuses = page.locator("#events-group td.field-status").all_inner_texts()
    assert statuses == ["Pending", "Routing", "Building", "Submitted", "Confirmed"]
    page.locator("#events-group details").first.click()
    page.screenshot(path=str(artifacts / "admin-order.png"), full_page=True)

    page.goto(f"{base}/admin/dex/pool/?q=SOL")
    page.wait_for_selector("#result_list")
    assert "SOL/USDC" in page.locator("#result_list").inner_text()
    page.screenshot(path=str(artifacts / "admin-pools.png"))
