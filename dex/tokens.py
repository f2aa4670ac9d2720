"""The token registry: symbols, mints and decimals, and the conversions between whole tokens
(Decimal, at the API's edge) and base units (int, inside the venues).

The registry lives in PostgreSQL (`dex.models.Token`); every token ever looked up is cached in
the process, so `token_get` costs no query on the hot path. Tokens never change their mint or
decimals, which is what makes a cache without invalidation safe; a token registered by another
process is found on the first miss.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation

import base58

from dex import models
from dex.types import Token, UnknownTokenError, units_to_decimal

_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")

_lock = threading.Lock()
_by_symbol: dict[str, Token] = {}  # upper-cased symbol → token
_by_mint: dict[str, Token] = {}


def _remember(row: models.Token) -> Token:
    token = Token(symbol=row.symbol, mint=row.mint, decimals=row.decimals, name=row.name)
    with _lock:
        _by_symbol[token.symbol.upper()] = token
        _by_mint[token.mint] = token
    return token


def is_mint_address(ref: str) -> bool:
    """Base58 that decodes to 32 bytes, as every Solana public key does."""
    if not _BASE58.match(ref):
        return False
    try:
        return len(base58.b58decode(ref)) == 32
    except ValueError:
        return False


def token_get(ref: str) -> Token:
    """A token by symbol (case-insensitive) or by mint address."""
    if not isinstance(ref, str) or not ref.strip():
        raise UnknownTokenError("a token is required: give a symbol such as SOL or a mint address")
    ref = ref.strip()
    cached = _by_mint.get(ref) or _by_symbol.get(ref.upper())
    if cached is not None:
        return cached
    row = models.Token.objects.filter(mint=ref).first()
    if row is None:
        row = models.Token.objects.filter(symbol__iexact=ref).first()
    if row is None:
        if is_mint_address(ref):
            raise UnknownTokenError(f"the mint {ref} is not in the token registry")
        raise UnknownTokenError(
            f"unknown token {ref!r}: use a registered symbol (SOL, USDC, ...) or a mint address"
        )
    return _remember(row)


def token_list() -> list[Token]:
    """Every registered token, by symbol (one query; refreshes the cache)."""
    return [_remember(row) for row in models.Token.objects.order_by("symbol")]


def token_cache_clear() -> None:
    """Forget the cached tokens (tests that delete registry rows call this)."""
    with _lock:
        _by_symbol.clear()
        _by_mint.clear()


def to_units(amount: Decimal, token: Token) -> int:
    """Whole tokens → base units, exactly. Refuses what the token cannot represent rather than
    rounding someone's money away."""
    try:
        amount = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"{amount!r} is not a number") from exc
    if not amount.is_finite():
        raise ValueError(f"the amount must be a finite number, not {amount}")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > token.decimals:
        raise ValueError(f"{token.symbol} has {token.decimals} decimal places; {amount} has more")
    return int(amount.scaleb(token.decimals))


def from_units(units: int, token: Token) -> Decimal:
    """Base units → whole tokens, quantized to the token's decimals (2245000 USDC → 2.245000)."""
    return units_to_decimal(int(units), token.decimals)
