"""Outbound email: building a message and handing it to SMTP or to the outbox folder."""

from worker.mail.message import Letter, build_message, message_id_for
from worker.mail.senders import (
    MailError,
    MailNotSentError,
    MailOutcomeUnknownError,
    MailSender,
    OutboxSender,
    SmtpSender,
    sender_from_settings,
)

__all__ = [
    "Letter",
    "MailError",
    "MailNotSentError",
    "MailOutcomeUnknownError",
    "MailSender",
    "OutboxSender",
    "SmtpSender",
    "build_message",
    "message_id_for",
    "sender_from_settings",
]
