"""One email as the worker sends it: text and HTML alternatives, a Message-ID from its key.

The Message-ID is derived from the ledger key of the send (`message_id_for`), so the same
intent always produces the same id: a duplicate that slipped through is recognisable
downstream (mail servers, help desks and the chaos audit count by it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

MESSAGE_ID_DOMAIN = "lago-dunning"


def message_id_for(key: str) -> str:
    """`<{sha256(key)[:32]}@lago-dunning>`: stable per key, reveals nothing of it."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{MESSAGE_ID_DOMAIN}>"


@dataclass(frozen=True, slots=True)
class Letter:
    """What to send, before it becomes a MIME message."""

    to: tuple[str, ...]
    subject: str
    text: str
    html: str
    message_id: str


def build_message(
    letter: Letter, *, sender: str, reply_to: str | None, now: datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(letter.to)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = letter.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = letter.message_id
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps every line short (SMTP allows 998 characters), whatever the
    # template makes.
    message.set_content(letter.text, cte="quoted-printable")
    message.add_alternative(letter.html, subtype="html", cte="quoted-printable")
    return message
