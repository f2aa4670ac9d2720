"""Django's HTTP handler for daphne: each request runs start to finish in one call on one of a
few threads of its own.

Why it exists: Django's ASGIHandler builds the middleware chain in async mode. With a sync view
and sync middleware it then moves into a worker thread and back many times per request. Each
move costs daphne CPU. request_started is one move, the chain another, then process_view, the
view, rendering and finally response.close() (which sends request_finished). A POST
/api/orders/execute made 17 moves, or 7 with the old SyncChainMiddleware pin. This handler builds
the chain in sync mode, as the WSGI handler does. It then runs the whole synchronous request in
one sync_to_async call: request_started, the request object, the middleware chain, the view,
rendering, and request_finished (response.close()). That is one move per request.

The calls run on HTTP_THREADS threads (default 4), not on the one thread Django shares between
all sync code (thread_sensitive): there every request waited for the one before it, including
its waits on PostgreSQL and Redis, so at 100 POST/s a moment of CPU contention queued requests
for seconds. Each request still runs on a single thread from request_started to
request_finished, and Django's connections are per thread, so a request's database connection
(pooled with DB_POOL=1) is taken and given back on that thread.

What it keeps from Django's ASGIHandler (django/core/handlers/asgi.py), most of it by calling
that handler's own methods:
- Reading the body (read_body, spooled to disk past FILE_UPLOAD_MAX_MEMORY_SIZE), the script
  prefix, create_request's 400/413 answers, DATA_UPLOAD_MAX_MEMORY_SIZE (checked when the view
  reads the body), and RequestGuardMiddleware's 16 KiB guard (part of the chain).
- Exceptions become responses just as under WSGI: convert_exception_to_response around every
  middleware, and process_exception (RequestGuardMiddleware's 503 JSON when the database or
  Redis is down). A response of 400 or more is logged (log_response in get_response).
- request_started and request_finished, sent on the thread that ran the view. That is where
  close_old_connections gives a pooled connection (DB_POOL=1) back.
- A normal response is complete once the view returns, so it is closed on that thread and then
  sent: request_finished goes out just before the body instead of just after it. A streaming
  response over a synchronous iterator (WhiteNoise's static files) is read whole on that thread
  too, as Django's ASGI handler would read it on its shared thread (with a warning), and then
  closed; its chunks are sent from memory. A streaming response over an asynchronous iterator
  (none in this project) is sent by Django's send_response and closed afterwards.
- Disconnects: the client is watched while the request runs (listen_for_disconnect) and sending
  stops when the client goes away. A running sync view cannot be stopped, in Django or here. Its
  response is closed once it returns, so request_finished is sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix


def daphne_bodies_to_django() -> None:
    """Leave request bodies to Django: daphne's requests stop Twisted from parsing form uploads.

    Twisted's `Request` parses every POST whose Content-Type is a form into `request.args`, which
    daphne never reads (it hands the raw body to the application). A malformed multipart body
    fails that parse, and Twisted answers a bare `400 Bad Request`, with no body and nothing
    logged, before daphne or Django see the request (django/daphne#325, #447): the API's JSON
    error and its log line were lost. Twisted's `parsePOSTFormSubmission=False` turns the parse
    off; Django then answers as it does for any other body (the API: 415, as it takes JSON only;
    a form view: its own 400). Called before daphne builds its first request (config.asgi);
    daphne's HTTP factory looks the class up by name for every connection."""
    from daphne import http_protocol

    if getattr(http_protocol.WebRequest, "bodies_to_django", False):
        return

    class WebRequest(http_protocol.WebRequest):
        bodies_to_django = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            super().__init__(*args, **kwargs)

    http_protocol.WebRequest = WebRequest  # type: ignore[misc]


async def _replay(chunks: list[Any]) -> AsyncIterator[Any]:
    for chunk in chunks:
        yield chunk


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)  # the whole chain sync, as under WSGI
        self.threads = ThreadPoolExecutor(settings.HTTP_THREADS, thread_name_prefix="http")

    def _on_thread(self, func: Any) -> Any:
        return sync_to_async(func, thread_sensitive=False, executor=self.threads)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        served: list[HttpResponseBase] = []
        # The request on its thread: it runs to its end even if the client leaves meanwhile.
        serving = asyncio.ensure_future(self._on_thread(self.serve)(scope, body_file, served))
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(self.respond(serving, send)),
        ]
        # Django's own disconnect handling (ASGIHandler.handle), unchanged.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if tasks[1].cancelled():
            with contextlib.suppress(Exception):
                await serving  # the view cannot be stopped: wait for it to return
            await self._on_thread(self.close_served)(served)
        body_file.close()

    async def respond(self, serving: asyncio.Future[HttpResponseBase], send: Any) -> None:
        response = await asyncio.shield(serving)
        with contextlib.suppress(asyncio.CancelledError):  # the client left mid-body (as Django)
            await self.send_response(response, send)
        if not response.closed:
            await self._on_thread(response.close)()

    def serve(
        self, scope: dict[str, Any], body_file: Any, served: list[HttpResponseBase]
    ) -> HttpResponseBase:
        """The synchronous request, on the worker thread: request_started to request_finished.
        A streaming response over a synchronous iterator is read here, on this thread; one over
        an asynchronous iterator is returned open."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        response._handler_class = self.__class__  # request_finished's sender
        served.append(response)
        if response.streaming and not response.is_async:
            response.streaming_content = _replay(list(response.streaming_content))
        elif response.streaming:
            return response  # closed once Django's send_response has sent it
        response.close()
        return response

    def close_served(self, served: list[HttpResponseBase]) -> None:
        """After a disconnect: close the response serve() left open, or, if serve() failed,
        still send request_finished (as Django does)."""
        if not served:
            signals.request_finished.send(sender=self.__class__)
        elif not served[0].closed:
            served[0].close()
