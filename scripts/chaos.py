"""Chaos run: several hundred orders through the real engine while its parts are killed, then the
invariants checked.

    uv run python scripts/chaos.py                  # 300 orders, about 3 minutes
    uv run python scripts/chaos.py --orders 60 --rate 6   # the shortened run the test uses

Everything runs against a private PostgreSQL cluster and a private redis-server on free ports
(the machine's own on 5432 and 6379 are never touched): daphne, two Celery worker nodes and beat,
as the Procfile runs them. While orders are submitted over HTTP (with Idempotency-Keys, retried on
503 as a client would) and followed over WebSockets, the run

1. SIGKILLs worker node A's process group, and starts it again,
2. SIGKILLs Redis and starts it again empty (queue, scheduled tasks, groups, cache, rate limits),
3. stops PostgreSQL, and starts it again,
4. SIGKILLs worker node B's process group, and starts it again.

Then it checks, from PostgreSQL and from what the WebSocket clients received:
every accepted order is terminal; no order has more than one landed swap (a confirmed one has
exactly the one named by its txHash); event seq is 1..n per order; the database holds exactly the
orders the clients were told about; every event reached a subscribed client (after replay), and
within one connection never out of order or twice. Exit status 0 when all hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import websockets  # noqa: E402

from scripts.faultkit import (  # noqa: E402
    PrivatePostgres,
    PrivateRedis,
    Stack,
    invariants,
    order_events,
    orders_not_final,
)

PAIRS = [("SOL", "USDC"), ("USDC", "SOL"), ("SOL", "USDT"), ("JUP", "USDC"), ("BONK", "SOL")]
AMOUNTS = {"SOL": "0.{}", "USDC": "{}.5", "JUP": "{}0", "BONK": "{}00000"}


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wallet(n: int) -> str:
    import base58

    return base58.b58encode(n.to_bytes(4, "big") * 8).decode()


# --- WebSocket clients ---------------------------------------------------------------------------


@dataclass
class Connection:
    """One client socket on /ws following up to `capacity` orders; reconnects and resubscribes
    (the server replays) whenever the socket closes."""

    port: int
    index: int
    orders: list[str] = field(default_factory=list)
    received: dict[str, dict[int, str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    sessions: int = 0
    ws: Any = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                async with websockets.connect(
                    f"ws://127.0.0.1:{self.port}/ws", open_timeout=10, max_size=2**22
                ) as ws:
                    self.ws, self.sessions, backoff = ws, self.sessions + 1, 0.2
                    # This session's last seq per order, and the orders whose subscription the
                    # server has confirmed in it (before that, the firehose may carry them).
                    last: dict[str, int] = {}
                    tracking: set[str] = set()
                    for order_id in list(self.orders):
                        await self._subscribe(order_id)
                    self.ready.set()
                    async for raw in ws:
                        self._on_message(json.loads(raw), last, tracking)
            except (TimeoutError, OSError, websockets.WebSocketException):
                pass
            self.ws = None
            self.ready.clear()
            if not stop.is_set():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _on_message(
        self, message: dict[str, Any], last: dict[str, int], tracking: set[str]
    ) -> None:
        kind = message.get("type")
        if kind == "subscribed":
            if message["orderId"] not in tracking:  # the replay follows, from seq 1
                tracking.add(message["orderId"])
                last[message["orderId"]] = 0
            return
        if kind != "order.update":
            if kind == "error" and message.get("error") == "not_found":
                self.violations.append(f"the server did not know order {message.get('orderId')}")
            return
        order_id, seq, status = message["orderId"], message["seq"], message["status"]
        if order_id not in self.received:  # the firehose, before the subscription
            return
        # Once subscribed, the server sends each order's events in seq order, each once.
        if order_id in tracking and seq != last.get(order_id, 0) + 1:
            self.violations.append(
                f"order {order_id}: seq {seq} after {last.get(order_id, 0)} in one connection"
            )
        last[order_id] = max(seq, last.get(order_id, 0))
        seen = self.received[order_id].setdefault(seq, status)
        if seen != status:
            self.violations.append(f"order {order_id} seq {seq} was {seen}, now {status}")

    async def _subscribe(self, order_id: str) -> None:
        if self.ws is not None:
            with contextlib.suppress(websockets.WebSocketException):
                await self.ws.send(json.dumps({"action": "subscribe", "orderId": order_id}))

    async def follow(self, order_id: str) -> None:
        self.orders.append(order_id)
        self.received.setdefault(order_id, {})
        await self._subscribe(order_id)

    async def refresh(self) -> None:
        """Subscribe again to every followed order (a client that suspects a stale stream): the
        server sends whatever it has not sent on this connection yet."""
        for order_id in self.orders:
            await self._subscribe(order_id)


class Observers:
    def __init__(self, port: int, per_connection: int) -> None:
        self.port, self.per_connection = port, per_connection
        self.connections: list[Connection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()

    async def follow(self, order_id: str) -> None:
        if not self.connections or len(self.connections[-1].orders) >= self.per_connection:
            connection = Connection(self.port, len(self.connections))
            self.connections.append(connection)
            self.tasks.append(asyncio.create_task(connection.run(self.stop)))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(connection.ready.wait(), 10)
        await self.connections[-1].follow(order_id)

    def received(self) -> dict[str, dict[int, str]]:
        merged: dict[str, dict[int, str]] = {}
        for connection in self.connections:
            merged.update(connection.received)
        return merged

    async def close(self) -> None:
        self.stop.set()
        for connection in self.connections:
            if connection.ws is not None:
                with contextlib.suppress(Exception):
                    await connection.ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# --- the client submitting orders ----------------------------------------------------------------


@dataclass
class Submitter:
    port: int
    observers: Observers
    accepted: list[str] = field(default_factory=list)
    cancelled_ids: list[str] = field(default_factory=list)
    cancel_conflicts: int = 0
    unavailable: int = 0
    unexpected: list[str] = field(default_factory=list)

    def body(self, n: int, rng: random.Random) -> dict[str, Any]:
        token_in, token_out = rng.choice(PAIRS)
        amount = AMOUNTS[token_in].format(rng.randint(1, 9))
        body: dict[str, Any] = {
            "walletAddress": wallet(n),
            "tokenIn": token_in,
            "tokenOut": token_out,
            "amountIn": amount,
            "slippage": "2.0",
        }
        kind = rng.random()
        if kind < 0.14:
            body.update(tokenIn="SOL", tokenOut="USDC", amountIn=f"0.{rng.randint(1, 9)}")
        if kind < 0.08:  # a limit order met at once (SOL is worth ~150 USDC): the watcher's
            body.update(orderType="limit", limitPrice="1")
        elif kind < 0.14:  # a limit order never met: expires, or is cancelled by its client
            expires = time.time() + rng.uniform(8, 15)
            body.update(
                orderType="limit",
                limitPrice="1000000",
                expiresAt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            )
        return body

    async def submit(self, client: httpx.AsyncClient, n: int, rng: random.Random) -> None:
        body, key = self.body(n, rng), str(uuid.uuid4())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                response = await client.post(
                    "/api/orders/execute", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if response.status_code in (200, 201):
                order_id = response.json()["orderId"]
                if order_id not in self.accepted:
                    self.accepted.append(order_id)
                    await self.observers.follow(order_id)
                    if body.get("limitPrice") == "1000000" and rng.random() < 0.5:
                        # Its client gives up on it a moment later (it may expire first).
                        await asyncio.sleep(rng.uniform(0.5, 3))
                        await self.cancel(client, order_id)
                return
            if response.status_code == 503:
                self.unavailable += 1
                await asyncio.sleep(0.5)
                continue
            self.unexpected.append(f"POST {body} -> {response.status_code} {response.text[:200]}")
            return
        self.unexpected.append(f"POST {body} never accepted in 120 s")

    async def cancel(self, client: httpx.AsyncClient, order_id: str) -> None:
        for _ in range(120):
            try:
                response = await client.post(f"/api/orders/{order_id}/cancel")
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 503:
                self.unavailable += 1
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 200:
                self.cancelled_ids.append(order_id)
            elif response.status_code == 409:  # it expired first
                self.cancel_conflicts += 1
            else:
                self.unexpected.append(f"cancel {order_id} -> {response.status_code}")
            return


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Chaos:
    stack: Stack
    redis: PrivateRedis
    postgres: PrivatePostgres
    workers: dict[str, Any]
    concurrency: int
    timeline: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.timeline.append(f"t+{time.monotonic() - self.started:5.1f}s {what}")
        log(what)

    def kill_worker(self, name: str) -> None:
        self.workers[name].kill()  # SIGKILL to the node's whole process group
        self.workers[name].proc.wait(timeout=10)
        self.note(f"SIGKILL worker {name}")
        time.sleep(2)
        self.workers[name] = self.stack.worker(name, self.concurrency)
        self.note(f"worker {name} started again")

    def lose_redis(self) -> None:
        self.redis.kill()
        self.note("SIGKILL redis (everything in it is gone)")
        time.sleep(3)
        self.redis.start()
        self.note("redis started again, empty")

    def stop_postgres(self) -> None:
        self.postgres.stop("fast")
        self.note("PostgreSQL stopped")
        time.sleep(5)
        self.postgres.start()
        self.note("PostgreSQL started again")


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="oe-chaos-"))
    redis, postgres = PrivateRedis(tmp), PrivatePostgres()
    stack: Stack | None = None
    observers: Observers | None = None
    began = time.monotonic()
    try:
        redis.start()
        postgres.init()
        log(f"private redis :{redis.port}, PostgreSQL :{postgres.port}, logs in {tmp}")
        stack = Stack(
            postgres.url,
            redis.url,
            tmp,
            {
                "DEX_QUOTE_LATENCY_MS": "20",
                "DEX_EXECUTION_LATENCY_MS": args.latency,
                "DEX_FAILURE_RATE": str(args.failure_rate),
                "DEX_SEED": str(args.seed),
                "ORDER_RATE_LIMIT": args.order_rate_limit,
                "ORDER_STALE_SECONDS": "4",
                "ORDER_RECONCILE_SECONDS": "2",
                "ORDER_RETRY_BACKOFF_SECONDS": "0.2",
            },
        )
        stack.manage("migrate", "--noinput")
        _, port = stack.daphne()
        workers = {name: stack.worker(name, args.concurrency) for name in ("node-a", "node-b")}
        stack.beat()
        log(f"daphne :{port}, workers node-a and node-b, beat: submitting {args.orders} orders")

        observers = Observers(port, per_connection=50)
        submitter = Submitter(port, observers)
        chaos = Chaos(stack, redis, postgres, workers, args.concurrency)
        duration = args.orders / args.rate
        plan = [
            (0.15, lambda: chaos.kill_worker("node-a")),
            (0.35, chaos.lose_redis),
            (0.55, chaos.stop_postgres),
            (0.75, lambda: chaos.kill_worker("node-b")),
        ]

        async def inflict(fraction: float, action: Any) -> None:
            await asyncio.sleep(max(chaos.started + fraction * duration - time.monotonic(), 0))
            await asyncio.to_thread(action)  # on schedule, even while a node is still restarting

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            chaos_tasks = [asyncio.create_task(inflict(f, a)) for f, a in plan]
            pending: set[asyncio.Task[None]] = set()
            for n in range(args.orders):
                await asyncio.sleep(max(chaos.started + n / args.rate - time.monotonic(), 0))
                task = asyncio.create_task(submitter.submit(client, n, rng))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
            await asyncio.gather(*chaos_tasks)
            log(
                f"{len(submitter.accepted)} orders accepted, "
                f"{len(submitter.cancelled_ids)} cancelled by their clients"
            )

            terminal_by = time.monotonic() + args.settle
            with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
                while time.monotonic() < terminal_by:
                    waiting = orders_not_final(conn, submitter.accepted)
                    if not waiting:
                        break
                    log(f"{len(waiting)} orders not terminal yet")
                    await asyncio.sleep(3)
                verdict = invariants(conn, expected_ids=submitter.accepted)
                stored = order_events(conn)

            missing = await wait_for_streams(observers, stored, args.stream_grace)
            health = (await client.get("/health")).json()

        violations = list(verdict.violations)
        violations += submitter.unexpected
        for connection in observers.connections:
            violations += connection.violations
        violations += missing
        if health.get("status") != "ok":
            violations.append(f"health after the run: {health}")
        summary = {
            "orders": len(submitter.accepted),
            "byStatus": verdict.by_status,
            "retriedOn503": submitter.unavailable,
            "cancelled": len(submitter.cancelled_ids),
            "cancelRefused409": submitter.cancel_conflicts,
            "websocketConnections": len(observers.connections),
            "websocketSessions": sum(c.sessions for c in observers.connections),
            "eventsReceived": sum(len(v) for v in observers.received().values()),
            "eventsStored": sum(len(v) for v in stored.values()),
            "chaos": chaos.timeline,
            "seconds": round(time.monotonic() - began, 1),
            "violations": len(violations),
        }
        print(json.dumps(summary, indent=2))
        for violation in violations[:50]:
            print(f"VIOLATION {violation}")
        log("all invariants hold" if not violations else f"{len(violations)} violations")
        return 0 if not violations else 1
    finally:
        if observers is not None:
            await observers.close()
        if stack is not None:
            stack.close()
        redis.close()
        postgres.close()
        if args.keep_logs:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def wait_for_streams(
    observers: Observers, stored: dict[str, list[tuple[int, str]]], grace: float
) -> list[str]:
    """Every stored event must reach the client following its order. A client whose stream went
    quiet asks for a replay (as any client should after a reconnect), so give it `grace` seconds,
    refreshing once halfway."""

    def gaps() -> list[str]:
        received = observers.received()
        return [
            order_id
            for order_id, events in stored.items()
            if {seq: status for seq, status in events} != received.get(order_id)
        ]

    deadline, refreshed = time.monotonic() + grace, False
    while (missing := gaps()) and time.monotonic() < deadline:
        if not refreshed and time.monotonic() > deadline - grace / 2:
            log(f"{len(missing)} order streams incomplete: asking for a replay")
            for connection in observers.connections:
                await connection.refresh()
            refreshed = True
        await asyncio.sleep(0.5)
    received = observers.received()
    return [
        f"order {order_id}: the client received {sorted(received.get(order_id, {}).items())[:8]}"
        f" of {stored.get(order_id, [])[:8]}"
        for order_id in gaps()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description="Chaos run against private Redis and PostgreSQL.")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="orders submitted per second")
    parser.add_argument("--concurrency", type=int, default=3, help="processes per worker node")
    parser.add_argument("--latency", default="500-1500", help="DEX_EXECUTION_LATENCY_MS")
    parser.add_argument("--failure-rate", type=float, default=0.05, help="DEX_FAILURE_RATE")
    parser.add_argument("--order-rate-limit", default="1200/m", help="ORDER_RATE_LIMIT")
    parser.add_argument("--settle", type=float, default=240.0, help="seconds to reach terminal")
    parser.add_argument("--stream-grace", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
