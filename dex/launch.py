"""New tokens and their first pools: what a sniper order waits for.

`token_register` adds a token to the registry; `token_launch` opens its first pools (registering
the token with a generated mint if needed), with a first external price so that the drift moves
it like any other pair. Both are services: they validate, write in one transaction, and raise
ValueError with a sentence when asked for something impossible.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import base58
from django.conf import settings
from django.db import transaction

from dex import models
from dex.seed import pool_fields
from dex.tokens import is_mint_address, token_get
from dex.types import Token, UnknownTokenError

_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$")
VENUES = ("raydium", "meteora")
# A fresh launch: about what a pump.fun token graduates with (~85 SOL on each side).
DEFAULT_RESERVE_IN_QUOTE = {
    "SOL": Decimal("85"),
    "USDC": Decimal("12000"),
    "USDT": Decimal("12000"),
}
DEFAULT_PRICE_IN_QUOTE = {"SOL": Decimal("0.0000002"), "USDC": Decimal("0.00003")}
LAUNCH_BIN_STEP = 100  # memecoin DLMM pools use wide bins
LAUNCH_SPREAD_BPS = {"raydium": 150, "meteora": -150}  # 3 % apart, as the seed pairs
# Each side of a launched pool, in base units. Fewer than the least and a trade rounds to nothing
# and the pool's price is not defined (an empty side); the most leaves the NUMERIC(40) reserve
# columns room for every trade and drift step to come (the seed pools hold up to about 10^16).
LAUNCH_RESERVE_UNITS = (1_000, 10**30)  # the most a power of ten, as the refusal says


def mint_generate(symbol: str) -> str:
    """A new mint address (32 bytes, base58); reproducible per symbol when DEX_SEED is set."""
    seed = getattr(settings, "DEX_SEED", None)
    material = f"{seed}:mint:{symbol}" if seed is not None else secrets.token_hex(32)
    return base58.b58encode(hashlib.sha256(material.encode()).digest()).decode()


@transaction.atomic
def token_register(*, symbol: str, mint: str, decimals: int, name: str = "") -> Token:
    """Add a token to the registry; registering the same token twice returns it unchanged."""
    if not _SYMBOL.match(symbol or ""):
        raise ValueError(f"{symbol!r} is not a valid symbol: 1-16 letters, digits, '.', '_' or '-'")
    if not is_mint_address(mint):
        raise ValueError(f"{mint!r} is not a mint address (base58 of 32 bytes)")
    if not 0 <= int(decimals) <= 18:
        raise ValueError(f"decimals must be between 0 and 18, not {decimals}")
    existing = models.Token.objects.filter(symbol__iexact=symbol).first() or (
        models.Token.objects.filter(mint=mint).first()
    )
    if existing is not None:
        if (existing.symbol, existing.mint, existing.decimals) != (symbol, mint, int(decimals)):
            raise ValueError(
                f"{existing.symbol} is already registered with mint {existing.mint} "
                f"and {existing.decimals} decimals"
            )
        return token_get(existing.mint)
    models.Token.objects.create(symbol=symbol, mint=mint, decimals=int(decimals), name=name)
    return token_get(mint)


@transaction.atomic
def token_launch(
    symbol: str,
    *,
    quote_symbol: str = "SOL",
    venues: Iterable[str] = VENUES,
    reserve_in_quote: Decimal | None = None,
    price: Decimal | None = None,
    decimals: int = 6,
) -> list[models.Pool]:
    """Open the token's first pools against `quote_symbol` on each venue, each holding
    `reserve_in_quote` whole quote tokens (and the token's side worth as much) at `price`
    (quote tokens per token). A venue that already has the pair is left as it is; the pools
    created are returned. A token not registered yet is registered with a generated mint and
    `decimals` (6, as pump.fun tokens)."""
    venues = tuple(venues)
    unknown = set(venues) - set(VENUES)
    if unknown or not venues:
        raise ValueError(f"venues must be among {', '.join(VENUES)}")
    quote = token_get(quote_symbol)
    try:
        token = token_get(symbol)
    except UnknownTokenError:
        token = token_register(symbol=symbol, mint=mint_generate(symbol), decimals=decimals)
    if token.symbol == quote.symbol:
        raise ValueError("a token cannot be launched against itself")
    price = Decimal(price) if price is not None else DEFAULT_PRICE_IN_QUOTE.get(quote.symbol)
    reserve = (
        Decimal(reserve_in_quote)
        if reserve_in_quote is not None
        else DEFAULT_RESERVE_IN_QUOTE.get(quote.symbol, Decimal("10000"))
    )
    if price is None or price <= 0:
        raise ValueError(f"give a positive price in {quote.symbol} per {token.symbol}")
    if reserve <= 0:
        raise ValueError("the liquidity must be positive")
    token_row = models.Token.objects.get(mint=token.mint)
    quote_row = models.Token.objects.get(mint=quote.mint)
    models.PairPrice.objects.get_or_create(
        token_a=token_row, token_b=quote_row, defaults={"price": price}
    )
    created: list[models.Pool] = []
    for venue in venues:
        if models.Pool.objects.filter(
            venue=venue, token_a__in=[token_row, quote_row], token_b__in=[token_row, quote_row]
        ).exists():
            continue
        spread = LAUNCH_SPREAD_BPS[venue] if len(venues) > 1 else 0
        fields = _launch_fields(
            venue=venue,
            token=token,
            quote=quote,
            price=price * (1 + Decimal(spread) / 10_000),
            reserve=reserve,
            spread=spread,
        )
        created.append(models.Pool.objects.create(token_a=token_row, token_b=quote_row, **fields))
    return created


def _launch_fields(
    *, venue: str, token: Token, quote: Token, price: Decimal, reserve: Decimal, spread: int
) -> dict[str, Any]:
    """The new pool's fields, refused (ValueError) when the price and the liquidity, in the
    tokens' decimals, would leave a side empty or too large to trade on: such a pool had no
    price, and the drift, the routing and the admin's pool list all failed on it."""
    fields: dict[str, Any] | None = None
    with contextlib.suppress(ArithmeticError):  # a DLMM bin price below what Q64.64 can hold
        fields = pool_fields(
            venue=venue,
            symbol_a=token.symbol,
            symbol_b=quote.symbol,
            decimals_a=token.decimals,
            decimals_b=quote.decimals,
            price=price,
            value_in_b=reserve * 2,
            bin_step=LAUNCH_BIN_STEP,
            spread_bps=spread,
        )
    least, most = LAUNCH_RESERVE_UNITS
    if fields and all(least <= fields[side] <= most for side in ("reserve_a", "reserve_b")):
        return fields
    held = (
        f" (it would hold {fields['reserve_a']} base units of {token.symbol}, "
        f"{fields['reserve_b']} of {quote.symbol})"
        if fields
        else ""
    )
    raise ValueError(
        f"a {venue} pool at {price.normalize():f} {quote.symbol} per {token.symbol} with "
        f"{reserve.normalize():f} {quote.symbol} of liquidity cannot trade{held}: each side "
        f"needs {least:,} to 10^{len(str(most)) - 1} base units ({token.symbol} has "
        f"{token.decimals} decimals); change the price or the liquidity"
    )
