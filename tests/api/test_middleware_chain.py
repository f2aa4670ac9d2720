"""Under daphne a request crosses into a worker thread as few times as Django allows: the middleware
chain runs synchronously in one thread (orders.middleware.SyncChainMiddleware), never one thread
hop per middleware method. The hops are counted on the application config/asgi.py gives daphne;
a real daphne then shows the API, the body-size guard and the static files all still work."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any

import httpx
import pytest
from asgiref import sync
from django.conf import settings

from tests.conftest import make_wallet

ORDER = {
    "walletAddress": make_wallet(41),
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amountIn": "1",
    "orderType": "market",
}

#: The hops Django cannot avoid with a sync view under ASGI: request_started, the chain, the
#: way back into the async view machinery and out to the view (process_view, view, render),
#: response.close(). With every middleware run async it is 17.
MOST_HOPS = 7


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every sync_to_async / async_to_sync call, by the name of what it runs."""
    counted: Counter[str] = Counter()
    to_async, to_sync = sync.SyncToAsync.__call__, sync.AsyncToSync.__call__

    async def counting_to_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted[getattr(self.func, "__qualname__", repr(self.func))] += 1
        return await to_async(self, *args, **kwargs)

    def counting_to_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted[getattr(self.awaitable, "__qualname__", repr(self.awaitable))] += 1
        return to_sync(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counting_to_async)
    monkeypatch.setattr(sync.AsyncToSync, "__call__", counting_to_sync)
    return counted


def daphne_app() -> Any:
    """The HTTP application daphne runs (config/asgi.py), with the chain it builds at import."""
    from config.asgi import django_asgi_app

    return django_asgi_app


async def asgi_request(
    app: Any, method: str, path: str, body: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def test_the_sync_chain_pin_is_the_last_middleware() -> None:
    assert settings.MIDDLEWARE[-1] == "orders.middleware.SyncChainMiddleware"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_an_order_crosses_into_a_thread_once_for_the_whole_middleware_chain(hops) -> None:
    app = daphne_app()
    body = json.dumps(ORDER).encode()
    status, _, content = await asgi_request(app, "POST", "/api/orders/execute", body)
    assert status == 201, content

    hops.clear()
    status, _, content = await asgi_request(app, "POST", "/api/orders/execute", body)
    assert status == 201, content
    per_middleware = [n for n in hops if re.search(r"Middleware\.process_(request|response)$", n)]
    assert per_middleware == [], f"middleware methods run in threads of their own: {hops}"
    assert sum(hops.values()) <= MOST_HOPS, hops


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_an_oversized_body_is_still_refused_before_the_view(hops) -> None:
    app = daphne_app()
    body = json.dumps({**ORDER, "padding": "x" * (settings.MAX_REQUEST_BYTES + 1)}).encode()
    status, _, content = await asgi_request(app, "POST", "/api/orders/execute", body)
    assert status == 413
    assert json.loads(content)["error"] == "payload_too_large"
    assert not any("View" in name for name in hops), hops


@pytest.mark.e2e
def test_daphne_serves_the_api_and_the_static_files(services) -> None:
    _, port = services("daphne")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        created = client.post("/api/orders/execute", json=ORDER)
        assert created.status_code == 201, created.text
        order = client.get(created.headers["Location"])
        assert order.status_code == 200 and order.json()["orderId"] == created.json()["orderId"]

        script = client.get("/static/dashboard.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert len(script.content) > 100

        too_big = client.post(
            "/api/orders/execute",
            content=json.dumps({**ORDER, "padding": "x" * (settings.MAX_REQUEST_BYTES + 1)}),
            headers={"content-type": "application/json"},
        )
        assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
