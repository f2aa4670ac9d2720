"""Finding the engine's processes and measuring what they spend.

The web process is whoever listens on the benchmark's port. Its worker (and beat) are the Celery
processes started next to it: descendants of the nearest ancestor that also started a Celery
worker (honcho under `make run`, `bench.serve`'s own process). `bench.serve` also writes a state
file with the pids, which wins when it matches the port. PostgreSQL backends are found through
the engine's own TCP connections to the database, so that other people's sessions on the same
server are not counted.

CPU time is summed per group over every pid seen (a pool child that appears mid-run counts from
zero); memory is the group's summed RSS, sampled, and its peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

STATE_DIR = Path(__file__).resolve().parent / ".run"
PG_PORT = 5432

#: Groups whose CPU is the engine's own (summed into "engine total").
ENGINE_GROUPS = ("web", "worker", "worker-pool", "beat", "postgres-backends")


def state_path(port: int) -> Path:
    return STATE_DIR / f"serve-{port}.json"


def read_state(port: int) -> dict[str, Any] | None:
    """What `bench.serve` wrote for this port, if it is still alive."""
    path = state_path(port)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    web = state.get("pids", {}).get("web")
    if not web or not psutil.pid_exists(web):
        return None
    return state


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _is_python(cmd: list[str]) -> bool:
    """A Python interpreter (not the `uv run` wrapper that waits for it)."""
    return bool(cmd) and "python" in os.path.basename(cmd[0])


def _is_celery(proc: psutil.Process, role: str) -> bool:
    cmd = _cmdline(proc)
    if not _is_python(cmd):
        return False
    text = " ".join(cmd)
    return "celery" in text and f" {role}" in text


def listener_pid(port: int) -> int | None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


@dataclass
class EngineProcesses:
    web: psutil.Process
    worker: psutil.Process | None
    beat: psutil.Process | None
    how: str
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        def one(p: psutil.Process | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"pid": p.pid, "cmdline": " ".join(_cmdline(p))[:300]}

        return {
            "found_by": self.how,
            "web": one(self.web),
            "worker": one(self.worker),
            "beat": one(self.beat),
            "notes": self.notes,
        }


def _celery_near(web: psutil.Process, role: str) -> psutil.Process | None:
    """The main Celery `role` process started beside `web` (not a pool child)."""
    for ancestor in web.parents()[:3]:
        if ancestor.pid == 1:
            break
        found = [
            p
            for p in ancestor.children(recursive=True)
            if _is_celery(p, role) and not _is_celery_parent(p, role)
        ]
        if found:
            return found[0]
    return None


def _is_celery_parent(proc: psutil.Process, role: str) -> bool:
    """True for a prefork pool child (its parent is the Celery main process)."""
    try:
        parent = proc.parent()
    except psutil.NoSuchProcess:
        return False
    return parent is not None and _is_celery(parent, role)


def find_engine(
    port: int, *, web_pid: int | None = None, worker_pid: int | None = None
) -> EngineProcesses:
    """Locate the web, worker and beat processes of the engine serving `port`."""
    notes: list[str] = []
    state = read_state(port)
    if state and not web_pid:
        pids = state["pids"]
        procs = {k: psutil.Process(v) for k, v in pids.items() if v and psutil.pid_exists(v)}
        return EngineProcesses(
            web=procs["web"],
            worker=procs.get("worker"),
            beat=procs.get("beat"),
            how=f"state file {state_path(port).name}",
        )
    pid = web_pid or listener_pid(port)
    if pid is None:
        raise RuntimeError(f"nothing listens on 127.0.0.1:{port}: start the engine first")
    web = psutil.Process(pid)
    worker = psutil.Process(worker_pid) if worker_pid else _celery_near(web, "worker")
    beat = _celery_near(web, "beat")
    if worker is None:
        notes.append("no Celery worker found beside the web process: pass --worker-pid")
    return EngineProcesses(
        web=web,
        worker=worker,
        beat=beat,
        how="--web-pid" if web_pid else f"listener on port {port}",
        notes=notes,
    )


# --- sampling ---------------------------------------------------------------------------------


@dataclass
class GroupUsage:
    cpu: dict[int, float] = field(default_factory=dict)  # pid → CPU seconds at its last sample
    base: dict[int, float] = field(default_factory=dict)  # pid → CPU seconds when first seen
    rss_peak: int = 0
    rss_last: int = 0
    pids_seen: set[int] = field(default_factory=set)

    def cpu_seconds(self) -> float:
        return sum(self.cpu[p] - self.base.get(p, 0.0) for p in self.cpu)


def _cpu(proc: psutil.Process, *, children: bool = False) -> float:
    t = proc.cpu_times()
    if children:
        return t.user + t.system + t.children_user + t.children_system
    return t.user + t.system


# "postgres: 15/main: root orderengine 127.0.0.1(33136) idle" (the cluster part is optional).
_PG_TITLE = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) \S+?\((\d+)\)")


class Sampler:
    """Samples CPU and RSS of the engine's processes (and, for context, of Redis, PostgreSQL's
    shared background processes, the load generator itself and the whole machine)."""

    def __init__(self, engine: EngineProcesses, *, interval: float = 0.5) -> None:
        self.engine = engine
        self.interval = interval
        self.groups: dict[str, GroupUsage] = {}
        self._pg_ports: set[int] = set()
        self._pg_db: str | None = None
        self._pg_refresh = 0.0
        self._task: asyncio.Task[None] | None = None
        self._machine_start = psutil.cpu_times()
        self._started = time.monotonic()
        self._stopped: float | None = None
        self._machine_end: Any = None
        self._self = psutil.Process()

    # Processes of each group, as of now (one pass over the process table per sample: the
    # sampler shares this process with the load generator and must stay cheap).
    def _members(self) -> dict[str, list[psutil.Process]]:
        members: dict[str, list[psutil.Process]] = {"web": [self.engine.web]}
        if self.engine.worker is not None:
            members["worker"] = [self.engine.worker]
            try:
                members["worker-pool"] = self.engine.worker.children(recursive=True)
            except psutil.NoSuchProcess:
                members["worker-pool"] = []
        if self.engine.beat is not None:
            members["beat"] = [self.engine.beat]
        redis: list[psutil.Process] = []
        postgres: list[psutil.Process] = []
        for proc in psutil.process_iter(["name", "cmdline"], ad_value=None):
            name = proc.info["name"]
            if name == "redis-server":
                redis.append(proc)
            elif name == "postgres" and proc.info["cmdline"]:
                postgres.append(proc)
        members["postgres-backends"] = self._postgres_backends(postgres)
        # The postmaster's children times grow by each backend's whole CPU when it exits: for
        # the short-lived backends a sampler misses (Celery closes the connection after every
        # task), this is where their cost shows. Shared by everyone on the server.
        members["postgres-server (shared, exited backends)"] = [
            p for p in postgres if "-D" in p.info["cmdline"]
        ]
        members["redis-server (shared)"] = redis
        members["bench"] = [self._self]
        return members

    def _engine_pids(self) -> set[int]:
        pids = {self.engine.web.pid}
        for main in (self.engine.worker, self.engine.beat):
            if main is None:
                continue
            pids.add(main.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                pids.update(c.pid for c in main.children(recursive=True))
        return pids

    def _postgres_backends(self, postgres: list[psutil.Process]) -> list[psutil.Process]:
        """Backends serving the engine: learnt from its connections' ports (which also tells the
        database's name) until the name is known."""
        now = time.monotonic()
        if self._pg_db is None and now >= self._pg_refresh:
            self._pg_refresh = now + 2.0
            pids = self._engine_pids()
            for conn in psutil.net_connections(kind="tcp"):
                if conn.pid in pids and conn.raddr and conn.raddr.port == PG_PORT:
                    self._pg_ports.add(conn.laddr.port)
        backends = []
        for proc in postgres:
            match = _PG_TITLE.match(proc.info["cmdline"][0])
            if not match:
                continue
            database, client_port = match.group(1), int(match.group(2))
            if self._pg_db is None and client_port in self._pg_ports:
                self._pg_db = database
            if self._pg_db is not None and database == self._pg_db:
                backends.append(proc)
        return backends

    def sample(self) -> None:
        for name, procs in self._members().items():
            group = self.groups.setdefault(name, GroupUsage())
            rss = 0
            for proc in procs:
                try:
                    with proc.oneshot():
                        cpu = _cpu(proc, children=name.startswith("postgres-server"))
                        rss += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                if proc.pid not in group.cpu:
                    # Seen for the first time: before the first sample it counts from what it
                    # had; later it is a new process (a pool child) and counts from zero.
                    group.base[proc.pid] = cpu if not self._sampled_once else 0.0
                group.cpu[proc.pid] = cpu
                group.pids_seen.add(proc.pid)
            group.rss_last = rss
            group.rss_peak = max(group.rss_peak, rss)
        self._sampled_once = True

    _sampled_once = False

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self.sample()
        self._machine_start = psutil.cpu_times()
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()
        self._machine_end = psutil.cpu_times()
        self._stopped = time.monotonic()

    def rss_now(self, group: str) -> int:
        """The group's summed RSS right now (a fresh reading, not the last sample)."""
        total = 0
        for proc in self._members().get(group, []):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total

    def report(self, orders: int) -> dict[str, Any]:
        """CPU seconds, CPU ms per order and peak RSS per group; the machine's busy time."""
        wall = (self._stopped or time.monotonic()) - self._started
        groups: dict[str, Any] = {}
        engine_cpu = 0.0
        for name, usage in self.groups.items():
            cpu = usage.cpu_seconds()
            if name in ENGINE_GROUPS:
                engine_cpu += cpu
            groups[name] = {
                "cpu_seconds": round(cpu, 3),
                "cpu_ms_per_order": round(cpu * 1000 / orders, 3) if orders else None,
                "cpu_percent_of_one_core": round(100 * cpu / wall, 1) if wall else None,
                "peak_rss_mb": round(usage.rss_peak / 2**20, 1),
                "processes": len(usage.pids_seen),
            }
        machine = None
        if self._machine_end is not None:
            busy = _busy(self._machine_end) - _busy(self._machine_start)
            machine = {
                "busy_cpu_seconds": round(busy, 3),
                "cores": psutil.cpu_count(),
                "busy_percent": round(100 * busy / (wall * (psutil.cpu_count() or 1)), 1),
            }
        return {
            "wall_seconds": round(wall, 3),
            "groups": groups,
            "engine_cpu_seconds": round(engine_cpu, 3),
            "engine_cpu_ms_per_order": round(engine_cpu * 1000 / orders, 3) if orders else None,
            "postgres_database": self._pg_db,
            "machine": machine,
        }


def _busy(times: Any) -> float:
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)
