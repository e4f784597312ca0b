"""The facts `decide()` needs about each group, read from the ledger in bulk, and the
decisions taken from them: one path for the sweep, `plan` and `plan --diff`.

Per batch of groups (a few queries whatever its size): the group states (attempts, holds,
open intents), the customers' recent payment requests (contact caps), and the policy each
group's current cycle began under (resolved from the stored policy files). Within one pass,
an ATTEMPT counts as a contact for the same customer's later groups (groups arrive sorted by
customer), so a customer with five currencies is not asked five times at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from config.policies import Policy, PolicyFileError, PolicySet, parse_policies
from worker.policy import decide
from worker.policy.types import Decision, DecisionKind, Group, GroupState
from worker.store import contacts, group_states, policy_files
from worker.store.db import read_session, write_tx

BATCH = 1000


def remember_policies(engine: Engine, policies: PolicySet, now: datetime) -> None:
    """Keep the file a sweep runs with, so later versions can honour its schedules."""
    if not policies.document:
        return
    with write_tx(engine) as session:
        policy_files.remember_policy_file(
            session,
            version_hash=policies.version_hash,
            source=policies.source,
            body=policies.document,
            now=now,
        )


def _longest_cap_days(policy_sets: Sequence[PolicySet]) -> int:
    days = [
        policy.contact_cap.per_days
        for policies in policy_sets
        for policy in policies.policies
        if policy.contact_cap is not None
    ]
    return max(days, default=0)


class _PinnedPolicies:
    """Policies of earlier files by (hash, name), parsed once per pass."""

    def __init__(self) -> None:
        self._files: dict[str, PolicySet | None] = {}

    def find(self, session: Session, pin: policy_files.CyclePin) -> Policy | None:
        if pin.policy_hash not in self._files:
            body = policy_files.policy_file_body(session, pin.policy_hash)
            parsed: PolicySet | None = None
            if body is not None:
                try:
                    parsed = parse_policies(body, source=f"stored {pin.policy_hash}")
                except PolicyFileError:
                    parsed = None  # a file an older release accepted: no pin
            self._files[pin.policy_hash] = parsed
        found = self._files[pin.policy_hash]
        return found.by_name(pin.policy) if found is not None else None


def _label(pin: policy_files.CyclePin) -> str:
    version = f"version {pin.policy_version}, " if pin.policy_version else ""
    return f"{version}file {pin.policy_hash}"


def decide_groups(
    engine: Engine,
    groups: Iterator[Group],
    now: datetime,
    policy_sets: Sequence[PolicySet],
) -> Iterator[tuple[Group, list[Decision]]]:
    """Each group with one decision per policy set (the same facts and clock for each)."""
    cap_days = _longest_cap_days(policy_sets)
    pinned = _PinnedPolicies()
    # Contacts decided in this pass, per policy set, for the current customer only.
    current_customer: str | None = None
    fresh: list[list[datetime]] = [[] for _ in policy_sets]
    while batch := list(islice(groups, BATCH)):
        refs = [
            group_states.GroupRef(g.customer.external_id, g.currency, g.billing_entity_code)
            for g in batch
        ]
        with read_session(engine) as session:
            stored = group_states.load_group_states(session, groups=refs, now=now)
            recent = (
                contacts.recent_contacts(
                    session,
                    external_customer_ids=[ref.external_customer_id for ref in refs],
                    since=now - timedelta(days=cap_days),
                )
                if cap_days
                else {}
            )
            pins = policy_files.cycle_pins(session, group_keys=[ref.key for ref in refs])
            pinned_policy = {key: pinned.find(session, pin) for key, pin in pins.items()}
        for group, ref in zip(batch, refs, strict=True):
            customer = ref.external_customer_id
            if customer != current_customer:
                current_customer, fresh = customer, [[] for _ in policy_sets]
            known = stored[ref.key]
            pin = pins.get(ref.key)
            decisions: list[Decision] = []
            for index, policies in enumerate(policy_sets):
                state = GroupState(
                    attempts_used=known.attempts_used,
                    last_attempt_at=known.last_attempt_at,
                    paused=known.paused,
                    open_intent=known.open_intent,
                    exhaustion_handled=known.exhaustion_handled,
                    hold_until=known.hold_until,
                    recent_contacts=(*recent.get(customer, ()), *fresh[index]),
                    pinned_policy=pinned_policy.get(ref.key),
                    pinned_version=_label(pin) if pin is not None else None,
                )
                decision = decide(policies, group, state, now)
                if decision.kind is DecisionKind.ATTEMPT:
                    fresh[index].append(now)
                decisions.append(decision)
            yield group, decisions
