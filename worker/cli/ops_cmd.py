"""Operators' manual triggers.

- `dunning enqueue sweep [--customer X]` / `dunning enqueue reconcile`: send the task to the
  running workers through the broker, by name (also what `dunning sweep --enqueue` calls).
- `dunning retry INTENT_ID [--enqueue]`: put an intent back to pending, due now, then send it
  here and now (needs LAGO_API_URL) or let the workers do it.
- `dunning pause CUSTOMER_ID [--until DATE] [--reason ...]` / `dunning resume CUSTOMER_ID`:
  a pause with `--until` is a hold that ends by itself (a promise to pay, a dispute).
Pauses, resumes and retries go through the same services as the console and are recorded in
the ledger (`operator_actions`) with the operating-system user as the actor.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy import Engine

from config import Settings, mask_url
from worker.cli.common import cli_settings
from worker.cli.errors import EXIT_USAGE, fail
from worker.services.operator import customer_id_problem, text_problem

SWEEP_TASK = "dunning.sweep"
SEND_TASK = "dunning.send_payment_request"
RECONCILE_TASK = "dunning.reconcile"
#: The run trigger recorded for sweeps asked for through the broker.
ENQUEUED_TRIGGER = "celery"
#: Publishing gives up after this many connection retries (a down broker fails fast).
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def send_task_by_name(
    settings: Settings,
    name: str,
    *,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> str:
    """Publish task `name` on the configured broker; return the task id.

    Raises `CliError` (one line) when the broker cannot be reached.
    """
    from kombu.exceptions import OperationalError

    from worker.celery import create_app

    app = create_app(settings, cron=None, set_as_current=False)
    try:
        result = app.send_task(
            name,
            args=args or [],
            kwargs=kwargs or {},
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
        return str(result.id)
    except (OperationalError, OSError) as exc:
        fail(
            f"cannot reach the broker {mask_url(settings.resolved_broker_url)} "
            f"({' '.join(str(exc).split())}): check DUNNING_BROKER_URL and that it is up"
        )
    finally:
        app.close()


#: How long `enqueue` waits for a worker to answer its ping.
PING_TIMEOUT_S = 1.5


def workers_answering(settings: Settings, timeout: float = PING_TIMEOUT_S) -> int:
    """How many workers answer a ping on the broker within `timeout` (0: the task will wait
    in the queue until one starts)."""
    from kombu.exceptions import OperationalError

    from worker.celery import create_app

    app = create_app(settings, cron=None, set_as_current=False)
    try:
        return len(app.control.ping(timeout=timeout) or [])
    except (OperationalError, OSError):
        return 0
    finally:
        app.close()


def warn_if_no_worker(settings: Settings) -> None:
    if workers_answering(settings) == 0:
        typer.echo(
            f"warning: no worker answered a ping on {mask_url(settings.resolved_broker_url)} "
            f"within {PING_TIMEOUT_S:g} s: the task waits in the queue until one starts "
            "(`dunning run`, or `celery -A worker worker`)",
            err=True,
        )


def enqueue_sweep(settings: Settings, customer: str | None = None) -> str:
    """Ask the workers for one sweep (all customers, or just `customer`); returns the task id."""
    kwargs: dict[str, Any] = {"trigger": ENQUEUED_TRIGGER, "customer": customer}
    return send_task_by_name(settings, SWEEP_TASK, kwargs=kwargs)


def enqueue_reconcile(settings: Settings) -> str:
    return send_task_by_name(settings, RECONCILE_TASK)


def enqueue_send(settings: Settings, intent_id: int) -> str:
    return send_task_by_name(settings, SEND_TASK, args=[intent_id])


#: Ids are 64-bit integers in both databases.
MAX_INTENT_ID = 2**63 - 1


def parse_intent_id(value: str) -> int:
    text = value.strip()
    digits = len(text.lstrip("0"))
    # Checked before int(): past 4300 digits Python refuses to convert at all.
    if text.isdigit() and digits > len(str(MAX_INTENT_ID)):
        _too_large(digits)
    try:
        intent_id = int(text)
    except ValueError:
        fail(f"intent id must be a whole number, got {_shown(value)}", exit_code=EXIT_USAGE)
    if intent_id < 1:
        fail(f"intent id must be positive, got {intent_id}", exit_code=EXIT_USAGE)
    if intent_id > MAX_INTENT_ID:
        _too_large(digits)
    return intent_id


def _too_large(digits: int) -> NoReturn:
    fail(
        f"intent id must be at most {MAX_INTENT_ID}, got a {digits}-digit number",
        exit_code=EXIT_USAGE,
    )


def _customer_id(value: str) -> str:
    customer = value.strip()
    problem = customer_id_problem(customer)
    if problem is not None:
        fail(problem, exit_code=EXIT_USAGE)
    return customer


def _reason(value: str | None) -> str | None:
    problem = None if value is None else text_problem("reason", value)
    if problem is not None:
        fail(problem, exit_code=EXIT_USAGE)
    return value


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:37]) + "..."


def _emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(payload) if as_json else text)


def _engine(settings: Settings) -> Engine:
    from worker.store.migrate import current_engine

    return current_engine(settings)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def enqueue_sweep_command(
    customer: Annotated[
        str | None, typer.Option(help="Only this customer (external id).", show_default=False)
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask the running workers for a sweep now (through the broker)."""
    settings = cli_settings(quiet_logs=True)
    task_id = enqueue_sweep(settings, _customer_id(customer) if customer is not None else None)
    warn_if_no_worker(settings)
    _emit(
        as_json,
        {"enqueued": SWEEP_TASK, "task_id": task_id, "customer": customer},
        f"enqueued {SWEEP_TASK}{f' for {customer}' if customer else ''} (task {task_id})",
    )


def enqueue_reconcile_command(as_json: JsonFlag = False) -> None:
    """Ask the running workers to re-run due and interrupted sends now."""
    settings = cli_settings(quiet_logs=True)
    task_id = enqueue_reconcile(settings)
    warn_if_no_worker(settings)
    _emit(
        as_json,
        {"enqueued": RECONCILE_TASK, "task_id": task_id},
        f"enqueued {RECONCILE_TASK} (task {task_id})",
    )


def retry_command(
    intent_id: Annotated[str, typer.Argument(help="The intent's id (see `dunning status`).")],
    enqueue: Annotated[
        bool,
        typer.Option("--enqueue", help="Let the running workers send it instead of this command."),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why (recorded with the action, shown on the timeline).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-queue an intent (needs_review, refused, blocked or pending) and send it again.

    A try that may already have reached Lago is reconciled with Lago before any new POST.
    """
    from worker.services.operator import cli_actor
    from worker.services.retry_intent import RetryError, retry_intent

    number = parse_intent_id(intent_id)
    reason = _reason(reason)
    settings = cli_settings(quiet_logs=True)
    if not enqueue and settings.lago_api_url is None:
        fail(
            "LAGO_API_URL is not set: set it to send from here, or add --enqueue to let the "
            "running workers send it",
            exit_code=EXIT_USAGE,
        )
    engine = _engine(settings)
    try:
        requeued = retry_intent(
            engine, intent_id=number, now=datetime.now(UTC), actor=cli_actor(), reason=reason
        )
    except RetryError as exc:
        fail(str(exc), exit_code=EXIT_USAGE)
    finally:
        engine.dispose()
    payload: dict[str, Any] = {
        "intent_id": number,
        "previous_status": requeued.previous_status,
        "customer": requeued.external_customer_id,
    }
    if enqueue:
        task_id = enqueue_send(settings, number)
        warn_if_no_worker(settings)
        payload["task_id"] = task_id
        _emit(
            as_json,
            payload,
            f"intent #{number} re-queued; sending through the workers (task {task_id})",
        )
        return
    status = _send_now(settings, number)
    payload["status"] = status["status"]
    payload["detail"] = status["detail"]
    _emit(
        as_json,
        payload,
        f"intent #{number}: {status['status']}"
        + (f" ({status['detail']})" if status["detail"] else ""),
    )


def _send_now(settings: Settings, intent_id: int) -> dict[str, str]:
    from worker.services.channels import channels_for
    from worker.services.recover_intents import worker_identity
    from worker.services.runtime import open_runtime
    from worker.services.send_payment_request import send_payment_request

    runtime = open_runtime(settings)
    try:
        outcome = send_payment_request(
            engine=runtime.engine,
            client=runtime.client,
            intent_id=intent_id,
            owner=f"{worker_identity()}:cli-retry",
            now=runtime.clock,
            settle_seconds=settings.settle_seconds,
            lease_seconds=settings.lease_seconds,
            max_ambiguous_tries=settings.max_ambiguous_tries,
            channels=channels_for(runtime),
        )
    finally:
        runtime.close()
    detail = outcome.detail or (outcome.lago_id or "")
    return {"status": outcome.status.value, "detail": detail}


def parse_until(value: str | None, now: datetime) -> datetime | None:
    """`--until` as a date (held through that day, UTC) or an ISO 8601 instant, in the future."""
    from worker.services.pause_customer import PauseError, parse_hold_end

    if value is None:
        return None
    try:
        return parse_hold_end(value, now)
    except PauseError as exc:
        fail(f"invalid --until {value!r}: {exc}", exit_code=EXIT_USAGE)


def pause_command(
    customer_id: Annotated[str, typer.Argument(help="The customer's external id.")],
    reason: Annotated[str | None, typer.Option(help="Why (shown in `dunning status`).")] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Hold until this date (YYYY-MM-DD, through its end, UTC) or ISO instant; "
            "dunning resumes by itself after it.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Stop dunning a customer: no new payment requests, open intents are not sent."""
    from worker.services.operator import cli_actor
    from worker.services.pause_customer import pause_customer

    customer = _customer_id(customer_id)
    reason = _reason(reason)
    now = datetime.now(UTC)
    hold_end = parse_until(until, now)
    engine = _engine(cli_settings(quiet_logs=True))
    try:
        pause_customer(
            engine,
            external_customer_id=customer,
            reason=reason,
            until=hold_end,
            now=now,
            actor=cli_actor(),
        )
    finally:
        engine.dispose()
    ends = (
        f"until {hold_end.isoformat(timespec='minutes')} (then dunning resumes by itself)"
        if hold_end
        else f"until `dunning resume {customer}`"
    )
    _emit(
        as_json,
        {
            "customer": customer,
            "paused": True,
            "reason": reason,
            "until": hold_end.isoformat() if hold_end else None,
        },
        f"paused {customer}: no payment requests {ends}",
    )


def resume_command(
    customer_id: Annotated[str, typer.Argument(help="The customer's external id.")],
    as_json: JsonFlag = False,
) -> None:
    """Dun a paused customer again from the next sweep on."""
    from worker.services.operator import cli_actor
    from worker.services.resume_customer import resume_customer

    customer = _customer_id(customer_id)
    engine = _engine(cli_settings(quiet_logs=True))
    try:
        was_paused = resume_customer(
            engine, external_customer_id=customer, now=datetime.now(UTC), actor=cli_actor()
        )
    finally:
        engine.dispose()
    text = (
        f"resumed {customer}: dunned again from the next sweep on"
        if was_paused
        else f"{customer} is not paused: nothing to resume (`dunning status` lists who is)"
    )
    _emit(as_json, {"customer": customer, "paused": False, "was_paused": was_paused}, text)


def register(app: typer.Typer) -> None:
    enqueue = typer.Typer(
        help="Send a task to the running workers through the broker.", no_args_is_help=True
    )
    enqueue.command("sweep")(enqueue_sweep_command)
    enqueue.command("reconcile")(enqueue_reconcile_command)
    app.add_typer(enqueue, name="enqueue")
    app.command("retry")(retry_command)
    app.command("pause")(pause_command)
    app.command("resume")(resume_command)
