"""Under daphne a request crosses into a worker thread once: config.handler.OneHopASGIHandler runs
request_started, the whole (synchronous) middleware chain, the view and request_finished in one
sync_to_async call, where Django's own ASGIHandler made 17 crossings per POST. The hops are
counted on the application config/asgi.py gives daphne; the signals, exception middleware,
streaming responses and disconnects are checked on it too, and a real daphne then shows the API,
the body-size guard and the static files all still work."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref import sync
from django.conf import settings
from django.core import signals
from django.db import DataError, IntegrityError, OperationalError, ProgrammingError, connections

from tests.conftest import make_wallet

ORDER = {
    "walletAddress": make_wallet(41),
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amountIn": "1",
    "orderType": "market",
}

#: One sync_to_async call for the whole request. Django's ASGIHandler makes 17 (every middleware
#: run async), or 7 with the chain pinned synchronous (request_started, the chain, process_view,
#: the view, rendering, response.close()).
MOST_HOPS = 1


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


@pytest.fixture(autouse=True)
def _handler_threads_let_go_of_the_test_database() -> Iterator[None]:
    """Django's connections are per thread, and the handler's threads outlive a test: close
    theirs afterwards (one call on each thread, held apart by a barrier), or the test database
    cannot be dropped at the end of the run."""
    yield
    pool = daphne_app().threads
    each = threading.Barrier(pool._max_workers)

    def close() -> None:
        each.wait(timeout=10)
        connections.close_all()

    for done in [pool.submit(close) for _ in range(pool._max_workers)]:
        done.result()


async def asgi_request(
    app: Any, method: str, path: str, body: bytes = b"", disconnect: bool = False
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
        if disconnect:  # the client goes away as soon as its request is sent
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if not sent:
        return 0, {}, b""
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def request_signals() -> Iterator[list[tuple[str, int]]]:
    """request_started / request_finished as they are sent, with the thread each is sent on."""
    seen: list[tuple[str, int]] = []

    def started(**_: Any) -> None:
        seen.append(("started", threading.get_ident()))

    def finished(**_: Any) -> None:
        seen.append(("finished", threading.get_ident()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


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
async def test_the_request_signals_are_sent_once_each_on_the_view_thread(request_signals) -> None:
    """close_old_connections runs on these two: on the thread that used the connection, so a
    pooled connection (DB_POOL=1) goes back to the pool."""
    status, _, content = await asgi_request(
        daphne_app(), "POST", "/api/orders/execute", json.dumps(ORDER).encode()
    )
    assert status == 201, content
    assert [name for name, _ in request_signals] == ["started", "finished"]
    (_, started_on), (_, finished_on) = request_signals
    assert started_on == finished_on != threading.get_ident()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_a_database_error_in_the_view_is_still_a_503(monkeypatch, hops) -> None:
    from orders.views import OrderExecuteView

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(OrderExecuteView, "post", down)
    status, headers, content = await asgi_request(
        daphne_app(), "POST", "/api/orders/execute", json.dumps(ORDER).encode()
    )
    assert status == 503, content
    assert json.loads(content)["error"] == "service_unavailable"
    assert headers[b"Retry-After"] == b"5"
    assert sum(hops.values()) <= MOST_HOPS, hops


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(
    "error",
    [
        DataError("numeric field overflow"),
        IntegrityError("duplicate key value violates unique constraint"),
        ProgrammingError("column does not exist"),
    ],
)
async def test_a_database_error_that_is_not_an_outage_is_a_500_not_a_503(
    error, monkeypatch, caplog
) -> None:
    """The same error on every retry is a bug to look at, not an outage to wait out: Django's
    500 (JSON, no trace in the body) with the traceback logged, no Retry-After."""
    from orders.views import OrderExecuteView

    def broken(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(OrderExecuteView, "post", broken)
    status, headers, content = await asgi_request(
        daphne_app(), "POST", "/api/orders/execute", json.dumps(ORDER).encode()
    )
    assert status == 500, content
    assert json.loads(content)["error"] == "internal_error"
    assert b"Retry-After" not in headers
    assert "database unavailable" not in caplog.text
    assert any(r.exc_info and r.exc_info[1] is error for r in caplog.records)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.filterwarnings("error:StreamingHttpResponse must consume synchronous iterators")
async def test_a_static_file_is_read_and_closed_on_its_thread(request_signals, hops) -> None:
    """WhiteNoise answers with a streaming response over the file: it is read and closed on the
    request's thread, in the one hop (Django's own handler reads it on its shared thread, with a
    warning, and closes it in a third)."""
    status, headers, content = await asgi_request(daphne_app(), "GET", "/static/dashboard.js")
    assert status == 200
    assert headers[b"Content-Type"].startswith(b"text/javascript")
    assert int(headers[b"Content-Length"]) == len(content) > 100
    assert [name for name, _ in request_signals] == ["started", "finished"]
    (_, started_on), (_, finished_on) = request_signals
    assert started_on == finished_on
    assert sum(hops.values()) == 1, hops


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_requests_run_side_by_side_on_the_handlers_own_threads(request_signals) -> None:
    """Requests run on HTTP_THREADS threads kept from one request to the next (Django's own
    handler starts a new thread for every request, and a second one to stop it). Two requests
    at once each hold one: the first waits in request_started until the second has started too,
    so the pair only completes if neither waits for the other."""
    both_started = threading.Barrier(2)
    names: list[str] = []

    def meet(**_: Any) -> None:
        names.append(threading.current_thread().name)
        if len(names) <= 2:
            both_started.wait(timeout=10)

    signals.request_started.connect(meet)
    try:
        body = json.dumps(ORDER).encode()
        answers = await asyncio.gather(
            *(asgi_request(daphne_app(), "POST", "/api/orders/execute", body) for _ in range(2))
        )
        for _ in range(2 * settings.HTTP_THREADS):
            answers.append(await asgi_request(daphne_app(), "GET", "/api/orders"))
    finally:
        signals.request_started.disconnect(meet)
    assert [status for status, _, _ in answers] == [201, 201] + [200] * 2 * settings.HTTP_THREADS
    threads = {}
    for name, thread in request_signals:
        threads.setdefault(thread, []).append(name)
    assert all(len(seen) % 2 == 0 for seen in threads.values()), request_signals
    assert len(set(names)) <= settings.HTTP_THREADS, names
    assert all(name.startswith("http_") for name in names), names


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_a_client_gone_before_the_answer_gets_none_and_the_request_still_finishes(
    request_signals,
) -> None:
    def slow(**_: Any) -> None:
        time.sleep(0.2)  # the disconnect arrives while the request is on its thread

    signals.request_started.connect(slow)
    try:
        status, _, _ = await asgi_request(
            daphne_app(), "POST", "/api/orders/execute", json.dumps(ORDER).encode(), True
        )
    finally:
        signals.request_started.disconnect(slow)
    assert status == 0  # nothing was sent
    assert [name for name, _ in request_signals] == ["started", "finished"]


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
    # A pool of two connections: were a request not to give its connection back (request_finished)
    # the third POST would wait for one and answer 503.
    _, port = services(
        "daphne", env={"DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "2", "DB_POOL_TIMEOUT": "1"}
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for _ in range(5):
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

        # A malformed form upload reaches Django, which answers in JSON (Twisted used to answer
        # a bare 400 with no body, before daphne or Django saw the request).
        for content_type, body in (
            ("multipart/form-data; boundary=x", b'{"walletAddress": "x"}'),
            ("multipart/form-data", b"--x\r\nnot a part\r\n"),
            ("application/x-www-form-urlencoded", b"a=1&b=%ZZ"),
        ):
            refused = client.post(
                "/api/orders/execute", content=body, headers={"content-type": content_type}
            )
            assert refused.status_code == 415, (content_type, refused.text)
            assert refused.json()["error"] == "unsupported_media_type"
