"""The statements the ORM would run for the hottest rows, without its query compilation.

The engine's orders (`engine.rows`) and the simulated chain's transactions and pools
(`dex.chain`, `dex.pools`) are loaded, updated and inserted several times per order, and
compiling each query through the ORM cost more CPU than PostgreSQL spent answering it. A load
here runs the SQL the ORM compiled once for its shape (model, field, lock); an UPDATE or INSERT
is written directly. Every value still goes through its field's own `get_db_prep_save` (and
`pre_save` where a save would call it: `auto_now`, defaults), and a load runs the fields' own
converters, so what is written and read is exactly what the ORM would write and read. No model
signals are sent: these models have no receivers, and must not get any.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model


def db_values(
    instance: Model, fields: Iterable[Field], connection: BaseDatabaseWrapper, *, add: bool = False
) -> list[Any]:
    """The instance's values for `fields` as the database takes them (`add`: run each field's
    `pre_save` first, as an INSERT through the ORM does: defaults, auto_now_add)."""
    return [
        f.get_db_prep_save(
            f.pre_save(instance, add) if add else getattr(instance, f.attname), connection
        )
        for f in fields
    ]


def column_list(fields: Iterable[Field], connection: BaseDatabaseWrapper) -> str:
    return ", ".join(connection.ops.quote_name(f.column) for f in fields)


def placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


#: A statement's own reading of the clock, taken by PostgreSQL as it runs the statement: `WITH
#: {CLOCK_CTE}, …`, then `{CLOCK}` wherever a row it writes takes that time. Read once per
#: statement (a CTE calling a volatile function is evaluated once), so every row gets the same
#: time, and read after the parameters are built, sent, parsed and bound: an event's timestamp
#: says when it was written, as close to its commit as the engine can read the time.
CLOCK_CTE = "clock AS (SELECT clock_timestamp() AS t)"
CLOCK = "(SELECT t FROM clock)"


def mark_saved(instances: Iterable[Model], connection: BaseDatabaseWrapper) -> None:
    """What the ORM records on an instance it has written."""
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias


def require_transaction(connection: BaseDatabaseWrapper) -> None:
    """What `select_for_update()` says outside a transaction: a row lock that ends with its own
    statement is no lock."""
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "select_for_update cannot be used outside of a transaction."
        )


# --- loading one row -----------------------------------------------------------------------------

#: (model, field name, lock) → (SQL, attribute names, converters by column) as the ORM compiled
#: `model.objects.filter(<field>=…)` (with `select_for_update()` when locking), or None where its
#: parameters were not just the value (another Django version): that shape keeps using the ORM.
_loads: dict[tuple[type[Model], str, bool], tuple[str, list[str], list[Any]] | None] = {}


def row_load(model: type[Model], field: str, value: Any, *, lock: bool = False) -> Any:
    """`model.objects.filter(<field>=value).first()` (`select_for_update()` with `lock`, inside
    the caller's transaction) without compiling the query again. `field` is unique."""
    connection = transaction.get_connection()
    compiled = _compiled_load(model, field, value, lock)
    if compiled is None:
        return _queryset(model, field, value, lock).first()
    if lock:
        require_transaction(connection)
    sql, names, converters = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, [_target(model, field).get_db_prep_value(value, connection)])
        row = cursor.fetchone()
    return None if row is None else _instance(model, names, converters, row, connection)


#: `rows_load`'s statement per (model, field, lock), written on its first use.
_many_loads: dict[tuple[type[Model], str, bool], str] = {}


def rows_load(
    model: type[Model], field: str, values: list[Any], *, lock: bool = False
) -> list[Any]:
    """`model.objects.filter(<field>__in=values).order_by(<field>)` (`select_for_update()` with
    `lock`: the rows locked in that order) in one statement whatever the number of values
    (`= ANY(%s)`), with the columns and converters `row_load` compiled. `field` is unique."""
    if not values:
        return []
    connection = transaction.get_connection()
    compiled = _compiled_load(model, field, values[0], lock)
    if compiled is None:
        rows = _queryset(model, field, values, lock, many=True).order_by(field)
        return list(rows)
    if lock:
        require_transaction(connection)
    _, names, converters = compiled
    target = _target(model, field)
    key = (model, field, lock)
    sql = _many_loads.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in model._meta.concrete_fields)
        sql = _many_loads[key] = (
            f"SELECT {columns} FROM {quote(model._meta.db_table)} "
            f"WHERE {quote(target.column)} = ANY(%s) ORDER BY {quote(target.column)}"
            + (" FOR UPDATE" if lock else "")
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[target.get_db_prep_value(v, connection) for v in values]])
        rows = cursor.fetchall()
    return [_instance(model, names, converters, row, connection) for row in rows]


def _target(model: type[Model], field: str) -> Field:
    return model._meta.pk if field == "pk" else model._meta.get_field(field)


def _queryset(model: type[Model], field: str, value: Any, lock: bool, *, many: bool = False) -> Any:
    rows = model._default_manager.filter(**{f"{field}__in" if many else field: value})
    return rows.select_for_update() if lock else rows


def _compiled_load(
    model: type[Model], field: str, value: Any, lock: bool
) -> tuple[str, list[str], list[Any]] | None:
    """The entry of `_loads` for the shape, compiled on its first use (`value`: any value)."""
    key = (model, field, lock)
    if key not in _loads:
        connection = transaction.get_connection()
        compiler = _queryset(model, field, value, lock).query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()  # select_for_update outside a transaction raises here
        names = [col.target.attname for col, _, _ in compiler.select]
        exact = list(params) == [
            _target(model, field).get_db_prep_value(value, connection)
        ] and names == [f.attname for f in model._meta.concrete_fields]
        converters = [
            (pos, convs, expr)
            for pos, (convs, expr) in compiler.get_converters(
                [col for col, _, _ in compiler.select]
            ).items()
        ]
        _loads[key] = (sql, names, converters) if exact else None
    return _loads[key]


def _instance(
    model: type[Model], names: list[str], converters: list[Any], row: Any, connection: Any
) -> Any:
    values = list(row)
    for pos, convs, expr in converters:
        for convert in convs:
            values[pos] = convert(values[pos], expr, connection)
    return model.from_db(connection.alias, names, values)


# --- writing one row -----------------------------------------------------------------------------


def row_update(model: type[Model], pk: Any, values: dict[str, Any]) -> int:
    """`model.objects.filter(pk=pk).update(**values)` for plain values (no expressions): one
    UPDATE, its SQL built once per set of columns. Returns the number of rows updated."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in values]
    sql = (
        f"UPDATE {quote(model._meta.db_table)} "
        f"SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
        f"WHERE {quote(model._meta.pk.column)} = %s"
    )
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    params.append(model._meta.pk.get_db_prep_value(pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def values_update(
    model: type[Model],
    fields: list[Field],
    rows: list[tuple[Any, list[Any]]],
    connection: Any,
    *,
    expressions: dict[Field, str] | None = None,
) -> tuple[str, list[Any]]:
    """An UPDATE of many rows in one statement, each with its own values for `fields`:
    `UPDATE t SET c = v.c … FROM (VALUES (pk, c, …), …) AS v WHERE t.pk = v.pk`. `rows` are
    (pk, values as the database takes them); each VALUES column is cast to its field's type,
    which PostgreSQL cannot infer there, without the type's modifier (`varchar`, `numeric`):
    the column's own length and scale then apply on assignment, as for a value written alone
    (an explicit `::varchar(32)` would cut a longer string silently). `expressions` set further
    columns to one SQL expression for every row (`{updated_at: CLOCK}`). Returns the SQL and its
    parameters (a statement of its own, or a CTE of a bigger one)."""
    quote = connection.ops.quote_name
    pk = model._meta.pk
    columns = [pk, *fields]
    casts = ", ".join(f"%s::{_type_of(f, connection)}" for f in columns)
    names = [f"v{index}" for index in range(len(columns))]
    sets = ", ".join(
        [f"{quote(f.column)} = v.{n}" for f, n in zip(fields, names[1:], strict=True)]
        + [f"{quote(f.column)} = {sql}" for f, sql in (expressions or {}).items()]
    )
    sql = (
        f"UPDATE {quote(model._meta.db_table)} AS t SET {sets} "
        f"FROM (VALUES {', '.join([f'({casts})'] * len(rows))}) AS v ({', '.join(names)}) "
        f"WHERE t.{quote(pk.column)} = v.{names[0]}"
    )
    params: list[Any] = []
    for key, values in rows:
        params += [pk.get_db_prep_value(key, connection), *values]
    return sql, params


def _type_of(field: Field, connection: BaseDatabaseWrapper) -> str:
    """The field's column type without its modifier: `varchar(16)` → `varchar`."""
    db_type = field.db_type(connection)
    if db_type is None:
        raise TypeError(f"{field} has no column type")
    return db_type.split("(", 1)[0].strip()


def rows_save(instances: list[Model], update_fields: Iterable[str]) -> None:
    """`row_save` for many instances of one model: one UPDATE for all of them."""
    if len(instances) == 1:
        row_save(instances[0], update_fields)
        return
    connection = transaction.get_connection()
    model = type(instances[0])
    fields = [model._meta.get_field(name) for name in update_fields]
    rows = [
        (i.pk, [f.get_db_prep_save(f.pre_save(i, False), connection) for f in fields])
        for i in instances
    ]
    sql, params = values_update(model, fields, rows, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != len(instances):
            raise DatabaseError("Save with update_fields did not affect every row.")


def row_save(instance: Model, update_fields: Iterable[str]) -> None:
    """`instance.save(update_fields=...)`: each field's `pre_save` (auto_now) and then one
    UPDATE of those columns; like the ORM, an update that finds no row is an error."""
    fields = [instance._meta.get_field(name) for name in update_fields]
    values = {f.name: f.pre_save(instance, False) for f in fields}
    if row_update(type(instance), instance.pk, values) != 1:
        raise DatabaseError("Save with update_fields did not affect any rows.")


def row_insert(instance: Model, *, unless_exists: str | None = None) -> bool:
    """`instance.save()` of a new row, as one INSERT returning its id: defaults and
    `auto_now_add` applied by the fields as the ORM applies them. With `unless_exists` (a
    unique field), a row already holding that value is left alone and nothing is inserted
    (`ON CONFLICT … DO NOTHING`): returns whether the row was inserted."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    meta = instance._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk or f.has_default()]
    conflict = (
        f" ON CONFLICT ({quote(meta.get_field(unless_exists).column)}) DO NOTHING"
        if unless_exists
        else ""
    )
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({column_list(fields, connection)}) "
        f"VALUES ({placeholders(len(fields))}){conflict} RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, db_values(instance, fields, connection, add=True))
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    mark_saved([instance], connection)
    return True


def rows_insert(instances: list[Model], *, key: str) -> list[Model]:
    """`row_insert` for several new rows of one model in one INSERT that skips any row clashing
    with one already stored (`ON CONFLICT DO NOTHING`, on any unique column). Returns the
    instances inserted, told apart by `key`, a unique field; the others are left unsaved."""
    if not instances:
        return []
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    meta = instances[0]._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk or f.has_default()]
    unique = meta.get_field(key)
    row = f"({placeholders(len(fields))})"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({column_list(fields, connection)}) "
        f"VALUES {', '.join([row] * len(instances))} ON CONFLICT DO NOTHING "
        f"RETURNING {quote(meta.pk.column)}, {quote(unique.column)}"
    )
    params = [v for i in instances for v in db_values(i, fields, connection, add=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = dict((value, pk) for pk, value in cursor.fetchall())
    inserted = [i for i in instances if getattr(i, unique.attname) in ids]
    for instance in inserted:
        instance.pk = ids[getattr(instance, unique.attname)]
    mark_saved(inserted, connection)
    return inserted
