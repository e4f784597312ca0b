"""`python -m sandbox` / `dunning sandbox`: run the Lago sandbox from the command line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from sandbox.autopay import AutopaySettings, AutopaySettingsError
from sandbox.dataset import DataError
from sandbox.faults import FaultSettings, FaultSettingsError
from sandbox.generator import GeneratorSpec
from sandbox.server import ServeError, serve
from sandbox.state import DEFAULT_API_KEY, DataSource, SandboxOptions, build_dataset_from
from sandbox.webhooks import WebhookConfig

USAGE_ERROR = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(USAGE_ERROR)


def sandbox_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    api_key: Annotated[
        str,
        typer.Option(
            help="Bearer key clients must send.", envvar="SANDBOX_API_KEY", show_default=False
        ),
    ] = DEFAULT_API_KEY,
    data: Annotated[
        Path | None, typer.Option(help="JSON file with {customers, invoices} in Lago's shapes.")
    ] = None,
    customers: Annotated[int | None, typer.Option(help="Generate this many customers.")] = None,
    invoices_per_customer: Annotated[
        int | None, typer.Option(help="Generated invoices per customer.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for generated data and faults.")] = 42,
    history_days: Annotated[
        int,
        typer.Option(
            help="Generate this many days of billing history (monthly invoices, dated "
            "payments and payment requests) for backtests."
        ),
    ] = 0,
    today: Annotated[
        str | None, typer.Option(help="Pretend today is this date (YYYY-MM-DD).")
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="Added latency per API call.")] = 0.0,
    latency_jitter_ms: Annotated[float, typer.Option(help="+/- random latency.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Fraction of API calls answered 500.")] = 0.0,
    timeout_after_commit_rate: Annotated[
        float, typer.Option(help="Fraction of payment request POSTs that hang after creating.")
    ] = 0.0,
    hang_seconds: Annotated[float, typer.Option(help="How long such a POST hangs.")] = 30.0,
    drop_rate: Annotated[
        float, typer.Option(help="Fraction of payment request POSTs cut off mid-response.")
    ] = 0.0,
    rate_limit: Annotated[int, typer.Option(help="Requests per second (0 = unlimited).")] = 0,
    rate_limit_window: Annotated[
        str, typer.Option(help="How --rate-limit counts: fixed (per clock second) or sliding.")
    ] = "fixed",
    no_premium: Annotated[
        bool, typer.Option("--no-premium", help="Act as a Lago without premium licence.")
    ] = False,
    stale_count_ttl: Annotated[
        float, typer.Option(help="Cache invoice total_count per filter set this many seconds.")
    ] = 0.0,
    careless: Annotated[
        bool,
        typer.Option(
            "--careless",
            help="Act as an older or buggy Lago: ignore listing filters, omit fields, send "
            "values outside the tidy set, skip the overdue check on payment requests (and "
            "generate disputed and deleted invoices too).",
        ),
    ] = False,
    careless_answer_rate: Annotated[
        float,
        typer.Option(help="With --careless: share of payment request answers that are wrong."),
    ] = 0.0,
    webhook_url: Annotated[str | None, typer.Option(help="POST webhooks here.")] = None,
    webhook_algo: Annotated[str, typer.Option(help="Webhook signature: jwt or hmac.")] = "jwt",
    webhook_hmac_key: Annotated[
        str | None, typer.Option(help="HMAC key for --webhook-algo hmac.", show_default=False)
    ] = None,
    pay_rate: Annotated[
        float,
        typer.Option(help="Share of payment requests their customer pays on their own, later."),
    ] = 0.0,
    pay_delay_min: Annotated[
        float, typer.Option(help="Such a customer pays at least this many seconds after.")
    ] = 20.0,
    pay_delay_max: Annotated[
        float, typer.Option(help="... and at most this many seconds after.")
    ] = 120.0,
) -> None:
    """Run a local stand-in for Lago's API (invoices, payment requests, payments, webhooks)."""
    options = build_options(
        api_key=api_key,
        data=data,
        customers=customers,
        invoices_per_customer=invoices_per_customer,
        seed=seed,
        today=today,
        history_days=history_days,
        faults={
            "latency_ms": latency_ms,
            "latency_jitter_ms": latency_jitter_ms,
            "error_rate": error_rate,
            "timeout_after_commit_rate": timeout_after_commit_rate,
            "hang_seconds": hang_seconds,
            "drop_rate": drop_rate,
            "rate_limit": rate_limit,
            "rate_limit_window": rate_limit_window,
            "premium": not no_premium,
            "stale_count_ttl": stale_count_ttl,
            "careless": careless,
            "careless_answer_rate": careless_answer_rate,
            "seed": seed,
        },
        webhook_url=webhook_url,
        webhook_algo=webhook_algo,
        webhook_hmac_key=webhook_hmac_key,
        autopay={"rate": pay_rate, "min_delay_s": pay_delay_min, "max_delay_s": pay_delay_max},
    )
    if not 0 <= port <= 65535:
        raise _fail(f"--port must be between 0 and 65535, got {port}")
    try:
        serve(options, host=host, port=port)
    except ServeError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        pass


def build_options(
    *,
    api_key: str,
    data: Path | None,
    customers: int | None,
    invoices_per_customer: int | None,
    seed: int,
    today: str | None,
    faults: dict[str, object],
    history_days: int = 0,
    webhook_url: str | None,
    webhook_algo: str,
    webhook_hmac_key: str | None,
    autopay: dict[str, float] | None = None,
) -> SandboxOptions:
    """Validate flags into options; raises typer.Exit(2) with a one-line error."""
    if not api_key:
        raise _fail("--api-key must not be empty")
    day: date | None = None
    if today is not None:
        try:
            day = date.fromisoformat(today)
        except ValueError:
            raise _fail(f"--today must be a date like 2025-01-31, got {today!r}") from None
    try:
        fault_settings = FaultSettings(**faults)  # type: ignore[arg-type]
    except FaultSettingsError as exc:
        raise _fail(f"--{str(exc).replace('_', '-')}") from None
    try:
        autopay_settings = AutopaySettings(**(autopay or {}), seed=seed)
    except AutopaySettingsError as exc:
        raise _fail(f"--{str(exc).replace('_', '-')}") from None
    if webhook_algo not in ("jwt", "hmac"):
        raise _fail(f"--webhook-algo must be jwt or hmac, got {webhook_algo!r}")
    if webhook_algo == "hmac" and not webhook_hmac_key:
        raise _fail("--webhook-algo hmac needs --webhook-hmac-key")
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        raise _fail(f"--webhook-url must be an http(s) URL, got {webhook_url!r}")
    source: DataSource
    if data is not None:
        if customers is not None or invoices_per_customer is not None or history_days:
            raise _fail("use either --data or --customers/--invoices-per-customer, not both")
        source = data
    else:
        try:
            source = GeneratorSpec(
                customers=50 if customers is None else customers,
                invoices_per_customer=4 if invoices_per_customer is None else invoices_per_customer,
                seed=seed,
                odd_invoices=fault_settings.careless,
                history_days=history_days,
            )
        except ValueError as exc:
            raise _fail(f"--{str(exc).replace('_', '-')}") from None
    options = SandboxOptions(
        api_key=api_key,
        data=source,
        today=day,
        faults=fault_settings,
        webhook=WebhookConfig(
            url=webhook_url,
            algorithm="hmac" if webhook_algo == "hmac" else "jwt",
            hmac_key=webhook_hmac_key or "",
        ),
        autopay=autopay_settings,
    )
    if isinstance(source, Path):
        try:
            build_dataset_from(source, day or datetime.now(UTC).date())
        except DataError as exc:
            raise _fail(str(exc)) from None
    return options


def main() -> None:
    typer.run(sandbox_command)
