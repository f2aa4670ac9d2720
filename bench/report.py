"""Writing a result: `<scenario>.json` (everything, distributions as percentile ladders),
`<scenario>.md` (the tables the README shows) and `<scenario>.png` (the latency distributions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import ladder

RESULTS = Path(__file__).resolve().parent / "results"


def write(result: dict[str, Any], *, name: str, command: str, out: Path = RESULTS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    dist = result.pop("_distributions", {})
    result["command"] = command
    result["distributions_percentiles"] = {k: ladder(v) for k, v in dist.items()}
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    paths[0].write_text(json.dumps(result, indent=2, default=str) + "\n")
    paths[1].write_text(markdown(result))
    plot(dist, paths[2], title=f"{name}: {result.get('started_at', '')}")
    return paths


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def _latency_row(label: str, s: dict[str, Any] | None) -> str:
    if not s or not s.get("count"):
        return f"| {label} | n/a | n/a | n/a | n/a | n/a | 0 |"
    cells = [_fmt(s[k]) for k in ("p50", "p95", "p99", "max", "mean")]
    return f"| {label} | " + " | ".join(cells) + f" | {s['count']:,} |"


def markdown(r: dict[str, Any]) -> str:
    m = r["metrics"]
    lines = [f"## Benchmark `{r['scenario']}` — {r['started_at']}", ""]
    lines.append(f"`{r['command']}`")
    lines.append("")
    mach = r["machine"]
    lines.append(
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gb']} GB, "
        f"Linux {mach['kernel']}, Python {mach['python']}; load average at start "
        f"{', '.join(str(x) for x in mach['load_average_at_start'])}. "
        f"Engine: {json.dumps(r['engine']['settings'])}."
    )
    lines.append("")
    lines.append(f"Load: {json.dumps(r['load'])}.")
    lines.append("")
    repeats = r.get("repeats")
    if repeats:
        lines.append(
            f"{repeats['runs']} runs against the same engine, one after another (started "
            f"{', '.join(str(s) for s in repeats['started_at'])}). Speed is judged on the median "
            "run (the worse middle one of an even number), what must always hold on the worst "
            f"run; the tables below the targets are run {repeats['shown']}'s, the median run."
        )
        lines.append("")
    if r.get("targets"):
        lines += ["| target | measured | goal | |", "|---|---:|---:|:---:|"]
        for t in r["targets"]:
            mark = {True: "✅", False: "❌", None: "n/a"}[t["ok"]]
            measured = _fmt(t["value"], t["unit"])
            if "runs" in t:
                how = "median" if t["judge"] == "median" else "worst"
                each = " / ".join(_fmt(v) for v in t["runs"])
                measured += f" ({how} of {each})"
            lines.append(
                f"| {t['name']} | {measured} | {t['op']} {_fmt(t['goal'], t['unit'])} | {mark} |"
            )
        lines.append("")
    lines += [
        "| latency (ms) | p50 | p95 | p99 | max | mean | n |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _latency_row("submission answered (from when it was due)", m.get("submit_latency_ms")),
    ]
    for name, d in (m.get("deliveries") or {}).items():
        lines.append(_latency_row(f"WebSocket delivery, {name} (commit → client)", d["latency_ms"]))
    lines.append(
        _latency_row("submission → final update, client", m.get("submission_to_final_client_ms"))
    )
    lines.append(
        _latency_row("pending → final, server timestamps", m.get("submission_to_final_server_ms"))
    )
    lines.append("")
    t = m["throughput"]
    lines.append(
        f"Orders: {m['submitted']:,} submitted, {m['accepted']:,} accepted, {m['final']:,} final "
        f"{json.dumps(m['final_statuses'])}, {m['lost']} lost, {m['retried_attempts']} retried "
        f"attempts; refused {json.dumps(m['refused'])}. Throughput (event timestamps): "
        f"{_fmt(t['orders_per_second'])} orders/s = {_fmt(t['orders_per_minute'])} orders/min over "
        f"{_fmt(t['window_seconds'])} s; steady (10-90 %) {_fmt(t['steady_orders_per_second'])}/s "
        f"= {_fmt(t['steady_orders_per_minute'])}/min; new orders started "
        f"{_fmt(t['new_orders_started_per_minute'])}/min. Most executing at once: "
        f"{m['max_executing_at_once']}."
    )
    if "deliveries" in m:
        parts = []
        for name, d in m["deliveries"].items():
            part = (
                f"{name}: {d['updates_received']:,} updates, {d['missing']} missing, "
                f"{d['out_of_order']} out of order, {d['duplicates']} twice"
            )
            if d.get("reconnects"):
                part += f", reconnected {len(d['reconnects'])} times after the server closed it"
            by_status = ", ".join(
                f"{status} {_fmt(v['p50'])}/{_fmt(v['p99'])}"
                for status, v in (d.get("latency_ms_by_status") or {}).items()
            )
            if by_status:
                part += f" (p50/p99 ms by status: {by_status})"
            parts.append(part)
        lines.append("")
        lines.append("WebSocket: " + "; ".join(parts) + ".")
    if m.get("finals_found_by_polling"):
        lines.append("")
        lines.append(
            f"{m['finals_found_by_polling']} orders were seen final only by polling the API "
            "(no client received their last update)."
        )
    if "connections" in m:
        c = m["connections"]
        lines.append("")
        lines.append(
            f"Connections: {c['connected']:,} of {c['clients']:,} connected in "
            f"{c['connect_seconds']} s ({c['connects_per_second']}/s), "
            f"{c['still_open_when_all_final']:,} still open when every order was final. "
            f"Web RSS {c['web_rss_mb_before']} MB before, {c['web_rss_mb_connected']} MB "
            f"connected, peak {c['web_rss_mb_peak']} MB: "
            f"**{c['web_kb_per_connection_idle']} KB per idle connection**, "
            f"{c['web_kb_per_connection_peak']} KB at peak."
        )
    lag = m.get("load_generator_loop_lag_ms") or {}
    lines.append("")
    lines.append(
        f"Load generator event-loop lag: p50 {_fmt(lag.get('p50'))} ms, "
        f"p99 {_fmt(lag.get('p99'))} ms, max {_fmt(lag.get('max'))} ms."
    )
    res = r["resources"]
    lines += [
        "",
        "| process | CPU s | CPU ms / order | % of one core | peak RSS MB | processes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, g in res["groups"].items():
        lines.append(
            f"| {name} | {_fmt(g['cpu_seconds'])} | {_fmt(g['cpu_ms_per_order'])} | "
            f"{_fmt(g['cpu_percent_of_one_core'])} | {_fmt(g['peak_rss_mb'])} | {g['processes']} |"
        )
    lines.append(
        f"| **engine total** (web, worker, pool, beat, its PostgreSQL backends) | "
        f"{_fmt(res['engine_cpu_seconds'])} | **{_fmt(res['engine_cpu_ms_per_order'])}** | | | |"
    )
    pg = res["groups"].get("postgres-server (shared, exited backends)")
    if pg and res.get("engine_cpu_ms_per_order") is not None:
        total = res["engine_cpu_ms_per_order"] + (pg["cpu_ms_per_order"] or 0)
        lines.append(
            f"| **engine + PostgreSQL backends that exited during the run** | | "
            f"**{_fmt(total)}** | | | |"
        )
    if res.get("machine"):
        mm = res["machine"]
        lines.append("")
        lines.append(
            f"The whole machine was busy {mm['busy_cpu_seconds']} CPU s over "
            f"{res['wall_seconds']} s ({mm['busy_percent']} % of {mm['cores']} cores), other "
            f"people's work included."
        )
    for role, prof in (r.get("profile") or {}).items():
        if not isinstance(prof, dict) or "steps_inclusive_ms_per_order" not in prof:
            continue
        how = "scaled to the measured CPU" if prof.get("scaled_to_measured") else "as sampled"
        lines += [
            "",
            f"Profile of the {role} (py-spy, {how}): {_fmt(prof['cpu_ms_per_order'])} ms "
            "of CPU per order.",
            "",
            "| step (inclusive) | ms / order | | library (self) | ms / order |",
            "|---|---:|---|---|---:|",
        ]
        steps = list(prof["steps_inclusive_ms_per_order"].items())[:18]
        libs = list(prof["libraries_self_ms_per_order"].items())[:18]
        for i in range(max(len(steps), len(libs))):
            a = steps[i] if i < len(steps) else ("", None)
            b = libs[i] if i < len(libs) else ("", None)
            lines.append(
                f"| {a[0]} | {_fmt(a[1]) if a[0] else ''} | | {b[0]} | "
                f"{_fmt(b[1]) if b[0] else ''} |"
            )
    for note in r.get("notes", []):
        lines.append(f"\nNote: {note}")
    lines.append("")
    return "\n".join(lines)


def plot(dist: dict[str, list[float]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: v for k, v in dist.items() if v}
    if not series:
        return
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 2.6 * len(series)), squeeze=False)
    for ax, (label, values) in zip(axes[:, 0], series.items(), strict=True):
        data = sorted(values)
        n = len(data)
        qs = [(i + 0.5) / n for i in range(n)]
        ax.plot(data, [100 * q for q in qs], lw=1.5)
        ax.set_xscale("log" if data[0] > 0 and data[-1] / max(data[0], 1e-9) > 20 else "linear")
        for q, style in ((50, ":"), (99, "--")):
            value = data[min(int(q / 100 * n), n - 1)]
            ax.axvline(value, ls=style, color="grey", lw=1)
            ax.annotate(f"p{q} {value:.1f}", (value, 8 if q == 50 else 30), fontsize=8)
        ax.set_title(f"{label}  (n={n:,})", fontsize=10)
        ax.set_ylabel("percentile")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
