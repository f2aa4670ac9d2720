"""`python -m bench.serve --mode spec|capacity`: start an engine for the benchmark, the way
`make run` does (daphne, a Celery worker, beat), with the scenario's settings, on a database and
a Redis database of its own, and stop every process it started on Ctrl-C, after `--max-seconds`,
or when the command given after `--` ends:

    uv run python -m bench.serve --mode capacity                 # serve until Ctrl-C
    uv run python -m bench.serve --mode capacity -- uv run python -m bench capacity

The processes run as the Procfile runs them (daphne with DB_POOL=1, the worker on the orders and
periodic queues, beat). It writes bench/.run/serve-<port>.json (pids, settings) for the
benchmark to find the processes.
The database is dropped and migrated afresh at start (`--keep-db` to reuse it): a run's thousands
of orders must not slow the next one down.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import STATE_DIR, state_path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "orderengine_bench"
REDIS_DB = 9

MODES: dict[str, dict[str, str]] = {
    # make run's defaults, except the API limit: the 300 orders come from one address here, where
    # the specification has them come from many clients (WebSocket submissions spend the same
    # per-client budget as POSTs).
    "spec": {
        "DEX_QUOTE_LATENCY_MS": "200",
        "DEX_EXECUTION_LATENCY_MS": "2000-3000",
        "DEX_FAILURE_RATE": "0.05",
        "ORDER_RATE_LIMIT": "100/m",
        "API_RATE_LIMIT": "0",
        "ORDER_CONCURRENCY": "10",
    },
    # API.md: latencies and failures 0, both rate limits lifted.
    "capacity": {
        "DEX_QUOTE_LATENCY_MS": "0",
        "DEX_EXECUTION_LATENCY_MS": "0",
        "DEX_FAILURE_RATE": "0",
        "ORDER_RATE_LIMIT": "0",
        "API_RATE_LIMIT": "0",
        "ORDER_CONCURRENCY": "10",
    },
}


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def raise_open_files() -> int:
    """Soft limit of open files up to the hard one, for daphne's ten thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def environment(mode: str, port: int, overrides: list[str], log_level: str) -> dict[str, str]:
    user = getpass.getuser()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{user}@localhost:5432/{DATABASE}",
        "REDIS_URL": f"redis://localhost:6379/{REDIS_DB}",
        "CELERY_BROKER_URL": f"redis://localhost:6379/{REDIS_DB}",
        "CELERY_BEAT_SCHEDULE_FILENAME": str(STATE_DIR / f"celerybeat-schedule-{port}"),
        "LOG_LEVEL": log_level,
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        **MODES[mode],
    }
    for item in overrides:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "manage.py", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def fresh_database(env: dict[str, str], *, keep: bool) -> None:
    """Drop (unless `keep`), create and migrate the benchmark's own database."""
    if not keep:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host="localhost", user=getpass.getuser(), dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
            )
    _manage(env, "ensure_database")
    _manage(env, "migrate", "--noinput")


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(f"redis://localhost:6379/{REDIS_DB}").flushdb()


class Engine:
    """The processes, each in its own session so that a stop reaches its children."""

    def __init__(self, env: dict[str, str], port: int, log_level: str) -> None:
        self.env = env
        self.port = port
        self.log_level = log_level
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def _start(self, name: str, args: list[str], **extra_env: str) -> None:
        log = STATE_DIR / f"{name}-{self.port}.log"
        self.logs[name] = log
        with open(log, "wb") as handle:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=ROOT,
                env={**self.env, **extra_env},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, *, beat: bool) -> None:
        level = self.log_level
        self._start(
            "web",
            ["daphne", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            DB_POOL="1",  # as the Procfile runs it: pooled connections under ASGI
        )
        self._start(
            "worker",
            [
                "celery",
                "-A",
                "config",
                "worker",
                f"--loglevel={level}",
                "--queues=orders,periodic",
                f"--hostname=bench-{self.port}@%h",
            ],
        )
        if beat:
            self._start("beat", ["celery", "-A", "config", "beat", f"--loglevel={level}"])

    def wait_healthy(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    tail = self.logs[name].read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5)
                last = response.json()
                if response.status_code == 200 and last["checks"].get("workers"):
                    return last
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the engine did not become healthy: {last}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument("--concurrency", type=int, help="ORDER_CONCURRENCY (10)")
    parser.add_argument(
        "--processes", type=int, help="WORKER_PROCESSES (as many as ORDER_CONCURRENCY)"
    )
    parser.add_argument("--no-beat", action="store_true", help="do not start celery beat")
    parser.add_argument("--keep-db", action="store_true", help="reuse the database as it is")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL and Celery's (INFO)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="another setting"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=3 * 3600, help="stop by itself after this long (3 h)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- a command to run, then stop")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    if _port_busy(args.port):
        print(f"port {args.port} is in use: choose another with --port", file=sys.stderr)
        return 2
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    overrides = list(args.set)
    if args.concurrency:
        overrides.append(f"ORDER_CONCURRENCY={args.concurrency}")
    if args.processes:
        overrides.append(f"WORKER_PROCESSES={args.processes}")
    env = environment(args.mode, args.port, overrides, args.log_level)
    files = raise_open_files()
    print(f"database {DATABASE} ({'kept' if args.keep_db else 'fresh'}), Redis db {REDIS_DB}")
    fresh_database(env, keep=args.keep_db)
    flush_redis()
    engine = Engine(env, args.port, args.log_level)
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    path = state_path(args.port)
    code = 0
    try:
        engine.start(beat=not args.no_beat)
        health = engine.wait_healthy()
        processes = env.get("WORKER_PROCESSES") or env["ORDER_CONCURRENCY"]
        settings = {k: env[k] for k in MODES[args.mode]} | {
            "LOG_LEVEL": args.log_level,
            "DATABASE": DATABASE,
            "REDIS_DB": REDIS_DB,
            "open_files_limit": files,
            "beat": not args.no_beat,
            "web": "daphne, DB_POOL=1 (as the Procfile)",
            "worker": f"prefork x{processes}, queues orders,periodic",
        }
        for item in args.set:
            key, _, value = item.partition("=")
            settings[key] = value
        state = {
            "mode": args.mode,
            "port": args.port,
            "url": f"http://127.0.0.1:{args.port}",
            "pids": {name: proc.pid for name, proc in engine.procs.items()},
            "settings": settings,
            "logs": {name: str(p) for name, p in engine.logs.items()},
            "started_at": time.time(),
        }
        path.write_text(json.dumps(state, indent=2))
        print(f"engine ready at http://127.0.0.1:{args.port} ({args.mode}): {health['checks']}")
        print(f"  pids {state['pids']}; logs in {STATE_DIR}; open files {files}")
        deadline = time.monotonic() + args.max_seconds
        if command:
            bench_env = {**os.environ, "BENCH_URL": f"http://127.0.0.1:{args.port}"}
            child = subprocess.Popen(command, cwd=ROOT, env=bench_env)
            while child.poll() is None and not stopping and time.monotonic() < deadline:
                time.sleep(0.2)
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            code = child.returncode
        else:
            print("serving; Ctrl-C to stop")
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.5)
    finally:
        print("stopping the engine")
        engine.stop()
        path.unlink(missing_ok=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
