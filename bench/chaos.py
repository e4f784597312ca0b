"""Chaos run: does the worker still ask every customer exactly once when everything breaks?

    python -m bench.chaos [--short] [--stack embedded|prod|careless|email|both] [--seed N] [--json]

For each stack (embedded: SQLite + filesystem broker; prod: a fresh PostgreSQL database + our
own throwaway redis-server on a free port; careless: the embedded stack against a careless
sandbox that ignores listing filters, omits fields, sends odd values, skips its own checks on
payment requests and garbles some answers; email: the retry_and_email channel against a Lago
without the licence and a mail server killed mid-send, see bench/chaos_email.py), on loopback
only:
1. Chaos: a sandbox with latency jitter, 10% 5xx, 5% POSTs that commit and then hang past the
   client timeout, 2% POSTs cut off mid-answer, and a rate limit; 3 Celery workers SIGKILLed at
   random intervals and restarted; beat killed and restarted; on prod, Redis restarted once
   (its queued messages are lost with it). Sweeps and reconcile passes are enqueued steadily.
2. Settle: faults off, no more kills; reconcile passes until every intent is terminal (bounded).
3. Audit (bench/verify.py) against the sandbox's own record of payment requests.

Prints the counts and exits 1 if any request was duplicated or any group lost (or an intent
was left open or without a reason, or a request named an invoice that was not dunnable), 2 if
the harness itself failed. Logs of every child are
kept under the run directory (printed) when the run fails.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos_email import (
    EMAIL_FAULTS,
    RETRY_ENDPOINT,
    SMTP_KILL_GAP_S,
    SmtpSink,
    email_audit,
    start_smtp_sink,
)
from bench.policy_file import write_policy_file
from bench.procs import Child, Children, HarnessError, stop_all, supervised, wait_for_output
from bench.sandbox_proc import SandboxControl, SandboxSpec, count_calls, start_sandbox
from bench.stack import (
    Ledger,
    StackConfig,
    TaskSender,
    beat_child,
    fresh_postgres_database,
    redis_server,
    wait_redis,
    worker_child,
)
from bench.verify import Audit, audit, groups_to_dun
from bench.verify_email import EmailAudit

SWEEP = "dunning.sweep"
RECONCILE = "dunning.reconcile"
POST_ENDPOINT = "POST /api/v1/payment_requests"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    customers: int
    invoices_per_customer: int
    chaos_seconds: float
    settle_timeout_s: float
    kill_gap_s: tuple[float, float]  # random gap between two worker kills
    beat_restarts: int
    #: The chaos phase lasts at least `chaos_seconds` and until this many POSTs were made under
    #: faults (so a slow, loaded machine still gets real chaos), but never 3x longer.
    min_chaos_posts: int = 0
    workers: int = 3
    sweep_every_s: float = 5.0
    reconcile_every_s: float = 2.0


SHORT = ChaosPlan(
    customers=120,
    invoices_per_customer=2,
    chaos_seconds=16,
    settle_timeout_s=75,
    kill_gap_s=(2.0, 4.0),
    beat_restarts=1,
    min_chaos_posts=45,
)
FULL = ChaosPlan(
    customers=300,
    invoices_per_customer=4,
    chaos_seconds=150,
    settle_timeout_s=150,
    kill_gap_s=(3.0, 9.0),
    beat_restarts=3,
    min_chaos_posts=300,
)

FAULTS: dict[str, Any] = {
    "latency_ms": 15.0,
    "latency_jitter_ms": 15.0,
    "error_rate": 0.10,
    "timeout_after_commit_rate": 0.05,
    "hang_seconds": 4.0,
    "drop_rate": 0.02,
    "rate_limit": 25,
}
NO_FAULTS: dict[str, Any] = {
    "latency_jitter_ms": 0.0,
    "error_rate": 0.0,
    "timeout_after_commit_rate": 0.0,
    "drop_rate": 0.0,
}

#: Short leases, settle windows and client timeouts so recovery happens within the run.
WORKER_ENV = {
    "LAGO_TIMEOUT_S": "2",
    "LAGO_MAX_RETRIES": "2",
    "DUNNING_LEASE_SECONDS": "10",
    "DUNNING_SETTLE_SECONDS": "3",
    "DUNNING_MAX_AMBIGUOUS_TRIES": "6",
    "DUNNING_HTTP_CONCURRENCY": "4",
    "DUNNING_LOG_LEVEL": "INFO",
}
#: The outbound limit: per pool process on the embedded stack (6 x 8 > 25, so Lago answers some
#: 429s), one bucket shared in Redis on prod (kept under the sandbox's limit).
RATE_LIMIT_RPS = {"embedded": "8", "prod": "20"}
#: The careless stack's sandbox: a Lago that checks nothing and garbles some answers.
CARELESS_ANSWER_RATE = 0.05
STACKS = ("embedded", "prod", "careless", "email")
#: Worker boot can be slow on a loaded machine; chaos starts once all are ready.
READY_TIMEOUT_S = 120.0
#: Share of the groups that only become overdue during the chaos phase, released evenly over
#: its first RELEASE_WITHIN part.
HELD_BACK_SHARE = 0.8
RELEASE_WITHIN = 0.8
#: While settling, a sweep this often: the run is settled once one ran and changed nothing.
SETTLE_SWEEP_EVERY_S = 4.0


@dataclass(slots=True)
class StackReport:
    stack: str
    audit: Audit
    kills: int = 0
    beat_restarts: int = 0
    redis_restarts: int = 0
    smtp_kills: int = 0
    posts: int = 0
    api_calls: int = 0
    http_429: int = 0
    http_5xx: int = 0
    enqueue_failures: int = 0
    chaos_calls: int = 0  # API calls during the chaos phase
    chaos_faults: int = 0  # of which answered 429 or 5xx
    settled: bool = False
    chaos_s: float = 0.0
    settle_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "kills": self.kills,
            "beat_restarts": self.beat_restarts,
            "redis_restarts": self.redis_restarts,
            "smtp_kills": self.smtp_kills,
            "posts": self.posts,
            "api_calls": self.api_calls,
            "http_429": self.http_429,
            "http_5xx": self.http_5xx,
            "enqueue_failures": self.enqueue_failures,
            "chaos_calls": self.chaos_calls,
            "chaos_faults": self.chaos_faults,
            "settled": self.settled,
            "chaos_s": round(self.chaos_s, 1),
            "settle_s": round(self.settle_s, 1),
            "notes": self.notes,
            **self.audit.as_dict(),
        }


class Ticker:
    """Calls `action` every `every` seconds while polled."""

    def __init__(self, every: float, action: Callable[[], object]) -> None:
        self.every = every
        self.action = action
        self.next_at = 0.0

    def poll(self, now: float) -> None:
        if now >= self.next_at:
            self.action()
            self.next_at = now + self.every


def run_stack(
    stack: str, plan: ChaosPlan, *, seed: int, run_dir: Path, say: Callable[[str], None]
) -> StackReport:
    rng = random.Random(seed)
    log_dir = run_dir / stack / "logs"
    data_dir = run_dir / stack / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    email = stack == "email"
    policy = write_policy_file(run_dir / stack, channel="auto" if email else "payment_request")
    spec = SandboxSpec(
        customers=plan.customers,
        invoices_per_customer=plan.invoices_per_customer,
        seed=seed,
        latency_ms=FAULTS["latency_ms"],
        latency_jitter_ms=FAULTS["latency_jitter_ms"],
        error_rate=FAULTS["error_rate"],
        timeout_after_commit_rate=FAULTS["timeout_after_commit_rate"],
        hang_seconds=FAULTS["hang_seconds"],
        drop_rate=FAULTS["drop_rate"],
        rate_limit=FAULTS["rate_limit"],
        careless=stack == "careless",
        careless_answer_rate=CARELESS_ANSWER_RATE if stack == "careless" else 0.0,
    )
    with supervised() as children:
        _, sandbox = start_sandbox(children, spec, log_dir=log_dir)
        sink = start_smtp_sink(children, log_dir=log_dir, data_dir=data_dir) if email else None
        if email:
            sandbox.set_faults(**EMAIL_FAULTS)
        try:
            if stack == "prod":
                with fresh_postgres_database("dunning_chaos") as database_url:
                    redis, port = redis_server(children, log_dir=log_dir, work_dir=data_dir)
                    wait_redis(port)
                    config = StackConfig(
                        name=stack,
                        data_dir=data_dir,
                        policy_file=policy,
                        lago_url=sandbox.url,
                        database_url=database_url,
                        broker_url=f"redis://127.0.0.1:{port}/3",
                        env={**WORKER_ENV, "DUNNING_RATE_LIMIT_RPS": RATE_LIMIT_RPS[stack]},
                    )
                    return _run(config, plan, rng, children, sandbox, log_dir, say, redis, port)
            config = StackConfig(
                name=stack,
                data_dir=data_dir,
                policy_file=policy,
                lago_url=sandbox.url,
                env={
                    **WORKER_ENV,
                    "DUNNING_RATE_LIMIT_RPS": RATE_LIMIT_RPS["embedded"],
                    **(sink.env() if sink else {}),
                },
            )
            return _run(config, plan, rng, children, sandbox, log_dir, say, None, None, smtp=sink)
        finally:
            sandbox.close()


def _run(
    config: StackConfig,
    plan: ChaosPlan,
    rng: random.Random,
    children: Children,
    sandbox: SandboxControl,
    log_dir: Path,
    say: Callable[[str], None],
    redis: Child | None,
    redis_port: int | None,
    *,
    smtp: SmtpSink | None = None,
) -> StackReport:
    settings = config.settings()
    ledger = Ledger(settings.resolved_database_url)
    ledger.migrate()
    sender = TaskSender(settings)
    report = StackReport(stack=config.name, audit=Audit())
    workers = [
        children.add(worker_child(config, index, log_dir=log_dir))
        for index in range(1, plan.workers + 1)
    ]
    beat = children.add(beat_child(config, log_dir=log_dir))
    # Held back before anything starts: a sweep that saw a group overdue just before it was
    # held back would ask for invoices that are no longer overdue when its POST lands (a
    # tidy Lago refuses them; a careless one does not, and the audit counts them).
    held = _hold_back(sandbox, rng, HELD_BACK_SHARE)
    try:
        for child in [*workers, beat]:
            child.start()
        wait_for_output(workers, "ready.", timeout=READY_TIMEOUT_S)
        say(f"[{config.name}] chaos for {plan.chaos_seconds:.0f} s ({plan.workers} workers)")
        started = time.monotonic()
        _chaos(
            config,
            plan,
            rng,
            sandbox,
            sender,
            workers,
            beat,
            redis,
            redis_port,
            held,
            report,
            say,
            smtp=smtp.child if smtp else None,
        )
        report.chaos_s = time.monotonic() - started
        during = sandbox.stats()
        report.chaos_calls = count_calls(during)
        report.chaos_faults = sum(
            count_calls(during, status=code) for code in ("429", "500", "502", "503")
        )

        sandbox.set_faults(**NO_FAULTS)
        say(f"[{config.name}] faults off; settling (at most {plan.settle_timeout_s:.0f} s)")
        started = time.monotonic()
        processes = [*workers, beat, *([smtp.child] if smtp else [])]
        report.settled = _settle(plan, sandbox, sender, ledger, processes, redis)
        report.settle_s = time.monotonic() - started
        if not report.settled:
            report.notes.append("did not settle within the bound; audited as is")
    finally:
        stop_all([beat, *workers], timeout=5)
        sender.close()

    stats = sandbox.stats()
    report.posts = sum(stats.get(POST_ENDPOINT, {}).values())
    report.api_calls = count_calls(stats)
    report.http_429 = count_calls(stats, status="429")
    report.http_5xx = sum(count_calls(stats, status=code) for code in ("500", "502", "503"))
    report.enqueue_failures = sender.failures
    if smtp is not None:
        report.audit = email_audit(sandbox, ledger, smtp, requests=_created_requests(sandbox))
        ledger.close()
        return report
    report.audit = audit(
        # On the careless stack what the worker can know is what the careless Lago shows.
        invoices=sandbox.invoices(careless_view=config.name == "careless"),
        payment_requests=sandbox.payment_requests(),
        intents=ledger.intents(),
    )
    ledger.close()
    return report


def _chaos(
    config: StackConfig,
    plan: ChaosPlan,
    rng: random.Random,
    sandbox: SandboxControl,
    sender: TaskSender,
    workers: list[Child],
    beat: Child,
    redis: Child | None,
    redis_port: int | None,
    held: list[list[str]],
    report: StackReport,
    say: Callable[[str], None],
    *,
    smtp: Child | None = None,
) -> None:
    start = time.monotonic()
    activity = RETRY_ENDPOINT if smtp else POST_ENDPOINT
    next_smtp_kill = start + rng.uniform(*SMTP_KILL_GAP_S) if smtp else None
    release_every = RELEASE_WITHIN * plan.chaos_seconds / max(1, len(held))
    tickers_release = Ticker(release_every, lambda: _release(sandbox, held))
    end = start + plan.chaos_seconds
    hard_end = start + 3 * plan.chaos_seconds
    next_check = end
    next_kill = start + rng.uniform(*plan.kill_gap_s)
    beat_times = sorted(
        start + rng.uniform(0.15, 0.85) * plan.chaos_seconds for _ in range(plan.beat_restarts)
    )
    redis_at = start + rng.uniform(0.35, 0.65) * plan.chaos_seconds if redis else None
    restart_queue: list[tuple[float, Child]] = []
    tickers = [
        Ticker(plan.sweep_every_s, lambda: sender.send(SWEEP, trigger="celery")),
        Ticker(plan.reconcile_every_s, lambda: sender.send(RECONCILE)),
    ]
    while (now := time.monotonic()) < hard_end:
        if now >= end and now >= next_check:
            if not held and _posts(sandbox, activity) >= plan.min_chaos_posts:
                break
            next_check = now + 1.0
        for ticker in tickers:
            ticker.poll(now)
        if now > start + 0.5:
            tickers_release.poll(now)
        if now >= next_kill:
            # Kill a worker that is up and working (killing one still booting proves nothing),
            # and never the last one up.
            up = [worker for worker in workers if worker.says("ready.")]
            if len(up) >= 2:
                victim = rng.choice(up)
                victim.kill()
                report.kills += 1
                restart_queue.append((now + rng.uniform(0.3, 1.5), victim))
            next_kill = now + rng.uniform(*plan.kill_gap_s)
        if smtp is not None and next_smtp_kill is not None and now >= next_smtp_kill:
            # Mid-send when it can: the server notes a message, then waits before answering.
            smtp.kill()
            report.smtp_kills += 1
            restart_queue.append((now + rng.uniform(0.3, 1.2), smtp))
            next_smtp_kill = now + rng.uniform(*SMTP_KILL_GAP_S)
        if beat_times and now >= beat_times[0]:
            beat_times.pop(0)
            beat.kill()
            report.beat_restarts += 1
            restart_queue.append((now + rng.uniform(0.2, 1.0), beat))
        if redis_at is not None and now >= redis_at and redis and redis_port:
            redis_at = None
            say(f"[{config.name}] restarting redis (its queued messages are lost)")
            redis.kill()
            time.sleep(rng.uniform(0.5, 2.0))
            redis.start()
            wait_redis(redis_port)
            report.redis_restarts += 1
        for due_at, child in list(restart_queue):
            if now >= due_at:
                restart_queue.remove((due_at, child))
                child.start()
        time.sleep(0.1)
    for _, child in restart_queue:
        child.start()
    while held:
        _release(sandbox, held)


def _posts(sandbox: SandboxControl, endpoint: str = POST_ENDPOINT) -> int:
    return sum(sandbox.stats().get(endpoint, {}).values())


def _created_requests(sandbox: SandboxControl) -> int:
    """Payment requests our worker created (none on a Lago without the licence)."""
    return sum(1 for request in sandbox.payment_requests() if request.get("origin") == "api")


def _hold_back(sandbox: SandboxControl, rng: random.Random, share: float) -> list[list[str]]:
    """Make `share` of the groups to dun not overdue yet; they become overdue during the chaos
    phase (`_release`), so sends keep starting while processes die."""
    groups = sorted(groups_to_dun(sandbox.invoices()).items())
    rng.shuffle(groups)
    held = [sorted(invoice_ids) for _, invoice_ids in groups[: int(len(groups) * share)]]
    for invoice_ids in held:
        for lago_id in invoice_ids:
            sandbox.patch_invoice(lago_id, payment_overdue=False)
    return held


def _release(sandbox: SandboxControl, held: list[list[str]]) -> None:
    if held:
        for lago_id in held.pop():
            sandbox.patch_invoice(lago_id, payment_overdue=True)


def _settle(
    plan: ChaosPlan,
    sandbox: SandboxControl,
    sender: TaskSender,
    ledger: Ledger,
    processes: list[Child],
    redis: Child | None,
) -> bool:
    """Reconcile until every intent is terminal and a sweep after that created nothing new."""
    deadline = time.monotonic() + plan.settle_timeout_s
    tickers = [
        Ticker(SETTLE_SWEEP_EVERY_S, lambda: sender.send(SWEEP, trigger="celery")),
        Ticker(plan.reconcile_every_s, lambda: sender.send(RECONCILE)),
    ]
    quiet_since: float | None = None
    last_counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        now = time.monotonic()
        for child in [*processes, *([redis] if redis else [])]:
            if not child.alive():
                child.start()
        for ticker in tickers:
            ticker.poll(now)
        rows = ledger.intents()
        counts = dict(Counter(row.status for row in rows))
        busy = not rows or any(row.unsettled for row in rows)
        if busy or counts != last_counts:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        # Quiet through at least one more sweep: nothing new was planned or sent.
        elif now - quiet_since >= SETTLE_SWEEP_EVERY_S + 2:
            return True
        last_counts = counts
        time.sleep(1.0)
    return False


def print_reports(reports: list[StackReport]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Chaos: exactly-once audit")
    table.add_column("figure")
    for report in reports:
        table.add_column(report.stack, justify="right")
    rows: list[tuple[str, Callable[[StackReport], object]]] = [
        ("groups to dun", lambda r: r.audit.groups),
        ("intents", lambda r: r.audit.intents),
        ("payment requests (ours)", lambda r: r.audit.requests),
        ("POSTs answered (any status)", lambda r: r.posts),
        ("adoptions", lambda r: r.audit.adoptions),
        ("duplicates", lambda r: r.audit.duplicates),
        ("lost", lambda r: r.audit.lost),
        ("open intents", lambda r: r.audit.open_intents),
        ("deferred by Lago (reasoned)", lambda r: r.audit.deferred),
        ("terminal without reason", lambda r: r.audit.unexplained),
        ("requests no intent records", lambda r: r.audit.orphans),
        ("requests for ineligible invoices", lambda r: r.audit.ineligible),
        (
            "garbled answers / taken as sent",
            lambda r: f"{r.audit.garbled} / {r.audit.garbled_believed}",
        ),
        ("intents by status", lambda r: _fmt(r.audit.by_status)),
        ("refused by code", lambda r: _fmt(r.audit.refused_codes)),
        ("emails taken by the SMTP server", lambda r: _email(r, "emails")),
        ("duplicate emails (by Message-ID)", lambda r: _email(r, "email_duplicates")),
        ("groups in review (email outcome unknown)", lambda r: _email(r, "reviewed")),
        ("payment retries / taken twice", lambda r: _email(r, "retries", "retry_duplicates")),
        ("SMTP server kills", lambda r: r.smtp_kills if r.stack == "email" else "-"),
        ("worker kills", lambda r: r.kills),
        ("beat restarts", lambda r: r.beat_restarts),
        ("redis restarts", lambda r: r.redis_restarts),
        ("API calls / 429 / 5xx", lambda r: f"{r.api_calls} / {r.http_429} / {r.http_5xx}"),
        ("calls during chaos / 429+5xx", lambda r: f"{r.chaos_calls} / {r.chaos_faults}"),
        ("chaos s / settle s", lambda r: f"{r.chaos_s:.0f} / {r.settle_s:.0f}"),
        ("settled", lambda r: "yes" if r.settled else "NO"),
        ("verdict", lambda r: "PASS" if r.audit.ok else "FAIL"),
    ]
    for label, value in rows:
        table.add_row(label, *[str(value(report)) for report in reports])
    Console(width=120).print(table)
    for report in reports:
        for problem in report.audit.problems[:10]:
            print(f"  [{report.stack}] {problem}")
        for note in report.notes:
            print(f"  [{report.stack}] note: {note}")


def _email(report: StackReport, *names: str) -> str:
    """Figures only the email stack has ("-" elsewhere)."""
    if not isinstance(report.audit, EmailAudit):
        return "-"
    return " / ".join(str(getattr(report.audit, name)) for name in names)


def _fmt(counter: dict[str, int]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(counter.items())) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the ~60-90 s run CI uses")
    parser.add_argument(
        "--stack",
        choices=[*STACKS, "both", "all"],
        default="all",
        help="both = embedded and prod; all (default) = embedded, prod, careless and email "
        "(with --short: without email)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    # The email stack alone takes about two minutes: `--short` (CI) leaves it out of "all";
    # run it with `--short --stack email`.
    every = [name for name in STACKS if not (args.short and name == "email")]
    stacks = {"both": ["embedded", "prod"], "all": every}.get(args.stack, [args.stack])
    run_dir = Path(tempfile.mkdtemp(prefix="dunning-chaos-"))

    def say(message: str) -> None:
        print(message, flush=True)

    reports: list[StackReport] = []
    failed = False
    try:
        for offset, stack in enumerate(stacks):
            reports.append(
                run_stack(stack, plan, seed=args.seed + offset, run_dir=run_dir, say=say)
            )
    except HarnessError as exc:
        print(f"error: {exc} (logs in {run_dir})", file=sys.stderr)
        return 2
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        print(
            f"error: the harness failed: {type(exc).__name__}: {text} (logs in {run_dir})",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"interrupted (logs in {run_dir})", file=sys.stderr)
        return 130
    print_reports(reports)
    failed = not all(report.audit.ok for report in reports)
    document = {
        "name": "chaos-short" if args.short else "chaos",
        "at": datetime.now(UTC).isoformat(),
        "plan": _plan_dict(plan),
        "stacks": [report.as_dict() for report in reports],
        "ok": not failed,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"{document['name']}-{stamp}.json").write_text(json.dumps(document, indent=2))
    if args.json:
        print(json.dumps(document, indent=2))
    if failed or args.keep:
        print(f"logs kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed else 0


def _plan_dict(plan: ChaosPlan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in plan.__dataclass_fields__}


if __name__ == "__main__":
    sys.exit(main())
