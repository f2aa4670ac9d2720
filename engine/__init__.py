"""The work: submitting orders, the state machine, the execution pipeline, Celery tasks, the
limit/sniper watcher, expiry, the reconciler and event publishing."""
