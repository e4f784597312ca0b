"""Hand a message to SMTP, or keep it as an .eml file in the outbox folder.

What each failure means for exactly-once (an email cannot be recalled):

- `MailNotSentError`: the server certainly did not take the message (no connection, TLS or
  login refused, sender or every recipient refused, or a failure before the message body
  was handed over). Safe to try again later.
- `MailOutcomeUnknownError`: the failure came while or after the body was handed over
  (the connection dropped after DATA, no answer in time, an answer we cannot read). The
  server may have accepted it: the caller must not resend blindly.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Protocol

from config import Settings
from config.settings import SmtpSecurity


class MailError(Exception):
    """One line, never the password."""


class MailNotSentError(MailError):
    pass


class MailOutcomeUnknownError(MailError):
    pass


class MailSender(Protocol):
    #: Where messages go, for logs and pages (no password).
    destination: str

    def send(self, message: EmailMessage) -> None: ...


class OutboxSender:
    """Writes each message as `<outbox>/<message-id hash>.eml` (atomic rename: a message is
    there whole or not at all; the same Message-ID writes the same file)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.destination = f"outbox {folder}"

    def send(self, message: EmailMessage) -> None:
        message_id = str(message["Message-ID"]).strip("<>")
        name = message_id.split("@", 1)[0] + ".eml"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
            os.replace(tmp, self.folder / name)
        except OSError as exc:
            raise MailNotSentError(f"could not write to {self.folder}: {exc.strerror}") from exc


class SmtpSender:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: SmtpSecurity,
        user: str | None,
        password: str | None,
        timeout_s: float,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.user = user
        self._password = password
        self.timeout_s = timeout_s
        self.tls_context = tls_context or ssl.create_default_context()
        self.destination = f"smtp {host}:{port} ({security.value})"

    def __repr__(self) -> str:
        return f"SmtpSender({self.destination!r}, user={self.user!r})"

    def send(self, message: EmailMessage) -> None:
        smtp = self._open()
        try:
            self._hand_over(smtp, message)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _open(self) -> smtplib.SMTP:
        try:
            if self.security is SmtpSecurity.TLS:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s, context=self.tls_context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            smtp.ehlo()
            if self.security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=self.tls_context)
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise MailNotSentError(
                f"{self.destination} refused the login ({exc.smtp_code})"
            ) from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise MailNotSentError(f"could not open {self.destination}: {_one_line(exc)}") from exc
        return smtp

    def _hand_over(self, smtp: smtplib.SMTP, message: EmailMessage) -> None:
        def refused(what: str) -> str:
            return f"{self.destination} refused {what}"

        sender = str(message["From"])
        recipients = [a.strip() for a in str(message["To"]).split(",") if a.strip()]
        try:
            code, _ = smtp.mail(_address(sender))
            if code != 250:
                raise MailNotSentError(refused(f"the sender ({code})"))
            accepted = 0
            for recipient in recipients:
                code, _ = smtp.rcpt(recipient)
                accepted += code in (250, 251)
            if not accepted:
                raise MailNotSentError(refused(f"every recipient ({code})"))
        except (smtplib.SMTPException, OSError) as exc:
            raise MailNotSentError(
                f"{self.destination} failed before the message: {_one_line(exc)}"
            ) from exc
        try:
            code, _ = smtp.data(message.as_bytes(policy=SMTP_POLICY))
        except smtplib.SMTPDataError as exc:
            # smtplib raises this only when DATA itself is refused: no body was sent.
            raise MailNotSentError(refused(f"the message ({exc.smtp_code})")) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise MailOutcomeUnknownError(
                f"{self.destination} went away while taking the message: {_one_line(exc)}"
            ) from exc
        if code != 250:
            # The server read the body and answered no: it did not take it.
            raise MailNotSentError(refused(f"the message ({code})"))


def _address(header: str) -> str:
    if "<" in header and header.endswith(">"):
        return header[header.rindex("<") + 1 : -1]
    return header.strip()


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:200]


def sender_from_settings(settings: Settings) -> MailSender:
    if settings.smtp_host is None:
        return OutboxSender(settings.outbox_dir)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpSender(
        settings.smtp_host,
        settings.resolved_smtp_port,
        security=settings.smtp_security,
        user=settings.smtp_user,
        password=password,
        timeout_s=settings.smtp_timeout_s,
        tls_context=_tls_context(settings.smtp_ca_file),
    )


def _tls_context(ca_file: Path | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise MailError(f"DUNNING_SMTP_CA_FILE {ca_file}: cannot be read as PEM ({exc})") from exc
