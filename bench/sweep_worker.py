"""One inline sweep in its own process, so the benchmark can measure its CPU time and peak RSS.

    python -m bench.sweep_worker --lago-url URL --policy FILE --data-dir DIR [--json-out FILE]

Runs `run_sweep` (list, group, decide, write intents, send every payment request) with a fresh
SQLite ledger. The environment decides the rest (the benchmark sets DUNNING_RATE_LIMIT_RPS=0:
the sandbox has no rate limit in this scenario).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from bench.launch import own_peak_rss_mb


def _cpu_s() -> float:
    """CPU of this process and of the children it reaped (send helpers, when configured)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


class PhaseClock:
    """A sweep progress display that notes wall and CPU time where the sweep's phases meet.

    Phases: `list` (paging, judging, grouping: to the last page's progress), `decide`
    (decisions and intents written: to the first answer recorded), `send` (to the last answer
    recorded) and `finish` (reconcile, snapshot, the run row). A phase whose end was never
    seen is counted in the next one (with nothing sent, `finish` holds the decisions too).
    """

    def __init__(self) -> None:
        self.started = (time.perf_counter(), _cpu_s())
        self.marks: dict[str, tuple[float, float]] = {}

    def _mark(self, name: str) -> None:
        self.marks[name] = (time.perf_counter(), _cpu_s())

    def listed(self, invoices_seen: int) -> None:
        self._mark("listed")  # each hundredth invoice: the last one stays

    def sending(self, done: int, total: int) -> None:
        if "first_answer" not in self.marks:
            self._mark("first_answer")
        if done == total:
            self._mark("last_answer")

    def phases(self) -> dict[str, dict[str, float]]:
        """{phase: {"wall_s", "cpu_s"}} up to now."""
        ends = [("list", "listed"), ("decide", "first_answer"), ("send", "last_answer")]
        points = [("start", self.started)]
        points += [(phase, self.marks[mark]) for phase, mark in ends if mark in self.marks]
        points.append(("finish", (time.perf_counter(), _cpu_s())))
        return {
            phase: {"wall_s": wall - points[i][1][0], "cpu_s": cpu - points[i][1][1]}
            for i, (phase, (wall, cpu)) in enumerate(points[1:])
        }


def run(lago_url: str, policy: Path, data_dir: Path) -> dict[str, Any]:
    from config import load_settings
    from worker.services.runtime import open_runtime
    from worker.services.sweep import run_sweep
    from worker.store.migrate import upgrade

    settings = load_settings(data_dir=data_dir, policy_file=policy, lago_api_url=lago_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    runtime = open_runtime(settings)
    try:
        cpu_before = _cpu_s()
        started = time.perf_counter()
        clock = PhaseClock()
        summary = run_sweep(runtime, trigger="cli", progress=clock)
        wall = time.perf_counter() - started
        cpu = _cpu_s() - cpu_before
        phases = clock.phases()
    finally:
        runtime.close()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": own_peak_rss_mb(),
        "invoices_seen": summary.invoices_seen,
        "groups": summary.groups,
        "intents": len(summary.intent_ids),
        "payment_requests_created": summary.requests_created,
        "outcomes": dict(summary.outcomes),
        "api_calls_client": summary.api_calls,
        "phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_worker")
    parser.add_argument("--lago-url", required=True)
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    result = run(args.lago_url, args.policy, args.data_dir)
    text = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
