"""The policy files sweeps ran with, and which version each group's dunning cycle began under.

A file is stored once per hash (its exact bytes as text). A group's cycle began with its
latest sent or adopted attempt-1 intent; that intent's `policy_hash` and `policy` name point
at the policy as it was then. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import PaymentRequestIntent as Intent
from worker.store.models import PolicyFile

_IN_CHUNK = 500


def remember_policy_file(
    session: Session, *, version_hash: str, source: str, body: bytes, now: datetime
) -> None:
    """Store the file's text under its hash (a no-op when already stored)."""
    session.execute(
        insert_for(session, PolicyFile)
        .values(
            version_hash=version_hash,
            source=source[:1000],
            body=body.decode("utf-8", errors="replace"),
            first_seen_at=now,
        )
        .on_conflict_do_nothing(index_elements=["version_hash"])
    )


def policy_file_body(session: Session, version_hash: str) -> str | None:
    return session.scalar(select(PolicyFile.body).where(PolicyFile.version_hash == version_hash))


@dataclass(frozen=True, slots=True)
class CyclePin:
    """The policy (file hash, name, version label) a group's current cycle began under."""

    policy_hash: str
    policy: str
    policy_version: str | None


def cycle_pins(session: Session, *, group_keys: Iterable[str]) -> dict[str, CyclePin]:
    """{group_key: pin} for the groups whose latest sent attempt 1 recorded a policy hash."""
    keys = sorted(set(group_keys))
    pins: dict[str, CyclePin] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        latest = (
            select(func.max(Intent.id))
            .where(
                Intent.group_key.in_(chunk),
                Intent.attempt_number == 1,
                Intent.status.in_(("sent", "adopted")),
            )
            .group_by(Intent.group_key)
        )
        rows = session.execute(
            select(
                Intent.group_key, Intent.policy_hash, Intent.policy, Intent.policy_version
            ).where(Intent.id.in_(latest))
        )
        for key, policy_hash, policy, version in rows:
            if policy_hash and policy:
                pins[key] = CyclePin(policy_hash, policy, version)
    return pins
