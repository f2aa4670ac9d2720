"""The vocabulary the engine and the market share: tokens, quotes, routes, transactions, errors.

Amounts inside are integers in base units (lamports, micro-USDC); `Decimal` only at the edges
(`to_dict`, the API shape). Every type here is immutable and JSON-round-trips through `to_state`/`from_state`, so
the engine can persist a quote or a transaction on the order and resume from it after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

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

    def to_dict(self, *, legs: bool = True) -> dict[str, Any]:
        """API shape: {"dex", "amountIn", "amountOut", "price", "priceImpact", "fee", "route",
        "legs": [{"dex", "pool", "tokenIn", "tokenOut", "inAmount", "outAmount", "fee", "percent"}]}
        with every amount a decimal string in whole tokens."""

    def to_state(self) -> dict[str, Any]:
        """Exact, JSON-safe persistence form (integers as strings, tokens in full)."""

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Quote:
        """Inverse of `to_state`."""


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

    def summary(self) -> dict[str, Any]:
        """What the `building` event shows: instructions, computeUnitLimit, priorityFee..."""

    def to_state(self) -> dict[str, Any]:
        """Exact, JSON-safe persistence form."""

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Transaction:
        """Inverse of `to_state`."""


SignatureState = Literal["unknown", "pending", "landed", "failed"]


@dataclass(frozen=True, slots=True)
class SignatureStatus:
    """What the chain says of a signature. `unknown` after `last_valid_at` means it never lands."""

    state: SignatureState
    amount_out: int | None = None
    error: DexError | None = None
    landed_at: datetime | None = None
    retry_at: datetime | None = None  # for `pending`: when to ask again
