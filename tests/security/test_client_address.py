"""The submission rate limit keys on the client's address. Behind no proxy (the default) the
X-Forwarded-For header is the client's own writing and is ignored; with API_TRUST_PROXY the entry
that our proxy appended (API_PROXY_HOPS from the right) is the client, and a client that forges
the header's left part gains nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.django_db

URL = "/api/orders/execute"


@pytest.fixture(autouse=True)
def _two_per_minute(settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_RATE_LIMIT = "2/m"


def post(api, payload: dict[str, Any], peer: str, forwarded: str | None = None) -> int:  # type: ignore[no-untyped-def]
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    response = api.post(URL, data=json.dumps(payload), content_type="application/json", **extra)
    return response.status_code


def test_without_a_trusted_proxy_the_header_is_ignored(api, order_payload, settings) -> None:
    settings.API_TRUST_PROXY = False
    codes = [post(api, order_payload, "198.51.100.7", f"203.0.113.{i}") for i in range(3)]
    assert codes == [201, 201, 429]  # one client, whatever it claims to be
    assert post(api, order_payload, "198.51.100.8") == 201  # another peer has its own budget


def test_behind_a_trusted_proxy_each_real_client_has_its_own_budget(
    api, order_payload, settings
) -> None:
    settings.API_TRUST_PROXY = True
    proxy = "10.0.0.2"
    codes = [post(api, order_payload, proxy, f"203.0.113.{i}") for i in range(4)]
    assert codes == [201] * 4  # four clients behind one proxy address
    codes = [post(api, order_payload, proxy, "203.0.113.50") for _ in range(3)]
    assert codes == [201, 201, 429]


def test_a_forged_left_part_of_the_header_does_not_reset_the_budget(
    api, order_payload, settings
) -> None:
    settings.API_TRUST_PROXY = True
    proxy, client = "10.0.0.2", "203.0.113.9"
    codes = [post(api, order_payload, proxy, f"6.6.6.{i}, {client}") for i in range(3)]
    assert codes == [201, 201, 429]


def test_two_proxy_hops(api, order_payload, settings) -> None:
    settings.API_TRUST_PROXY, settings.API_PROXY_HOPS = True, 2
    # client → load balancer (appends the client) → nginx (appends the balancer) → daphne
    codes = [
        post(api, order_payload, "10.0.0.3", f"6.6.6.{i}, 203.0.113.77, 10.0.0.1") for i in range(3)
    ]
    assert codes == [201, 201, 429]
    assert post(api, order_payload, "10.0.0.3", "203.0.113.78, 10.0.0.1") == 201


def test_a_header_that_is_not_an_address_falls_back_to_the_peer(
    api, order_payload, settings
) -> None:
    settings.API_TRUST_PROXY = True
    codes = [post(api, order_payload, "10.0.0.4", f"not-an-ip-{i}") for i in range(3)]
    assert codes == [201, 201, 429]
