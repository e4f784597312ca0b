"""The channels end to end through `run_sweep`: a no-premium sandbox as Lago, a real SMTP
server (aiosmtpd), both database engines. One email per group, each retry and link once,
the fallback of `auto` remembered, unknown outcomes never repeated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config import load_settings
from config.settings import SmtpSecurity
from tests.e2e.sweep_support import sweep_runtime, test_settings, write_policy
from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.smtp import SMTP_PASSWORD, SMTP_USER, SmtpCapture
from tests.sandbox.builders import customer, document, invoice
from worker.mail import SmtpSender, sender_from_settings
from worker.services.operator import Actor
from worker.services.retry_intent import retry_intent
from worker.services.sweep import SweepSummary, run_sweep
from worker.store.db import make_engine, read_session
from worker.store.migrate import upgrade
from worker.store.models import ChannelStep, PaymentRequestIntent

STRIPE = {"payment_provider": "stripe"}
RETRY = "POST /api/v1/invoices/{lago_id}/retry_payment"
LINK = "POST /api/v1/invoices/{lago_id}/payment_url"
PAYMENT_REQUESTS = "POST /api/v1/payment_requests"


def policy_text(channel: str, extra: str = "") -> str:
    return f"""\
version: 1
policies:
  - name: everyone
    min_overdue_cents: {{USD: 1, EUR: 1}}
    days_between_attempts: 3
    max_attempts: 2
    channel: {channel}
{extra}"""


@pytest.fixture
def db(db_url: str) -> str:
    upgrade(db_url)
    return db_url


@pytest.fixture
def customers(sandbox: SandboxHandle) -> dict[str, list[str]]:
    """card: Stripe, two USD invoices and one EUR; transfer: no provider, one USD; mute: no
    email, Stripe, one USD; direct: GoCardless (no links), one USD."""
    rows = {
        "card": [invoice("card"), invoice("card", total_amount_cents=25_000)],
        "card_eur": [invoice("card", currency="EUR")],
        "transfer": [invoice("transfer")],
        "mute": [invoice("mute")],
        "direct": [invoice("direct")],
    }
    people = [
        customer("card", name="Card Co", billing_configuration=STRIPE),
        customer(
            "transfer", name="Transfer Ltd", email="ap@transfer.example, cfo@transfer.example"
        ),
        customer("mute", email=None, billing_configuration=STRIPE),
        customer("direct", billing_configuration={"payment_provider": "gocardless"}),
    ]
    sandbox.reset(data=document(people, [i for group in rows.values() for i in group]))
    sandbox.set_faults(premium=False)
    sandbox.reset_stats()
    return {name: [i["lago_id"] for i in group] for name, group in rows.items()}


@dataclass
class Env:
    """A migrated database, the sandbox with `customers`, an SMTP server and a folder."""

    db: str
    sandbox: SandboxHandle
    invoices: dict[str, list[str]]
    smtp: SmtpCapture
    folder: Path

    def sweep(self, channel: str, **extra: Any) -> SweepSummary:
        return _sweep(self.db, self.sandbox, self.folder, channel, self.smtp, **extra)

    def intents(self) -> list[PaymentRequestIntent]:
        return _intents(self.db)


@pytest.fixture
def env(
    db: str,
    sandbox: SandboxHandle,
    customers: dict[str, list[str]],
    smtp_server: SmtpCapture,
    tmp_path: Path,
) -> Env:
    return Env(db, sandbox, customers, smtp_server, tmp_path)


def _sweep(
    db_url: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
    channel: str,
    smtp: SmtpCapture,
    **extra: Any,
) -> SweepSummary:
    policy = write_policy(tmp_path, text=policy_text(channel, extra.pop("policy_extra", "")))
    settings = test_settings(
        db_url,
        sandbox,
        policy,
        data_dir=tmp_path / "data",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="Acme Billing <billing@acme.example>",
        **{"smtp_security": "none", **extra},
    )
    with sweep_runtime(settings) as rt:
        return run_sweep(rt, trigger="cli")


def _intents(db_url: str) -> list[PaymentRequestIntent]:
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = list(
                session.scalars(select(PaymentRequestIntent).order_by(PaymentRequestIntent.id))
            )
            session.expunge_all()
            return rows
    finally:
        engine.dispose()


def _steps(db_url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            return [
                (row.kind, row.lago_invoice_id, row.status)
                for row in session.scalars(select(ChannelStep).order_by(ChannelStep.id))
            ]
    finally:
        engine.dispose()


def test_auto_falls_back_and_sends_one_email_per_group(env: Env) -> None:
    summary = env.sweep("auto")
    assert summary.blocked is None
    assert summary.sent_by_channel == {"retry_and_email": 4}
    assert summary.as_dict()["payment_requests_created"] == 0
    # The first group met the 403; every later one went straight to the fallback.
    assert env.sandbox.request_count(PAYMENT_REQUESTS) == 1
    assert (env.folder / "data" / "licence.json").exists()
    rows = {(i.external_customer_id, i.currency): i for i in env.intents()}
    assert {key: row.channel for key, row in rows.items()} == {
        ("card", "USD"): "retry_and_email",
        ("card", "EUR"): "retry_and_email",
        ("transfer", "USD"): "retry_and_email",
        ("mute", "USD"): "retry_and_email",
        ("direct", "USD"): "retry_and_email",
    }
    statuses = {key: (row.status, row.last_error_code) for key, row in rows.items()}
    assert statuses[("mute", "USD")] == ("refused", "no_email")
    others = {key: value for key, value in statuses.items() if key[0] != "mute"}
    assert others == dict.fromkeys(others, ("sent", None))

    # Retries: the provider customers' invoices (mute too: no email does not stop a retry).
    retried = {row["lago_id"] for row in env.sandbox.invoice_payments()["retries"]}
    assert retried == {
        *env.invoices["card"],
        *env.invoices["card_eur"],
        *env.invoices["mute"],
        *env.invoices["direct"],
    }
    # Links: where Lago can make them (not GoCardless, not without a provider).
    linked = set(env.sandbox.invoice_payments()["payment_urls"])
    assert linked == {*env.invoices["card"], *env.invoices["card_eur"], *env.invoices["mute"]}

    # One email per group (card has two: USD and EUR), each Message-ID once.
    ids = env.smtp.message_ids()
    assert len(ids) == 4
    assert set(ids.values()) == {1}
    by_to = {tuple(m.recipients): m.message for m in env.smtp.messages}
    assert ("ap@transfer.example", "cfo@transfer.example") in by_to
    card_usd = next(
        m.message
        for m in env.smtp.messages
        if m.recipients == ["card@billing.example"]
        and "USD" in m.message.get_body(("plain",)).get_content()
    )
    text = card_usd.get_body(("plain",)).get_content()
    assert "350.00 USD" in text
    assert "https://checkout.stripe.example/pay/" in text
    html = card_usd.get_body(("html",)).get_content()
    assert "<table" in html
    assert "Card Co" in html


def test_a_second_sweep_sends_nothing_again_and_auto_goes_straight_to_the_fallback(
    env: Env,
) -> None:
    env.sweep("auto")
    retries = len(env.sandbox.invoice_payments()["retries"])
    env.sweep("auto")
    assert len(env.smtp.messages) == 4
    assert len(env.sandbox.invoice_payments()["retries"]) == retries
    assert env.sandbox.request_count(PAYMENT_REQUESTS) == 1


def test_payment_request_channel_still_stops_without_the_licence(env: Env) -> None:
    from worker.lago.errors import FeatureUnavailableError

    with pytest.raises(FeatureUnavailableError):
        env.sweep("payment_request")
    assert env.smtp.messages == []
    assert env.sandbox.invoice_payments()["retries"] == []


def test_an_email_whose_outcome_is_unknown_goes_to_review_and_is_never_resent(env: Env) -> None:
    env.smtp.handler.drop_after_data = True
    env.sweep("retry_and_email")
    rows = env.intents()
    reviewed = [row for row in rows if row.status == "needs_review"]
    assert len(reviewed) == 4  # every group with an address
    assert all(row.last_error_code == "email_unknown" for row in reviewed)
    assert all("Message-ID <" in (row.last_error or "") for row in reviewed)
    env.smtp.handler.drop_after_data = False
    env.sweep("retry_and_email")
    assert set(env.smtp.message_ids().values()) == {1}
    assert len(env.smtp.messages) == 4
    # The operator decides to send one again: the same Message-ID, so the copy is recognisable.
    engine = make_engine(env.db)
    try:
        retry_intent(
            engine,
            intent_id=reviewed[0].id,
            now=datetime.now(UTC),
            actor=Actor(name="ana", source="cli"),
            reason="checked the mailbox: not received",
        )
    finally:
        engine.dispose()
    env.sweep("retry_and_email")
    assert sorted(env.smtp.message_ids().values()) == [1, 1, 1, 2]
    assert {row.id: row.status for row in env.intents()}[reviewed[0].id] == "sent"


def test_a_mail_server_that_is_down_reschedules_and_the_retries_are_not_repeated(env: Env) -> None:
    env.smtp.stop()
    env.sweep("retry_and_email")
    rows = [row for row in env.intents() if row.external_customer_id != "mute"]
    assert {(row.status, row.last_error_code) for row in rows} == {("pending", "mail_not_sent")}
    retries = len(env.sandbox.invoice_payments()["retries"])
    assert retries == 5  # every invoice of a customer with a provider, once
    assert ("email", "", "started") not in _steps(env.db)


def test_a_5xx_on_retry_payment_is_unknown_and_the_email_still_goes(env: Env) -> None:
    env.sandbox.set_faults(retry_payment_error_rate=1.0)
    env.sweep("retry_and_email")
    retry_steps = [s for s in _steps(env.db) if s[0] == "retry"]
    assert retry_steps
    assert {status for _, _, status in retry_steps} == {"unknown"}
    assert len(env.smtp.messages) == 4
    # Taken once each by Lago, never asked again.
    assert env.sandbox.request_count(RETRY) == len(retry_steps)


def test_templates_per_policy_and_per_step(env: Env) -> None:
    extra = """\
    email_template:
      subject: "Reminder for {{ customer_name }}"
      html: "<p>Hi {{ customer_name }}</p>"
"""
    env.sweep("retry_and_email", policy_extra=extra)
    subjects = {str(m.message["Subject"]) for m in env.smtp.messages}
    assert "Reminder for Transfer Ltd" in subjects
    html = env.smtp.messages[0].message.get_body(("html",)).get_content()
    assert html.startswith("<p>Hi ")
    # The text part was not overridden: the default.
    text = env.smtp.messages[0].message.get_body(("plain",)).get_content()
    assert "Total due:" in text


def test_a_sweep_sends_over_starttls_with_the_login_from_settings(
    db: str,
    sandbox: SandboxHandle,
    customers: dict[str, list[str]],
    starttls_server: SmtpCapture,
    tmp_path: Path,
) -> None:
    summary = _sweep(
        db,
        sandbox,
        tmp_path,
        "retry_and_email",
        starttls_server,
        smtp_security="starttls",
        smtp_user=SMTP_USER,
        smtp_password=SMTP_PASSWORD,
        smtp_ca_file=starttls_server.ca_file,
    )
    assert summary.outcomes["sent"] == 4
    assert len(starttls_server.messages) == 4


def test_the_smtp_password_is_in_no_repr(tmp_path: Path) -> None:
    settings = load_settings(
        smtp_host="mail.example", smtp_user=SMTP_USER, smtp_password=SMTP_PASSWORD
    )
    sender = sender_from_settings(settings)
    assert isinstance(sender, SmtpSender)
    assert sender.security is SmtpSecurity.STARTTLS
    assert SMTP_PASSWORD not in repr(sender)
    assert SMTP_PASSWORD not in repr(settings)
    assert SMTP_PASSWORD in settings.secret_values()  # so log scrubbing hides it


def test_status_and_report_split_by_channel(env: Env) -> None:
    from datetime import UTC, datetime

    from worker.read.recovery import recovery
    from worker.services.status import build_status

    env.sweep("auto")
    engine = make_engine(env.db)
    try:
        report = build_status(engine, now=datetime.now(UTC))
        with read_session(engine) as session:
            rows = recovery(session, since=None).rows
    finally:
        engine.dispose()
    assert report.by_channel == {"retry_and_email": {"refused": 1, "sent": 4}}
    assert report.channel_steps["email"] == {"done": 4}
    assert report.channel_steps["retry"] == {"done": 5}
    assert report.to_json()["by_channel"]["retry_and_email"]["sent"] == 4
    assert {(row.currency, row.channel, row.asked) for row in rows} == {
        ("USD", "retry_and_email", 3),
        ("EUR", "retry_and_email", 1),
    }


@pytest.mark.parametrize("processes", [1, 3])
@pytest.mark.parametrize("channel", ["retry_and_email", "auto"])
def test_customer_scope_sends_one_statement_across_currencies(
    env: Env, channel: str, processes: int
) -> None:
    # With several send processes, a customer's intents all go to one of them (a statement
    # gathers the siblings its own process holds).
    summary = env.sweep(
        channel, policy_extra="    email_scope: customer\n", send_processes=processes
    )
    assert summary.outcomes["sent"] == 3  # the fourth sent intent went with a sibling's email
    card = [row for row in env.intents() if row.external_customer_id == "card"]
    assert sorted((row.currency, row.status) for row in card) == [("EUR", "sent"), ("USD", "sent")]
    ids = env.smtp.message_ids()
    assert len(ids) == 3  # card (USD and EUR together), transfer, direct; mute has no address
    assert set(ids.values()) == {1}
    [statement] = [m.message for m in env.smtp.messages if m.recipients == ["card@billing.example"]]
    text = statement.get_body(("plain",)).get_content()
    assert "350.00 USD" in text
    assert "100.00 EUR" in text
    assert "Total due: 100.00 EUR, 350.00 USD" in text
    # Both intents carry the one email, under one Message-ID.
    email_steps = {(kind, status) for kind, _, status in _steps(env.db) if kind == "email"}
    assert email_steps == {("email", "done")}
    assert len(env.sandbox.invoice_payments()["retries"]) == 5
