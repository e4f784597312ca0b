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
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
        summary = run_sweep(runtime, trigger="cli")
        wall = time.perf_counter() - started
        cpu = _cpu_s() - cpu_before
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
