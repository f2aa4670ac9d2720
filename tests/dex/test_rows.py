"""The chain's and the pools' rows written and read without the ORM's query compilation
(config.sql): the same rows the ORM would write and read, in fewer statements."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, DataError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.sql import row_insert, row_load, row_save, row_update, rows_insert, rows_save
from dex import models
from dex.chain import signature_status, transaction_send
from tests.dex.test_chain import _build

pytestmark = pytest.mark.django_db(transaction=False)


def statements(captured: CaptureQueriesContext) -> list[str]:
    """The verbs of the statements run, leaving out the savepoints of the test's transaction."""
    verbs = [q["sql"].split()[0] for q in captured]
    return [v for v in verbs if v not in ("SAVEPOINT", "RELEASE")]


def fields(instance: models.ChainTransaction) -> dict[str, object]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_a_send_is_one_statement_and_a_resend_writes_nothing() -> None:
    tx = _build("rows-1:1")
    with CaptureQueriesContext(connection) as first:
        lands_at = transaction_send(tx)
    assert statements(first) == ["INSERT"]
    with CaptureQueriesContext(connection) as again:
        assert transaction_send(tx) == lands_at
    assert statements(again) == ["INSERT", "SELECT"]
    row = models.ChainTransaction.objects.get(signature=tx.signature)
    assert (row.reference, row.state, row.lands_at, row.fail_at_landing) == (
        "rows-1:1",
        "pending",
        lands_at,
        "",
    )
    assert row.tx == tx.to_state() and row.created_at and row.updated_at


def test_a_landing_reads_its_rows_once_and_writes_each_once() -> None:
    tx = _build("rows-2:1")
    transaction_send(tx)
    pools = {leg.pool for leg in tx.quote.legs}
    with transaction.atomic(), CaptureQueriesContext(connection) as landing:
        assert signature_status(tx.signature).state == "landed"
    # the transaction (locked), its pools (locked, one query), each pool, the transaction
    assert statements(landing) == ["SELECT", "SELECT", *["UPDATE"] * len(pools), "UPDATE"]
    row = models.ChainTransaction.objects.get(signature=tx.signature)
    assert row.state == "landed" and row.amount_out and row.landed_at
    assert row.updated_at > row.created_at  # auto_now, as save() would set it


def test_a_row_loads_as_the_orm_loads_it() -> None:
    tx = _build("rows-3:1")
    transaction_send(tx)
    with transaction.atomic():
        signature_status(tx.signature)  # landed: amounts, times and JSON all set
    orm = models.ChainTransaction.objects.get(signature=tx.signature)
    for lock in (False, True):
        with transaction.atomic():
            loaded = row_load(models.ChainTransaction, "signature", tx.signature, lock=lock)
        assert fields(loaded) == fields(orm)
        assert isinstance(loaded.amount_out, Decimal) and isinstance(loaded.tx, dict)
        assert not loaded._state.adding
    assert row_load(models.ChainTransaction, "signature", "nothing") is None


def test_an_update_writes_what_the_orm_writes() -> None:
    pool = models.Pool.objects.filter(venue="meteora").first()
    values = {
        "reserve_a": 123_456_789_012_345_678_901_234,  # past 64 bits: NUMERIC(40, 0)
        "reserve_b": 7,
        "bins": [[1, 2, 3], [4, 5, 6]],
        "updated_at": timezone.now(),
    }
    assert row_update(models.Pool, pool.pk, values) == 1
    ours = models.Pool.objects.values(*values).get(pk=pool.pk)
    models.Pool.objects.filter(pk=pool.pk).update(**values)
    assert models.Pool.objects.values(*values).get(pk=pool.pk) == ours
    assert row_update(models.Pool, -1, values) == 0


def test_a_save_runs_auto_now_and_fails_on_a_missing_row() -> None:
    tx = _build("rows-4:1")
    transaction_send(tx)
    row = models.ChainTransaction.objects.get(signature=tx.signature)
    before = row.updated_at
    row.error_message = "noted"
    row_save(row, ["error_message", "updated_at"])
    stored = models.ChainTransaction.objects.get(pk=row.pk)
    assert stored.error_message == "noted" and stored.updated_at == row.updated_at > before
    row.pk = -1
    with pytest.raises(DatabaseError):
        row_save(row, ["error_message"])


def test_an_insert_applies_defaults_and_can_leave_an_existing_row_alone() -> None:
    lands_at = timezone.now() + timedelta(seconds=5)
    row = models.ChainTransaction(signature="sig-a", reference="ref-a", tx={}, lands_at=lands_at)
    assert row_insert(row, unless_exists="signature") is True
    assert row.pk is not None and not row._state.adding
    stored = models.ChainTransaction.objects.get(pk=row.pk)
    assert (stored.state, stored.error_code, stored.amount_out) == ("pending", "", None)
    assert stored.created_at == row.created_at
    clash = models.ChainTransaction(signature="sig-a", reference="ref-b", tx={}, lands_at=lands_at)
    assert row_insert(clash, unless_exists="signature") is False
    assert clash.pk is None
    assert models.ChainTransaction.objects.get(signature="sig-a").reference == "ref-a"


def test_a_value_too_long_for_its_column_is_refused_not_cut() -> None:
    """`rows_save` casts its VALUES to the column's type without its length: a value too long
    fails as it would written alone (an explicit `::varchar(32)` cut it silently)."""
    lands_at = timezone.now() + timedelta(seconds=5)
    rows = [
        models.ChainTransaction(
            signature=f"long-{i}", reference=f"long-{i}", tx={}, lands_at=lands_at
        )
        for i in range(2)
    ]
    rows_insert(rows, key="signature")
    rows[0].error_code = "x" * 40  # the column holds 32
    with pytest.raises(DataError), transaction.atomic():
        rows_save(rows, ["error_code"])
    assert models.ChainTransaction.objects.filter(error_code__startswith="x").count() == 0
