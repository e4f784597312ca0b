"""The audit of a chaos run on the retry_and_email channel (plain data in, figures out).

- Duplicates: a Message-ID the mail server took more than once (the Message-ID is derived
  from the intent's key, so a second copy of one email has the same id).
- Lost: a group to dun that neither got exactly one email the server took (its intent
  `sent`, its Message-ID among those received) nor ended with a reason (`needs_review`, or
  refused with a code: no address, nothing owed any more).
- Retry duplicates: an invoice whose payment retry Lago took twice (must be 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.verify import Audit, GroupKey, IntentRow


@dataclass(slots=True)
class EmailAudit(Audit):
    emails: int = 0  # messages the server took
    email_duplicates: int = 0
    reviewed: int = 0  # groups in needs_review with a reason (an email may have gone)
    retries: int = 0  # payment retries Lago took
    retry_duplicates: int = 0
    unknown_steps: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return (
            self.email_duplicates == 0
            and self.lost == 0
            and self.open_intents == 0
            and self.unexplained == 0
            and self.retry_duplicates == 0
            and self.requests == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **Audit.as_dict(self),
            "emails": self.emails,
            "email_duplicates": self.email_duplicates,
            "reviewed": self.reviewed,
            "retries": self.retries,
            "retry_duplicates": self.retry_duplicates,
            "unknown_steps": dict(sorted(self.unknown_steps.items())),
            "ok": self.ok,
        }


def audit_emails(
    *,
    groups: Mapping[GroupKey, set[str]],
    intents: Iterable[IntentRow],
    email_ids: Mapping[int, str],
    received: Iterable[str],
    retried_invoices: Iterable[str],
    unknown_steps: Iterable[str] = (),
    payment_requests: int = 0,
) -> EmailAudit:
    """`email_ids`: intent id -> the Message-ID of its email step; `received`: the
    Message-IDs the server took, one per message; `retried_invoices`: one per retry taken."""
    result = EmailAudit(groups=len(groups), requests=payment_requests)
    taken = Counter(received)
    result.emails = sum(taken.values())
    result.email_duplicates = sum(count - 1 for count in taken.values() if count > 1)
    for message_id, count in taken.items():
        if count > 1:
            result.problems.append(f"{message_id} taken {count} times")
    retries = Counter(retried_invoices)
    result.retries = sum(retries.values())
    result.retry_duplicates = sum(count - 1 for count in retries.values() if count > 1)
    result.unknown_steps.update(unknown_steps)
    rows = list(intents)
    result.intents = len(rows)
    by_group: dict[GroupKey, list[IntentRow]] = {}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
        result.by_status[row.status] += 1
        if row.status == "refused":
            result.refused_codes[row.last_error_code or "-"] += 1
        if row.unsettled:
            result.open_intents += 1
    for group in groups:
        found = by_group.get(group, [])
        emailed = [
            row
            for row in found
            if row.status == "sent" and taken.get(email_ids.get(row.id, ""), 0) >= 1
        ]
        reasoned = [
            row
            for row in found
            if row.status in ("needs_review", "refused", "cancelled") and row.last_error
        ]
        if emailed:
            continue
        if reasoned:
            result.reviewed += sum(1 for row in reasoned if row.status == "needs_review")
            continue
        result.lost += 1
        statuses = ",".join(row.status for row in found) or "no intent"
        result.problems.append(f"group {group}: no email taken and no reason ({statuses})")
    for row in rows:
        if row.status == "sent" and taken.get(email_ids.get(row.id, ""), 0) == 0:
            result.unexplained += 1
            result.problems.append(f"intent {row.id} is sent but the server never took its email")
    return result
