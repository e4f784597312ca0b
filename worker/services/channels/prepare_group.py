"""Before the email of a retry_and_email intent: what is still owed, retried and linked.

For one claimed intent: steps an earlier holder started and never recorded become `unknown`;
each invoice is read again (and checked: our invoice, our customer) and only those still owed
are kept; where the customer has a
payment provider, each kept invoice's payment is retried once and a payment link is made
where Lago can make one (`invoice_steps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker import metrics
from worker.lago.errors import LagoError, LagoNotFoundError
from worker.lago.models import Customer, Invoice
from worker.logging import get_logger
from worker.services.answer_checks import check_invoice
from worker.services.send_types import SendContext
from worker.store import channel_steps
from worker.store.channel_steps import EMAIL, Step
from worker.store.db import write_tx
from worker.store.intents import ClaimedIntent

from .invoice_steps import NO_LINK_PROVIDERS, InvoicePaymentsApi, link_for_invoice, retry_invoice
from .statement_for import still_owed

log = get_logger(__name__)


@dataclass(slots=True)
class Prepared:
    """One intent ready for its email (or, with `earlier_email`, past it already)."""

    intent: ClaimedIntent
    owed: list[Invoice] = field(default_factory=list)
    customer: Customer | None = None
    retried: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    earlier_email: Step | None = None

    @property
    def summary(self) -> str:
        return f"{len(self.retried)} payment retries, {len(self.links)} payment links"


class UnreadableError(Exception):
    """An invoice could not be read from Lago: try the intent again later."""

    def __init__(self, error: LagoError) -> None:
        super().__init__(str(error))
        self.error = error


def earlier_steps(ctx: SendContext, intent: ClaimedIntent) -> dict[tuple[str, str], Step]:
    """The intent's steps, after turning those left `started` by an earlier holder `unknown`."""
    with write_tx(ctx.engine) as session:
        channel_steps.settle_started(session, intent_id=intent.id, owner=ctx.owner, now=ctx.now())
        return channel_steps.steps_of(session, intent.id)


def prepare(ctx: SendContext, api: InvoicePaymentsApi, intent: ClaimedIntent) -> Prepared:
    steps = earlier_steps(ctx, intent)
    email = steps.get(("email", EMAIL))
    if email is not None:
        return Prepared(intent, earlier_email=email)
    prepared = Prepared(intent)
    for lago_id in intent.invoice_ids:
        try:
            invoice = api.get_invoice(lago_id)
        except LagoNotFoundError:
            continue
        except LagoError as exc:
            raise UnreadableError(exc) from exc
        mismatch = check_invoice(
            invoice, lago_id=lago_id, external_customer_id=intent.external_customer_id
        )
        if mismatch is not None:
            log.warning("channel.invoice_mismatch", intent_id=intent.id, detail=mismatch.detail)
            metrics.record_answer_mismatch("invoice", mismatch.problem)
            continue
        if still_owed(invoice):
            prepared.owed.append(invoice)
    if not prepared.owed:
        return prepared
    prepared.customer = prepared.owed[0].customer
    provider = prepared.customer.payment_provider if prepared.customer is not None else None
    if not provider:
        return prepared
    for invoice in prepared.owed:
        if retry_invoice(ctx, api, intent, invoice.lago_id, steps.get(("retry", invoice.lago_id))):
            prepared.retried.append(invoice.lago_id)
    if provider not in NO_LINK_PROVIDERS:
        for invoice in prepared.owed:
            earlier = steps.get(("link", invoice.lago_id))
            url = link_for_invoice(ctx, api, intent, invoice.lago_id, earlier)
            if url:
                prepared.links[invoice.lago_id] = url
    return prepared
