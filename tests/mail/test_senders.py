"""SMTP and outbox senders against a real SMTP server: plain, STARTTLS with a login, and
the failures that decide whether a message may be sent again."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from config.settings import SmtpSecurity
from tests.fixtures.sandbox import free_port
from tests.fixtures.smtp import SMTP_PASSWORD, SMTP_USER, SmtpCapture
from worker.mail import (
    Letter,
    MailNotSentError,
    MailOutcomeUnknownError,
    OutboxSender,
    SmtpSender,
    build_message,
    message_id_for,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _message(to: tuple[str, ...] = ("ap@customer.example",), key: str = "intent-1") -> EmailMessage:
    letter = Letter(
        to=to,
        subject="Overdue invoices",
        text="Please pay.",
        html="<p>Please pay.</p>",
        message_id=message_id_for(key),
    )
    return build_message(
        letter, sender="Billing <billing@acme.example>", reply_to="ar@acme.example", now=NOW
    )


def _plain(server: SmtpCapture) -> SmtpSender:
    return SmtpSender(
        "127.0.0.1", server.port, security=SmtpSecurity.NONE, user=None, password=None, timeout_s=5
    )


def test_message_id_is_stable_per_key_and_hides_it() -> None:
    assert message_id_for("dunning:42") == message_id_for("dunning:42")
    assert message_id_for("dunning:42") != message_id_for("dunning:43")
    assert "dunning" not in message_id_for("dunning:42").split("@")[0]
    assert message_id_for("x").endswith("@lago-dunning>")


def test_plain_smtp_delivers_text_and_html(smtp_server: SmtpCapture) -> None:
    _plain(smtp_server).send(_message(("a@x.example", "b@x.example")))
    [got] = smtp_server.messages
    assert got.recipients == ["a@x.example", "b@x.example"]
    assert got.envelope_from == "billing@acme.example"
    assert got.message["Reply-To"] == "ar@acme.example"
    assert got.message["Message-ID"] == message_id_for("intent-1")
    kinds = [part.get_content_type() for part in got.message.walk()]
    assert "text/plain" in kinds
    assert "text/html" in kinds


def test_starttls_with_login_delivers(starttls_server: SmtpCapture) -> None:
    sender = SmtpSender(
        "127.0.0.1",
        starttls_server.port,
        security=SmtpSecurity.STARTTLS,
        user=SMTP_USER,
        password=SMTP_PASSWORD,
        timeout_s=5,
        tls_context=starttls_server.client_context,
    )
    sender.send(_message())
    assert len(starttls_server.messages) == 1
    assert SMTP_PASSWORD not in repr(sender)


def test_a_wrong_password_is_not_sent_and_never_repeated_in_the_error(
    starttls_server: SmtpCapture,
) -> None:
    sender = SmtpSender(
        "127.0.0.1",
        starttls_server.port,
        security=SmtpSecurity.STARTTLS,
        user=SMTP_USER,
        password="wrong-password-xyz",
        timeout_s=5,
        tls_context=starttls_server.client_context,
    )
    with pytest.raises(MailNotSentError) as caught:
        sender.send(_message())
    assert "refused the login" in str(caught.value)
    assert "wrong-password-xyz" not in str(caught.value)
    assert starttls_server.messages == []


def test_plain_smtp_to_a_starttls_only_server_is_refused_before_the_message(
    starttls_server: SmtpCapture,
) -> None:
    with pytest.raises(MailNotSentError):
        _plain(starttls_server).send(_message())
    assert starttls_server.messages == []


def test_no_server_is_not_sent() -> None:
    sender = SmtpSender(
        "127.0.0.1", free_port(), security=SmtpSecurity.NONE, user=None, password=None, timeout_s=2
    )
    with pytest.raises(MailNotSentError, match="could not open"):
        sender.send(_message())


def test_a_connection_dropped_after_the_body_is_an_unknown_outcome(
    smtp_server: SmtpCapture,
) -> None:
    smtp_server.handler.drop_after_data = True
    with pytest.raises(MailOutcomeUnknownError):
        _plain(smtp_server).send(_message())
    # It did arrive: resending would be a duplicate.
    assert len(smtp_server.messages) == 1


def test_outbox_keeps_one_file_per_message_id(tmp_path: Path) -> None:
    outbox = OutboxSender(tmp_path / "outbox")
    outbox.send(_message(key="k1"))
    outbox.send(_message(key="k1"))
    outbox.send(_message(key="k2"))
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    parsed = email.message_from_bytes(files[0].read_bytes())
    assert parsed["Message-ID"] in {message_id_for("k1"), message_id_for("k2")}
    assert not list((tmp_path / "outbox").glob("*.tmp"))
