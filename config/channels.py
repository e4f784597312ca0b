"""How a policy asks: the channel, the email scope and the email templates (policy keys).

    channel: auto               # payment_request (default) | retry_and_email | auto
    email_scope: group          # group (default): one email per customer, currency and
                                # entity; customer: one statement per customer
    email_template:             # optional, per policy and per step; Jinja2 source
      subject: "{{ invoices | length }} invoices overdue at {{ company }}"
      text: |
        Hello {{ customer_name }}, ...
      html: |
        <p>Hello {{ customer_name }}, ...</p>

- `payment_request`: Lago's `POST /payment_requests` (needs Lago's premium licence).
- `retry_and_email`: for each invoice, Lago retries the payment through the customer's payment
  provider and makes a payment link where it can; the worker sends one email listing the
  invoices, amounts and links (SMTP, or .eml files in the outbox without an SMTP host).
- `auto`: payment requests, falling back to `retry_and_email` once Lago answers
  `feature_unavailable`; the fallback is remembered for the Lago instance.

A template key left out uses the default (worker/mail/templates). Templates are checked when
the policy file is loaded: a syntax error names the key and the line.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Channel = Literal["payment_request", "retry_and_email", "auto"]
EmailScope = Literal["group", "customer"]

if TYPE_CHECKING:
    from jinja2 import Environment


@cache
def _parser() -> Environment:
    from jinja2 import Environment  # here: only a policy with its own templates needs it

    return Environment(autoescape=True)


def _check_template(source: str) -> str:
    from jinja2 import TemplateSyntaxError

    try:
        _parser().parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    return source


TemplateSource = Annotated[
    str, Field(min_length=1, max_length=50_000), AfterValidator(_check_template)
]


class EmailTemplate(BaseModel):
    """Jinja2 sources; each one left out falls back to the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: TemplateSource | None = None
    text: TemplateSource | None = None
    html: TemplateSource | None = None

    def over(self, base: EmailTemplate | None) -> EmailTemplate:
        """This template's keys, the others from `base` (a step over its policy)."""
        if base is None:
            return self
        return EmailTemplate(
            subject=self.subject or base.subject,
            text=self.text or base.text,
            html=self.html or base.html,
        )
