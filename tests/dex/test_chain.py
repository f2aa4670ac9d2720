"""The simulated chain: a transaction lands once, at the pools' state of that moment."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import base58
import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from dex import chain, models
from dex.chain import signature_status, transaction_build, transaction_send
from dex.router import route_best
from dex.tokens import to_units, token_get
from dex.types import (
    DuplicateReferenceError,
    Quote,
    SlippageExceededError,
    Transaction,
    TransientChainError,
)

pytestmark = pytest.mark.django_db(transaction=False)

WALLET = "6xKS8hCXqh5VCBKhNJ6YJJqzqGwKCyp8CYVDJqmz3Lez"


def _quote(symbol_in: str = "SOL", symbol_out: str = "USDC", amount: str = "1.5") -> Quote:
    token_in, token_out = token_get(symbol_in), token_get(symbol_out)
    return route_best(
        token_in=token_in, token_out=token_out, amount_in=to_units(Decimal(amount), token_in)
    ).best


def _build(reference: str, quote: Quote | None = None, slippage_bps: int = 100) -> Transaction:
    quote = quote or _quote()
    minimum = quote.amount_out * (10_000 - slippage_bps) // 10_000
    return transaction_build(
        wallet=WALLET, quote=quote, min_amount_out=minimum, reference=reference
    )


def _reserves() -> dict[str, tuple[Decimal, Decimal, list]]:
    return {p.address: (p.reserve_a, p.reserve_b, p.bins) for p in models.Pool.objects.all()}


def _status(signature: str):
    with transaction.atomic():
        return signature_status(signature)


def test_a_built_transaction_wraps_swaps_and_unwraps_sol() -> None:
    tx = _build("order-1:1")
    assert len(base58.b58decode(tx.signature)) == 64
    names = [ix["instruction"] for ix in tx.instructions]
    assert names[:2] == ["setComputeUnitLimit", "setComputeUnitPrice"]
    assert names.index("syncNative") < names.index("swap") < names.index("closeAccount")
    assert "transfer" in names
    assert tx.compute_unit_limit >= 40_000
    assert tx.priority_fee_micro_lamports > 0
    lifetime = tx.last_valid_at - timezone.now()
    assert timedelta(seconds=55) < lifetime <= timedelta(seconds=90)
    summary = tx.summary()
    assert summary["computeUnitLimit"] == tx.compute_unit_limit
    assert summary["priorityFee"] == tx.priority_fee_micro_lamports
    assert [ix["instruction"] for ix in summary["instructions"]] == names


def test_a_swap_into_sol_unwraps_without_wrapping() -> None:
    tx = _build("order-2:1", _quote("USDC", "SOL", "100"))
    names = [ix["instruction"] for ix in tx.instructions]
    assert "syncNative" not in names and "transfer" not in names
    assert "closeAccount" in names


def test_a_transaction_round_trips_through_its_state() -> None:
    tx = _build("order-3:1")
    assert Transaction.from_state(tx.to_state()) == tx


def test_a_transaction_lands_once_and_moves_the_pools_once() -> None:
    tx = _build("order-4:1")
    before = _reserves()
    lands_at = transaction_send(tx)
    assert transaction_send(tx) == lands_at  # a resend is a no-op
    status = _status(tx.signature)
    assert status.state == "landed"
    assert status.amount_out >= tx.min_amount_out
    after = _reserves()
    pool = tx.quote.legs[0].pool
    assert after[pool] != before[pool]
    again = _status(tx.signature)
    assert (again.state, again.amount_out) == ("landed", status.amount_out)
    assert _reserves() == after
    assert transaction_send(tx) == lands_at
    assert _reserves() == after
    assert models.ChainTransaction.objects.filter(signature=tx.signature).count() == 1


def test_a_signature_never_sent_is_unknown() -> None:
    tx = _build("order-5:1")
    assert _status(tx.signature).state == "unknown"


@override_settings(DEX_EXECUTION_LATENCY_MS="60000")
def test_a_transaction_is_pending_until_its_time() -> None:
    tx = _build("order-6:1")
    lands_at = transaction_send(tx)
    assert timedelta(seconds=59) < lands_at - timezone.now() <= timedelta(seconds=60)
    status = _status(tx.signature)
    assert status.state == "pending"
    assert status.retry_at == lands_at


def test_slippage_is_checked_against_the_pools_at_landing() -> None:
    quote = _quote("SOL", "USDC", "100")
    tx = _build("order-7:1", quote, slippage_bps=10)
    # Someone else sells SOL into the same pools first and moves the price down.
    other = _build("order-8:1", _quote("SOL", "USDC", "3000"))
    transaction_send(other)
    assert _status(other.signature).state == "landed"
    before = _reserves()
    transaction_send(tx)
    status = _status(tx.signature)
    assert status.state == "failed"
    assert isinstance(status.error, SlippageExceededError)
    assert status.error.transient
    assert str(status.error).startswith("slippage exceeded: would receive ")
    assert "minimum" in str(status.error)
    assert _reserves() == before  # a failed swap leaves no trace in the pools
    recorded = _status(tx.signature)
    assert recorded.state == "failed" and recorded.error.code == "slippage_exceeded"


def test_an_expired_blockhash_is_refused_at_send() -> None:
    tx = dataclasses.replace(_build("order-9:1"), last_valid_at=timezone.now() - timedelta(1))
    with pytest.raises(TransientChainError) as caught:
        transaction_send(tx)
    assert caught.value.code == "blockhash_expired"
    assert _status(tx.signature).state == "unknown"


def test_a_reference_serves_one_transaction_only() -> None:
    first = _build("order-10:1")
    transaction_send(first)
    second = _build("order-10:1", _quote("SOL", "USDC", "2"))
    assert second.signature != first.signature
    with pytest.raises(DuplicateReferenceError):
        transaction_send(second)


def test_two_hop_transactions_land_with_both_legs() -> None:
    quote = _quote("JUP", "BONK", "1000")
    tx = _build("order-11:1", quote)
    transaction_send(tx)
    status = _status(tx.signature)
    assert status.state == "landed"
    assert status.amount_out == quote.amount_out  # nothing moved in between
    names = [ix["instruction"] for ix in tx.instructions]
    assert names.count("swap") == 2
    assert "closeAccount" in names  # the SOL hub goes through a wSOL account


def _fates(count: int) -> dict[str, list[str]]:
    """References grouped by the fate the seeded chain draws for them at a 100 % failure rate."""
    fates: dict[str, list[str]] = {}
    for n in range(count):
        reference = f"fate-{n}:1"
        fake = dataclasses.replace(_build(reference), reference=reference)
        fates.setdefault(chain._fate(fake) or "ok", []).append(reference)
    return fates


@override_settings(DEX_FAILURE_RATE=1.0)
def test_injected_failures_have_their_kinds() -> None:
    fates = _fates(40)
    assert set(fates) == set(chain._FATES)

    before = _build(fates["rpc_timeout_before"][0])
    with pytest.raises(TransientChainError) as caught:
        transaction_send(before)
    assert caught.value.code == "rpc_timeout"
    assert _status(before.signature).state == "unknown"

    limited = _build(fates["node_rate_limited"][0])
    with pytest.raises(TransientChainError) as caught:
        transaction_send(limited)
    assert caught.value.code == "node_rate_limited"
    assert _status(limited.signature).state == "unknown"

    after = _build(fates["rpc_timeout_after"][0])
    with pytest.raises(TransientChainError) as caught:
        transaction_send(after)
    assert caught.value.code == "rpc_timeout"
    assert _status(after.signature).state == "landed"  # the ambiguous case: it did land

    expired = _build(fates["blockhash_expired"][0])
    transaction_send(expired)
    status = _status(expired.signature)
    assert status.state == "failed"
    assert status.error.code == "blockhash_expired" and status.error.transient


def test_a_fixed_seed_makes_fates_and_latencies_reproducible() -> None:
    with override_settings(DEX_FAILURE_RATE=0.5, DEX_EXECUTION_LATENCY_MS="2000-3000"):
        first = _fates(20)
        again = _fates(20)
        latencies = [
            chain.execution_latency_seconds(chain._rng(f"r{n}", "latency")) for n in range(5)
        ]
        assert latencies == [
            chain.execution_latency_seconds(chain._rng(f"r{n}", "latency")) for n in range(5)
        ]
        assert all(2.0 <= s <= 3.0 for s in latencies)
    assert first == again
    assert len(first.get("ok", [])) not in (0, 20)
    with override_settings(DEX_SEED=8, DEX_FAILURE_RATE=0.5):
        assert _fates(20) != first


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_racing_status_calls_land_a_transaction_exactly_once() -> None:
    import threading

    from django.db import connections

    from dex import raydium

    tx = _build("race:1")
    (leg,) = tx.quote.legs
    assert leg.dex == "raydium"
    pool = models.Pool.objects.get(address=leg.pool)
    expected = raydium.swap(int(pool.reserve_a), int(pool.reserve_b), leg.in_amount, pool.fee_rate)
    transaction_send(tx)
    barrier = threading.Barrier(4)
    results = []

    def ask() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                results.append(signature_status(tx.signature))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [s.state for s in results] == ["landed"] * 4
    assert {s.amount_out for s in results} == {expected.amount_out}
    pool.refresh_from_db()
    # One swap's worth of change, not two.
    assert (pool.reserve_a, pool.reserve_b) == (
        expected.reserve_in_after,
        expected.reserve_out_after,
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_landing_that_waited_for_its_pool_lands_when_it_got_it() -> None:
    """landed_at is read once the pools are locked: a landing that queued behind another on the
    same pool is stamped after that one released it, so landed_at orders landings as they moved
    the pool (taken before the lock, the first to ask could be stamped first and land second)."""
    import threading

    from django.db import connections

    tx = _build("queued:1")
    (leg,) = tx.quote.legs
    transaction_send(tx)
    locked, release = threading.Event(), threading.Event()
    released_at = []

    def hold() -> None:
        try:
            with transaction.atomic():
                list(models.Pool.objects.select_for_update().filter(address=leg.pool))
                locked.set()
                release.wait(10)
                released_at.append(timezone.now())
        finally:
            connections.close_all()

    results = []

    def land() -> None:
        try:
            with transaction.atomic():
                results.append(signature_status(tx.signature))
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    lander = threading.Thread(target=land)
    lander.start()
    with connections["default"].cursor() as cursor:  # until the landing waits on the pool's lock
        for _ in range(500):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            threading.Event().wait(0.01)
        else:
            pytest.fail("the landing never waited for the pool's lock")
    release.set()
    holder.join()
    lander.join()
    (status,) = results
    assert status.state == "landed"
    assert status.landed_at >= released_at[0]
    row = models.ChainTransaction.objects.get(signature=tx.signature)
    assert row.landed_at == status.landed_at


@override_settings(DEX_EXECUTION_LATENCY_MS="0", DEX_FAILURE_RATE=0)
def test_transactions_landed_together_land_as_they_would_one_after_another() -> None:
    """One quote, three swaps on it: landed in one call (orders executed together) each fills
    on the pool as the one before left it, exactly as three landings in turn would."""
    quote = _quote()
    txs = [_build(f"together-{i}:1", quote, slippage_bps=10_000) for i in range(3)]
    lands_at = chain.transactions_send(txs)
    assert set(lands_at) == {tx.signature for tx in txs}
    assert chain.transactions_send(txs) == {}  # recorded already: left to transaction_send
    assert [transaction_send(tx) for tx in txs] == [lands_at[tx.signature] for tx in txs]
    before = _reserves()
    with transaction.atomic():
        together = chain.signatures_status([tx.signature for tx in reversed(txs)])
        after_together = _reserves()
        transaction.set_rollback(True)
    assert _reserves() == before
    in_turn = [_status(tx.signature) for tx in reversed(txs)]
    assert [together[tx.signature].amount_out for tx in reversed(txs)] == [
        s.amount_out for s in in_turn
    ]
    assert _reserves() == after_together
    amounts = [together[tx.signature].amount_out for tx in reversed(txs)]
    assert amounts[0] > amounts[1] > amounts[2]  # landed in the order given
    landed = [together[tx.signature].landed_at for tx in reversed(txs)]
    assert landed == sorted(landed)


@override_settings(DEX_FAILURE_RATE=1)
def test_transactions_the_network_may_refuse_are_left_to_be_sent_one_at_a_time() -> None:
    txs = [_build(f"fated-{i}:1") for i in range(3)]
    assert chain.transactions_send(txs) == {}
    assert not models.ChainTransaction.objects.filter(reference__startswith="fated-").exists()
