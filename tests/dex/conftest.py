"""Fixtures for the market's tests: the seed market from the data migration, a clean token cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dex.tokens import token_cache_clear


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    # Tokens a test registers are rolled back with its transaction; the process cache must follow.
    token_cache_clear()
    yield
    token_cache_clear()
