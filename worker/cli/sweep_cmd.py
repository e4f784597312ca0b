"""`dunning sweep` (one cycle now, or enqueued) and `dunning plan` (explain, change nothing)."""

from __future__ import annotations

import gc
import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.common import cli_runtime, cli_settings, err, out, parse_now, stderr_is_terminal
from worker.cli.errors import EXIT_USAGE, fail
from worker.policy.eligibility import INVOICE_REASONS
from worker.services.sweep import PlanRow, SweepSummary, run_sweep

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy file (default: $DUNNING_POLICY_FILE)."),
]
CustomerOption = Annotated[
    str | None, typer.Option("--customer", help="Only this external customer id.")
]
NowOption = Annotated[
    str | None,
    typer.Option("--now", help="Decide as if it were this instant (ISO 8601; default: now)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
#: Rows of `plan` that summarise skipped invoices rather than decide a group.
INVOICE_SKIP_REASONS = frozenset(reason.value for reason in INVOICE_REASONS) - {"eligible"}


class RichSweepProgress:
    """Listing and sending progress on a terminal (stderr). The display (and its refresh
    thread) starts at the first progress the sweep reports: by then the sweep has forked its
    send helpers (`worker.services.send_helpers`), so no fork copies a thread mid-refresh."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._listing = progress.add_task("listing overdue invoices", total=None)
        self._sending: TaskID | None = None
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._progress.start()

    def stop(self) -> None:
        if self._started:
            self._progress.stop()

    def listed(self, invoices_seen: int) -> None:
        self._start()
        self._progress.update(self._listing, completed=invoices_seen)

    def sending(self, done: int, total: int) -> None:
        self._start()
        if self._sending is None:
            self._progress.update(self._listing, total=self._progress.tasks[0].completed)
            self._sending = self._progress.add_task("sending payment requests", total=total)
        self._progress.update(self._sending, completed=done, total=total)


def _progress_display(stack: ExitStack, enabled: bool) -> RichSweepProgress | None:
    if not enabled:
        return None
    # Imported here: only a terminal shows progress (and pays for rich.progress).
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    display = RichSweepProgress(progress)
    stack.callback(display.stop)
    return display


def _money(cents: int | None, currency: str) -> str:
    return "-" if cents is None else f"{cents / 100:,.2f} {currency}"


def print_summary(summary: SweepSummary) -> None:
    from rich.table import Table

    table = Table(title="dunning sweep" + (" (dry run)" if summary.dry_run else ""))
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, object]] = [
        ("run", summary.run_id if summary.run_id is not None else "-"),
        ("invoices seen", summary.invoices_seen),
        ("groups", summary.groups),
        ("invoices skipped", summary.invoices_skipped),
        ("malformed records", summary.malformed),
        ("pending requests we did not make", summary.requested_elsewhere),
        ("intents created", len(summary.intent_ids)),
        ("payment requests created", summary.sent_by_channel["payment_request"]),
    ]
    if summary.sent_by_channel["retry_and_email"]:
        rows.append(("emails sent (retry_and_email)", summary.sent_by_channel["retry_and_email"]))
    rows += [(f"  send outcome: {status}", n) for status, n in sorted(summary.outcomes.items())]
    rows += [(f"  refused: {code}", n) for code, n in sorted(summary.refused_codes.items())]
    rows += [(f"invoice: {reason}", n) for reason, n in sorted(summary.invoices.items())]
    rows += [(f"decision: {reason}", n) for reason, n in sorted(summary.decisions.items())]
    rows += [
        ("exhaustion actions run", summary.exhaustion_actions),
        ("API calls", summary.api_calls),
        ("duration", f"{summary.duration_s:.2f} s"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)


def print_plan(rows: list[PlanRow]) -> None:
    skips = sum(1 for row in rows if row.reason in INVOICE_SKIP_REASONS)
    title = f"dunning plan: {len(rows) - skips} group(s)"
    if skips:
        title += f", {skips} row(s) of skipped invoices"
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "customer",
        "currency",
        "entity",
        "amount",
        "invoices",
        "policy",
        "decision",
        "reason",
        "next eligible",
    ):
        table.add_column(column, justify="right" if column in {"amount", "invoices"} else "left")
    for row in rows:
        table.add_row(
            row.external_customer_id,
            row.currency,
            row.billing_entity_code or "-",
            _money(row.amount_cents, row.currency),
            str(row.invoice_count),
            row.policy or "-",
            row.kind,
            row.reason,
            row.next_eligible_at.isoformat(timespec="minutes") if row.next_eligible_at else "-",
        )
    out.print(table)


def _plan_json(row: PlanRow) -> dict[str, object]:
    return {
        "external_customer_id": row.external_customer_id,
        "currency": row.currency,
        "billing_entity_code": row.billing_entity_code,
        "amount_cents": row.amount_cents,
        "invoice_count": row.invoice_count,
        "policy": row.policy,
        "decision": row.kind,
        "reason": row.reason,
        "next_eligible_at": row.next_eligible_at.isoformat() if row.next_eligible_at else None,
        "detail": row.detail,
    }


def sweep(
    once: Annotated[
        bool, typer.Option("--once", help="Run one full cycle in this process.")
    ] = False,
    enqueue: Annotated[
        bool, typer.Option("--enqueue", help="Ask the workers to run a sweep (via the broker).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and report; write and send nothing.")
    ] = False,
    customer: CustomerOption = None,
    now: NowOption = None,
    as_json: JsonOption = False,
    policy: PolicyOption = None,
) -> None:
    """Run one sweep: list overdue invoices, decide per policy, create payment requests."""
    if once == enqueue:
        fail("choose exactly one of --once or --enqueue", exit_code=EXIT_USAGE)
    if enqueue:
        if dry_run or now:
            fail("--dry-run and --now only apply to --once", exit_code=EXIT_USAGE)
        from worker.cli.ops_cmd import enqueue_sweep, warn_if_no_worker

        settings = cli_settings(policy=policy)
        task_id = enqueue_sweep(settings, customer=customer)
        warn_if_no_worker(settings)
        if as_json:
            typer.echo(json.dumps({"enqueued": "dunning.sweep", "task_id": task_id}))
        else:
            out.print(f"enqueued dunning.sweep (task {task_id})")
        return
    moment = parse_now(now)
    settings = cli_settings(policy=policy, quiet_logs=as_json)
    rt = cli_runtime(settings)
    # What is loaded by now (modules, settings, policies) lives as long as the process: move it
    # out of the collector's sight, so the sweep's collections do not walk it again and again.
    gc.freeze()
    try:
        with ExitStack() as stack:
            progress = _progress_display(stack, stderr_is_terminal() and not as_json)
            summary = run_sweep(
                rt,
                trigger="cli",
                now=moment,
                dry_run=dry_run,
                customer=customer,
                progress=progress,
            )
    finally:
        rt.close()
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        print_summary(summary)


def plan(
    customer: CustomerOption = None,
    now: NowOption = None,
    as_json: JsonOption = False,
    policy: PolicyOption = None,
    diff: Annotated[
        Path | None,
        typer.Option(
            "--diff",
            help="Compare with this candidate policy file: the groups it would start or stop "
            "dunning, or change (policy, next time, amount).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show what a sweep would do for each group, and why. Changes nothing."""
    if diff is not None:
        _plan_diff(diff, customer=customer, now=now, as_json=as_json, policy=policy)
        return
    moment = parse_now(now)
    settings = cli_settings(policy=policy, quiet_logs=as_json)
    rt = cli_runtime(settings)
    try:
        summary = run_sweep(rt, trigger="cli", now=moment, dry_run=True, customer=customer)
    finally:
        rt.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "groups": [_plan_json(row) for row in summary.plan],
                    "decisions_by_reason": dict(summary.decisions),
                    "invoices_seen": summary.invoices_seen,
                    "invoices_by_reason": dict(summary.invoices),
                    "malformed": summary.malformed,
                }
            )
        )
    else:
        print_plan(summary.plan)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
    app.command("plan")(plan)


def _plan_diff(
    candidate_file: Path, *, customer: str | None, now: str | None, as_json: bool,
    policy: Path | None,
) -> None:  # fmt: skip
    from config.policies import PolicyFileError, load_policies
    from worker.cli.plan_diff_view import print_diff
    from worker.services.plan_diff import plan_diff

    moment = parse_now(now)
    try:
        candidate = load_policies(candidate_file)
    except PolicyFileError as exc:
        fail(f"candidate {exc}", exit_code=EXIT_USAGE)
    settings = cli_settings(policy=policy, quiet_logs=as_json)
    rt = cli_runtime(settings)
    try:
        result = plan_diff(rt, candidate, now=moment, customer=customer)
    finally:
        rt.close()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        print_diff(result, current=str(settings.policy_file), candidate=str(candidate_file))
