"""Django's PostgreSQL backend (psycopg 3), unchanged but for how a JSONField's value becomes the
JSON text PostgreSQL stores: `config.fastjson` (orjson) instead of `json.dumps`. Every JSON column
write goes through `adapt_json_value`, the ORM's and `config.sql`'s alike. A JSONField with an
`encoder` of its own (none in this project) keeps Django's `json.dumps(cls=encoder)`.

PostgreSQL stores `jsonb` in its own form, so the stored values are those `json.dumps` gave:
only the text sent differs (no spaces after separators)."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, operations
from psycopg.types.json import Jsonb

from config.fastjson import dumpb


class DatabaseOperations(operations.DatabaseOperations):
    def adapt_json_value(self, value: Any, encoder: Any) -> Any:
        if encoder is not None:
            return super().adapt_json_value(value, encoder)
        return Jsonb(value, dumps=dumpb)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
