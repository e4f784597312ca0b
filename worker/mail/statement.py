"""What one dunning email says (a statement of overdue invoices), rendered with Jinja2.

The default templates are in `worker/mail/templates/`; a policy or a step may replace any of
subject, text and HTML (`config.channels.EmailTemplate`). HTML is autoescaped; the text
part is not. Rendering runs in Jinja2's sandbox: a template can read the statement, nothing
else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from config.channels import EmailTemplate

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

#: Currencies without minor units (ISO 4217 exponent 0) among those Lago bills in.
_ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)


def money(cents: int, currency: str) -> str:
    """`1,234.56 USD` (`1,235 JPY` for currencies without minor units)."""
    if currency in _ZERO_DECIMAL:
        return f"{cents:,} {currency}"
    sign = "-" if cents < 0 else ""
    whole, minor = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{minor:02d} {currency}"


@dataclass(frozen=True, slots=True)
class StatementLine:
    lago_id: str
    number: str
    currency: str
    amount_due_cents: int
    due_date: date | None = None
    payment_url: str | None = None
    retried: bool = False

    @property
    def amount_due(self) -> str:
        return money(self.amount_due_cents, self.currency)


@dataclass(frozen=True, slots=True)
class Statement:
    customer_name: str
    external_customer_id: str
    invoices: tuple[StatementLine, ...]
    company: str = ""
    reply_to: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def totals(self) -> list[str]:
        by_currency: dict[str, int] = {}
        for line in self.invoices:
            by_currency[line.currency] = by_currency.get(line.currency, 0) + line.amount_due_cents
        return [money(cents, currency) for currency, cents in sorted(by_currency.items())]


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class TemplateRenderError(Exception):
    """A template failed at render time; one line naming the part."""


def _default(name: str) -> str:
    return resources.files("worker.mail").joinpath("templates", name).read_text("utf-8")


@cache
def _environment(*, html: bool) -> SandboxedEnvironment:
    """Jinja2 is imported on the first email rendered (a sweep without email never pays it)."""
    from jinja2.sandbox import SandboxedEnvironment

    if html:
        return SandboxedEnvironment(autoescape=True)
    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


def render(statement: Statement, template: EmailTemplate | None = None) -> Rendered:
    """The subject (one line), text and HTML of `statement`."""
    from jinja2 import TemplateError

    text, html = _environment(html=False), _environment(html=True)
    chosen = template or EmailTemplate()
    context = {
        "customer_name": statement.customer_name,
        "external_customer_id": statement.external_customer_id,
        "invoices": statement.invoices,
        "totals": statement.totals,
        "company": statement.company,
        "reply_to": statement.reply_to,
        **statement.extra,
    }
    parts: dict[str, str] = {}
    for part, environment, source in (
        ("subject", text, chosen.subject or _default("subject.j2")),
        ("text", text, chosen.text or _default("body.txt.j2")),
        ("html", html, chosen.html or _default("body.html.j2")),
    ):
        try:
            parts[part] = environment.from_string(source).render(context)
        except TemplateError as exc:
            raise TemplateRenderError(f"the email {part} template failed: {exc}") from exc
    subject = " ".join(parts["subject"].split())[:250]
    return Rendered(subject=subject, text=parts["text"], html=parts["html"])
