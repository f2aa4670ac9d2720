"""Test settings: the suite runs against real PostgreSQL and Redis, on Redis database 15 by
default so that a running `make run` (database 0) is never disturbed."""

import os

os.environ.setdefault("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://localhost:6379/15"))
os.environ.setdefault("DEX_QUOTE_LATENCY_MS", "0")
os.environ.setdefault("DEX_EXECUTION_LATENCY_MS", "0")
os.environ.setdefault("DEX_FAILURE_RATE", "0")
os.environ.setdefault("DEX_SEED", "7")
os.environ.setdefault("ORDER_RATE_LIMIT", "0")
os.environ.setdefault("ORDER_RETRY_BACKOFF_SECONDS", "0.05")
os.environ.setdefault("WARMUP", "0")  # tests of the warm-up turn it on (tests/ops/test_warmup.py)

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
