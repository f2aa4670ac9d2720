"""`python -m bench <scenario> [options]`: drive the engine listening on `--url` and write
bench/results/<scenario>.{json,md,png}.

Start the engine first, with the scenario's settings, for example:
    uv run python -m bench.serve --mode spec        # then: uv run python -m bench spec
    uv run python -m bench.serve --mode capacity    # then: capacity, api, ws, ws-scale
or `API_RATE_LIMIT=0 make run` for the spec scenario (make run's defaults are the spec's, but its
per-client submission limit of 100/minute would refuse 200 of the benchmark's 300 orders, which
all come from one address).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time

from bench import repeat, report
from bench.scenarios import SCENARIOS, Options

PAUSE_BETWEEN_RUNS = 3.0  # seconds: the engine's trailing work (acks, periodic tasks) settles


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument(
        "--url",
        default=os.environ.get("BENCH_URL", "http://127.0.0.1:8000"),
        help="the engine (default $BENCH_URL or http://127.0.0.1:8000); only 127.0.0.1 is allowed",
    )
    p.add_argument("--orders", type=int, help="spec: 300, capacity: 5000")
    p.add_argument("--clients", type=int, help="ws-scale: concurrent clients (10000)")
    p.add_argument(
        "--rate",
        type=float,
        help="submissions per second (api/ws: 100, ws-scale: 200; capacity: 0 = closed loop)",
    )
    p.add_argument("--duration", type=float, help="api/ws: seconds of load (30)")
    p.add_argument("--concurrency", type=int, help="capacity closed loop: requests in flight (32)")
    p.add_argument(
        "--submit",
        choices=("http", "ws"),
        help="spec (default ws), ws (default http): POST, or each order over its own socket",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="capacity, ws: also follow every order on its own /ws/orders/<id> socket",
    )
    p.add_argument("--executing-limit", type=int, help="spec: the worker concurrency (10)")
    p.add_argument("--connect-concurrency", type=int, help="ws-scale: handshakes in flight (32)")
    p.add_argument(
        "--verify",
        choices=("ws", "http"),
        help="read every order back by WebSocket replay (default) or GET /api/orders/<id>",
    )
    p.add_argument(
        "--deliveries",
        metavar="PATH",
        help="also write every update received (commit and arrival times) to PATH as JSON lines",
    )
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the scenario N times, one after another against the same engine, and judge "
        "speed on the median run, correctness on every run (bench.repeat)",
    )
    p.add_argument("--name", help="result file name (default: the scenario)")
    p.add_argument("--profile", action="store_true", help="py-spy the web and worker processes")
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--web-pid", type=int, help="the web process, if it cannot be found")
    p.add_argument("--worker-pid", type=int, help="the Celery worker's main process")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat: at least 1 run")
    if args.repeat > 1 and (args.profile or args.deliveries):
        p.error("--repeat: --profile and --deliveries describe one run; give them without it")
    from urllib.parse import urlparse

    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"refusing to load {host}: the benchmark only drives a local engine", file=sys.stderr)
        return 2
    opts = Options(
        url=args.url.replace("localhost", "127.0.0.1"),
        progress=not args.no_progress and sys.stderr.isatty(),
        timeout=args.timeout,
        web_pid=args.web_pid,
        worker_pid=args.worker_pid,
        profile=args.profile,
        profile_rate=args.profile_rate,
        out_name=args.name,
        extra={
            "orders": args.orders,
            "clients": args.clients,
            "rate": args.rate,
            "duration": args.duration,
            "concurrency": args.concurrency,
            "submit": args.submit,
            "follow": args.follow,
            "executing_limit": args.executing_limit,
            "connect_concurrency": args.connect_concurrency,
            "verify": args.verify,
            "deliveries": args.deliveries,
        },
    )
    runs = []
    for n in range(1, args.repeat + 1):
        if n > 1:
            time.sleep(PAUSE_BETWEEN_RUNS)
        runs.append(asyncio.run(SCENARIOS[args.scenario](opts)))
        if args.repeat > 1:
            told = "; ".join(f"{t['name']} {t['value']}" for t in runs[-1].get("targets", []))
            print(f"run {n} of {args.repeat}: {told}", file=sys.stderr)
    result = repeat.combine(runs)
    command = "uv run python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    paths = report.write(result, name=args.name or args.scenario, command=command)
    print(paths[1].read_text())
    print("written: " + ", ".join(str(p) for p in paths))
    for note in result.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    failed = [t["name"] for t in result.get("targets", []) if t["ok"] is False]
    if failed:
        print("targets missed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
