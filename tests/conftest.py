"""Fixtures shared by the whole suite: real PostgreSQL (pytest-django's test database) and real
Redis (database 15 unless TEST_REDIS_URL says otherwise), never mocks of either."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import base58
import pytest
import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def make_wallet(n: int = 0) -> str:
    return base58.b58encode(bytes([n % 256]) * 31 + b"\x01").decode()


@pytest.fixture
def wallet() -> str:
    return make_wallet(7)


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with an empty test Redis (queue, cache, rate limits, channel layer)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.close()


@pytest.fixture
def api():  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def order_payload(wallet: str) -> dict[str, Any]:
    return {
        "walletAddress": wallet,
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "1.5",
        "orderType": "market",
        "slippage": "1.0",
    }


def order_create(**fields: Any) -> Any:
    """Create an order through the engine's service (as the API does): SOL→USDC 1.5 from
    wallet 0 unless `fields` say otherwise."""
    from engine.services import OrderRequest, order_submit

    fields = {
        "wallet_address": make_wallet(0),
        "token_in": "SOL",
        "token_out": "USDC",
        "amount_in": Decimal("1.5"),
        **fields,
    }
    key = fields.pop("idempotency_key", None)
    order, _ = order_submit(request=OrderRequest(**fields), idempotency_key=key)
    return order


def orders_create(n: int, *, first_wallet: int, amount: str) -> list[str]:
    """`n` SOL→USDC orders from consecutive wallets, once their after-commit work (the first
    event's publish, the dispatch) is done; their ids."""
    from engine.events import outbox

    wallets = [make_wallet(first_wallet + i) for i in range(n)]
    ids = [str(order_create(wallet_address=w, amount_in=Decimal(amount)).pk) for w in wallets]
    outbox.flush()
    return ids


@pytest.fixture
def submit(wallet: str) -> Callable[..., Any]:
    """Create an order through the engine's service (as the API does)."""
    return lambda **overrides: order_create(**{"wallet_address": wallet, **overrides})


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of this test's own (scripts.faultkit), stopped afterwards, also when the
    test left it paused (SIGSTOP)."""
    from scripts.faultkit import PrivateRedis

    server = PrivateRedis(tmp_path).start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.kill(signal.SIGCONT)
        server.close()


# --- real processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def until(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    """Wait for `predicate` to hold (a real process's log line, an order's status)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def service_env(**extra: str) -> dict[str, str]:
    """The environment for a daphne / celery process that shares this test run's databases."""
    db = connection.settings_dict
    host, port = db["HOST"] or "localhost", db["PORT"] or 5432
    url = f"postgres://{db['USER'] or ''}@{host}:{port}/{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "DEX_QUOTE_LATENCY_MS": "5",
        "DEX_EXECUTION_LATENCY_MS": "30-60",
        "DEX_FAILURE_RATE": "0",
        "DEX_SEED": "11",
        "ORDER_RATE_LIMIT": "0",
        "API_RATE_LIMIT": "0",
        "ORDER_RETRY_BACKOFF_SECONDS": "0.05",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "WARMUP": "1",  # as served (the suite's own process runs with it off)
    }
    env.update(extra)
    return env


class Service:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = 15) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=5)
        self._log.close()


def start_daphne(
    env: dict[str, str], log_dir: Path, port: int | None = None
) -> tuple[Service, int]:
    port = port or free_port()
    env = {**env, "DB_POOL": env.get("DB_POOL", "1")}  # as the Procfile runs it
    service = Service(
        f"daphne-{port}",
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ],
        env,
        log_dir,
    )
    wait_for_port(port)
    return service, port


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    name: str = "w1",
    concurrency: int = 4,
    pool: str = "prefork",
) -> Service:
    service = Service(
        f"worker-{name}",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel=INFO",
            "--queues=orders,periodic",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--hostname={name}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        log_dir,
    )
    return service


def wait_for_worker(service: Service, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ready." in service.log():
            return
        if service.proc.poll() is not None:
            raise RuntimeError(f"worker exited:\n{service.log()[-3000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready:\n{service.log()[-3000:]}")


@pytest.fixture
def services(
    django_db_serialized_rollback: None, transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """Start real processes against this test's databases; all are stopped afterwards."""
    started: list[Service] = []

    def _start(kind: str, **kw: Any) -> Any:
        env = service_env(**kw.pop("env", {}))
        if kind == "daphne":
            service, port = start_daphne(env, tmp_path, kw.get("port"))
            started.append(service)
            return service, port
        service = start_worker(env, tmp_path, **kw)
        started.append(service)
        wait_for_worker(service)
        return service

    yield _start
    for service in started:
        service.stop()
