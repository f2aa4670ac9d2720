"""The market the simulation starts from: real mainnet tokens and believable pools.

Plain data and pure builders, so the data migration and `pools_reset_to_seed()` produce the
same rows. Reserves are sized like mid-2020s mainnet pools (a few million dollars); each pair's
venues sit 2-5 % apart around the pair's external price. Pool addresses are derived (sha256 of
venue and pair), not real on-chain accounts: this is a simulation.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import base58

from dex import meteora

# symbol, mint (mainnet), decimals, name, indicative USD price
SEED_TOKENS: tuple[tuple[str, str, int, str, str], ...] = (
    ("SOL", "So11111111111111111111111111111111111111112", 9, "Wrapped SOL", "150"),
    ("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6, "USD Coin", "1"),
    ("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6, "Tether USD", "1"),
    ("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, "Jupiter", "0.5"),
    ("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, "Bonk", "0.00002"),
    ("RAY", "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R", 6, "Raydium", "2"),
    ("WIF", "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm", 6, "dogwifhat", "0.6"),
    ("JitoSOL", "J1toso1uCk3RLmjorhTtrVwY9HJ7X8V9yYac6Y7kGCPn", 9, "Jito Staked SOL", "180"),
    ("mSOL", "mSoLzYCxHdYgdzU16g5QSh3i5K3z3KZK7ytfqcJm7So", 9, "Marinade staked SOL", "195"),
    ("PYTH", "HZ1JovNiVvGrGNiiYvEozEVgZ58xaU3RKwX8eACQBCt3", 6, "Pyth Network", "0.1"),
    ("JTO", "jtojtomepa8beP8AuQc6eXt5FriJwfFMwQx2v2f9mCL", 9, "Jito", "1.5"),
    ("POPCAT", "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr", 9, "Popcat", "0.2"),
    # Registered but without pools here: routes to it fail with no_route until one launches.
    ("ORCA", "orcaEKTdK7LKz57vaAYr9QeNsVEPfiu6QeMU1kektZE", 6, "Orca", "1.4"),
)

# token_a, token_b, [(venue, total USD value, spread in bps against the external price)],
# Meteora bin step. Where only one venue has a real pool, only that one is seeded.
SEED_PAIRS: tuple[tuple[str, str, tuple[tuple[str, int, int], ...], int], ...] = (
    ("SOL", "USDC", (("raydium", 12_000_000, 150), ("meteora", 5_000_000, -150)), 10),
    ("SOL", "USDT", (("raydium", 3_000_000, 120), ("meteora", 1_500_000, -130)), 10),
    ("USDC", "USDT", (("raydium", 4_000_000, 100), ("meteora", 3_000_000, -100)), 1),
    ("JUP", "SOL", (("raydium", 2_000_000, 200), ("meteora", 1_500_000, -150)), 25),
    ("BONK", "SOL", (("raydium", 3_000_000, -180), ("meteora", 2_000_000, 170)), 100),
    ("RAY", "SOL", (("raydium", 2_500_000, 0),), 25),
    ("WIF", "SOL", (("raydium", 2_000_000, 100), ("meteora", 1_200_000, -200)), 80),
    ("JUP", "USDC", (("raydium", 1_500_000, 150), ("meteora", 1_000_000, -150)), 20),
    ("JitoSOL", "SOL", (("raydium", 1_000_000, 100), ("meteora", 3_000_000, -100)), 1),
    ("mSOL", "SOL", (("meteora", 1_000_000, 0),), 1),
    ("PYTH", "USDC", (("raydium", 800_000, 0),), 20),
    ("JTO", "USDC", (("meteora", 800_000, 0),), 20),
    ("POPCAT", "SOL", (("raydium", 600_000, 0),), 80),
)

# Meteora presets by bin step: base_factor, variable_fee_control, max_volatility_accumulator.
DLMM_PRESETS: dict[int, tuple[int, int, int]] = {
    1: (10_000, 2_000_000, 100_000),
    5: (10_000, 200_000, 200_000),
    10: (10_000, 40_000, 350_000),
    20: (10_000, 20_000, 350_000),
    25: (10_000, 15_000, 350_000),
    50: (8_000, 10_000, 250_000),
    80: (6_250, 7_000, 150_000),
    100: (5_000, 7_500, 150_000),
}

RAYDIUM_FEE_RATE = 2_500


def pool_address(venue: str, symbol_a: str, symbol_b: str) -> str:
    digest = hashlib.sha256(f"sim-pool:{venue}:{symbol_a}:{symbol_b}".encode()).digest()
    return base58.b58encode(digest).decode()


def pool_fields(
    *,
    venue: str,
    symbol_a: str,
    symbol_b: str,
    decimals_a: int,
    decimals_b: int,
    price: Decimal,
    value_in_b: Decimal,
    bin_step: int,
    spread_bps: int = 0,
    now: int = 0,
) -> dict[str, Any]:
    """Model field values for a pool at `price` (token_b per token_a, whole tokens, already
    including the venue's spread) worth `value_in_b` whole token_b in total."""
    fields: dict[str, Any] = {
        "address": pool_address(venue, symbol_a, symbol_b),
        "venue": venue,
        "spread_bps": spread_bps,
    }
    if venue == "raydium":
        reserve_b = int(value_in_b / 2 * 10**decimals_b)
        reserve_a = int(value_in_b / 2 / price * 10**decimals_a)
        fields.update(reserve_a=reserve_a, reserve_b=reserve_b, fee_rate=RAYDIUM_FEE_RATE)
        return fields
    base_factor, control, max_va = DLMM_PRESETS[bin_step]
    raw = price * Decimal(10) ** (decimals_b - decimals_a)
    active_id = meteora.bin_id_for_price(raw, bin_step)
    bins = meteora.bins_around(
        active_id=active_id, bin_step=bin_step, value_y=int(value_in_b * 10**decimals_b)
    )
    fields.update(
        reserve_a=sum(x for x, _ in bins.values()),
        reserve_b=sum(y for _, y in bins.values()),
        fee_rate=0,
        bin_step=bin_step,
        base_factor=base_factor,
        variable_fee_control=control,
        max_volatility_accumulator=max_va,
        active_id=active_id,
        index_reference=active_id,
        bins=[[i, bins[i][0], bins[i][1]] for i in sorted(bins)],
        last_swap_ts=now,
    )
    return fields


def seed_market(token_model: Any, pool_model: Any, price_model: Any) -> None:
    """Create (or restore) the seed tokens, pools and external prices. Takes the model classes
    so that the data migration can pass its historical models."""
    usd = {symbol: Decimal(p) for symbol, _, _, _, p in SEED_TOKENS}
    tokens = {}
    for symbol, mint, decimals, name, _ in SEED_TOKENS:
        tokens[symbol], _ = token_model.objects.update_or_create(
            symbol=symbol, defaults={"mint": mint, "decimals": decimals, "name": name}
        )
    for symbol_a, symbol_b, venues, bin_step in SEED_PAIRS:
        token_a, token_b = tokens[symbol_a], tokens[symbol_b]
        external = usd[symbol_a] / usd[symbol_b]
        price_model.objects.update_or_create(
            token_a=token_a, token_b=token_b, defaults={"price": external, "step": 0}
        )
        for venue, value_usd, spread_bps in venues:
            fields = pool_fields(
                venue=venue,
                symbol_a=symbol_a,
                symbol_b=symbol_b,
                decimals_a=token_a.decimals,
                decimals_b=token_b.decimals,
                price=external * (1 + Decimal(spread_bps) / 10_000),
                value_in_b=Decimal(value_usd) / usd[symbol_b],
                bin_step=bin_step,
                spread_bps=spread_bps,
            )
            defaults = {k: v for k, v in fields.items() if k not in ("venue",)}
            defaults.setdefault("volatility_accumulator", 0)
            defaults.setdefault("volatility_reference", 0)
            pool_model.objects.update_or_create(
                venue=venue, token_a=token_a, token_b=token_b, defaults=defaults
            )
