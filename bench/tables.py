"""The tables `python -m bench.run` prints: one per scenario, each row with its target."""

from __future__ import annotations

from typing import Any


def _maybe(value: float | None, form: str) -> str:
    return "run < 60 s" if value is None else form.format(value)


def _holds(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _print_compare(console: Any, row: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"Whole-process sweep, same fresh data ({row['customers']:,} customers, "
        f"{row['latency_ms']:g} ms latency, median of {row['rounds']}, load {row['load_1m']:.2f})"
    )
    for column in ("side", "wall s", "CPU s", "peak RSS MB", "invoices", "groups", "requests",
                   "API calls", "figure", "target", "holds"):  # fmt: skip
        table.add_column(column, justify="right")
    sides = [("ours", "ours", row["ours"])]
    if "ours_processes" in row:  # results written before the second side was measured lack it
        label = f"ours, {row['send_processes']} send processes"
        sides.append((label, "ours_processes", row["ours_processes"]))
    sides.append(("bare loop", "bare", row["bare"]))
    for label, key, side in sides:
        if key == "bare":
            cells: tuple[str, ...] = ("reference", "-", "-")
        else:
            figure = row[f"{key}_over_bare_wall"]
            cells = (f"{figure:.2f}x bare", "<= 1.3x", _holds(figure <= 1.3))
        _side_row(table, label, side, cells)
    if "peer" in row:
        for label, key, _side in sides:
            if key == "bare":
                continue
            speedup = row["speedup_vs_peer" if key == "ours" else f"{key}_speedup_vs_peer"]
            cells = (f"{label}: {speedup:.1f}x faster", ">= 20x", _holds(speedup >= 20))
            _side_row(table, "peer (official client)", row["peer"], cells)
    console.print(table)


def _side_row(table: Any, name: str, side: dict[str, Any], cells: tuple[str, ...]) -> None:
    table.add_row(
        name,
        f"{side['wall_s']:.2f}",
        f"{side['cpu_s']:.2f}",
        f"{side['peak_rss_mb']:.0f}",
        str(side["invoices"]),
        str(side["groups"]),
        str(side["requests"]),
        str(side["api_calls"]),
        *cells,
    )


PHASES = ("list", "decide", "send", "finish")


def _print_phases(console: Any, sweeps: list[dict[str, Any]]) -> None:
    """Where each scale sweep spent its wall and CPU time, phase by phase."""
    from rich.table import Table

    rows = [row for row in sweeps if row.get("phases")]
    if not rows:
        return
    table = Table(title="Scale: wall / CPU seconds per phase (CPU s per 1k invoices listed)")
    table.add_column("invoices", justify="right")
    for phase in PHASES:
        table.add_column(phase, justify="right")
    for row in rows:
        per_1k = 1000 / max(1, row["overdue_invoices"])
        cells = [
            f"{spent['wall_s']:.1f} / {spent['cpu_s']:.1f} ({spent['cpu_s'] * per_1k:.2f})"
            if (spent := row["phases"].get(phase)) is not None
            else "-"
            for phase in PHASES
        ]
        table.add_row(f"{row['invoices']:,}", *cells)
    console.print(table)


def print_tables(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    starts = document.get("cold_start", [])
    if starts:
        table = Table(title="Cold start (fresh processes, interleaved, bytecode cached)")
        for column in ("command", "median s", "min s", "max s", "target s", "holds", "load 1m"):
            table.add_column(column, justify="right")
        for row in starts:
            table.add_row(
                row["command"],
                f"{row['median_wall_s']:.3f}",
                f"{row['min_wall_s']:.3f}",
                f"{row['max_wall_s']:.3f}",
                "-" if row["target_s"] is None else f"<= {row['target_s']:g}",
                _holds(row["holds"]),
                f"{row['load_1m']:.2f}",
            )
        console.print(table)
    compared = document.get("compare")
    if compared:
        _print_compare(console, compared)
    sweeps = document.get("sweep", [])
    if sweeps:
        table = Table(
            title=f"Scale: one sweep per size on PostgreSQL through the HTTP client (latency "
            f"{document['latency_ms']:g} ms, rate limiter off, "
            f"{sweeps[0].get('send_processes', 1)} send process(es))"
        )
        for column in (
            "invoices",
            "overdue",
            "groups",
            "wall s",
            "API calls",
            "minimum",
            "over min",
            "calls/s",
            "CPU s/1k inv",
            "peak RSS MB",
            "requests",
            "CPU/1k target",
            "holds",
            "load 1m",
        ):
            table.add_column(column, justify="right")
        for row in sweeps:
            table.add_row(
                f"{row['invoices']:,}",
                f"{row['overdue_invoices']:,}",
                f"{row['groups']:,}",
                f"{row['wall_s']:.1f}",
                f"{row['api_calls']:,}",
                f"{row['api_calls_min']:,}",
                f"{row['calls_over_minimum_pct']:.2f}%",
                f"{row['calls_per_s']:.0f}",
                f"{row['cpu_s_per_1k_invoices']:.2f}",
                f"{row['peak_rss_mb']:.0f}",
                f"{row['payment_requests_created']:,}",
                "<=0.75",
                _holds(
                    row["cpu_s_per_1k_invoices"] <= 0.75
                    and row["api_calls"] <= row["api_calls_min"]
                ),
                f"{row.get('load_1m', 0.0):.2f}",
            )
        console.print(table)
        _print_phases(console, sweeps)
    limited = document.get("rate_limited", [])
    if limited:
        table = Table(
            title="Rate-limited (sandbox 50 calls/s, 4 Celery processes, "
            "DUNNING_RATE_LIMIT_RPS=50, "
            "Redis bucket + X-RateLimit-* pacing)"
        )
        columns = ("window", "customers", "busy s", "calls", "429s", "accepted/s busy",
                   "best 60 s /s", "of limit", "429 share", "target", "holds", "load")  # fmt: skip
        for column in columns:
            table.add_column(column, justify="right")
        for row in limited:
            table.add_row(
                row["window"],
                f"{row['customers']:,}",
                f"{row['window_s']:.0f}",
                f"{row['api_calls']:,}",
                f"{row['http_429']:,}",
                f"{row['accepted_calls_per_s']:.1f}",
                _maybe(row["sustained_60s_calls_per_s"], "{:.1f}"),
                _maybe(row["rate_limit_share"], "{:.1%}"),
                f"{row['share_429']:.2%}",
                ">= 90% over 60 s, < 1%",
                _holds(row["holds"]),
                f"{row['load_1m']:.2f}",
            )
        console.print(table)
    mem = document.get("memory", [])
    if mem:
        table = Table(title="Memory: list+group+decide from a generated page stream (no HTTP)")
        for column in ("invoices", "groups", "baseline RSS MB", "peak RSS MB", "growth MB", "s"):
            table.add_column(column, justify="right")
        for row in mem:
            table.add_row(
                f"{row['invoices']:,}",
                f"{row['groups']:,}",
                f"{row['baseline_rss_mb']:.0f}",
                f"{row['peak_rss_mb']:.0f}",
                f"{row['peak_rss_mb'] - row['baseline_rss_mb']:.0f}",
                f"{row['seconds']:.1f}",
            )
        console.print(table)
