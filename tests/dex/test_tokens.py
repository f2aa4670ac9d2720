"""The token registry: lookups by symbol or mint, and exact conversions to and from base units."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dex.tokens import from_units, to_units, token_get, token_list
from dex.types import Token, UnknownTokenError

pytestmark = pytest.mark.django_db

USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def test_symbols_are_found_case_insensitively() -> None:
    assert token_get("usdc") == token_get("USDC")
    assert token_get("Sol").mint == "So11111111111111111111111111111111111111112"
    assert token_get("jitosol").symbol == "JitoSOL"


def test_mints_are_found() -> None:
    usdc = token_get(USDC_MINT)
    assert (usdc.symbol, usdc.decimals) == ("USDC", 6)


@pytest.mark.parametrize(
    ("symbol", "decimals"),
    [("SOL", 9), ("USDC", 6), ("USDT", 6), ("JUP", 6), ("BONK", 5), ("RAY", 6), ("WIF", 6)],
)
def test_seed_tokens_carry_their_mainnet_decimals(symbol: str, decimals: int) -> None:
    assert token_get(symbol).decimals == decimals


def test_unknown_symbol_and_unknown_mint_say_so() -> None:
    with pytest.raises(UnknownTokenError, match="unknown token 'NOPE'"):
        token_get("NOPE")
    with pytest.raises(UnknownTokenError, match="not in the token registry"):
        token_get("6xKS8hCXqh5VCBKhNJ6YJJqzqGwKCyp8CYVDJqmz3Lez")
    with pytest.raises(UnknownTokenError):
        token_get("")


def test_a_cached_token_costs_no_query(django_assert_num_queries) -> None:
    token_get("SOL")
    with django_assert_num_queries(0):
        token_get("SOL")
        token_get("sol")


def test_token_list_holds_the_registry() -> None:
    symbols = {token.symbol for token in token_list()}
    assert {"SOL", "USDC", "USDT", "JUP", "BONK", "RAY", "WIF", "ORCA"} <= symbols


def test_to_units_is_exact() -> None:
    usdc = token_get("USDC")
    assert to_units(Decimal("2.245"), usdc) == 2_245_000
    assert to_units(Decimal("1.500000000"), token_get("SOL")) == 1_500_000_000
    assert to_units(Decimal("1E+3"), usdc) == 1_000_000_000


def test_to_units_refuses_more_places_than_the_token_has() -> None:
    with pytest.raises(ValueError, match="USDC has 6 decimal places"):
        to_units(Decimal("1.0000001"), token_get("USDC"))
    with pytest.raises(ValueError, match="BONK has 5 decimal places"):
        to_units(Decimal("0.000001"), token_get("BONK"))


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_to_units_refuses_what_is_not_finite(amount: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        to_units(amount, token_get("SOL"))


def test_from_units_is_quantized_to_the_tokens_decimals() -> None:
    usdc = token_get("USDC")
    assert from_units(2_245_000, usdc) == Decimal("2.245000")
    assert str(from_units(2_245_000, usdc)) == "2.245000"
    assert from_units(1, token_get("SOL")) == Decimal("0.000000001")


def test_to_units_and_from_units_round_trip() -> None:
    token = Token(symbol="X", mint="x", decimals=9)
    for units in (0, 1, 10**9, 123_456_789_012_345):
        assert to_units(from_units(units, token), token) == units
