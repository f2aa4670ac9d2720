"""Launching a token: registration, its first pools, and the routes that open with them."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dex import models
from dex.launch import mint_generate, token_launch, token_register
from dex.router import route_best, token_has_pool
from dex.tokens import is_mint_address, to_units, token_get
from dex.types import NoRouteError, UnknownTokenError

pytestmark = pytest.mark.django_db


def test_a_registered_token_without_pools_has_no_route_until_it_launches() -> None:
    pepe = token_register(symbol="PEPE", mint=mint_generate("PEPE"), decimals=6, name="Pepe")
    assert token_get("pepe") == pepe
    assert not token_has_pool(pepe)
    sol = token_get("SOL")
    with pytest.raises(NoRouteError):
        route_best(token_in=sol, token_out=pepe, amount_in=10**9)

    pools = token_launch("PEPE", price=Decimal("0.000001"), reserve_in_quote=Decimal("100"))
    assert sorted(p.venue for p in pools) == ["meteora", "raydium"]
    assert token_has_pool(pepe)
    decision = route_best(token_in=sol, token_out=pepe, amount_in=10**9)
    # 1 SOL at ~0.000001 SOL per PEPE buys roughly a million PEPE, minus fees and impact.
    bought = decision.best.amount_out / Decimal(10**6)
    assert Decimal(900_000) < bought < Decimal(1_050_000)
    # USDC buys it too, through SOL.
    usdc = token_get("USDC")
    via = route_best(token_in=usdc, token_out=pepe, amount_in=to_units(Decimal(10), usdc))
    assert via.best.route == ("USDC", "SOL", "PEPE")


def test_launching_an_unknown_symbol_registers_it_with_a_generated_mint() -> None:
    with pytest.raises(UnknownTokenError):
        token_get("WOJAK")
    pools = token_launch("WOJAK", venues=("raydium",))
    assert len(pools) == 1
    wojak = token_get("WOJAK")
    assert is_mint_address(wojak.mint)
    assert wojak.decimals == 6
    assert token_launch("WOJAK", venues=("raydium",)) == []  # already there: nothing new
    assert models.PairPrice.objects.filter(token_a__symbol="WOJAK").count() == 1


def test_registration_refuses_nonsense_and_conflicts() -> None:
    with pytest.raises(ValueError, match="not a mint address"):
        token_register(symbol="BAD", mint="not-a-mint", decimals=6)
    with pytest.raises(ValueError, match="decimals"):
        token_register(symbol="BAD", mint=mint_generate("BAD"), decimals=30)
    with pytest.raises(ValueError, match="already registered"):
        token_register(symbol="USDC", mint=mint_generate("USDC2"), decimals=6)
    usdc = token_get("USDC")
    assert token_register(symbol="USDC", mint=usdc.mint, decimals=6) == usdc
    with pytest.raises(ValueError, match="venues"):
        token_launch("X1", venues=("orca",))


def test_the_command_prints_what_it_created() -> None:
    out = StringIO()
    call_command("launch_token", "MOON", "--price", "0.00001", "--liquidity", "50", stdout=out)
    text = out.getvalue()
    assert "token MOON" in text
    assert "pool raydium MOON/SOL" in text and "pool meteora MOON/SOL" in text
    with pytest.raises(CommandError):
        call_command("launch_token", "MOON2", "--price", "-1", stdout=StringIO())


@pytest.mark.parametrize(
    ("symbol", "options", "said"),
    [
        # 1 lamport of liquidity: both sides round to (almost) nothing
        ("DUST", {"reserve_in_quote": Decimal("0.000000001")}, "base units of DUST"),
        # a whole token worth 10^20 SOL, with no decimals: the token's side is empty
        ("WHALE", {"price": Decimal("1e20"), "decimals": 0}, "0 base units of WHALE"),
        # 10^-18 SOL for a token of 18 decimals: below the lowest DLMM bin price
        ("ATOM18", {"price": Decimal("1e-18"), "decimals": 18}, "cannot trade"),
        # 10^25 SOL of liquidity: past the room the reserve columns keep for trades
        ("HUGE", {"reserve_in_quote": Decimal("1e25")}, "base units of HUGE"),
    ],
)
def test_a_launch_that_would_leave_a_pool_unable_to_trade_is_refused_whole(
    symbol: str, options: dict, said: str
) -> None:
    pairs, pools = models.PairPrice.objects.count(), models.Pool.objects.count()
    with pytest.raises(ValueError, match="change the price or the liquidity") as refused:
        token_launch(symbol, **options)
    assert said in str(refused.value)
    # Nothing of it stays: not the token, its price or a first pool.
    assert not models.Token.objects.filter(symbol=symbol).exists()
    assert (models.PairPrice.objects.count(), models.Pool.objects.count()) == (pairs, pools)
