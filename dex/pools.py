"""Pools as the venues' math sees them: immutable in-memory snapshots of `dex.models.Pool` rows,
and the one place that writes a pool's new state back. Used by the router (read), the chain
(landing a swap) and the drift (rebalancing)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from config.sql import require_transaction, row_update
from dex import meteora, models

_FIELDS = (
    "id",
    "address",
    "venue",
    "token_a__symbol",
    "token_b__symbol",
    "reserve_a",
    "reserve_b",
    "fee_rate",
    "bin_step",
    "base_factor",
    "filter_period",
    "decay_period",
    "reduction_factor",
    "variable_fee_control",
    "max_volatility_accumulator",
    "active_id",
    "bins",
    "volatility_accumulator",
    "volatility_reference",
    "index_reference",
    "last_swap_ts",
    "spread_bps",
)


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    id: int
    address: str
    venue: str
    symbol_a: str
    symbol_b: str
    reserve_a: int
    reserve_b: int
    fee_rate: int  # Raydium, per 1 000 000
    dlmm: meteora.PoolState | None  # Meteora only
    spread_bps: int = 0

    def other(self, symbol: str) -> str:
        return self.symbol_b if symbol == self.symbol_a else self.symbol_a


def snapshot_from_values(row: dict[str, Any]) -> PoolSnapshot:
    dlmm = None
    if row["venue"] == models.Pool.Venue.METEORA:
        bins = {int(i): (int(x), int(y)) for i, x, y in row["bins"]}
        dlmm = meteora.PoolState(
            params=meteora.FeeParams(
                bin_step=row["bin_step"],
                base_factor=row["base_factor"],
                filter_period=row["filter_period"],
                decay_period=row["decay_period"],
                reduction_factor=row["reduction_factor"],
                variable_fee_control=row["variable_fee_control"],
                max_volatility_accumulator=row["max_volatility_accumulator"],
            ),
            active_id=row["active_id"],
            bins=bins,
            volatility_accumulator=row["volatility_accumulator"],
            volatility_reference=row["volatility_reference"],
            index_reference=row["index_reference"],
            last_update=row["last_swap_ts"],
            bin_ids=tuple(int(b[0]) for b in row["bins"]),  # stored sorted
        )
    return PoolSnapshot(
        id=row["id"],
        address=row["address"],
        venue=row["venue"],
        symbol_a=row["token_a__symbol"],
        symbol_b=row["token_b__symbol"],
        reserve_a=int(row["reserve_a"]),
        reserve_b=int(row["reserve_b"]),
        fee_rate=row["fee_rate"],
        dlmm=dlmm,
        spread_bps=row["spread_bps"],
    )


def pools_among(symbols: Iterable[str], *, lock: bool = False) -> list[PoolSnapshot]:
    """Every pool whose two tokens are both in `symbols`, in one query (ordered by id, which
    is also the lock order)."""
    symbols = sorted(set(symbols))
    return _load_cached(
        ("among", len(symbols), lock),
        lambda: models.Pool.objects.filter(
            token_a__symbol__in=symbols, token_b__symbol__in=symbols
        ),
        [*symbols, *symbols],
        lock=lock,
    )


def pools_by_address(addresses: Iterable[str], *, lock: bool = False) -> list[PoolSnapshot]:
    """Pools by address, ordered by id; `lock` takes their row locks in that order, so two
    landings that touch the same pools can never deadlock."""
    addresses = sorted(set(addresses))
    return _load_cached(
        ("address", len(addresses), lock),
        lambda: models.Pool.objects.filter(address__in=addresses),
        addresses,
        lock=lock,
    )


def pools_of_pair(token_a_id: int, token_b_id: int, *, lock: bool = False) -> list[PoolSnapshot]:
    """The pools of one pair as stored (token_a, token_b), ordered by id."""
    return _load(
        models.Pool.objects.filter(token_a_id=token_a_id, token_b_id=token_b_id), lock=lock
    )


def pools_for_pairs(pairs: Iterable[tuple[str, str]]) -> list[PoolSnapshot]:
    """Pools for explicit pairs (either orientation), one query."""
    condition = Q(pk__in=[])
    for a, b in set(pairs):
        condition |= Q(token_a__symbol=a, token_b__symbol=b) | Q(
            token_a__symbol=b, token_b__symbol=a
        )
    return _load(models.Pool.objects.filter(condition), lock=False)


def _values(qs: Any, *, lock: bool) -> Any:
    """The pools' values in id order (the lock order), row-locked with `lock`."""
    qs = qs.order_by("id")
    if lock:
        qs = qs.select_for_update(of=("self",))
    return qs.values(*_FIELDS)


def _load(qs: Any, *, lock: bool) -> list[PoolSnapshot]:
    return [snapshot_from_values(row) for row in _values(qs, lock=lock)]


#: SQL the ORM compiled for a query shape, kept: the router and every landing load pools, and
#: compiling the same join each time cost more CPU than PostgreSQL spent answering it.
_compiled: dict[tuple[Any, ...], str | None] = {}


def _load_cached(
    shape: tuple[Any, ...], queryset: Callable[[], Any], params: list[Any], *, lock: bool
) -> list[PoolSnapshot]:
    """`_load(queryset())`, with the SQL compiled once per shape. The first call compiles it and
    checks that its parameters are exactly `params` in that order; if they are not (another
    Django version), that shape simply keeps going through the ORM."""
    sql = _compiled.get(shape, "")
    if sql == "":
        compiled, compiled_params = _values(queryset(), lock=lock).query.sql_with_params()
        sql = compiled if list(compiled_params) == params else None
        _compiled[shape] = sql
    if sql is None:
        return _load(queryset(), lock=lock)
    if lock:
        require_transaction(transaction.get_connection())
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    snapshots = []
    for row in rows:
        values = dict(zip(_FIELDS, row, strict=True))
        if isinstance(values["bins"], str):
            values["bins"] = json.loads(values["bins"])
        snapshots.append(snapshot_from_values(values))
    return snapshots


def pool_save(
    snapshot: PoolSnapshot,
    *,
    reserve_a: int,
    reserve_b: int,
    dlmm: meteora.PoolState | None,
    spread_bps: int | None = None,
) -> None:
    """Write a pool's new state in one UPDATE (the caller holds its row lock), without the
    ORM's query compilation (config.sql): every landing writes its pools."""
    fields: dict[str, Any] = {
        "reserve_a": reserve_a,
        "reserve_b": reserve_b,
        "updated_at": timezone.now(),  # update() skips auto_now
    }
    if spread_bps is not None:
        fields["spread_bps"] = spread_bps
    if dlmm is not None:
        fields.update(
            active_id=dlmm.active_id,
            bins=[[i, dlmm.bins[i][0], dlmm.bins[i][1]] for i in sorted(dlmm.bins)],
            volatility_accumulator=dlmm.volatility_accumulator,
            volatility_reference=dlmm.volatility_reference,
            index_reference=dlmm.index_reference,
            last_swap_ts=dlmm.last_update,
        )
    row_update(models.Pool, snapshot.id, fields)


def pools_reset_to_seed(*, drop_others: bool = True) -> None:
    """Put every seed pool, token and external price back as the data migration left them
    (tests call this; so can an operator). `drop_others` removes pools created since."""
    from dex.seed import SEED_PAIRS, pool_address, seed_market

    if drop_others:
        seeded = {
            pool_address(venue, a, b) for a, b, venues, _ in SEED_PAIRS for venue, _, _ in venues
        }
        models.Pool.objects.exclude(address__in=seeded).delete()
    seed_market(models.Token, models.Pool, models.PairPrice)
