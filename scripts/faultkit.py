"""The fault-injection kit shared by scripts/chaos.py and tests/faults: private Redis and
PostgreSQL servers that can be killed and restarted without touching the machine's own (6379,
5432), the engine's real processes (daphne, Celery workers, beat) started against them, and the
invariants checked straight from PostgreSQL, the source of truth.

Everything started here is a child in its own process group and is stopped by `close()` /
`stop()`, which the callers run in `finally` blocks.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = ("confirmed", "failed", "cancelled", "expired")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float = 30.0, *, open_: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port) is open_:
            return
        time.sleep(0.05)
    state = "listening" if open_ else "closed"
    raise TimeoutError(f"port {port} not {state} after {timeout:.0f} s")


class Proc:
    """A child process in its own session (so a signal reaches all its children), logging to a
    file."""

    def __init__(
        self, name: str, args: Sequence[str], env: dict[str, str] | None, log_dir: Path
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker and its pool children)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.alive:
            self.kill(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Pool children that outlived their parent are still in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()


class PrivateRedis:
    """redis-server on a free port, nothing persisted: a restart comes back empty."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.generation = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.generation += 1
        self.proc = Proc(
            f"redis-{self.port}-{self.generation}",
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--maxclients",
                "2000",
            ],
            None,
            self.log_dir,
        )
        wait_for_port(self.port, 10)
        return self

    def kill(self) -> None:
        """SIGKILL: everything in it (queue, unacked tasks, groups, cache, rate limits) is lost."""
        if self.proc is not None:
            self.proc.stop(signal.SIGKILL)
        wait_for_port(self.port, 10, open_=False)

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stop(signal.SIGKILL)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries")
    return path


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temporary directory on a free port, trust auth, run as
    the `postgres` OS user when started as root (initdb refuses root)."""

    def __init__(self, port: int | None = None, dbname: str = "orderengine") -> None:
        self.port = port or free_port()
        self.dbname = dbname
        self.dir = Path(tempfile.mkdtemp(prefix="oe-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, user="postgres")
        self.dir.chmod(0o755)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def dsn(self, dbname: str | None = None) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname or self.dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, timeout=timeout, cwd="/"
        )

    def init(self) -> PrivatePostgres:
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            "-c shared_buffers=64MB"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log_path),
            "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: terminate every session and shut down cleanly; `immediate`: as if it died."""
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except Exception:  # the cluster may be half-started: kill the postmaster by its pid
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                with contextlib.suppress(Exception):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Stack:
    """The engine's processes (as the Procfile runs them) against the given PostgreSQL and
    Redis."""

    database_url: str
    redis_url: str
    log_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TEST_", "DJANGO_", "PYTEST")) and k != "CELERY_BROKER_URL"
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "CELERY_BEAT_SCHEDULE_FILENAME": str(self.log_dir / "celerybeat-schedule"),
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
                "DEX_QUOTE_LATENCY_MS": "5",
                "DEX_EXECUTION_LATENCY_MS": "300-800",
                "DEX_FAILURE_RATE": "0",
                "ORDER_RATE_LIMIT": "0",
                "API_RATE_LIMIT": "0",
                "ORDER_RETRY_BACKOFF_SECONDS": "0.1",
                "ORDER_STALE_SECONDS": "3",
                "ORDER_RECONCILE_SECONDS": "2",
            }
        )
        env.update(self.settings)
        env.update(extra)
        return env

    def manage(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def _start(self, name: str, args: list[str], **extra: str) -> Proc:
        proc = Proc(name, [sys.executable, "-m", *args], self.env(**extra), self.log_dir)
        self.procs.append(proc)
        return proc

    def daphne(self, port: int | None = None, **extra: str) -> tuple[Proc, int]:
        port = port or free_port()
        proc = self._start(
            f"daphne-{port}",
            ["daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            **{"DB_POOL": "1", **extra},  # as the Procfile runs it
        )
        wait_for_port(port, 60)
        return proc, port

    def worker(self, name: str, concurrency: int = 4, **extra: str) -> Proc:
        proc = self._start(
            f"worker-{name}-{len(self.procs)}",
            [
                "celery", "-A", "config", "worker", "--loglevel=INFO",
                "--queues=orders,periodic", f"--concurrency={concurrency}",
                f"--hostname={name}@%h", "--without-gossip", "--without-mingle",
            ],
            **extra,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while "ready." not in proc.log():
            if not proc.alive:
                raise RuntimeError(f"worker {name} exited:\n{proc.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {name} not ready:\n{proc.log()[-3000:]}")
            time.sleep(0.2)
        return proc

    def beat(self) -> Proc:
        return self._start(
            f"beat-{len(self.procs)}",
            ["celery", "-A", "config", "beat", "--loglevel=INFO"],
        )

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


# --- invariants, read from PostgreSQL ---------------------------------------------------------


@dataclass
class Verdict:
    orders: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def orders_not_final(conn: Any, ids: Iterable[str] | None = None) -> list[str]:
    query = (
        "SELECT id::text FROM orders_order WHERE NOT (status = ANY(%s) AND next_attempt_at IS NULL)"
    )
    rows = conn.execute(query, [list(TERMINAL)]).fetchall()
    wanted = set(ids) if ids is not None else None
    return [r[0] for r in rows if wanted is None or r[0] in wanted]


def invariants(conn: Any, *, expected_ids: Iterable[str] | None = None) -> Verdict:
    """Every order terminal, at most one landed swap each (exactly one when confirmed, and it is
    the order's txHash), event seq 1..n without gap or repeat, and (when given) exactly the
    orders the clients were told about."""
    verdict = Verdict()
    rows = conn.execute(
        "SELECT id::text, status, next_attempt_at IS NULL, last_seq, tx_hash, attempts "
        "FROM orders_order"
    ).fetchall()
    verdict.orders = len(rows)
    for _, status, *_ in rows:
        verdict.by_status[status] = verdict.by_status.get(status, 0) + 1
    if expected_ids is not None:
        expected, stored = set(expected_ids), {r[0] for r in rows}
        if expected - stored:
            verdict.violations.append(f"{len(expected - stored)} accepted orders are missing")
        if stored - expected:
            verdict.violations.append(f"{len(stored - expected)} orders no client was told about")
    landed: dict[str, list[tuple[str, str]]] = {}
    for reference, signature in conn.execute(
        "SELECT reference, signature FROM dex_chaintransaction WHERE state = 'landed'"
    ).fetchall():
        landed.setdefault(reference.split(":")[0], []).append((reference, signature))
    seqs: dict[str, list[int]] = {}
    for order_id, seq in conn.execute(
        "SELECT order_id::text, seq FROM orders_orderevent ORDER BY order_id, seq"
    ).fetchall():
        seqs.setdefault(order_id, []).append(seq)
    for order_id, status, final, last_seq, tx_hash, _attempts in rows:
        if status not in TERMINAL or not final:
            verdict.violations.append(f"order {order_id} is not terminal: {status}")
        swaps = landed.get(order_id, [])
        if len(swaps) > 1:
            verdict.violations.append(f"order {order_id} swapped {len(swaps)} times: {swaps}")
        if status == "confirmed" and (len(swaps) != 1 or swaps[0][1] != tx_hash):
            verdict.violations.append(f"confirmed order {order_id} has no matching swap: {swaps}")
        if status != "confirmed" and swaps:
            verdict.violations.append(f"{status} order {order_id} has a landed swap: {swaps}")
        if seqs.get(order_id, []) != list(range(1, last_seq + 1)):
            verdict.violations.append(
                f"order {order_id} events {seqs.get(order_id, [])[:20]} are not 1..{last_seq}"
            )
    return verdict


def order_events(conn: Any) -> dict[str, list[tuple[int, str]]]:
    events: dict[str, list[tuple[int, str]]] = {}
    for order_id, seq, status in conn.execute(
        "SELECT order_id::text, seq, status FROM orders_orderevent ORDER BY order_id, seq"
    ).fetchall():
        events.setdefault(order_id, []).append((seq, status))
    return events
