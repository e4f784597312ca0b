"""The `retry_and_email` channel: for a Lago without the premium licence.

For one claimed intent (a group's overdue invoices):
1. Steps an earlier holder started and never recorded become `unknown` (never repeated); an
   email in that state sends the intent to review (an email cannot be recalled).
2. Read each invoice again (`GET /invoices/{id}`): only those still owed are retried, linked
   and listed; none left: refused `invoices_not_overdue` (the sweep re-evaluates the group).
3. Where the customer has a payment provider: retry each invoice's payment, once
   (`invoice_steps.retry_invoice`), and get a payment link where Lago can make one.
4. Send ONE email listing the invoices, amounts due and links. The email step is stamped
   with its Message-ID (derived from the intent's key) before SMTP; accepted: the intent is
   `sent` in the same transaction. Certainly not sent: rescheduled. Outcome unknown (the
   connection dropped after the body): `needs_review`, never resent.
No address: the retries stand and the intent is refused `no_email` (a reasoned skip).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from config.policies import PolicySet
from worker.lago.errors import LagoError, LagoNotFoundError
from worker.lago.models import Customer, Invoice
from worker.logging import get_logger
from worker.mail import (
    Letter,
    MailNotSentError,
    MailOutcomeUnknownError,
    MailSender,
    build_message,
    message_id_for,
)
from worker.mail.statement import TemplateRenderError, render
from worker.services.send_recording import reschedule, retry_soon
from worker.services.send_types import SendContext, SendOutcome, SendStatus, lease_lost
from worker.store import channel_steps, group_states, intents
from worker.store.channel_steps import EMAIL, Step, StepRef
from worker.store.db import write_tx
from worker.store.intents import ClaimedIntent

from .base import RETRY_AND_EMAIL
from .invoice_steps import (
    NO_LINK_PROVIDERS,
    InvoicePaymentsApi,
    LeaseLostError,
    StopSendingError,
    link_for_invoice,
    retry_invoice,
)
from .statement_for import build_statement, company_name, recipients, still_owed

log = get_logger(__name__)

NOT_OVERDUE = "invoices_not_overdue"


def email_key(intent: ClaimedIntent) -> str:
    """What makes this email this email: the group, the attempt and the invoices."""
    return f"{intent.group_key}|{intent.attempt_number}|{','.join(sorted(intent.invoice_ids))}"


@dataclass(frozen=True, slots=True)
class MailSettings:
    sender: str  # the From header
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class RetryAndEmailChannel:
    api: InvoicePaymentsApi
    mailer: MailSender
    mail: MailSettings
    policies: PolicySet | None = None
    name: str = RETRY_AND_EMAIL

    def send(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        try:
            return self._send(ctx, intent)
        except LeaseLostError:
            return lease_lost(intent.id, posted=True)
        except StopSendingError as exc:
            with write_tx(ctx.engine) as session:
                return retry_soon(ctx, session, intent, "unauthorized", exc.error)

    def _send(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        with write_tx(ctx.engine) as session:
            channel_steps.settle_started(
                session, intent_id=intent.id, owner=ctx.owner, now=ctx.now()
            )
            steps = channel_steps.steps_of(session, intent.id)
        email = steps.get(("email", EMAIL))
        if email is not None:
            return self._after_earlier_email(ctx, intent, email)
        owed: list[Invoice] = []
        for lago_id in intent.invoice_ids:
            try:
                invoice = self.api.get_invoice(lago_id)
            except LagoNotFoundError:
                continue
            except LagoError as exc:
                return self._reschedule(ctx, intent, "lago_unreadable", exc)
            if still_owed(invoice):
                owed.append(invoice)
        if not owed:
            return self._final(ctx, intent, NOT_OVERDUE, "none of the invoices is owed any more")
        customer = owed[0].customer
        provider = customer.payment_provider if customer is not None else None
        retried: list[str] = []
        links: dict[str, str] = {}
        if provider:
            for invoice in owed:
                earlier = steps.get(("retry", invoice.lago_id))
                if retry_invoice(ctx, self.api, intent, invoice.lago_id, earlier):
                    retried.append(invoice.lago_id)
            if provider not in NO_LINK_PROVIDERS:
                for invoice in owed:
                    earlier = steps.get(("link", invoice.lago_id))
                    url = link_for_invoice(ctx, self.api, intent, invoice.lago_id, earlier)
                    if url:
                        links[invoice.lago_id] = url
        summary = f"{len(retried)} payment retries, {len(links)} payment links"
        to = recipients(intent.email, customer.email if customer else None)
        if not to:
            return self._final(
                ctx, intent, "no_email", f"{summary}; the customer has no email address"
            )
        return self._email(ctx, intent, owed, customer, to, links, retried, summary)

    def _email(
        self,
        ctx: SendContext,
        intent: ClaimedIntent,
        owed: list[Invoice],
        customer: Customer | None,
        to: tuple[str, ...],
        links: dict[str, str],
        retried: list[str],
        summary: str,
    ) -> SendOutcome:
        statement = build_statement(
            owed,
            customer,
            external_customer_id=intent.external_customer_id,
            links=links,
            retried=retried,
            company=company_name(self.mail.sender),
            reply_to=self.mail.reply_to,
        )
        policy = self.policies.by_name(intent.policy) if self.policies and intent.policy else None
        template = policy.template_for(intent.attempt_number) if policy else None
        try:
            rendered = render(statement, template)
        except TemplateRenderError as exc:
            return self._final(ctx, intent, "template_error", str(exc))
        message_id = message_id_for(email_key(intent))
        letter = Letter(to, rendered.subject, rendered.text, rendered.html, message_id)
        message = build_message(
            letter, sender=self.mail.sender, reply_to=self.mail.reply_to, now=ctx.now()
        )
        ref = StepRef(intent.id, ctx.owner, "email")
        with write_tx(ctx.engine) as session:
            if not channel_steps.start_step(
                session, ref, now=ctx.now(), message_id=message_id, recipients=", ".join(to)
            ):
                raise LeaseLostError
        try:
            self.mailer.send(message)
        except MailNotSentError as exc:
            with write_tx(ctx.engine) as session:
                channel_steps.forget_step(session, ref, now=ctx.now())
                # The mail server was unreachable or refused: try again once the settle
                # window has passed (an outage is seldom over in seconds).
                when = ctx.now() + ctx.settle
                return reschedule(ctx, session, intent, when, "mail_not_sent", exc, clear=True)
        except MailOutcomeUnknownError as exc:
            with write_tx(ctx.engine) as session:
                channel_steps.finish_step(
                    session,
                    ref,
                    now=ctx.now(),
                    status="unknown",
                    error_code="mail_unknown",
                    detail=str(exc),
                )
            return self._review(ctx, intent, message_id, str(exc))
        detail = f"emailed {len(to)} recipient(s), {len(owed)} invoices; {summary}"
        with write_tx(ctx.engine) as session:
            now = ctx.now()
            recorded = channel_steps.finish_step(
                session, ref, now=now, status="done"
            ) and _record_emailed(session, intent, owed, now, detail)
        if not recorded:
            return lease_lost(intent.id, posted=True)
        log.info("channel.emailed", intent_id=intent.id, message_id=message_id, invoices=len(owed))
        return SendOutcome(intent.id, SendStatus.SENT, detail=detail, posted=True)

    def _after_earlier_email(
        self, ctx: SendContext, intent: ClaimedIntent, email: Step
    ) -> SendOutcome:
        """An earlier try got as far as the email: never send it again."""
        if email.status == "done":
            with write_tx(ctx.engine) as session:
                if not _record_emailed(session, intent, [], ctx.now(), "emailed by an earlier try"):
                    return lease_lost(intent.id)
            return SendOutcome(intent.id, SendStatus.SENT, detail="emailed by an earlier try")
        return self._review(ctx, intent, email.message_id or "", email.detail or "interrupted")

    def _review(
        self, ctx: SendContext, intent: ClaimedIntent, message_id: str, why: str
    ) -> SendOutcome:
        reason = (
            f"the mail server may have taken the email ({why}); look for Message-ID {message_id} "
            "in the mailbox, then cancel the intent or retry it"
        )
        return self._close(ctx, intent, SendStatus.NEEDS_REVIEW, "email_unknown", reason)

    def _final(self, ctx: SendContext, intent: ClaimedIntent, code: str, why: str) -> SendOutcome:
        return self._close(ctx, intent, SendStatus.REFUSED, code, why)

    def _close(
        self, ctx: SendContext, intent: ClaimedIntent, status: SendStatus, code: str, why: str
    ) -> SendOutcome:
        """Refused (the next sweep re-evaluates the group) or to review, if we hold the lease."""
        posted = status is SendStatus.NEEDS_REVIEW
        record = intents.record_needs_review if posted else intents.record_refused_because
        with write_tx(ctx.engine) as session:
            recorded = record(
                session,
                intent_id=intent.id,
                owner=ctx.owner,
                now=ctx.now(),
                error_code=code,
                reason=why,
            )
        if not recorded:
            return lease_lost(intent.id, posted=posted)
        return SendOutcome(intent.id, status, error_code=code, detail=why, posted=posted)

    def _reschedule(
        self, ctx: SendContext, intent: ClaimedIntent, code: str, exc: Exception
    ) -> SendOutcome:
        with write_tx(ctx.engine) as session:
            return retry_soon(ctx, session, intent, code, exc)


def _record_emailed(
    session: Session, intent: ClaimedIntent, owed: list[Invoice], now: datetime, detail: str
) -> bool:
    """The intent is sent and the group's attempt counted (in the caller's transaction)."""
    invoice_ids = [invoice.lago_id for invoice in owed] or list(intent.invoice_ids)
    if not intents.record_emailed(
        session,
        intent_id=intent.id,
        owner=intent.lease_owner,
        now=now,
        lago_invoice_ids=invoice_ids,
        detail=detail,
    ):
        return False
    group_states.record_attempt(
        session,
        external_customer_id=intent.external_customer_id,
        currency=intent.currency,
        billing_entity_code=intent.billing_entity_code,
        invoice_ids=invoice_ids,
        now=now,
    )
    return True
