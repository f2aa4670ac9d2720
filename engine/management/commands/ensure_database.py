"""Create the PostgreSQL database named by DATABASE_URL when it does not exist yet."""

from __future__ import annotations

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand
from psycopg import sql


class Command(BaseCommand):
    help = "Create the configured PostgreSQL database if it is missing (used by `make run`)."

    def handle(self, *args: object, **options: object) -> None:
        db = settings.DATABASES["default"]
        params = {
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "connect_timeout": 5,
        }
        params = {k: v for k, v in params.items() if v is not None}
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
            ).fetchone()
            if exists:
                self.stdout.write(f"database {db['NAME']} exists")
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            self.stdout.write(self.style.SUCCESS(f"created database {db['NAME']}"))
