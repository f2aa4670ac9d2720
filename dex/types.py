"""The vocabulary the engine and the market share: tokens, quotes, routes, transactions, errors.

Amounts inside are integers in base units (lamports, micro-USDC); `Decimal` only at the edges
(`to_dict`, the API shape). Every type here is immutable and JSON-round-trips through
`to_state`/`from_state`, so the engine can persist a quote or a transaction on the order and
resume from it after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal


def units_to_decimal(units: int, decimals: int) -> Decimal:
    """Base units as a whole-token Decimal with exactly `decimals` places (2245000, 6: 2.245000).

    Print it with `decimal_str`: `str()` of a zero or tiny Decimal uses an exponent (`0E-9`)."""
    return Decimal(units).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals))


def price_decimal(amount_in: int, amount_out: int, decimals_in: int, decimals_out: int) -> Decimal:
    """tokenOut per tokenIn in whole tokens, exact enough for a person and never a float: at least
    the output token's decimals and at least 8 significant digits (memecoin prices are tiny)."""
    if amount_in <= 0:
        return Decimal(0)
    raw = (Decimal(amount_out) / Decimal(amount_in)).scaleb(decimals_in - decimals_out)
    if raw == 0:
        return Decimal(0).quantize(Decimal(1).scaleb(-decimals_out))
    places = min(max(decimals_out, 7 - raw.adjusted()), 24)
    return raw.quantize(Decimal(1).scaleb(-places))


def decimal_str(value: Decimal) -> str:
    """A Decimal as the API writes it: plain notation, never `1.3E-7`."""
    return format(value, "f")


def _token_state(token: Token) -> dict[str, Any]:
    return {
        "symbol": token.symbol,
        "mint": token.mint,
        "decimals": token.decimals,
        "name": token.name,
    }


def _token_from_state(data: dict[str, Any]) -> Token:
    return Token(
        symbol=data["symbol"],
        mint=data["mint"],
        decimals=int(data["decimals"]),
        name=data.get("name", ""),
    )


# --- errors ----------------------------------------------------------------------------------


class DexError(Exception):
    """A market or chain failure. `transient` errors are worth another attempt."""

    code: str = "dex_error"
    transient: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class UnknownTokenError(DexError):
    code = "unknown_token"


class NoRouteError(DexError):
    code = "no_route"


class InsufficientLiquidityError(DexError):
    code = "insufficient_liquidity"


class SlippageExceededError(DexError):
    """The pool moved past `minAmountOut` between quote and execution; a re-quote may succeed."""

    code = "slippage_exceeded"
    transient = True


class DuplicateReferenceError(DexError):
    """A different transaction already used this reference: one reference, one transaction."""

    code = "duplicate_reference"


class TransientChainError(DexError):
    """RPC timeout, node rate limit, expired blockhash: the attempt may be retried, but only after
    the engine has asked the chain whether the transaction landed."""

    code = "rpc_timeout"
    transient = True


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    symbol: str
    mint: str
    decimals: int
    name: str = ""

    @property
    def is_native_sol(self) -> bool:
        return self.symbol == "SOL"


# --- quotes and routes -----------------------------------------------------------------------

DexName = Literal["raydium", "meteora", "split"]


@dataclass(frozen=True, slots=True)
class Leg:
    """One swap of a route plan: `in_amount` of `token_in` through one pool of one venue."""

    dex: str
    pool: str  # the pool's address
    token_in: str  # symbol
    token_out: str  # symbol
    in_amount: int  # base units of token_in
    out_amount: int  # base units of token_out
    fee: int  # base units of token_in, as the venue charges it
    percent: int  # share of the order's amountIn that enters this leg (0-100)


@dataclass(frozen=True, slots=True)
class Quote:
    """A complete route for one amount: a single venue, a split across venues, or two hops."""

    dex: str  # "raydium", "meteora" or "split"
    token_in: Token
    token_out: Token
    amount_in: int
    amount_out: int
    fee: int  # total fees, expressed in base units of token_out
    price_impact: Decimal  # percent against the pools' mid price, e.g. Decimal("0.8")
    route: tuple[str, ...]  # symbols along the path, e.g. ("SOL", "USDC")
    legs: tuple[Leg, ...] = field(default=())

    @property
    def price(self) -> Decimal:
        """tokenOut per tokenIn in whole tokens."""
        return price_decimal(
            self.amount_in, self.amount_out, self.token_in.decimals, self.token_out.decimals
        )

    def _decimals_of(self, symbol: str) -> int | None:
        if symbol == self.token_in.symbol:
            return self.token_in.decimals
        if symbol == self.token_out.symbol:
            return self.token_out.decimals
        return None

    def _leg_amount(self, units: int, symbol: str) -> str:
        decimals = self._decimals_of(symbol)
        if decimals is None:
            # The intermediate token of a two-hop route: only SOL and USDC serve as hubs.
            from dex.tokens import token_get  # the registry is cached: no query on this path

            decimals = token_get(symbol).decimals
        return decimal_str(units_to_decimal(units, decimals))

    def to_dict(self, *, legs: bool = True) -> dict[str, Any]:
        """API shape: {"dex", "amountIn", "amountOut", "price", "priceImpact", "fee", "route",
        "legs": [{"dex", "pool", "tokenIn", "tokenOut", "inAmount", "outAmount", "fee", "percent"}]}
        with every amount a decimal string in whole tokens."""
        data: dict[str, Any] = {
            "dex": self.dex,
            "amountIn": decimal_str(units_to_decimal(self.amount_in, self.token_in.decimals)),
            "amountOut": decimal_str(units_to_decimal(self.amount_out, self.token_out.decimals)),
            "price": decimal_str(self.price),
            "priceImpact": decimal_str(self.price_impact),
            "fee": decimal_str(units_to_decimal(self.fee, self.token_out.decimals)),
            "route": list(self.route),
        }
        if legs:
            data["legs"] = [
                {
                    "dex": leg.dex,
                    "pool": leg.pool,
                    "tokenIn": leg.token_in,
                    "tokenOut": leg.token_out,
                    "inAmount": self._leg_amount(leg.in_amount, leg.token_in),
                    "outAmount": self._leg_amount(leg.out_amount, leg.token_out),
                    "fee": self._leg_amount(leg.fee, leg.token_in),
                    "percent": leg.percent,
                }
                for leg in self.legs
            ]
        return data

    def to_state(self) -> dict[str, Any]:
        """Exact, JSON-safe persistence form (integers as strings, tokens in full)."""
        return {
            "dex": self.dex,
            "tokenIn": _token_state(self.token_in),
            "tokenOut": _token_state(self.token_out),
            "amountIn": str(self.amount_in),
            "amountOut": str(self.amount_out),
            "fee": str(self.fee),
            "priceImpact": str(self.price_impact),
            "route": list(self.route),
            "legs": [
                {
                    "dex": leg.dex,
                    "pool": leg.pool,
                    "tokenIn": leg.token_in,
                    "tokenOut": leg.token_out,
                    "inAmount": str(leg.in_amount),
                    "outAmount": str(leg.out_amount),
                    "fee": str(leg.fee),
                    "percent": leg.percent,
                }
                for leg in self.legs
            ],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Quote:
        """Inverse of `to_state`."""
        return cls(
            dex=data["dex"],
            token_in=_token_from_state(data["tokenIn"]),
            token_out=_token_from_state(data["tokenOut"]),
            amount_in=int(data["amountIn"]),
            amount_out=int(data["amountOut"]),
            fee=int(data["fee"]),
            price_impact=Decimal(data["priceImpact"]),
            route=tuple(data["route"]),
            legs=tuple(
                Leg(
                    dex=leg["dex"],
                    pool=leg["pool"],
                    token_in=leg["tokenIn"],
                    token_out=leg["tokenOut"],
                    in_amount=int(leg["inAmount"]),
                    out_amount=int(leg["outAmount"]),
                    fee=int(leg["fee"]),
                    percent=int(leg["percent"]),
                )
                for leg in data.get("legs", ())
            ),
        )


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """What the router saw and chose: one quote per venue (and any split / two-hop candidate),
    the best one, and why, in words fit for a log line."""

    quotes: tuple[Quote, ...]
    best: Quote
    reason: str


# --- the chain -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed (simulated) Solana transaction. The signature is known before it is sent."""

    signature: str  # base58 of 64 bytes
    reference: str  # unique per order attempt; the chain refuses a second one
    fee_payer: str
    quote: Quote
    min_amount_out: int
    instructions: tuple[dict[str, Any], ...]  # wrap SOL, each swap leg, unwrap SOL, ...
    compute_unit_limit: int
    priority_fee_micro_lamports: int
    recent_blockhash: str
    last_valid_at: datetime  # the blockhash expires then: after it, an unseen tx never lands

    @property
    def priority_fee_lamports(self) -> int:
        """What the priority fee costs in total: CU limit times price, rounded up as the runtime
        does."""
        return -(-self.compute_unit_limit * self.priority_fee_micro_lamports // 1_000_000)

    def summary(self) -> dict[str, Any]:
        """What the `building` event shows: instructions, computeUnitLimit, priorityFee..."""
        return {
            "signature": self.signature,
            "feePayer": self.fee_payer,
            "instructions": [dict(ix) for ix in self.instructions],
            "computeUnitLimit": self.compute_unit_limit,
            "priorityFee": self.priority_fee_micro_lamports,  # micro-lamports per compute unit
            "priorityFeeLamports": self.priority_fee_lamports,
            "recentBlockhash": self.recent_blockhash,
            "lastValidAt": _iso(self.last_valid_at),
            "minAmountOut": decimal_str(
                units_to_decimal(self.min_amount_out, self.quote.token_out.decimals)
            ),
        }

    def to_state(self) -> dict[str, Any]:
        """Exact, JSON-safe persistence form."""
        return {
            "signature": self.signature,
            "reference": self.reference,
            "feePayer": self.fee_payer,
            "quote": self.quote.to_state(),
            "minAmountOut": str(self.min_amount_out),
            "instructions": [dict(ix) for ix in self.instructions],
            "computeUnitLimit": self.compute_unit_limit,
            "priorityFeeMicroLamports": self.priority_fee_micro_lamports,
            "recentBlockhash": self.recent_blockhash,
            "lastValidAt": self.last_valid_at.isoformat(),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Transaction:
        """Inverse of `to_state`."""
        return cls(
            signature=data["signature"],
            reference=data["reference"],
            fee_payer=data["feePayer"],
            quote=Quote.from_state(data["quote"]),
            min_amount_out=int(data["minAmountOut"]),
            instructions=tuple(dict(ix) for ix in data["instructions"]),
            compute_unit_limit=int(data["computeUnitLimit"]),
            priority_fee_micro_lamports=int(data["priorityFeeMicroLamports"]),
            recent_blockhash=data["recentBlockhash"],
            last_valid_at=datetime.fromisoformat(data["lastValidAt"]),
        )


def _iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as the API writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


SignatureState = Literal["unknown", "pending", "landed", "failed"]


@dataclass(frozen=True, slots=True)
class SignatureStatus:
    """What the chain says of a signature. `unknown` after `last_valid_at` means it never lands."""

    state: SignatureState
    amount_out: int | None = None
    error: DexError | None = None
    landed_at: datetime | None = None
    retry_at: datetime | None = None  # for `pending`: when to ask again
