"""`python -m bench.census --orders 200`: where one order's work goes, counted exactly.

Runs the engine's own code in this process, one order at a time, against the benchmark's
database (orderengine_bench, Redis db 9, capacity settings): the POST view's work (serializer,
`order_submit`, the response body), then `order_execute` as the Celery task would call it. For
each step it counts SQL statements by kind, commits and CPU time (`time.thread_time`, so other
people's load on the machine does not inflate it), and with `--cprofile` the functions that
spend it. The task is called directly (not through Celery) and the submission does not dispatch
it: the census measures the engine, the capacity benchmark measures the whole system.

Run it with nothing else using the benchmark database (or after `bench.serve` has stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import getpass
import os
import pstats
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

DEFAULTS = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": f"postgres://{getpass.getuser()}@localhost:5432/orderengine_bench",
    "REDIS_URL": "redis://localhost:6379/9",
    "DEX_QUOTE_LATENCY_MS": "0",
    "DEX_EXECUTION_LATENCY_MS": "0",
    "DEX_FAILURE_RATE": "0",
    "ORDER_RATE_LIMIT": "0",
    "API_RATE_LIMIT": "0",
    "LOG_LEVEL": "WARNING",
}


class Census:
    """Labels nest (a stack); SQL, commits and CPU count for every label on the stack."""

    def __init__(self) -> None:
        self.active = False
        self.thread: int | None = None  # only the thread that runs the orders is counted
        self.stack: list[str] = []
        self.order: list[str] = []  # labels in first-seen order, with their depth
        self.depth: dict[str, int] = {}
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.sql: dict[str, Counter[str]] = defaultdict(Counter)
        self.commits: Counter[str] = Counter()

    def counting(self) -> bool:
        return self.active and threading.get_ident() == self.thread

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        if not self.counting():
            yield
            return
        if label not in self.depth:
            self.depth[label] = len(self.stack)
            self.order.append(label)
        self.stack.append(label)
        self.calls[label] += 1
        start = time.thread_time()
        try:
            yield
        finally:
            self.cpu[label] += time.thread_time() - start
            self.stack.pop()

    def wrap(self, module: Any, name: str, label: str) -> bool:
        """Count calls of `module.name` under `label`; False if the engine has no such name
        (it changes: the census reports what it could not find instead of failing)."""
        original: Callable[..., Any] | None = getattr(module, name, None)
        if original is None:
            return False

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.step(label):
                return original(*args, **kwargs)

        setattr(module, name, wrapped)
        return True

    def on_sql(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any
    ) -> Any:
        if not self.counting():
            return execute(sql, params, many, ctx)
        kind = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
        if kind == "SELECT" and "FOR UPDATE" in sql.upper():
            kind = "SELECT … FOR UPDATE"
        for label in set(self.stack):
            self.sql[label][kind] += 1
        return execute(sql, params, many, ctx)

    def on_commit(self) -> None:
        if not self.counting():
            return
        for label in set(self.stack):
            self.commits[label] += 1

    def table(self, orders: int) -> str:
        kinds = sorted({k for c in self.sql.values() for k in c})
        head = ["step", "calls/order", "CPU ms/order", "commits/order", "SQL/order", *kinds]
        rows = [head, ["---"] * len(head)]
        for label in self.order:
            sql = self.sql[label]
            rows.append(
                [
                    "&nbsp;" * 4 * self.depth[label] + label,
                    f"{self.calls[label] / orders:.2f}",
                    f"{self.cpu[label] * 1000 / orders:.3f}",
                    f"{self.commits[label] / orders:.2f}",
                    f"{sum(sql.values()) / orders:.2f}",
                    *(f"{sql[k] / orders:.2f}" if sql[k] else "" for k in kinds),
                ]
            )
        return "\n".join("| " + " | ".join(r) + " |" for r in rows)


class Backend:
    """The CPU time of this process's PostgreSQL backend, read from /proc: the server's side of
    every statement and commit the census counts (None where the server is on another host)."""

    def __init__(self, connection: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pid = cursor.fetchone()[0]

    def cpu(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # utime and stime, the 14th and 15th fields (11th and 12th after the command's name)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.census",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="orders run first, not counted")
    parser.add_argument(
        "--together",
        type=int,
        default=1,
        help="execute the orders N at a time in one engine.execute_orders, as a pool process "
        "whose share of ORDER_CONCURRENCY is N does (engine.lockstep); a divisor of --orders",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        metavar="MS",
        help="sleep this long after each order (or group): the same work after an idle spell, "
        "as a process woken for each order at a steady rate does it",
    )
    parser.add_argument("--cprofile", action="store_true", help="also list the top functions")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="pstats order: tottime, cumulative…")
    parser.add_argument("--only", default="", help="list only functions whose path matches")
    args = parser.parse_args()
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if args.together < 1 or args.orders % args.together or args.warmup % args.together:
        parser.error("--together must divide --orders and --warmup")
    os.environ["ORDER_CONCURRENCY"] = str(args.together)  # one pool process, N at once
    os.environ["WORKER_PROCESSES"] = "1"

    import django

    django.setup()
    from django.db import connection
    from rest_framework.test import APIRequestFactory

    from bench.client import order_body
    from dex import chain
    from engine import events, pipeline, services, tasks, transitions
    from orders import views
    from orders.models import Order

    census = Census()
    missing: list[str] = []
    services.order_dispatch = lambda *a, **k: None  # the census calls the task's code itself
    for module, name, label in (
        (views, "enforce_rate_limit", "rate limit check"),
        (views.OrderSubmitSerializer, "is_valid", "request validation (serializer)"),
        (services, "_check_routable", "routability check"),
        (services, "_record_created", "pending event + snapshot"),
        (views, "order_response", "response body (order + events)"),
        (pipeline, "_prepare", "route + build + submit (one transaction)"),
        (pipeline, "_route", "routing step"),
        (pipeline, "route_best", "route_best (venue math)"),
        (pipeline, "_build", "building step"),
        (pipeline, "transaction_build", "transaction_build"),
        (chain, "priority_fee_market", "priority_fee_market"),
        (pipeline, "_submit", "submitted step"),
        (pipeline, "attempt_send", "send"),
        (pipeline, "_settle", "settle step (land, confirm)"),
        (pipeline, "transaction_send", "transaction_send"),
        (pipeline, "signature_status", "signature_status (landing)"),
        (pipeline, "_confirm_step", "confirm"),
        (pipeline, "order_transition", "order_transition"),
        (pipeline, "order_transitions", "order_transitions (batched)"),
        (transitions, "event_to_wire", "wire + snapshot serialisation"),
        (transitions, "order_to_dict", "wire + snapshot serialisation"),
        (transitions, "event_public", "wire + snapshot serialisation"),
        (transitions, "events_publish", "publish (hand-off to the publisher thread)"),
        (transitions, "orders_cache_store", "order cache write (Redis)"),
    ):
        if not census.wrap(module, name, label):
            missing.append(f"{module.__name__}.{name}")
    real = connection.commit

    def commit() -> None:
        census.on_commit()
        real()

    connection.commit = commit  # type: ignore[method-assign]
    factory = APIRequestFactory()
    view = views.OrderExecuteView.as_view()

    def post(i: int) -> str:
        request = factory.post("/api/orders/execute", order_body(i), format="json")
        with census.step("POST /api/orders/execute (view)"):
            response = view(request)
            response.render()
        assert response.status_code == 201, response.content
        return str(response.data["orderId"])

    def group(start: int) -> None:
        """`--together` orders posted, then executed: one at a time by `order_execute`, as the
        task `engine.execute_order` calls it, or together by `engine.execute_orders`."""
        ids = [post(i) for i in range(start, start + args.together)]
        if args.together == 1:
            with census.step("order_execute (the task)"):
                outcome = pipeline.order_execute(ids[0])
            assert outcome.run_at is None, outcome
            return
        with census.step(f"execute_orders (the task, {args.together} together)"):
            tasks.execute_orders_task(order_ids=ids)
        assert Order.objects.filter(pk__in=ids, status="confirmed").count() == len(ids)

    def flush() -> None:
        """Wait for the after-commit thread (`outbox`, or `publisher` in older engines)."""
        for name in ("outbox", "publisher"):
            if hasattr(events, name):
                getattr(events, name).flush()

    for i in range(0, args.warmup, args.together):
        group(i)
    flush()
    census.thread = threading.get_ident()
    census.active = True
    profiler = cProfile.Profile(time.thread_time) if args.cprofile else None
    backend = Backend(connection)
    process_start, thread_start = time.process_time(), time.thread_time()
    backend_start = backend.cpu()
    with connection.execute_wrapper(census.on_sql):
        if profiler:
            profiler.enable()
        for i in range(args.warmup, args.warmup + args.orders, args.together):
            group(i)
            if args.pause:
                time.sleep(args.pause / 1000)  # no CPU counted: thread and process time
        if profiler:
            profiler.disable()
    flush()
    census.active = False
    backend_cpu = backend.cpu()
    process_cpu = time.process_time() - process_start
    thread_cpu = time.thread_time() - thread_start
    n = args.orders
    how = "one at a time" if args.together == 1 else f"{args.together} together"
    paused = f", {args.pause:g} ms pause after each" if args.pause else ""
    print(f"\n{n} orders, {how}{paused}, in-process (capacity settings, LOG_LEVEL WARNING)")
    if profiler:
        print("(cProfile is on: every CPU figure is inflated by its overhead)")
    print()
    print(census.table(n))
    if missing:
        print(f"\n(not in this version of the engine: {', '.join(missing)})")
    print(
        f"\nCPU per order: {thread_cpu * 1000 / n:.3f} ms in the calling thread, "
        f"{(process_cpu - thread_cpu) * 1000 / n:.3f} ms in other threads (the outbox "
        "thread: the orders' Redis copies and channel-layer sends), "
        f"{process_cpu * 1000 / n:.3f} ms in all."
    )
    if backend_start is not None and backend_cpu is not None:
        print(
            f"PostgreSQL: {(backend_cpu - backend_start) * 1000 / n:.3f} ms per order in this "
            f"process's backend (pid {backend.pid}), for the POST's and the task's statements."
        )
    if profiler:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        restrictions: list[Any] = [args.only] if args.only else []
        stats.sort_stats(args.sort).print_stats(*restrictions, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
