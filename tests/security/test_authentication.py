"""Who may do what: the Django admin and the requeue endpoint refuse anonymous clients and
non-staff users; a signed-in staff session still needs its CSRF token for a requeue; a staff
token works. (Flower's basic auth is tested by the operator's suite.)"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orders.models import Order, OrderStatus

pytestmark = pytest.mark.django_db

ADMIN_PAGES = ["/admin/", "/admin/orders/order/", "/admin/auth/user/", "/admin/dex/pool/"]


@pytest.fixture
def staff():  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_user("ops", password="pw-ops-12345", is_staff=True)


@pytest.fixture
def member():  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_user("alice", password="pw-alice-12345")


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_the_admin_sends_an_anonymous_client_to_the_login_page(client, path) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_the_admin_refuses_a_signed_in_non_staff_user(client, member, path) -> None:
    client.force_login(member)
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_admin_opens_for_staff_and_not_for_a_wrong_password(client, staff) -> None:
    response = client.post("/admin/login/", {"username": "ops", "password": "wrong-password"})
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert client.get("/admin/orders/order/").status_code == 302
    client.force_login(staff)
    assert client.get("/admin/orders/order/").status_code == 200


@pytest.fixture
def failed_order(submit):  # type: ignore[no-untyped-def]
    order = submit()
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.FAILED)
    return order


def requeue(api: APIClient, order: Order):  # type: ignore[no-untyped-def]
    return api.post(f"/api/orders/{order.pk}/requeue")


def test_requeue_refuses_an_anonymous_client_with_a_json_401(api, failed_order) -> None:
    response = requeue(api, failed_order)
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated" and response.json()["message"]
    assert Order.objects.get(pk=failed_order.pk).status == OrderStatus.FAILED


def test_requeue_refuses_a_forged_token(api, failed_order) -> None:
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert requeue(api, failed_order).status_code == 401
    assert Order.objects.get(pk=failed_order.pk).status == OrderStatus.FAILED


def test_requeue_refuses_a_non_staff_token_with_403(api, failed_order, member) -> None:
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=member).key}")
    response = requeue(api, failed_order)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert Order.objects.get(pk=failed_order.pk).status == OrderStatus.FAILED


def test_requeue_accepts_a_staff_token(api, failed_order, staff) -> None:
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    response = requeue(api, failed_order)
    assert response.status_code == 200 and response.json()["status"] == "pending"


def test_a_staff_session_needs_its_csrf_token_to_requeue(failed_order, staff) -> None:
    """A signed-in operator's browser must not be made to requeue from another site."""
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(staff)
    response = requeue(browser, failed_order)
    assert response.status_code == 403 and "CSRF" in response.json()["message"]
    assert Order.objects.get(pk=failed_order.pk).status == OrderStatus.FAILED
    page = browser.get("/admin/")  # any page that renders a form sets the csrftoken cookie
    assert page.status_code == 200
    token = browser.cookies["csrftoken"].value
    response = browser.post(f"/api/orders/{failed_order.pk}/requeue", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
