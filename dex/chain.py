"""The simulated Solana chain: building, sending and landing swap transactions.

State lives in PostgreSQL (`dex.models.ChainTransaction`), so every worker process sees the same
chain. A transaction is built (instructions, compute budget, priority fee, blockhash, signature)
without touching the database, sent (recorded as pending, with a landing time), and landed lazily
by `signature_status` once its time has come: the legs are re-executed against the pools' state
at that moment, not the quote's, inside the caller's transaction, so the fill, the pools' new
reserves and the engine's order update commit together or not at all.

Failures are injected like a real RPC's, at rate DEX_FAILURE_RATE per transaction: a timeout
before the node saw the transaction, a timeout after it did (the ambiguous case: it may land),
a node rate limit, or a blockhash that expires before the leader includes it. With DEX_SEED set,
every draw comes from `random.Random(f"{seed}:{reference}:...")`, so a transaction's fate depends
only on the seed and its reference, whichever worker process sends it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import secrets
import threading
import time
from datetime import datetime, timedelta

import base58
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.sql import row_insert, row_load, row_save, rows_insert, rows_load, rows_save
from dex import meteora, models, raydium
from dex.pools import PoolSnapshot, pool_save, pools_by_address
from dex.types import (
    DexError,
    DuplicateReferenceError,
    InsufficientLiquidityError,
    Leg,
    Quote,
    SignatureStatus,
    SlippageExceededError,
    Transaction,
    TransientChainError,
    decimal_str,
    units_to_decimal,
)

logger = logging.getLogger("dex.chain")

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ASSOCIATED_TOKEN_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111"
VENUE_PROGRAMS = {
    "raydium": "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8",  # Raydium AMM v4
    "meteora": "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo",  # Meteora DLMM
}
WSOL_MINT = "So11111111111111111111111111111111111111112"

# Compute units each instruction consumes, as measured on mainnet (rounded up).
CU_COMPUTE_BUDGET = 150
CU_CREATE_ATA = 25_000
CU_TRANSFER = 150
CU_SYNC_NATIVE = 3_000
CU_CLOSE_ACCOUNT = 3_000
CU_SWAP = {"raydium": 40_000, "meteora": 90_000}
CU_MAX = 1_400_000

SLOT_SECONDS = 0.4
BLOCKHASH_VALID_BLOCKS = 150
PRIORITY_FEE_FLOOR = 10_000  # micro-lamports per CU in a quiet market
PRIORITY_FEE_CAP = 5_000_000
ACTIVITY_WINDOW = timedelta(seconds=10)

# Injected failures: where they strike.
_BEFORE_RECORD = ("rpc_timeout", "node_rate_limited")
_FATES = ("rpc_timeout_before", "rpc_timeout_after", "node_rate_limited", "blockhash_expired")
#: The fates that refuse a first send, and the error the client hears for each.
_REFUSALS = {"rpc_timeout_before": "rpc_timeout", "node_rate_limited": "node_rate_limited"}

_TIMEOUT_MESSAGE = (
    "RPC timeout: the node did not answer; the transaction may or may not have landed"
)

_send_attempts_lock = threading.Lock()
_send_attempts: dict[str, int] = {}  # signature → sends that this process saw refused


# --- randomness ----------------------------------------------------------------------------------


def _rng(reference: str, purpose: str) -> random.Random:
    """A reproducible source per transaction and purpose when DEX_SEED is set."""
    seed = getattr(settings, "DEX_SEED", None)
    if seed is None:
        return random.Random(secrets.randbits(64))
    return random.Random(f"{seed}:{reference}:{purpose}")


def execution_latency_seconds(rng: random.Random) -> float:
    """DEX_EXECUTION_LATENCY_MS: "2000-3000" (uniform) or a single number, in milliseconds."""
    raw = str(getattr(settings, "DEX_EXECUTION_LATENCY_MS", "2000-3000")).strip()
    low, _, high = raw.partition("-")
    low_ms = float(low or 0)
    high_ms = float(high) if high else low_ms
    if high_ms < low_ms:
        low_ms, high_ms = high_ms, low_ms
    return (low_ms if high_ms == low_ms else rng.uniform(low_ms, high_ms)) / 1000


def _failure_rate() -> float:
    return float(getattr(settings, "DEX_FAILURE_RATE", 0.05) or 0)


# --- building ------------------------------------------------------------------------------------


def _b58_hash(*parts: str, size: int = 32) -> str:
    digest = hashlib.sha512("|".join(parts).encode()).digest()[:size]
    return base58.b58encode(digest).decode()


def associated_token_account(wallet: str, mint: str) -> str:
    """The wallet's token account for a mint (a stand-in for the real PDA derivation)."""
    return _b58_hash("ata", wallet, mint)


def _recent_blockhash(now: datetime) -> str:
    slot = int(now.timestamp() / SLOT_SECONDS)
    return _b58_hash("blockhash", str(slot))


_activity: tuple[float, int] = (0.0, 0)


def _recent_activity() -> int:
    """Transactions the chain saw in the last ACTIVITY_WINDOW, counted at most once a second
    per process: a fee estimate is a sampled figure, and a COUNT per transaction is not free."""
    global _activity
    now = time.monotonic()
    if now - _activity[0] > 1.0:
        recent = models.ChainTransaction.objects.filter(
            created_at__gte=timezone.now() - ACTIVITY_WINDOW
        ).count()
        _activity = (now, recent)
    return _activity[1]


def priority_fee_market(rng: random.Random) -> int:
    """Micro-lamports per CU that lands a transaction now: a floor, rising with the number of
    transactions the chain saw in the last seconds, with some noise, as fee estimators report."""
    congestion = 1 + _recent_activity() / 20
    fee = int(PRIORITY_FEE_FLOOR * congestion * rng.uniform(0.8, 1.25))
    return max(1, min(fee, PRIORITY_FEE_CAP))


def _hops(quote: Quote) -> list[list[Leg]]:
    """The quote's legs grouped by hop, in route order."""
    hops: list[list[Leg]] = []
    for symbol in quote.route[:-1]:
        hops.append([leg for leg in quote.legs if leg.token_in == symbol])
    return hops


def _instructions(
    *, wallet: str, quote: Quote, min_amount_out: int
) -> tuple[list[dict[str, object]], int]:
    """The swap's instructions (compute budget first, filled in by the caller) and their CUs."""
    ixs: list[dict[str, object]] = []
    units = 2 * CU_COMPUTE_BUDGET
    wsol = associated_token_account(wallet, WSOL_MINT)
    sol_involved = "SOL" in quote.route
    if sol_involved:
        ixs.append(
            {
                "program": ASSOCIATED_TOKEN_PROGRAM,
                "instruction": "createAssociatedTokenAccountIdempotent",
                "owner": wallet,
                "mint": WSOL_MINT,
                "account": wsol,
                "purpose": "wSOL account for the swap",
            }
        )
        units += CU_CREATE_ATA
    if quote.token_in.is_native_sol:
        # Wrap: move lamports into the wSOL account and let the token program count them.
        ixs.append(
            {
                "program": SYSTEM_PROGRAM,
                "instruction": "transfer",
                "from": wallet,
                "to": wsol,
                "lamports": str(quote.amount_in),
                "purpose": "wrap SOL",
            }
        )
        ixs.append({"program": TOKEN_PROGRAM, "instruction": "syncNative", "account": wsol})
        units += CU_TRANSFER + CU_SYNC_NATIVE
    if not quote.token_out.is_native_sol:
        ixs.append(
            {
                "program": ASSOCIATED_TOKEN_PROGRAM,
                "instruction": "createAssociatedTokenAccountIdempotent",
                "owner": wallet,
                "mint": quote.token_out.mint,
                "account": associated_token_account(wallet, quote.token_out.mint),
                "purpose": f"{quote.token_out.symbol} account to receive the output",
            }
        )
        units += CU_CREATE_ATA
    last_hop = len(quote.route) - 2
    for hop_index, hop in enumerate(_hops(quote)):
        for leg in hop:
            ixs.append(
                {
                    "program": VENUE_PROGRAMS.get(leg.dex, leg.dex),
                    "instruction": "swap",
                    "dex": leg.dex,
                    "pool": leg.pool,
                    "tokenIn": leg.token_in,
                    "tokenOut": leg.token_out,
                    "amountIn": str(leg.in_amount),
                    "expectedAmountOut": str(leg.out_amount),
                    "percent": leg.percent,
                    "hop": hop_index + 1,
                }
            )
            units += CU_SWAP.get(leg.dex, 60_000)
    ixs.append(
        {
            # The route's one slippage check, after the last hop, as Jupiter's program does.
            "program": "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
            "instruction": "assertMinimumOut",
            "tokenOut": quote.token_out.symbol,
            "minimumAmountOut": str(min_amount_out),
            "hop": last_hop + 1,
        }
    )
    units += 1_000
    if sol_involved:
        ixs.append(
            {
                "program": TOKEN_PROGRAM,
                "instruction": "closeAccount",
                "account": wsol,
                "destination": wallet,
                "purpose": "unwrap wSOL back to SOL",
            }
        )
        units += CU_CLOSE_ACCOUNT
    return ixs, units


def transaction_build(
    *, wallet: str, quote: Quote, min_amount_out: int, reference: str
) -> Transaction:
    """Prepare and sign the swap transaction for `quote`. Nothing is written anywhere."""
    if min_amount_out < 0:
        raise ValueError("min_amount_out must not be negative")
    now = timezone.now()
    rng = _rng(reference, "build")
    swap_ixs, units = _instructions(wallet=wallet, quote=quote, min_amount_out=min_amount_out)
    # A 10 % margin over the measured units, as wallets add: running out of CUs fails the tx.
    compute_unit_limit = min(-(-units * 11 // 10 // 1_000) * 1_000, CU_MAX)
    priority_fee = priority_fee_market(rng)
    instructions = [
        {
            "program": COMPUTE_BUDGET_PROGRAM,
            "instruction": "setComputeUnitLimit",
            "units": compute_unit_limit,
        },
        {
            "program": COMPUTE_BUDGET_PROGRAM,
            "instruction": "setComputeUnitPrice",
            "microLamports": priority_fee,
        },
        *swap_ixs,
    ]
    blockhash = _recent_blockhash(now)
    # 150 blocks of 400-600 ms (skipped slots stretch them): 60-90 s, as observed on mainnet.
    last_valid_at = now + timedelta(seconds=BLOCKHASH_VALID_BLOCKS * rng.uniform(SLOT_SECONDS, 0.6))
    message = json.dumps(
        [wallet, reference, blockhash, instructions, quote.to_state(), min_amount_out],
        sort_keys=True,
        default=str,
    )
    # Ed25519 signatures are deterministic in the message: the same message, the same signature.
    signature = base58.b58encode(hashlib.sha512(message.encode()).digest()).decode()
    return Transaction(
        signature=signature,
        reference=reference,
        fee_payer=wallet,
        quote=quote,
        min_amount_out=min_amount_out,
        instructions=tuple(instructions),
        compute_unit_limit=compute_unit_limit,
        priority_fee_micro_lamports=priority_fee,
        recent_blockhash=blockhash,
        last_valid_at=last_valid_at,
    )


# --- sending -------------------------------------------------------------------------------------


def _fate(tx: Transaction) -> str | None:
    """What the network will do to this transaction, drawn once from its seeded source."""
    rng = _rng(tx.reference, "fate")
    if rng.random() >= _failure_rate():
        return None
    return rng.choice(_FATES)


def _refused_again(tx: Transaction, attempt: int) -> str | None:
    """A resend of a transaction the node never saw gets its own, independent draw."""
    rng = _rng(tx.reference, f"resend:{attempt}")
    if rng.random() >= _failure_rate():
        return None
    return rng.choice(_BEFORE_RECORD)


def _refuse(tx: Transaction, code: str) -> None:
    with _send_attempts_lock:
        if len(_send_attempts) > 10_000:  # a long-lived worker forgets the oldest refusals
            _send_attempts.clear()
        _send_attempts[tx.signature] = _send_attempts.get(tx.signature, 0) + 1
    messages = {
        "rpc_timeout": _TIMEOUT_MESSAGE,
        "node_rate_limited": "the RPC node rate-limited the request (429); nothing was received",
    }
    logger.info("send refused signature=%s code=%s", tx.signature, code)
    raise TransientChainError(messages[code], code=code)


def transaction_send(tx: Transaction) -> datetime:
    """Submit the transaction; returns when it is expected to land.

    Idempotent by signature: sending the same transaction again returns the same landing time.
    Call it outside a database transaction (autocommit), as a real RPC call is: the chain's
    record of the transaction must not vanish with the caller's rollback."""
    now = timezone.now()
    if now > tx.last_valid_at:
        raise TransientChainError(
            f"blockhash expired: the transaction was valid until {tx.last_valid_at.isoformat()}",
            code="blockhash_expired",
        )
    fate = _fate(tx)
    attempt = _send_attempts.get(tx.signature, 0)
    if attempt:
        # The node never saw the earlier sends: this one gets its own, independent draw.
        if fate in ("rpc_timeout_before", "node_rate_limited"):
            fate = None
        refusal = _refused_again(tx, attempt)
    else:
        refusal = _REFUSALS.get(fate or "")
    if refusal:
        existing = _lands_at(tx.signature)
        if existing is not None:  # the node has it already: it answers with what it knows
            return existing
        _refuse(tx, refusal)

    row = _chain_row(tx, now, fate)
    # One INSERT that leaves an existing signature alone (a second send of the same
    # transaction): no transaction of its own is needed (autocommit).
    try:
        with _savepoint_in_a_transaction():
            inserted = row_insert(row, unless_exists="signature")
    except IntegrityError:
        inserted = False
    if not inserted:
        existing = _lands_at(tx.signature)
        if existing is None:
            raise DuplicateReferenceError(
                f"reference {tx.reference!r} was already used by another transaction"
            )
        return existing  # sent before, or a concurrent send of the same transaction won
    _accepted(row)
    if fate == "rpc_timeout_after":
        # Recorded, yet the client hears a timeout: only signature_status can tell it landed.
        raise TransientChainError(_TIMEOUT_MESSAGE, code="rpc_timeout")
    return row.lands_at


def transactions_send(txs: list[Transaction]) -> dict[str, datetime]:
    """`transaction_send` for several transactions at once (orders executed together), for those
    the network takes at the first try: recorded in one INSERT. Returns when each of those
    lands, by signature. The others (a fate drawn against it, a resend, an expired blockhash, a
    signature or reference already recorded) are left out, for `transaction_send` to send one
    at a time and say what happened to each."""
    now = timezone.now()
    rows = [
        _chain_row(tx, now, fate=None)
        for tx in txs
        if now <= tx.last_valid_at and _fate(tx) is None and tx.signature not in _send_attempts
    ]
    with _savepoint_in_a_transaction():
        inserted = rows_insert(rows, key="signature")
    for row in inserted:
        _accepted(row)
    return {row.signature: row.lands_at for row in inserted}


def _chain_row(tx: Transaction, now: datetime, fate: str | None) -> models.ChainTransaction:
    """The chain's record of a transaction it accepts now: when it lands, and whether it is
    doomed to fail there."""
    return models.ChainTransaction(
        signature=tx.signature,
        reference=tx.reference,
        tx=tx.to_state(),
        lands_at=now + timedelta(seconds=execution_latency_seconds(_rng(tx.reference, "latency"))),
        fail_at_landing="blockhash_expired" if fate == "blockhash_expired" else "",
    )


def _savepoint_in_a_transaction() -> contextlib.AbstractContextManager[object]:
    """A send records in autocommit, as a real RPC call would; inside a caller's transaction a
    savepoint keeps a failed INSERT (a clash on the reference) from breaking it."""
    in_block = transaction.get_connection().in_atomic_block
    return transaction.atomic() if in_block else contextlib.nullcontext()


def _accepted(row: models.ChainTransaction) -> None:
    logger.info(
        "send accepted signature=%s reference=%s lands_at=%s",
        row.signature,
        row.reference,
        row.lands_at.isoformat(),
    )


def _lands_at(signature: str) -> datetime | None:
    """When a transaction the chain has recorded lands (None: the chain never saw it)."""
    connection = transaction.get_connection()
    table = connection.ops.quote_name(models.ChainTransaction._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT lands_at FROM {table} WHERE signature = %s", [signature])
        row = cursor.fetchone()
    return None if row is None else row[0]


# --- landing -------------------------------------------------------------------------------------

_ERRORS: dict[str, type[DexError]] = {
    SlippageExceededError.code: SlippageExceededError,
    InsufficientLiquidityError.code: InsufficientLiquidityError,
}


def _recorded(row: models.ChainTransaction) -> SignatureStatus:
    if row.state == models.ChainTransaction.State.LANDED:
        return SignatureStatus(
            state="landed", amount_out=int(row.amount_out or 0), landed_at=row.landed_at
        )
    if row.state == models.ChainTransaction.State.FAILED:
        error_class = _ERRORS.get(row.error_code, TransientChainError)
        return SignatureStatus(
            state="failed",
            error=error_class(row.error_message, code=row.error_code),
            landed_at=row.landed_at,
        )
    return SignatureStatus(state="pending", retry_at=row.lands_at)


def _execute_leg(
    pool: PoolSnapshot,
    state: tuple[int, int, meteora.PoolState | None],
    leg: Leg,
    amount: int,
    now: int,
) -> tuple[int, tuple[int, int, meteora.PoolState | None]]:
    """Run one leg on a pool's current state; returns (out, new state)."""
    reserve_a, reserve_b, dlmm = state
    a_to_b = leg.token_in == pool.symbol_a
    if dlmm is None:
        if a_to_b:
            result = raydium.swap(reserve_a, reserve_b, amount, pool.fee_rate)
            return result.amount_out, (result.reserve_in_after, result.reserve_out_after, None)
        result = raydium.swap(reserve_b, reserve_a, amount, pool.fee_rate)
        return result.amount_out, (result.reserve_out_after, result.reserve_in_after, None)
    swapped = meteora.swap(dlmm, amount, swap_for_y=a_to_b, now=now)
    new = swapped.state
    return swapped.amount_out, (new.reserve_x, new.reserve_y, new)


def _fail(row: models.ChainTransaction, error: DexError, now: datetime) -> SignatureStatus:
    row.state = models.ChainTransaction.State.FAILED
    row.error_code = error.code
    row.error_message = error.message
    row.landed_at = now
    row_save(row, ["state", "error_code", "error_message", "landed_at", "updated_at"])
    logger.info(
        "landing failed signature=%s code=%s message=%r", row.signature, error.code, error.message
    )
    return SignatureStatus(state="failed", error=error, landed_at=now)


def signature_status(signature: str) -> SignatureStatus:
    """What the chain says of a signature; lands it first if its time has come.

    Meant to be called inside the caller's `transaction.atomic()`: the landing (the pools' new
    reserves and the transaction's result) then commits with whatever the caller records.
    No savepoint of its own: an error here fails the caller's whole transaction, as it should."""
    with transaction.atomic(savepoint=False):
        # Lock order: the transaction row, then its pools by id. Every landing follows it, so two
        # landings sharing pools queue instead of deadlocking. Locking a row that is not due yet
        # costs nothing the caller would notice, and it saves reading it twice when it is.
        row = row_load(models.ChainTransaction, "signature", signature, lock=True)
        if row is None:
            return SignatureStatus(state="unknown")
        return _statuses([row])[signature]


def signatures_status(signatures: list[str]) -> dict[str, SignatureStatus]:
    """`signature_status` for several signatures at once (orders executed together): their rows
    locked in one statement (by signature, then their pools by id: a caller holding several
    orders' rows locks their transactions in one order too), the due ones landed one after
    another on their pools' running state, each pool written once and the landed rows in one
    UPDATE."""
    with transaction.atomic(savepoint=False):
        rows = rows_load(models.ChainTransaction, "signature", sorted(set(signatures)), lock=True)
        given = {signature: index for index, signature in enumerate(signatures)}
        rows.sort(key=lambda row: given[row.signature])  # locked in one order, landed as given
        known = _statuses(rows)
    return {s: known.get(s, SignatureStatus(state="unknown")) for s in signatures}


def _statuses(rows: list[models.ChainTransaction]) -> dict[str, SignatureStatus]:
    """The locked rows' statuses, landing those whose time has come."""
    statuses: dict[str, SignatureStatus] = {}
    due: list[tuple[models.ChainTransaction, Transaction]] = []
    now = timezone.now()
    for row in rows:
        if row.state != models.ChainTransaction.State.PENDING:
            statuses[row.signature] = _recorded(row)
        elif row.lands_at > now:
            statuses[row.signature] = SignatureStatus(state="pending", retry_at=row.lands_at)
        elif row.fail_at_landing:
            statuses[row.signature] = _fail(
                row,
                TransientChainError(
                    "blockhash expired before a leader included the transaction; it never lands",
                    code=row.fail_at_landing,
                ),
                now,
            )
        else:
            due.append((row, Transaction.from_state(row.tx)))
    if due:
        statuses.update(_land(due))
    return statuses


def _land(due: list[tuple[models.ChainTransaction, Transaction]]) -> dict[str, SignatureStatus]:
    """Land the transactions in turn, each on the pools as the ones before it left them."""
    addresses = {leg.pool for _, tx in due for leg in tx.quote.legs}
    pools = {p.address: p for p in pools_by_address(addresses, lock=True)}
    states = {address: (p.reserve_a, p.reserve_b, p.dlmm) for address, p in pools.items()}
    moved: set[str] = set()
    landed: list[models.ChainTransaction] = []
    statuses: dict[str, SignatureStatus] = {}
    for row, tx in due:
        # Each landing's moment is read once its pools are locked, not before: landings on a
        # pool then get their landed_at in the order they changed it (one that waited for the
        # lock, or came later in `due`, lands later), and the DLMM's clock is the one the swap
        # really ran at.
        now = timezone.now()
        try:
            amount_out, after = _fill(tx, pools, states, int(now.timestamp()))
        except (InsufficientLiquidityError, SlippageExceededError) as error:
            statuses[row.signature] = _fail(row, error, now)
            continue
        states.update(after)
        moved.update(after)
        row.state = models.ChainTransaction.State.LANDED
        row.amount_out = amount_out
        row.landed_at = now
        landed.append(row)
        statuses[row.signature] = SignatureStatus(
            state="landed", amount_out=amount_out, landed_at=now
        )
        logger.info(
            "landed signature=%s amount_out=%s min_amount_out=%s",
            row.signature,
            amount_out,
            tx.min_amount_out,
        )
    for address in sorted(moved, key=lambda a: pools[a].id):
        reserve_a, reserve_b, dlmm = states[address]
        pool_save(pools[address], reserve_a=reserve_a, reserve_b=reserve_b, dlmm=dlmm)
    if landed:
        rows_save(landed, ["state", "amount_out", "landed_at", "updated_at"])
    return statuses


PoolState = tuple[int, int, meteora.PoolState | None]


def _fill(
    tx: Transaction, pools: dict[str, PoolSnapshot], states: dict[str, PoolState], now: int
) -> tuple[int, dict[str, PoolState]]:
    """Run the transaction's legs on the pools' current `states`: its output and the states of
    the pools it moved. Raises InsufficientLiquidityError or SlippageExceededError (nothing
    moved)."""
    quote = tx.quote
    after: dict[str, PoolState] = {}
    hop_input = quote.amount_in
    for hop in _hops(quote):
        # Each hop shares what the previous one really produced as the quote planned it.
        planned = sum(leg.in_amount for leg in hop)
        produced = 0
        remaining = hop_input
        for index, leg in enumerate(hop):
            if index == len(hop) - 1:
                amount = remaining
            else:
                amount = hop_input * leg.in_amount // planned if planned else 0
            remaining -= amount
            pool = pools.get(leg.pool)
            if pool is None:
                raise InsufficientLiquidityError(f"pool {leg.pool} no longer exists")
            state = after.get(leg.pool, states[leg.pool])
            out, after[leg.pool] = _execute_leg(pool, state, leg, amount, now)
            produced += out
        hop_input = produced
    if hop_input < tx.min_amount_out:
        decimals = quote.token_out.decimals
        symbol = quote.token_out.symbol
        would = decimal_str(units_to_decimal(hop_input, decimals))
        minimum = decimal_str(units_to_decimal(tx.min_amount_out, decimals))
        raise SlippageExceededError(
            f"slippage exceeded: would receive {would} {symbol}, minimum {minimum} {symbol}"
        )
    return hop_input, after


def chain_wait(signature: str, *, timeout: float = 10.0) -> SignatureStatus:
    """Poll until the signature is no longer pending (tests and scripts; the engine schedules)."""
    deadline = time.monotonic() + timeout
    while True:
        with transaction.atomic():
            status = signature_status(signature)
        if status.state != "pending" or time.monotonic() > deadline:
            return status
        wait = (status.retry_at - timezone.now()).total_seconds() if status.retry_at else 0.05
        time.sleep(min(max(wait, 0.01), 0.5))
