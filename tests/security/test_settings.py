"""Production settings from the environment: `check --deploy` passes with no warning, and every
way of getting production wrong (no or a weak SECRET_KEY, no ALLOWED_HOSTS, DEBUG on, a misspelt
DJANGO_ENV) stops the process at start with a sentence saying what to set. Each case runs
manage.py in a fresh process, as a deployment would."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ROOT

STRONG_KEY = secrets.token_urlsafe(50)
PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": STRONG_KEY,
    "ALLOWED_HOSTS": "orders.example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_ENV", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_DEBUG"}
    }
    base["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def setting(name: str, **env: str) -> str:
    code = f"from django.conf import settings; print(settings.{name})"
    result = manage("shell", "--no-imports", "-c", code, **env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_production_settings_pass_check_deploy_without_a_single_warning() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "System check identified no issues" in result.stdout


def test_development_settings_would_not_pass_it() -> None:
    """The check has teeth: the development defaults are reported."""
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is required when DJANGO_ENV=production"),
        ({"SECRET_KEY": "short-key"}, "SECRET_KEY is too weak"),
        ({"SECRET_KEY": "dev-insecure-order-engine-key-change-me"}, "SECRET_KEY is too weak"),
        ({"SECRET_KEY": "a" * 60}, "SECRET_KEY is too weak"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS is required"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off"),
        ({"DJANGO_ENV": "prod"}, "it must be 'development' or 'production'"),
        ({"DJANGO_ENV": "staging"}, "it must be 'development' or 'production'"),
    ],
)
def test_a_production_misconfiguration_stops_the_process_with_a_clear_message(env, says) -> None:
    result = manage("check", **{**PRODUCTION, **env})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and says in result.stderr, result.stderr[-2000:]


def test_debug_is_off_by_default_in_development_and_production() -> None:
    assert setting("DEBUG") == "False"
    assert setting("DEBUG", **PRODUCTION) == "False"


def test_production_turns_on_https_cookies_hsts_and_frame_denial() -> None:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, "
        f"s.X_FRAME_OPTIONS, s.SECRET_KEY == {STRONG_KEY!r})",
        **PRODUCTION,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True", "True", "True", "DENY", "True"]


def test_development_needs_no_configuration_at_all() -> None:
    assert setting("ALLOWED_HOSTS").startswith("['localhost'")
