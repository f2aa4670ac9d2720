"""The Celery app: configured from Django settings (the CELERY_ namespace)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("orderengine")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the database connection after every task unless this is set
# (it reads the literal key): every order then forked a new PostgreSQL backend. Reuse the
# connection for this many tasks (Django's CONN_MAX_AGE and health checks still apply).
app.conf["CELERY_DB_REUSE_MAX"] = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
app.autodiscover_tasks()  # every installed app's tasks.py: engine and dex
