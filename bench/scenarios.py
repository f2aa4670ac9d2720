"""The five scenarios of issue 6. Each is bounded in orders and in time, talks only to the engine
at `--url`, and returns one result document (see `bench.report`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil

from bench import procs
from bench.analysis import analyse
from bench.client import Drive, order_body, raise_fd_limit
from bench.profile import Profiler


def _write_deliveries(drive: Drive, path: str | None) -> None:
    """`--deliveries PATH`: every update received, as JSON lines (which channel, the order, its
    seq and status, when it was committed and when it arrived, the latency), for looking at a
    tail the percentiles only summarise: when its outliers happen, and to which updates."""
    if path:
        with open(path, "w") as out:
            for row in drive.deliveries_rows():
                out.write(json.dumps(row) + "\n")


@dataclass
class Options:
    url: str = "http://127.0.0.1:8000"
    progress: bool = True
    timeout: float | None = None
    web_pid: int | None = None
    worker_pid: int | None = None
    profile: bool = False
    profile_rate: int = 200
    out_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 80


# --- context ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):  # noqa: SIM115 - read once
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("django", "channels", "channels-redis", "daphne", "celery", "psycopg"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpu": model,
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


async def engine_health(url: str, *, attempts: int = 8) -> dict[str, Any]:
    """GET /health until it is 200 with a worker (the worker ping times out now and then on a
    busy machine); give up with the engine's own answer."""
    body: Any = None
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(attempts):
            try:
                response = await client.get("/health")
            except httpx.HTTPError as error:
                raise SystemExit(f"the engine at {url} does not answer: {error}") from None
            body = response.json()
            if response.status_code == 200 and body.get("checks", {}).get("workers"):
                return body
            await asyncio.sleep(2)
    raise SystemExit(f"the engine at {url} is not healthy: {body}")


def engine_settings(opts: Options) -> dict[str, Any]:
    state = procs.read_state(opts.port)
    if state is None:
        return {
            "started_by": "unknown (not bench.serve): settings not verified",
        }
    return {"started_by": "bench.serve", "mode": state.get("mode"), **state.get("settings", {})}


# --- the common drive ---------------------------------------------------------------------------


async def _drive(
    name: str,
    opts: Options,
    *,
    orders: int,
    submit: str,
    rate: float | None,
    concurrency: int = 32,
    firehose: bool = True,
    follow: bool = False,
    within: float,
    executing_limit: int | None = None,
) -> dict[str, Any]:
    """Submit `orders` orders (`submit`: "http" or "ws"; `rate` per second, None = all at once,
    0 = closed loop with `concurrency` in flight), wait until all are final or `timeout`, then
    read every order back and analyse."""
    health = await engine_health(opts.url)
    engine = procs.find_engine(opts.port, web_pid=opts.web_pid, worker_pid=opts.worker_pid)
    raise_fd_limit(orders + 1000 if submit == "ws" else 4096)
    drive = Drive(url=opts.url, total=orders, progress=opts.progress, desc=name)
    lag = drive.spawn(drive.watch_loop_lag())
    drive.spawn(drive.poll_finals())
    ready = asyncio.Event()
    if firehose:
        drive.spawn(drive.run_firehose(ready))
        await asyncio.wait_for(ready.wait(), timeout=30)
        if drive.firehose_closed:
            raise SystemExit(f"the firehose client could not connect: {drive.firehose_closed}")
        await asyncio.sleep(0.2)  # the group_add lands before the first order
    sampler = procs.Sampler(engine)
    profiler = Profiler(engine, name=opts.out_name or name, rate=opts.profile_rate)
    connects = asyncio.Semaphore(64)
    runs = drive.new_runs(order_body(i) for i in range(orders))
    started = time.time()
    sampler.start()
    if opts.profile:
        profiler.start()
    deadline = time.monotonic() + within
    try:

        async def follow_one(run: Any) -> None:
            await drive.follow(run, connects=connects)

        after = follow_one if follow else None
        if submit == "http":
            if rate == 0:
                await drive.post_closed_loop(runs, concurrency=concurrency, after=after)
            else:
                await drive.post_open_loop(runs, rate=rate, after=after)
        else:
            await drive.submit_ws_open_loop(runs, rate=rate, connects=connects)
            await drive.wait_all_answered(deadline - time.monotonic())
        drive.submissions_finished()
        complete = await drive.wait_all_final(deadline - time.monotonic())
    finally:
        ended = time.time()
        await sampler.stop()
        if opts.profile:
            await profiler.stop()
    lag.cancel()
    drive.bar.close()
    ids = [r.order_id for r in runs if r.order_id]
    histories = await drive.read_back(ids, via=opts.extra.get("verify") or "ws")
    metrics, dist = analyse(
        drive,
        histories,
        firehose=firehose,
        sockets="submit" if submit == "ws" else ("follow" if follow else None),
        executing_limit=executing_limit,
    )
    _write_deliveries(drive, opts.extra.get("deliveries"))  # what the analysis counted
    await drive.close()
    metrics["timed_out"] = not complete
    notes = []
    if metrics["refused"].get("429"):
        notes.append(
            f"the engine refused {metrics['refused']['429']} submissions with 429 (its "
            "API_RATE_LIMIT, which WebSocket submissions spend too): start it with "
            "API_RATE_LIMIT=0, as `python -m bench.serve` does"
        )
    result = {
        "scenario": name,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(ended - started, 2),
        "url": opts.url,
        "load": {
            "orders": orders,
            "submit": submit,
            "rate_per_second": rate if rate else ("all at once" if rate is None else "closed loop"),
            "concurrency": concurrency if rate == 0 else None,
            "firehose_client": firehose,
            "order_sockets": submit == "ws" or follow,
            "timeout_seconds": within,
        },
        "engine": {
            "settings": engine_settings(opts),
            "health": health.get("checks"),
            "processes": engine.describe(),
        },
        "machine": machine(),
        "metrics": metrics,
        "resources": sampler.report(metrics["final"]),
        "notes": notes,
        "_distributions": dist,
    }
    if opts.profile:
        result["profile"] = profiler.report(metrics["final"], _measured(result["resources"]))
    return result


def _measured(resources: dict[str, Any]) -> dict[str, float]:
    """CPU seconds of the profiled roles: py-spy's worker profile covers the pool children."""
    groups = resources["groups"]

    def cpu(name: str) -> float:
        return groups.get(name, {}).get("cpu_seconds", 0.0)

    return {"web": cpu("web"), "worker": cpu("worker") + cpu("worker-pool")}


def target(
    name: str,
    value: Any,
    op: str,
    goal: float,
    unit: str = "",
    *,
    judge: str = "every run",
    headline: bool = False,
) -> dict[str, Any]:
    """One goal of a scenario. `judge` says how `--repeat` reads several runs of it (bench.repeat):
    "median" for speed, which the machine's noise moves from run to run, or "every run" for what
    must hold each time (nothing lost, every order accepted). The median run of the `headline`
    target is the run shown in full."""
    return {
        "name": name,
        "value": value,
        "op": op,
        "goal": goal,
        "unit": unit,
        "ok": meets(value, op, goal),
        "judge": judge,
        "headline": headline,
    }


def meets(value: Any, op: str, goal: float) -> bool | None:
    if value is None:
        return None
    return value >= goal if op == ">=" else value <= goal if op == "<=" else value == goal


def _common_targets(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        target("orders lost (never final)", m["lost"], "==", 0),
        target("persisted histories with seq gaps", m["persisted_history_gaps"], "==", 0),
    ]
    if "missing_updates" in m:
        rows.append(target("updates missing (seq gaps)", m["missing_updates"], "==", 0))
        rows.append(target("updates out of order / twice", m["out_of_order_updates"], "==", 0))
    return rows


# --- the scenarios --------------------------------------------------------------------------------


async def spec(opts: Options) -> dict[str, Any]:
    """Default settings, 300 orders at once: all final, at 100/minute, at most 10 at a time."""
    n = opts.extra.get("orders") or 300
    limit = opts.extra.get("executing_limit") or 10
    result = await _drive(
        "spec",
        opts,
        orders=n,
        submit=opts.extra.get("submit") or "ws",
        rate=None,
        within=opts.timeout or 600,
        executing_limit=limit,
    )
    m = result["metrics"]
    t = m["throughput"]
    result["targets"] = [
        target("orders accepted", m["accepted"], ">=", n),
        *_common_targets(m),
        target(
            "orders/minute, steady (10-90 % of completions)",
            t["steady_orders_per_minute"],
            ">=",
            97,
            "/min",
            judge="median",
            headline=True,
        ),
        target(
            "new orders started/minute",
            t["new_orders_started_per_minute"],
            ">=",
            97,
            "/min",
            judge="median",
        ),
        target("most orders executing at once", m["max_executing_at_once"], "<=", limit),
    ]
    return result


async def capacity(opts: Options) -> dict[str, Any]:
    """Venue latencies 0, no failures, no rate limits: 5 000 orders as fast as they go."""
    n = opts.extra.get("orders") or 5000
    result = await _drive(
        "capacity",
        opts,
        orders=n,
        submit="http",
        rate=opts.extra.get("rate") if opts.extra.get("rate") is not None else 0,
        concurrency=opts.extra.get("concurrency") or 32,
        follow=opts.extra.get("follow", False),
        within=opts.timeout or 600,
    )
    m = result["metrics"]
    r = result["resources"]
    result["targets"] = [
        target("orders accepted", m["accepted"], ">=", n),
        *_common_targets(m),
        target(
            "orders/s confirmed end to end",
            m["throughput"]["orders_per_second"],
            ">=",
            250,
            "/s",
            judge="median",
            headline=True,
        ),
        target(
            "engine CPU ms per order (all engine processes)",
            r["engine_cpu_ms_per_order"],
            "<=",
            6.8,
            "ms",
            judge="median",
        ),
    ]
    return result


async def api(opts: Options) -> dict[str, Any]:
    """POST at a steady 100 requests/s for 30 s, open loop, while the worker executes them."""
    rate = opts.extra.get("rate") or 100
    duration = opts.extra.get("duration") or 30
    result = await _drive(
        "api",
        opts,
        orders=int(rate * duration),
        submit="http",
        rate=rate,
        within=opts.timeout or duration + 600,
    )
    m = result["metrics"]
    result["targets"] = [
        target("requests answered 201", m["accepted"], ">=", int(rate * duration)),
        target("POST p50", m["submit_latency_ms"]["p50"], "<=", 15, "ms", judge="median"),
        target(
            "POST p99", m["submit_latency_ms"]["p99"], "<=", 15, "ms", judge="median", headline=True
        ),
        *_common_targets(m),
    ]
    return result


async def ws(opts: Options) -> dict[str, Any]:
    """100 orders/s POSTed on an open-loop schedule while one firehose client, connected before
    the first, measures commit → client latency of every update. `--follow` adds a socket per
    order on /ws/orders/<id>; `--submit ws` submits each order over its own socket instead
    (both also load the WebSocket face's subscription path, not only its delivery)."""
    rate = opts.extra.get("rate") or 100
    duration = opts.extra.get("duration") or 30
    result = await _drive(
        "ws",
        opts,
        orders=int(rate * duration),
        submit=opts.extra.get("submit") or "http",
        follow=bool(opts.extra.get("follow")),
        rate=rate,
        within=opts.timeout or duration + 600,
    )
    m = result["metrics"]
    result["targets"] = [
        target(
            "WebSocket delivery p99 (all clients)",
            m["delivery_latency_ms"]["p99"],
            "<=",
            10,
            "ms",
            judge="median",
            headline=True,
        ),
        *_common_targets(m),
    ]
    return result


async def ws_scale(opts: Options) -> dict[str, Any]:
    """N clients connected at once, each on its own socket, each then submitting its order over
    it and receiving every update; memory of the web process per connection."""
    n = opts.extra.get("clients") or 10_000
    rate = opts.extra.get("rate") or 200
    timeout = opts.timeout or 900
    health = await engine_health(opts.url)
    engine = procs.find_engine(opts.port, web_pid=opts.web_pid, worker_pid=opts.worker_pid)
    fds = raise_fd_limit(n + 1000)
    web_fds = engine.web.rlimit(psutil.RLIMIT_NOFILE)[0]
    notes = []
    if fds < n + 100:
        notes.append(f"this process may open only {fds} files for {n} clients")
    if web_fds < n + 100:
        raise SystemExit(
            f"the web process (pid {engine.web.pid}) may open only {web_fds} files: "
            f"start it with a higher `ulimit -n` (bench.serve raises it to the hard limit)"
        )
    drive = Drive(url=opts.url, total=n, progress=opts.progress, desc="ws-scale")
    lag = drive.spawn(drive.watch_loop_lag())
    drive.spawn(drive.poll_finals())
    sampler = procs.Sampler(engine)
    profiler = Profiler(engine, name=opts.out_name or "ws-scale", rate=opts.profile_rate)
    runs = drive.new_runs(order_body(i) for i in range(n))
    in_flight = opts.extra.get("connect_concurrency") or 32
    connects = asyncio.Semaphore(in_flight)
    started = time.time()
    deadline = time.monotonic() + timeout
    sampler.start()
    await asyncio.sleep(1.0)
    rss_before = sampler.rss_now("web")

    from tqdm import tqdm

    bar = tqdm(total=n, desc="connecting", unit="client", disable=not opts.progress)

    async def open_one(run: Any) -> Any:
        ws = await drive.open_socket(run, connects=connects)
        bar.update(1)
        return ws

    t_connect = time.perf_counter()
    sockets = await asyncio.gather(*(open_one(r) for r in runs))
    connect_seconds = time.perf_counter() - t_connect
    bar.close()
    connected = sum(1 for s in sockets if s is not None)
    await asyncio.sleep(2.0)  # let daphne settle before reading its memory
    rss_connected = sampler.rss_now("web")
    if opts.profile:
        profiler.start()
    hold = asyncio.Event()
    try:
        tasks = await drive.submit_ws_open_loop(
            runs, rate=rate, connects=connects, sockets=sockets, hold=hold
        )
        await drive.wait_all_answered(deadline - time.monotonic())
        drive.submissions_finished()
        complete = await drive.wait_all_final(deadline - time.monotonic())
        rss_flow = sampler.rss_now("web")
        still_open = sum(1 for s in sockets if s is not None and s.state.name == "OPEN")
    finally:
        ended = time.time()
        await sampler.stop()
        if opts.profile:
            await profiler.stop()
        hold.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
    lag.cancel()
    drive.bar.close()
    ids = [r.order_id for r in runs if r.order_id]
    histories = await drive.read_back(ids, via=opts.extra.get("verify") or "ws")
    metrics, dist = analyse(drive, histories, firehose=False, sockets="submit")
    _write_deliveries(drive, opts.extra.get("deliveries"))  # what the analysis counted
    await drive.close()
    metrics["timed_out"] = not complete
    web_peak = sampler.groups["web"].rss_peak
    metrics["connections"] = {
        "clients": n,
        "connected": connected,
        "connect_seconds": round(connect_seconds, 2),
        "connects_per_second": round(connected / connect_seconds, 1) if connect_seconds else None,
        "still_open_when_all_final": still_open,
        "web_rss_mb_before": round(rss_before / 2**20, 1),
        "web_rss_mb_connected": round(rss_connected / 2**20, 1),
        "web_rss_mb_all_final": round(rss_flow / 2**20, 1),
        "web_rss_mb_peak": round(web_peak / 2**20, 1),
        "web_kb_per_connection_idle": round((rss_connected - rss_before) / 1024 / connected, 1)
        if connected
        else None,
        "web_kb_per_connection_peak": round((web_peak - rss_before) / 1024 / connected, 1)
        if connected
        else None,
    }
    result = {
        "scenario": "ws-scale",
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(ended - started, 2),
        "url": opts.url,
        "load": {
            "clients": n,
            "submit": "ws (each client submits its own order on its socket)",
            "rate_per_second": rate,
            "connect_concurrency": in_flight,
            "timeout_seconds": timeout,
        },
        "engine": {
            "settings": engine_settings(opts),
            "health": health.get("checks"),
            "processes": engine.describe(),
            "web_open_files_limit": web_fds,
        },
        "machine": machine(),
        "metrics": metrics,
        "resources": sampler.report(metrics["final"]),
        "notes": notes,
        "_distributions": dist,
    }
    if opts.profile:
        result["profile"] = profiler.report(metrics["final"], _measured(result["resources"]))
    c = metrics["connections"]
    result["targets"] = [
        target(
            "clients connected at once",
            min(c["connected"], c["still_open_when_all_final"]),
            ">=",
            n,
        ),
        target("orders accepted", metrics["accepted"], ">=", n),
        *_common_targets(metrics),
    ]
    return result


SCENARIOS = {"spec": spec, "capacity": capacity, "api": api, "ws": ws, "ws-scale": ws_scale}
