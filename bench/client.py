"""The load generator: submitting orders (HTTP POST on an open-loop schedule, or each over its own
WebSocket), watching their updates (one firehose client, per-order sockets) and recording, for
every order, when each step was due, sent, answered, committed and delivered.

Times: `time.time()` for anything compared with the events' timestamps (the engine writes them
from the same machine clock), `time.perf_counter()` for request latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import base58
from tqdm import tqdm
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, WebSocketException

from bench.stats import is_final, parse_ts

#: What opening or using a socket can raise: refused or reset connections, a handshake the server
#: dropped (an overloaded daphne closes sockets before answering), a close mid-stream, a timeout.
SOCKET_ERRORS = (OSError, EOFError, TimeoutError, WebSocketException)

WS_OPTIONS: dict[str, Any] = {
    # Ten thousand idle clients must not ping daphne every 20 s, and the benchmark measures
    # the engine's JSON, not zlib: no keepalive pings and no compression from our side.
    "ping_interval": None,
    "compression": None,
    "open_timeout": 30,
    "close_timeout": 2,
    "max_size": 2**22,
}


def wallet(n: int) -> str:
    """A valid wallet address (base58 of 32 bytes), one of a few hundred."""
    return base58.b58encode(bytes([n % 251]) * 31 + b"\x02").decode()


def order_body(n: int, *, slippage: str = "1.0") -> dict[str, Any]:
    """The n-th order: SOL→USDC and USDC→SOL alternately, so the pools end where they began."""
    if n % 2 == 0:
        pair = {"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "0.1"}
    else:
        pair = {"tokenIn": "USDC", "tokenOut": "SOL", "amountIn": "15"}
    return {
        "walletAddress": wallet(n),
        **pair,
        "orderType": "market",
        "slippage": slippage,
    }


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit towards `needed` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(slots=True)
class Delivery:
    """One `order.update` as one client received it."""

    seq: int
    status: str
    ts: float  # the event's timestamp: when the engine wrote it (seconds since the epoch)
    recv: float  # when this client had it parsed (time.time())
    final: bool


async def on_schedule(
    runs: list[OrderRun], rate: float | None
) -> AsyncIterator[tuple[int, OrderRun]]:
    """Each run with its index, at its due time: the first 50 ms from now, then `rate` a second
    (all at once without a rate), its `due` and `due_wall` set. Open loop: on schedule whether or
    not the earlier ones have been answered, so a late answer's latency counts from when it was
    due."""
    t0 = time.perf_counter() + 0.05
    wall0 = time.time() + 0.05
    for i, run in enumerate(runs):
        offset = i / rate if rate else 0.0
        due = t0 + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.due, run.due_wall = due, wall0 + offset
        yield i, run


def delivery(message: dict[str, Any], recv: float) -> Delivery:
    return Delivery(
        seq=message["seq"],
        status=message["status"],
        ts=parse_ts(message["timestamp"]),
        recv=recv,
        final=is_final(message),
    )


def _delivery_row(channel: str, order_id: str | None, d: Delivery) -> dict[str, Any]:
    return {
        "channel": channel,
        "orderId": order_id,
        "seq": d.seq,
        "status": d.status,
        "committed": d.ts,
        "received": d.recv,
        "latencyMs": round((d.recv - d.ts) * 1000, 3),
    }


@dataclass
class OrderRun:
    """Everything the benchmark saw of one order."""

    index: int
    body: dict[str, Any]
    due: float | None = None  # perf_counter when the schedule said to send it
    due_wall: float | None = None  # the same instant on the wall clock
    sent: float | None = None  # perf_counter when it was actually sent
    answered: float | None = None  # perf_counter when the answer arrived
    http_status: int | None = None
    error: str | None = None
    order_id: str | None = None
    # The order's own socket (WebSocket submission, or a follower opened after the POST).
    socket: list[Delivery] = field(default_factory=list)
    subscribed_wall: float | None = None  # when that socket asked for the order's updates
    final_recv: float | None = None  # when any client first saw the order's final update

    @property
    def latency_ms(self) -> float | None:
        """From when it was due (open loop: lateness counts), to the answer."""
        if self.due is None or self.answered is None:
            return None
        return (self.answered - self.due) * 1000

    @property
    def service_ms(self) -> float | None:
        """From when it was actually sent to the answer."""
        if self.sent is None or self.answered is None:
            return None
        return (self.answered - self.sent) * 1000


#: What a request to the engine can raise: refused or reset connections, a timeout, a body that
#: is not what it says.
HTTP_ERRORS = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, read whole."""

    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class HttpConnection:
    """One keep-alive connection to the engine: an aiohttp session limited to one connection.

    aiohttp rather than httpx: on this machine httpx spent about 0.9 ms of the load generator's
    CPU per request against aiohttp's 0.2 (a 3 000-request loop against a stub server), CPU
    taken from the engine it measures, and half of it counted in each request's latency."""

    def __init__(self, url: str, tls: ssl.SSLContext) -> None:
        self._session = aiohttp.ClientSession(
            base_url=url,
            connector=aiohttp.TCPConnector(limit=1, ssl=tls),
            timeout=aiohttp.ClientTimeout(total=60.0),
        )

    async def request(self, method: str, path: str, *, json: Any = None) -> Answer:
        async with self._session.request(method, path, json=json) as response:
            return Answer(response.status, await response.read())

    async def post(self, path: str, *, json: Any) -> Answer:
        return await self.request("POST", path, json=json)

    async def get(self, path: str) -> Answer:
        return await self.request("GET", path)

    async def aclose(self) -> None:
        await self._session.close()


class HttpClients:
    """Up to `size` keep-alive connections to the engine (`HttpConnection`), lent out in the
    order they are asked for; the rest wait their turn here (a FIFO semaphore).

    Not one client with a pool of `size` connections: httpx's pool (httpcore) checked every
    connection on each request (`is_idle`, `has_expired`, a `getpeername` each), which took a
    fifth of the load generator's CPU, on the machine the engine it measures runs on, and
    waiting in it cost CPU for every waiter on every release (encode/httpcore#1035)."""

    def __init__(self, url: str, *, size: int) -> None:
        self._url = url
        self._turns = asyncio.Semaphore(size)  # first come, first served
        self._clients: list[HttpConnection] = []
        self._idle: list[HttpConnection] = []
        self._tls = ssl.create_default_context()  # one for all connections

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[HttpConnection]:
        async with self._turns:
            client = self._idle.pop() if self._idle else self._new()
            try:
                yield client
            finally:
                self._idle.append(client)

    def _new(self) -> HttpConnection:
        client = HttpConnection(self._url, self._tls)
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


class Drive:
    """One benchmark run's clients and records."""

    def __init__(
        self,
        *,
        url: str,
        total: int,
        progress: bool = True,
        desc: str = "orders",
        http_connections: int = 256,
    ) -> None:
        self.url = url.rstrip("/")
        self.ws_url = "ws" + self.url.removeprefix("http")
        self.runs: list[OrderRun] = []
        self.by_id: dict[str, OrderRun] = {}
        self.firehose: dict[str, list[Delivery]] = {}
        self.firehose_other = 0  # updates of orders that are not this run's
        self.firehose_closed: str | None = None
        # order id → first receipt of its final update (None: found by the poller)
        self._final_recv: dict[str, float | None] = {}
        self._last_final = time.monotonic()
        self.polled_finals = 0
        self.firehose_drops: list[str] = []
        self._final_ours = 0
        self._submitting = True
        self._done = asyncio.Event()
        self._answered = 0
        self._all_answered = asyncio.Event()
        self.loop_lag_ms: list[float] = []
        self.read_back_errors: list[str] = []
        self.bar = tqdm(total=total, desc=desc, unit="order", disable=not progress, smoothing=0.1)
        self.http = HttpClients(self.url, size=http_connections)
        self._tasks: list[asyncio.Task[Any]] = []

    # --- bookkeeping ---------------------------------------------------------------------------

    def new_runs(self, bodies: Iterable[dict[str, Any]]) -> list[OrderRun]:
        start = len(self.runs)
        runs = [OrderRun(index=start + i, body=b) for i, b in enumerate(bodies)]
        self.runs.extend(runs)
        return runs

    def _register(self, run: OrderRun, order_id: str) -> None:
        run.order_id = order_id
        self.by_id[order_id] = run
        if order_id in self._final_recv:  # the firehose saw it end before the POST answered
            run.final_recv = self._final_recv[order_id]
            self._final_ours += 1
            self.bar.update(1)
        self._check_done()

    def _mark_final(self, order_id: str, recv: float | None) -> None:
        """A client saw the order's final update at `recv` (None: the poller found it)."""
        self._last_final = time.monotonic()
        if order_id in self._final_recv:
            if recv is not None:
                known = self._final_recv[order_id]
                self._final_recv[order_id] = recv if known is None else min(known, recv)
            run = self.by_id.get(order_id)
            if run is not None:
                run.final_recv = self._final_recv[order_id]
            return
        self._final_recv[order_id] = recv
        run = self.by_id.get(order_id)
        if run is not None:
            run.final_recv = recv
            self._final_ours += 1
            self.bar.update(1)
            self._check_done()

    def _check_done(self) -> None:
        if not self._submitting and self._final_ours >= len(self.by_id):
            self._done.set()

    def submissions_finished(self) -> None:
        self._submitting = False
        self._check_done()

    @property
    def finished(self) -> int:
        return self._final_ours

    async def wait_all_final(self, within: float) -> bool:
        try:
            await asyncio.wait_for(self._done.wait(), timeout=max(within, 0.01))
        except TimeoutError:
            return False
        return True

    def _answer(self, run: OrderRun) -> None:
        """The submission has its answer (accepted, refused or failed)."""
        if run.answered is None:
            run.answered = time.perf_counter()
            self._answered += 1
            if self._answered >= len(self.runs):
                self._all_answered.set()

    async def wait_all_answered(self, within: float) -> bool:
        try:
            await asyncio.wait_for(self._all_answered.wait(), timeout=max(within, 0.01))
        except TimeoutError:
            return False
        return True

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        return task

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.http.aclose()
        self.bar.close()

    # --- the load generator's own health ------------------------------------------------------

    async def watch_loop_lag(self, period: float = 0.01) -> None:
        """How late this process's event loop wakes up: when it lags, client-side latencies
        include the load generator's own queueing, and the report says so."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(period)
            self.loop_lag_ms.append((time.perf_counter() - start - period) * 1000)

    # --- HTTP ------------------------------------------------------------------------------------

    async def post(self, run: OrderRun) -> None:
        try:
            async with self.http.lend() as http:
                run.sent = time.perf_counter()
                response = await http.post("/api/orders/execute", json=run.body)
        except HTTP_ERRORS as error:
            self._answer(run)
            run.error = f"{type(error).__name__}: {error}"[:200]
            return
        self._answer(run)
        run.http_status = response.status_code
        if response.status_code in (200, 201):
            self._register(run, response.json()["orderId"])
        else:
            run.error = response.text[:300]

    async def post_open_loop(
        self,
        runs: list[OrderRun],
        *,
        rate: float | None,
        after: Callable[[OrderRun], Any] | None = None,
    ) -> None:
        """Send each request when the schedule says (`rate` per second; None: all at once),
        whether or not earlier ones have answered."""

        async def one(run: OrderRun) -> None:
            await self.post(run)
            if after is not None and run.order_id is not None:
                await after(run)

        tasks = []
        async for _, run in on_schedule(runs, rate):
            tasks.append(asyncio.get_running_loop().create_task(one(run)))
        await asyncio.gather(*tasks)

    async def post_closed_loop(
        self,
        runs: list[OrderRun],
        *,
        concurrency: int,
        after: Callable[[OrderRun], Any] | None = None,
    ) -> None:
        """As fast as the engine answers, `concurrency` requests in flight."""
        queue: asyncio.Queue[OrderRun] = asyncio.Queue()
        for run in runs:
            queue.put_nowait(run)

        async def worker() -> None:
            while not queue.empty():
                run = queue.get_nowait()
                run.due, run.due_wall = time.perf_counter(), time.time()
                await self.post(run)
                if after is not None and run.order_id is not None:
                    self.spawn(after(run))

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def read_back(self, ids: list[str], *, via: str = "ws") -> dict[str, Any]:
        """Every order's persisted history, once the run is over: `{id: {"events": [...]}}`.

        "ws" (default) subscribes to each order on a few `/ws` sockets and reads the replay,
        which the server always reads from PostgreSQL; "http" GETs `/api/orders/<id>` (served
        from the Redis copy while an order is live, from PostgreSQL once it is final)."""
        if via == "http":
            return await self._read_back_http(ids)
        results: dict[str, Any] = {}
        shares = [ids[i::4] for i in range(4)]
        await asyncio.gather(*(self._read_back_ws(share, results) for share in shares if share))
        rest = [i for i in ids if i not in results]
        if rest:
            # A socket that kept failing: what it did not read comes by HTTP instead.
            results.update(await self._read_back_http(rest))
        return results

    async def _read_back_ws(self, ids: list[str], results: dict[str, Any]) -> None:
        """Subscribe to each order in turn and collect its replay; reconnect (a few times) when
        the server closes the socket, and leave what is still unread to the caller."""
        todo = list(ids)
        for _ in range(3):
            try:
                async with connect(f"{self.ws_url}/ws", **WS_OPTIONS) as ws:
                    while todo:
                        order_id = todo[0]
                        events = await self._replay(ws, order_id)
                        if events is not None:
                            results[order_id] = {"events": events}
                        todo.pop(0)
                return
            except SOCKET_ERRORS as error:
                self.read_back_errors.append(f"{type(error).__name__}: {error}"[:200])
                await asyncio.sleep(0.5)

    async def _replay(self, ws: ClientConnection, order_id: str) -> list[dict[str, Any]] | None:
        """One order's persisted events by subscription (None: the server has no such order)."""
        await ws.send(json.dumps({"action": "subscribe", "orderId": order_id}))
        events: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(10):
                while not events or not is_final(events[-1]):
                    message = json.loads(await ws.recv())
                    if message.get("orderId") != order_id:
                        continue  # the firehose, before the first subscription
                    if message.get("type") == "error":
                        if message.get("error") == "not_found":
                            return None
                        raise ConnectionClosedError(None, None)  # retry on a new socket
                    if message.get("type") == "order.update":
                        events.append(message)
        except TimeoutError:
            pass  # not final: what there is shows the order as lost
        await ws.send(json.dumps({"action": "unsubscribe", "orderId": order_id}))
        return events

    async def _read_back_http(self, ids: list[str], *, concurrency: int = 16) -> dict[str, Any]:
        results: dict[str, Any] = {}
        queue: asyncio.Queue[str] = asyncio.Queue()
        for order_id in ids:
            queue.put_nowait(order_id)

        async def worker() -> None:
            while not queue.empty():
                order_id = queue.get_nowait()
                for _ in range(3):
                    try:
                        async with self.http.lend() as http:
                            response = await http.get(f"/api/orders/{order_id}")
                    except HTTP_ERRORS:
                        await asyncio.sleep(0.5)
                        continue
                    if response.status_code == 200:
                        results[order_id] = response.json()
                    break

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results

    # --- WebSocket ------------------------------------------------------------------------------

    async def run_firehose(self, ready: asyncio.Event, *, reconnects: int = 20) -> None:
        """One client on `/ws` receiving every order's updates. When the server closes it
        mid-run it reconnects (what was published meanwhile shows as missing: the firehose
        has no replay) and the drop is reported."""
        for _ in range(reconnects + 1):
            try:
                async with connect(f"{self.ws_url}/ws", **WS_OPTIONS) as ws:
                    ready.set()
                    async for raw in ws:
                        recv = time.time()
                        message = json.loads(raw)
                        if message.get("type") != "order.update":
                            continue
                        order_id = message["orderId"]
                        self.firehose.setdefault(order_id, []).append(delivery(message, recv))
                        if is_final(message):
                            self._mark_final(order_id, recv)
                return
            except SOCKET_ERRORS as error:
                text = f"{type(error).__name__}: {error}"[:200]
                if not ready.is_set():
                    self.firehose_closed = text  # never connected: the caller gives up
                    ready.set()
                    return
                self.firehose_drops.append(text)
                await asyncio.sleep(0.2)

    async def poll_finals(self, *, every: float = 5.0, batch: int = 100) -> None:
        """When no client has seen an order end for `every` seconds (its socket was closed, the
        firehose dropped), ask the API about the orders not yet seen final, so that the run
        still ends when they do. Orders found final this way count for throughput (from the
        timestamps) but not for the client-side latencies."""
        while True:
            await asyncio.sleep(every)
            if self._submitting or time.monotonic() - self._last_final < every:
                continue
            unseen = [i for i in self.by_id if i not in self._final_recv][:batch]
            if not unseen:
                continue
            for order_id, order in (await self._read_back_http(unseen, concurrency=8)).items():
                events = order.get("events") or []
                if events and is_final(events[-1]) and order_id not in self._final_recv:
                    self.polled_finals += 1
                    self._mark_final(order_id, None)

    def deliveries_rows(self) -> Iterator[dict[str, Any]]:
        """Every update this run's clients received, one row each (`--deliveries`)."""
        for order_id, events in self.firehose.items():
            for d in events:
                yield _delivery_row("firehose", order_id, d)
        for run in self.runs:
            for d in run.socket:
                yield _delivery_row("order socket", run.order_id, d)

    def firehose_ours(self) -> dict[str, list[Delivery]]:
        ours = {k: v for k, v in self.firehose.items() if k in self.by_id}
        self.firehose_other = sum(len(v) for k, v in self.firehose.items() if k not in self.by_id)
        return ours

    async def _collect(self, ws: ClientConnection, run: OrderRun) -> None:
        """This order's updates on its own socket, until its final one."""
        async for raw in ws:
            recv = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "order.update":
                event = delivery(message, recv)
                run.socket.append(event)
                if event.final:
                    self._mark_final(message["orderId"], recv)
                    return
            elif kind == "order.accepted":
                self._answer(run)
                run.http_status = 201
                self._register(run, message["order"]["orderId"])
            elif kind == "error":
                self._answer(run)
                # As the HTTP face would answer: the rate limit is a 429, the rest a 4xx.
                run.http_status = 429 if message.get("error") == "rate_limited" else 400
                run.error = json.dumps(message)[:300]
                return

    async def follow(self, run: OrderRun, *, connects: asyncio.Semaphore) -> None:
        """Open `/ws/orders/<id>` for an order already submitted, and collect until final
        (what was committed before the socket subscribed arrives as the replay)."""
        try:
            async with connects:
                ws = await connect(f"{self.ws_url}/ws/orders/{run.order_id}", **WS_OPTIONS)
            run.subscribed_wall = time.time()
            async with ws:
                await self._collect(ws, run)
        except SOCKET_ERRORS as error:
            run.error = run.error or f"follow: {type(error).__name__}: {error}"[:200]

    async def open_socket(
        self, run: OrderRun, *, connects: asyncio.Semaphore
    ) -> ClientConnection | None:
        """A socket on `/api/orders/execute`, not yet used."""
        try:
            async with connects:
                return await connect(f"{self.ws_url}/api/orders/execute", **WS_OPTIONS)
        except SOCKET_ERRORS as error:
            run.error = f"connect: {type(error).__name__}: {error}"[:200]
            return None

    async def submit_on(
        self, ws: ClientConnection, run: OrderRun, *, hold: asyncio.Event | None = None
    ) -> None:
        """Submit the order over its socket and collect its updates; keep the socket open until
        `hold` is set (ws-scale keeps every client connected to the end)."""
        try:
            run.sent = time.perf_counter()
            run.subscribed_wall = time.time()
            await ws.send(json.dumps(run.body))
            await self._collect(ws, run)
            if hold is not None:
                await hold.wait()
        except SOCKET_ERRORS as error:
            run.error = run.error or f"socket: {type(error).__name__}: {error}"[:200]
            self._answer(run)
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    async def submit_ws_open_loop(
        self,
        runs: list[OrderRun],
        *,
        rate: float | None,
        connects: asyncio.Semaphore,
        sockets: list[ClientConnection | None] | None = None,
        hold: asyncio.Event | None = None,
    ) -> list[asyncio.Task[Any]]:
        """Submit each order over its own socket on schedule (`sockets` already open, or one
        opened per order when due). Returns the tasks collecting their updates."""

        async def one(i: int, run: OrderRun) -> None:
            if sockets is not None:
                ws = sockets[i]
            else:
                ws = await self.open_socket(run, connects=connects)
            if ws is None:
                self._answer(run)
                return
            await self.submit_on(ws, run, hold=hold)

        tasks = []
        async for i, run in on_schedule(runs, rate):
            tasks.append(self.spawn(one(i, run)))
        return tasks
