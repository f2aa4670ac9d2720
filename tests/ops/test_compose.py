"""docker-compose.yml and the Dockerfile: the services, health checks, start order, the Postgres
volume and the same configuration as `make run` (the engine's variables, the Procfile's
commands). No Docker engine runs here; `docker compose config` (which needs none) validates the
file when a Docker client with the compose plugin exists, and is skipped with the reason
otherwise."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENGINE = ("web", "worker", "beat")
# The table of defaults in API.md: every one is settable in Compose as with `make run`.
API_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "ORDER_CONCURRENCY",
    "ORDER_RATE_LIMIT",
    "ORDER_MAX_ATTEMPTS",
    "API_RATE_LIMIT",
    "DEX_QUOTE_LATENCY_MS",
    "DEX_EXECUTION_LATENCY_MS",
    "DEX_FAILURE_RATE",
    "DEX_SEED",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = dict(line.split(":", 1) for line in lines if ":" in line)
    return {name: shlex.split(command) for name, command in entries.items()}


def option(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def settings_variables() -> set[str]:
    text = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', text))


def test_all_the_services_are_there(compose) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "flower", "migrate"} <= set(services)


def test_postgres_keeps_its_data_in_a_volume_and_says_when_it_is_ready(compose) -> None:
    postgres = compose["services"]["postgres"]
    volume, target = postgres["volumes"][0].split(":")[:2]
    assert target == "/var/lib/postgresql/data" and volume in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "ping" in compose["services"]["redis"]["healthcheck"]["test"]


def test_nothing_starts_before_its_dependencies_are_healthy_and_migrated(compose) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"][-3:] == ["manage.py", "migrate", "--noinput"]
    for dependency in ("postgres", "redis"):
        assert migrate["depends_on"][dependency]["condition"] == "service_healthy"
    for name in ENGINE:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services["flower"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("web", "worker", "flower"):
        assert services[name]["healthcheck"]["test"], name


def test_the_engine_is_configured_as_make_run_configures_it(compose) -> None:
    known = settings_variables()
    for name in (*ENGINE, "flower", "migrate"):
        environment = compose["services"][name]["environment"]
        assert set(environment) >= API_VARIABLES, (name, API_VARIABLES - set(environment))
        # No variable the settings never read (a typo would silently configure nothing).
        unknown = {v for v in environment if v not in known and not v.startswith("FLOWER_")}
        assert not unknown, (name, unknown)
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
    ports = {p.split(":")[-1]: p for p in compose["services"]["web"]["ports"]}
    assert ports["8000"].startswith("${PORT:-8000}")
    flower_ports = compose["services"]["flower"]["ports"]
    assert flower_ports == ["${FLOWER_PORT:-5555}:5555"]


def test_the_commands_are_the_procfiles(compose) -> None:
    proc = procfile()
    services = compose["services"]
    assert (
        "config.asgi:application" in proc["web"]
        and "config.asgi:application" in (services["web"]["command"])
    )
    assert services["web"]["command"][0] == "daphne"
    worker = services["worker"]["command"]
    assert worker[:4] == ["celery", "-A", "config", "worker"]
    assert option(worker, "--queues") == option(proc["worker"], "--queues")
    # The pool's size comes from the settings (ORDER_CONCURRENCY, WORKER_PROCESSES), in both.
    assert option(worker, "--concurrency") is None
    assert option(proc["worker"], "--concurrency") is None
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    flower = services["flower"]
    assert flower["command"][:4] == ["celery", "-A", "config", "flower"]
    # Basic auth from the environment, with no default password (make run generates one).
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert auth.startswith("${FLOWER_USER:-admin}:${FLOWER_PASSWORD:?")
    assert "--basic-auth=${FLOWER_USER:-admin}:${FLOWER_PASSWORD}" in proc["flower"]


def test_the_image_is_python_311_slim_with_the_locked_dependencies() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert "uv sync --frozen" in dockerfile
    assert "collectstatic" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env"} <= set(ignored)


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=20
    )
    return [docker, "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        reason = (
            "no Docker client on PATH"
            if shutil.which("docker") is None
            else "the Docker client has no compose plugin (`docker compose version` fails)"
        )
        pytest.skip(f"{reason}: `docker compose config` cannot validate docker-compose.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env["FLOWER_PASSWORD"] = "compose-test"
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["services"]["worker"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy"
    )
    assert resolved["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == (
        "admin:compose-test"
    )
    # Without a password for Flower, Compose refuses to start rather than run it open.
    del env["FLOWER_PASSWORD"]
    refused = subprocess.run(
        [*command, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert refused.returncode != 0 and "FLOWER_PASSWORD" in refused.stderr
