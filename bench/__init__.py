"""The benchmark: an asynchronous load generator that drives a running engine over HTTP and
WebSocket and reports what a client sees (latencies, throughput, lost orders, seq gaps) and what
the engine's processes spent (CPU seconds, peak memory).

It starts nothing itself. `python -m bench.serve` is the documented way to start an engine with
a scenario's settings on a dedicated database; `python -m bench <scenario>` drives whatever
listens on `--url`.
"""
