"""The email chaos audit on hand-made cases: duplicates by Message-ID, lost groups, retries."""

from __future__ import annotations

from bench.verify import GroupKey, IntentRow
from bench.verify_email import audit_emails

A: GroupKey = ("alice", "EUR", "acme_eu")
B: GroupKey = ("bob", "EUR", "acme_eu")


def row(intent_id: int, group: GroupKey, status: str, code: str | None = None) -> IntentRow:
    return IntentRow(intent_id, group, 1, status, None, code, "why" if code else None)


def test_one_email_per_group_passes() -> None:
    result = audit_emails(
        groups={A: {"i1"}, B: {"i2"}},
        intents=[row(1, A, "sent"), row(2, B, "sent")],
        email_ids={1: "<a@x>", 2: "<b@x>"},
        received=["<a@x>", "<b@x>"],
        retried_invoices=["i1"],
    )
    assert result.ok
    assert result.emails == 2
    assert result.retries == 1


def test_a_message_id_taken_twice_is_a_duplicate() -> None:
    result = audit_emails(
        groups={A: {"i1"}},
        intents=[row(1, A, "sent")],
        email_ids={1: "<a@x>"},
        received=["<a@x>", "<a@x>"],
        retried_invoices=[],
    )
    assert result.email_duplicates == 1
    assert not result.ok


def test_sent_without_the_server_having_it_and_groups_without_intent_are_caught() -> None:
    result = audit_emails(
        groups={A: {"i1"}, B: {"i2"}},
        intents=[row(1, A, "sent")],
        email_ids={1: "<a@x>"},
        received=[],
        retried_invoices=[],
    )
    assert result.lost == 2
    assert result.unexplained == 1
    assert not result.ok


def test_review_with_a_reason_is_not_lost_and_a_double_retry_fails() -> None:
    result = audit_emails(
        groups={A: {"i1"}},
        intents=[row(1, A, "needs_review", "email_unknown")],
        email_ids={1: "<a@x>"},
        received=["<a@x>"],
        retried_invoices=["i1", "i1"],
    )
    assert result.lost == 0
    assert result.reviewed == 1
    assert result.retry_duplicates == 1
    assert not result.ok


def test_an_open_intent_or_a_payment_request_fails() -> None:
    open_row = audit_emails(
        groups={A: {"i1"}},
        intents=[row(1, A, "pending")],
        email_ids={},
        received=[],
        retried_invoices=[],
    )
    assert open_row.open_intents == 1
    assert not open_row.ok
    requested = audit_emails(
        groups={},
        intents=[],
        email_ids={},
        received=[],
        retried_invoices=[],
        payment_requests=1,
    )
    assert not requested.ok
