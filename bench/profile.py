"""Where the engine's CPU goes during a run: `py-spy record` attached to the web process and to
the worker (with its pool children) while the scenario drives them (`--profile`), then the
collapsed stacks summarised per order: by engine step (inclusive) and by library (self time).

py-spy samples only threads holding the GIL (`--gil`: waiting on PostgreSQL or Redis releases
it), so samples / rate approximates the Python CPU time. `--nonblocking`: the engine is not
paused to be sampled.
Also usable alone: `python -m bench.profile bench/results/profile/capacity-worker.txt --orders N`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PROFILE_DIR = Path(__file__).resolve().parent / "results" / "profile"

#: Engine steps and the costs the issue asks about, matched inclusively (any frame of a stack).
#: (label, function name or None, path fragment)
STEPS: tuple[tuple[str, str | None, str], ...] = (
    ("HTTP: POST view (all)", "post", "orders/views.py"),
    ("  request validation (serializer)", "is_valid", "rest_framework/serializers.py"),
    ("  order_submit (service)", "order_submit", "engine/services.py"),
    ("    routability check (market_load + route)", "_check_routable", "engine/services.py"),
    ("  response body (order_to_dict + events query)", "order_response", "orders/views.py"),
    ("  rate limit check", "enforce_rate_limit", "orders/views.py"),
    ("HTTP: GET order", "get", "orders/views.py"),
    ("task: order_execute (all steps)", "order_execute", "engine/pipeline.py"),
    ("  route + build + submit (one transaction)", "_prepare", "engine/pipeline.py"),
    ("  step routing (quote all venues + commit)", "_route", "engine/pipeline.py"),
    ("    route_best (venue math)", "route_best", "dex/router.py"),
    ("  step building (build tx + commit)", "_build", "engine/pipeline.py"),
    ("    transaction_build", "transaction_build", "dex/chain.py"),
    ("      priority_fee_market (COUNT query)", "priority_fee_market", "dex/chain.py"),
    ("  step submitted (commit)", "_submit", "engine/pipeline.py"),
    ("  send", "attempt_send", "engine/pipeline.py"),
    ("  step settle (land + confirm)", "_settle", "engine/pipeline.py"),
    ("    transaction_send", "transaction_send", "dex/chain.py"),
    ("    signature_status (land: pools locked)", "signature_status", "dex/chain.py"),
    ("  re-reading the order between steps", "first", "django/db/models/query.py"),
    ("task: orders executed together (engine.lockstep)", "orders_start", "engine/lockstep.py"),
    ("  route all on one market load, build each", "_plan", "engine/lockstep.py"),
    ("  routing, building, submitted for all (one transaction)", "_submit", "engine/lockstep.py"),
    ("  send all (one INSERT)", "transactions_send", "dex/chain.py"),
    ("  land and confirm all (one transaction)", "_settle", "engine/lockstep.py"),
    ("order_transition (save + event row)", "order_transition", "engine/transitions.py"),
    (
        "order_transitions (batched: save + event rows)",
        "order_transitions",
        "engine/transitions.py",
    ),
    ("  wire/snapshot serialisation", None, "engine/wire.py"),
    ("after-commit publish (events_publish)", "events_publish", "engine/events.py"),
    ("channel layer (channels_redis, any thread)", None, "channels_redis/"),
    ("order cache write (Redis)", "orders_cache_store", "engine/cache.py"),
    ("Celery task dispatch (apply_async)", "apply_async", "celery/app/task.py"),
    ("Celery/kombu/billiard outside the task body", None, "/celery/"),
    ("Django: Model.save", "save", "django/db/models/base.py"),
    ("Django: SQL compilation (as_sql)", "as_sql", "django/db/models/sql/compiler.py"),
    ("Django: model instances from rows", "from_db", "django/db/models/base.py"),
    ("Django: cursor execute (incl. psycopg)", "execute", "django/db/backends/utils.py"),
    ("Django: commit", "commit", "django/db/backends/base/base.py"),
    ("Django: opening a database connection", "connect", "django/db/backends/base/base.py"),
    ("Django: close_old_connections", "close_old_connections", "django/db/__init__.py"),
    ("JSON encode/decode", None, "/json/"),
    ("logging", None, "/logging/"),
    ("WebSocket consumers", None, "orders/consumers.py"),
    ("daphne / twisted / autobahn", None, "/daphne/"),
    ("asgiref sync_to_async hops", None, "asgiref/sync.py"),
)

#: Labels that count only samples outside `order_execute` and `orders_start` (the task body runs
#: under Celery's frames, so "inside Celery" would otherwise be everything).
OUTSIDE_TASK = frozenset({"Celery/kombu/billiard outside the task body"})

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame.strip())
        if match:
            out.append((match.group("func"), match.group("file")))
        else:
            out.append((frame.strip(), ""))
    return out


def _library(path: str, func: str) -> str:
    if not path:
        return "native / process" if func.startswith("process ") else f"<{func[:30]}>"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for app in ("engine", "orders", "dex", "config", "bench"):
        if f"/{app}/" in path or path.startswith(f"{app}/"):
            return f"project: {app}"
    match = re.search(r"/lib/python3\.\d+/([^/]+)", path)
    if match:
        return f"stdlib: {match.group(1).removesuffix('.py')}"
    return path.rsplit("/", 1)[-1]


def summarise(
    path: Path, *, rate: int, orders: int, measured_cpu: float | None = None
) -> dict[str, Any]:
    """Collapsed stacks → CPU ms per order per engine step (inclusive) and per library (self).

    On a machine with more runnable threads than cores, py-spy also samples threads that are
    ready but waiting for a core, so samples / rate overstates CPU. With `measured_cpu` (the
    process's CPU seconds from the kernel over the same window) every figure is scaled so that
    they add up to it: the profile gives the shares, the kernel the total."""
    steps: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)
        in_task = any(fn in {"order_execute", "orders_start"} for fn, _ in frames)
        for label, func, fragment in STEPS:
            if label in OUTSIDE_TASK and in_task:
                continue
            if any(fragment in f and (func is None or fn == func) for fn, f in frames):
                steps[label] += count
        leaf_func, leaf_file = frames[-1] if frames else ("?", "")
        libraries[_library(leaf_file, leaf_func)] += count

    sampled = total / rate
    scale = measured_cpu / sampled if measured_cpu and sampled else 1.0

    def ms(samples: int) -> float | None:
        return round(samples * scale * 1000 / rate / orders, 3) if orders else None

    return {
        "file": str(path),
        "samples": total,
        "cpu_seconds_sampled": round(sampled, 2),
        "cpu_seconds_measured": round(measured_cpu, 2) if measured_cpu else None,
        "scaled_to_measured": scale != 1.0,
        "cpu_ms_per_order": ms(total),
        "steps_inclusive_ms_per_order": {k: ms(v) for k, v in steps.most_common() if v},
        "libraries_self_ms_per_order": {k: ms(v) for k, v in libraries.most_common(25)},
    }


class Profiler:
    """py-spy record on the web process and on the worker (children included)."""

    def __init__(self, engine: Any, *, name: str, rate: int = 200) -> None:
        self.engine = engine
        self.name = name
        self.rate = rate
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def _py_spy(self) -> str:
        found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.path.exists(found):
            raise SystemExit("py-spy is not installed: uv sync (it is a dev dependency)")
        return found

    def start(self) -> None:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        targets = {"web": (self.engine.web, False)}
        if self.engine.worker is not None:
            targets["worker"] = (self.engine.worker, True)
        for role, (proc, children) in targets.items():
            out = PROFILE_DIR / f"{self.name}-{role}.txt"
            args = [
                self._py_spy(),
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                "--full-filenames",
                # Only threads holding the GIL: a thread waiting on PostgreSQL or Redis has
                # released it, so the samples are the Python CPU the process spends.
                "--gil",
            ]
            if children:
                args.append("--subprocesses")
            self.procs[role] = (
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                out,
            )

    async def stop(self) -> None:
        for proc, _ in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for role, (proc, _) in self.procs.items():
            try:
                await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                print(f"py-spy for {role} did not stop; killed", file=sys.stderr)

    def report(self, orders: int, measured: dict[str, float] | None = None) -> dict[str, Any]:
        """`measured`: CPU seconds per role from the sampler, to scale the profiles by."""
        out: dict[str, Any] = {"rate_hz": self.rate}
        for role, (proc, path) in self.procs.items():
            if not path.exists():
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                out[role] = {"error": f"no profile written: {err.strip()[:300]}"}
                continue
            cpu = (measured or {}).get(role)
            out[role] = summarise(path, rate=self.rate, orders=orders, measured_cpu=cpu)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument(
        "--cpu", type=float, action="append", help="measured CPU seconds, one per file, to scale"
    )
    args = parser.parse_args()
    for i, path in enumerate(args.files):
        cpu = args.cpu[i] if args.cpu and i < len(args.cpu) else None
        report = summarise(path, rate=args.rate, orders=args.orders, measured_cpu=cpu)
        print(f"\n{path}: {report['cpu_ms_per_order']} ms of CPU per order")
        print("  by step (inclusive):")
        for label, value in report["steps_inclusive_ms_per_order"].items():
            print(f"    {value:8.3f}  {label}")
        print("  by library (self):")
        for label, value in report["libraries_self_ms_per_order"].items():
            print(f"    {value:8.3f}  {label}")


if __name__ == "__main__":
    main()
