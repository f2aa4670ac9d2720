"""`python manage.py launch_token SYMBOL`: open a token's first pools (sniper orders fire)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dex.launch import token_launch
from dex.types import DexError


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"{value!r} is not a number") from exc


class Command(BaseCommand):
    help = "Launch a token: register it if needed and create its first pools on both venues."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbol")
        parser.add_argument("--quote", default="SOL", help="the token it trades against (SOL)")
        parser.add_argument("--price", type=_decimal, help="quote tokens per token")
        parser.add_argument(
            "--liquidity", type=_decimal, help="whole quote tokens in each pool's quote side"
        )
        parser.add_argument("--decimals", type=int, default=6, help="for a new token (6)")
        parser.add_argument(
            "--venue", action="append", choices=("raydium", "meteora"), help="repeatable"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            pools = token_launch(
                options["symbol"],
                quote_symbol=options["quote"],
                venues=options["venue"] or ("raydium", "meteora"),
                reserve_in_quote=options["liquidity"],
                price=options["price"],
                decimals=options["decimals"],
            )
        except (ValueError, DexError) as exc:
            raise CommandError(str(exc)) from exc
        if not pools:
            self.stdout.write(f"{options['symbol']} already has pools on those venues")
            return
        token = pools[0].token_a
        self.stdout.write(f"token {token.symbol} mint={token.mint} decimals={token.decimals}")
        for pool in pools:
            self.stdout.write(
                f"pool {pool.venue} {pool.token_a.symbol}/{pool.token_b.symbol} "
                f"address={pool.address} reserves={pool.reserve_a}/{pool.reserve_b}"
            )
