"""The Celery app: configured from Django settings (the CELERY_ namespace)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

from config.broker import use_for_redis_urls

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# redis:// brokers through kombu's Redis transport with one Redis client per channel
use_for_redis_urls()

app = Celery("orderengine")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the database connection after every task unless this is set
# (it reads the literal key): every order then forked a new PostgreSQL backend. Reuse the
# connection for this many tasks (Django's CONN_MAX_AGE and health checks still apply).
app.conf["CELERY_DB_REUSE_MAX"] = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
app.autodiscover_tasks()  # every installed app's tasks.py: engine and dex


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs: object) -> None:
    """What Django does around each request: drop a connection that is broken or past
    CONN_MAX_AGE (the reuse setting above stops Celery's fixup from closing it every task)."""
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect
def _yield_the_cpu_to_the_api(**kwargs: object) -> None:
    """Run the worker (and the pool it forks) at a lower CPU priority, WORKER_NICE (default 10).

    On a machine shared with the web process, a backlog of orders otherwise takes the CPU that
    answering new requests needs: at 100 POST/s on 2 cores with the workers busy, daphne got a
    third of a core and requests queued for tens of seconds. The orders wait in the broker
    instead, where waiting is safe; with the CPU to spare, priority changes nothing."""
    from django.conf import settings

    if settings.WORKER_NICE:
        os.nice(settings.WORKER_NICE)


@worker_init.connect
def _count_the_pool(sender: object = None, **kwargs: object) -> None:
    """Tell engine.lockstep how many pool processes share ORDER_CONCURRENCY: the worker's own
    count (`--concurrency` or WORKER_PROCESSES), read before it forks them."""
    from engine import lockstep

    concurrency = getattr(sender, "concurrency", None)
    if isinstance(concurrency, int) and concurrency > 0:
        lockstep.processes = concurrency


@worker_init.connect
def _freeze_the_worker(**kwargs: object) -> None:
    """The worker's startup objects out of the garbage collector's full passes, before it forks
    its pool (config.heap)."""
    from config.heap import heap_freeze

    heap_freeze("worker")


@worker_init.connect
def _ready_each_pool_process(**kwargs: object) -> None:
    """Connected at worker start, after Celery's Django fixup has connected its own
    worker_process_init handler (which closes the connections a fork inherited), so that the
    warm-up's connection is opened after that, not closed by it."""
    worker_process_init.connect(_ready_the_pool_process, weak=False)


def _ready_the_pool_process(**kwargs: object) -> None:
    """Each pool process, once forked: connected and warmed up before its first task
    (config.warmup), then what it holds frozen out of full garbage collections (config.heap)."""
    from config.heap import heap_freeze
    from config.warmup import pool_warm

    pool_warm()
    heap_freeze("worker pool process")
