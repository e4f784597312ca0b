"""The `retry_and_email` channel: for a Lago without the premium licence.

For one claimed intent (a group's overdue invoices), or with `email_scope: customer` that
intent and the customer's other pending intents on this channel (claimed with it, each
keeping its own ledger row):
1. `prepare_group`: steps an earlier holder left `started` become `unknown`; each invoice is
   read again and only those still owed are kept; where the customer has a payment provider,
   each is retried once and linked where Lago can. An email step from an earlier try means
   the email is never sent again: `sent` if it was accepted, `needs_review` if unknown.
2. Send ONE email listing the invoices, amounts due and links. The email step is stamped on
   every intent of the email with its Message-ID (derived from the intents' keys) before
   SMTP; accepted: the intents are `sent` in the same transaction. Certainly not sent:
   rescheduled after the settle window. Outcome unknown (the connection dropped after the
   body): `needs_review`, never resent.
No address: the retries stand and the intent is refused `no_email` (a reasoned skip); no
invoice owed any more: refused `invoices_not_overdue` (the sweep re-evaluates the group).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from config.policies import Policy, PolicySet
from worker.lago.models import Invoice
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
from worker.services.send_types import (
    SendContext,
    SendOutcome,
    SendStatus,
    lease_lost,
    not_claimed,
)
from worker.store import channel_intents, channel_steps, group_states, intents
from worker.store.channel_steps import StepRef
from worker.store.db import read_session, write_tx
from worker.store.intents import ClaimedIntent

from .base import RETRY_AND_EMAIL
from .invoice_steps import InvoicePaymentsApi, LeaseLostError, StopSendingError
from .prepare_group import Prepared, UnreadableError, prepare
from .statement_for import build_statement, company_name, recipients

log = get_logger(__name__)

NOT_OVERDUE = "invoices_not_overdue"


def still_held(ctx: SendContext, intent: ClaimedIntent) -> bool:
    with read_session(ctx.engine) as session:
        return channel_intents.holds_lease(
            session, intent_id=intent.id, owner=ctx.owner, now=ctx.now()
        )


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
    lease_seconds: int = 300
    name: str = RETRY_AND_EMAIL

    def send(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        return replace(self._send_held(ctx, intent), channel=self.name)

    def _send_held(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        if not still_held(ctx, intent):
            # Sent along with a sibling's email (email_scope: customer), or the lease is gone.
            return not_claimed(intent.id)
        batch = [intent, *self._siblings(ctx, intent)]
        try:
            return self._send(ctx, batch)
        except LeaseLostError:
            return lease_lost(intent.id, posted=True)
        except (StopSendingError, UnreadableError) as exc:
            code = "unauthorized" if isinstance(exc, StopSendingError) else "lago_unreadable"
            with write_tx(ctx.engine) as session:
                outcomes = [retry_soon(ctx, session, one, code, exc.error) for one in batch]
            return outcomes[0]

    def _policy(self, intent: ClaimedIntent) -> Policy | None:
        if self.policies is None or intent.policy is None:
            return None
        return self.policies.by_name(intent.policy)

    def _customer_scope(self, intent: ClaimedIntent) -> bool:
        policy = self._policy(intent)
        return policy is not None and policy.email_scope == "customer"

    def _siblings(self, ctx: SendContext, intent: ClaimedIntent) -> list[ClaimedIntent]:
        """With `email_scope: customer`: the customer's other open intents on this channel
        whose policy says the same, claimed now (or already held by us) to share the email."""
        if not self._customer_scope(intent):
            return []
        with read_session(ctx.engine) as session:
            candidates = channel_intents.open_intent_ids(
                session,
                external_customer_id=intent.external_customer_id,
                channel=RETRY_AND_EMAIL,
                exclude=intent.id,
            )
            held = channel_intents.held_intents(
                session, owner=ctx.owner, intent_ids=candidates, now=ctx.now()
            )
        held_ids = {one.id for one in held}
        free = [intent_id for intent_id in candidates if intent_id not in held_ids]
        claimed = []
        if free:
            claimed = intents.claim_intents(
                ctx.engine,
                owner=ctx.owner,
                now=ctx.now(),
                lease_seconds=self.lease_seconds,
                limit=len(free),
                intent_ids=free,
            )
        joined = [one for one in [*held, *claimed] if self._customer_scope(one)]
        others = [one.id for one in claimed if not self._customer_scope(one)]
        if others:
            with write_tx(ctx.engine) as session:
                intents.release_unstarted(
                    session, owner=ctx.owner, intent_ids=others, now=ctx.now()
                )
        return joined

    def _send(self, ctx: SendContext, batch: list[ClaimedIntent]) -> SendOutcome:
        outcomes: dict[int, SendOutcome] = {}
        ready: list[Prepared] = []
        for intent in batch:
            prepared = prepare(ctx, self.api, intent)
            if prepared.earlier_email is not None:
                outcomes[intent.id] = self._after_earlier_email(ctx, prepared)
            elif not prepared.owed:
                why = "none of the invoices is owed any more"
                outcomes[intent.id] = self._final(ctx, intent, NOT_OVERDUE, why)
            else:
                ready.append(prepared)
        if ready:
            for outcome in self._email(ctx, ready):
                outcomes[outcome.intent_id] = outcome
        return outcomes[batch[0].id]

    def _email(self, ctx: SendContext, ready: list[Prepared]) -> list[SendOutcome]:
        lead = ready[0]
        customer = next((p.customer for p in ready if p.customer is not None), None)
        summary = "; ".join(p.summary for p in ready)
        to = recipients(lead.intent.email, customer.email if customer else None)
        if not to:
            why = f"{summary}; the customer has no email address"
            return [self._final(ctx, p.intent, "no_email", why) for p in ready]
        owed = [invoice for p in ready for invoice in p.owed]
        statement = build_statement(
            owed,
            customer,
            external_customer_id=lead.intent.external_customer_id,
            links={k: v for p in ready for k, v in p.links.items()},
            retried=[lago_id for p in ready for lago_id in p.retried],
            company=company_name(self.mail.sender),
            reply_to=self.mail.reply_to,
        )
        policy = self._policy(lead.intent)
        template = policy.template_for(lead.intent.attempt_number) if policy else None
        try:
            rendered = render(statement, template)
        except TemplateRenderError as exc:
            return [self._final(ctx, p.intent, "template_error", str(exc)) for p in ready]
        message_id = message_id_for(" + ".join(sorted(email_key(p.intent) for p in ready)))
        letter = Letter(to, rendered.subject, rendered.text, rendered.html, message_id)
        message = build_message(
            letter, sender=self.mail.sender, reply_to=self.mail.reply_to, now=ctx.now()
        )
        refs = [StepRef(p.intent.id, ctx.owner, "email") for p in ready]
        with write_tx(ctx.engine) as session:
            for ref in refs:
                if not channel_steps.start_step(
                    session, ref, now=ctx.now(), message_id=message_id, recipients=", ".join(to)
                ):
                    raise LeaseLostError  # rolls back every stamp of this email
        try:
            self.mailer.send(message)
        except MailNotSentError as exc:
            return self._not_sent(ctx, ready, refs, exc)
        except MailOutcomeUnknownError as exc:
            with write_tx(ctx.engine) as session:
                for ref in refs:
                    channel_steps.finish_step(
                        session, ref, now=ctx.now(), status="unknown",
                        error_code="mail_unknown", detail=str(exc),
                    )  # fmt: skip
            return [self._review(ctx, p.intent, message_id, str(exc)) for p in ready]
        detail = f"emailed {len(to)} recipient(s), {len(owed)} invoices; {summary}"
        with write_tx(ctx.engine) as session:
            now = ctx.now()
            recorded = [
                channel_steps.finish_step(session, ref, now=now, status="done")
                and _record_emailed(session, p.intent, p.owed, now, detail)
                for ref, p in zip(refs, ready, strict=True)
            ]
        log.info("channel.emailed", intent_ids=[p.intent.id for p in ready], message_id=message_id)
        return [
            SendOutcome(p.intent.id, SendStatus.SENT, detail=detail, posted=True)
            if ok
            else lease_lost(p.intent.id, posted=True)
            for ok, p in zip(recorded, ready, strict=True)
        ]

    def _not_sent(
        self,
        ctx: SendContext,
        ready: list[Prepared],
        refs: list[StepRef],
        exc: MailNotSentError,
    ) -> list[SendOutcome]:
        """The mail server was unreachable or refused: try again once the settle window has
        passed (an outage is seldom over in seconds)."""
        with write_tx(ctx.engine) as session:
            when = ctx.now() + ctx.settle
            outcomes = []
            for ref, prepared in zip(refs, ready, strict=True):
                channel_steps.forget_step(session, ref, now=ctx.now())
                outcomes.append(
                    reschedule(
                        ctx, session, prepared.intent, when, "mail_not_sent", exc, clear=True
                    )
                )
        return outcomes

    def _after_earlier_email(self, ctx: SendContext, prepared: Prepared) -> SendOutcome:
        """An earlier try got as far as the email: never send it again."""
        intent, email = prepared.intent, prepared.earlier_email
        assert email is not None
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
            f"in the mailbox; if it is not there, `dunning retry {intent.id}` sends it again"
        )
        return self._close(ctx, intent, SendStatus.NEEDS_REVIEW, "email_unknown", reason)

    def _final(self, ctx: SendContext, intent: ClaimedIntent, code: str, why: str) -> SendOutcome:
        return self._close(ctx, intent, SendStatus.REFUSED, code, why)

    def _close(
        self, ctx: SendContext, intent: ClaimedIntent, status: SendStatus, code: str, why: str
    ) -> SendOutcome:
        """Refused (the next sweep re-evaluates the group) or to review, if we hold the lease."""
        posted = status is SendStatus.NEEDS_REVIEW
        record = intents.record_needs_review if posted else channel_intents.record_refused_because
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


def _record_emailed(
    session: Session, intent: ClaimedIntent, owed: list[Invoice], now: datetime, detail: str
) -> bool:
    """The intent is sent and the group's attempt counted (in the caller's transaction)."""
    invoice_ids = [invoice.lago_id for invoice in owed] or list(intent.invoice_ids)
    if not channel_intents.record_emailed(
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
