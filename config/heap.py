"""A served process's startup objects, kept out of the garbage collector's full passes.

Once Django, DRF, Channels and Celery are imported, a process holds several hundred thousand
objects that live as long as it does. Every full (oldest-generation) collection of CPython's
cyclic garbage collector walks all of them, and stops every thread of the process while it does:
under `bench api` (100 POST/s) daphne paused for 60-94 ms about every 7 s, each pause holding up
every request and WebSocket delivery in the process, and those pauses were most of the POST p99.

`gc.freeze()` moves every object alive at that moment into a permanent generation that
collections skip. Garbage made later is collected as before, and a frozen object is still freed
as soon as nothing refers to it; only a reference cycle among startup objects would outlive its
use. Frozen in the parent before forking, the pool processes' collections also stop writing to
the pages they share with it (CPython's advice for servers that fork).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def heap_freeze(process: str) -> int:
    """Collect what is already garbage, then freeze the rest; returns how many objects the
    process has frozen in all."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("%s: %d startup objects frozen out of full garbage collections", process, frozen)
    return frozen
