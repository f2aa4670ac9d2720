"""Who may talk to the server: an HTTP Host outside ALLOWED_HOSTS gets a 400 JSON answer, and a
browser page from an origin outside WEBSOCKET_ALLOWED_ORIGINS (default: ALLOWED_HOSTS) cannot
open a WebSocket, while programs that send no Origin can."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from config.asgi import BrowserOriginValidator, application

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "127.0.0.2"])
def test_a_request_for_a_host_we_do_not_serve_is_a_400_json(client, host) -> None:
    response = client.get("/api/orders", HTTP_HOST=host)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "bad_request"


def test_a_request_for_our_host_is_served(client) -> None:
    assert client.get("/api/orders", HTTP_HOST="localhost:8000").status_code == 200


async def open_socket(origin: str | None) -> tuple[bool, WebsocketCommunicator]:
    headers = [(b"origin", origin.encode())] if origin is not None else []
    ws = WebsocketCommunicator(application, "/ws", headers=headers)
    connected, _ = await ws.connect()
    return connected, ws


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "origin", ["http://evil.example", "https://localhost.evil.example", "null", "file://"]
)
async def test_a_browser_page_from_a_foreign_origin_cannot_open_a_websocket(origin) -> None:
    connected, ws = await open_socket(origin)
    assert not connected
    await ws.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("origin", [None, "http://localhost:8000", "https://127.0.0.1"])
async def test_our_pages_and_programs_without_an_origin_may_connect(origin) -> None:
    connected, ws = await open_socket(origin)
    assert connected
    await ws.send_to(text_data='{"action": "ping"}')
    assert json.loads(await ws.receive_from(timeout=10)) == {"type": "pong"}
    await ws.disconnect()
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


@pytest.mark.asyncio
async def test_websocket_allowed_origins_narrows_who_may_connect() -> None:
    """WEBSOCKET_ALLOWED_ORIGINS takes host patterns, as ALLOWED_HOSTS does."""

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "websocket.accept"})

    guarded = BrowserOriginValidator(app, [".example.com"])
    for origin, allowed in [
        ("https://app.example.com", True),
        ("https://example.com", True),
        ("https://example.com.evil.net", False),
        ("http://localhost:8000", False),
        (None, True),
    ]:
        headers = [(b"origin", origin.encode())] if origin else []
        ws = WebsocketCommunicator(guarded, "/ws", headers=headers)
        connected, _ = await ws.connect()
        assert connected is allowed, origin
        await ws.disconnect()
