"""The ledger's tables (SQLAlchemy 2.0 typed models).

Statuses are plain strings guarded by CHECK constraints (no database enum types: adding a
value stays a one-line migration on both engines). Datetimes are aware UTC (`UTCDateTime`).
Secondary indexes are declared here too; migration 0002 creates them.

The two partial unique indexes name their WHERE clause per dialect only once an engine of that
dialect is built (`give_partial_indexes_their_clauses`, called by `make_engine`): declared as
`sqlite_where=`/`postgresql_where=` keywords, they would make every process that imports the
models import both SQL dialects (SQLAlchemy loads a dialect to check its keywords), which
costs a PostgreSQL dialect import at every start of a SQLite deployment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker.store.types import BigIntPK, PortableJSON, UTCDateTime

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Dialects whose partial indexes take a `<dialect>_where` clause.
PARTIAL_INDEX_DIALECTS: Final = ("sqlite", "postgresql")


def _partial_unique_index(name: str, column: str, where: str) -> Index:
    """A unique index over the rows matching `where` (see the module docstring)."""
    index = Index(name, column, unique=True)
    index.info["where"] = where
    return index


RUN_TRIGGERS: Final = ("beat", "cli", "celery", "api")
RUN_STATUSES: Final = ("running", "succeeded", "failed", "blocked", "abandoned")
INTENT_STATUSES: Final = (
    "pending",  # waiting to be sent (first time, or again after a retryable outcome)
    "sending",  # claimed by a worker under a lease
    "sent",  # our POST created the payment request
    "adopted",  # a payment request found in Lago (ours after a crash, or Lago's own dunning)
    "refused",  # Lago said no for good (404/405/422): re-evaluated by the next sweep
    "blocked",  # the Lago instance lacks the premium licence (403 feature_unavailable)
    "needs_review",  # too many unknown outcomes: a human decides
    "cancelled",  # withdrawn before sending (e.g. the invoices were paid)
)
OPEN_INTENT_STATUSES: Final = ("pending", "sending")
#: How an intent asks: a Lago payment request, or payment retries and links in our own email.
#: `auto` until its first send picks one of the other two.
CHANNELS: Final = ("payment_request", "retry_and_email", "auto")
STEP_KINDS: Final = (
    "retry",  # POST /invoices/{id}/retry_payment
    "link",  # POST /invoices/{id}/payment_url
    "email",  # the one email of the intent
)
STEP_STATUSES: Final = (
    "started",  # stamped just before the call: a crash from here on is an unknown outcome
    "done",  # taken (retry), made (link), accepted by the mail server (email)
    "refused",  # Lago or the mail server said no for good
    "unknown",  # may or may not have taken effect: never repeated
)
OPERATOR_ACTIONS: Final = ("pause", "resume", "retry")
ACTION_SOURCES: Final = ("cli", "console")
OUTCOMES: Final = ("paid", "partially_paid", "failed", "voided", "disputed", "open")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


def give_partial_indexes_their_clauses(dialect_name: str) -> None:
    """Name the WHERE clause of every partial index for `dialect_name` (idempotent)."""
    if dialect_name not in PARTIAL_INDEX_DIALECTS:
        return
    for table in Base.metadata.tables.values():
        for index in table.indexes:
            where = index.info.get("where")
            if where is not None:
                index.dialect_kwargs[f"{dialect_name}_where"] = text(where)


class SweepRun(Base):
    __tablename__ = "sweep_runs"
    __table_args__ = (
        CheckConstraint(_in_list("trigger", RUN_TRIGGERS), name="trigger"),
        CheckConstraint(_in_list("status", RUN_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))
    # The beat tick slot (e.g. "2026-11-22T00:30Z"): UNIQUE so a double-fired tick is a no-op.
    slot: Mapped[str | None] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # Stamped every few seconds while the sweep runs; a stale one means the run died.
    heartbeat_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    policy_version: Mapped[str | None] = mapped_column(String(64))
    invoices_seen: Mapped[int] = mapped_column(Integer, default=0)
    groups: Mapped[int] = mapped_column(Integer, default=0)
    intents_created: Mapped[int] = mapped_column(Integer, default=0)
    requests_sent: Mapped[int] = mapped_column(Integer, default=0)
    # With requests_sent: what became of the run's intents, whoever sent them (see runs.py).
    requests_rescheduled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    requests_refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    malformed: Mapped[int] = mapped_column(Integer, default=0)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class PaymentRequestIntent(Base):
    __tablename__ = "payment_request_intents"
    __table_args__ = (
        CheckConstraint(_in_list("status", INTENT_STATUSES), name="status"),
        CheckConstraint(f"outcome IS NULL OR {_in_list('outcome', OUTCOMES)}", name="outcome"),
        CheckConstraint("attempt_number >= 1", name="attempt_number"),
        # At most ONE open intent per group, whatever the sweeps do.
        _partial_unique_index(
            "uq_intents_open_group", "group_key", _in_list("status", OPEN_INTENT_STATUSES)
        ),
        # The claim scan: due pending rows and expired leases.
        Index("ix_intents_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_intents_customer", "external_customer_id"),
        Index("ix_intents_run", "run_id"),
        # Reconcile's "superseded" check: a newer intent of the same group (migration 0011).
        Index("ix_intents_group_key_id", "group_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sweep_runs.id", ondelete="SET NULL"))
    external_customer_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    billing_entity_code: Mapped[str | None] = mapped_column(String(255))
    group_key: Mapped[str] = mapped_column(String(600))
    invoice_ids: Mapped[list[str]] = mapped_column(PortableJSON)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    email: Mapped[str | None] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(
        String(32), default="payment_request", server_default="payment_request"
    )
    policy: Mapped[str | None] = mapped_column(String(255))
    # The policy's `version` label and the hash of the policy file that decided (0007).
    policy_version: Mapped[str | None] = mapped_column(String(32))
    policy_hash: Mapped[str | None] = mapped_column(String(64))
    attempt_number: Mapped[int] = mapped_column(Integer)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    lago_payment_request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    lago_invoice_ids: Mapped[list[str] | None] = mapped_column(PortableJSON)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    post_started_at: Mapped[datetime | None]
    tries: Mapped[int] = mapped_column(Integer, default=0)
    ambiguous_tries: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error_code: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # Filled by reconciliation once the invoices settle.
    outcome: Mapped[str | None] = mapped_column(String(16))
    recovered_cents: Mapped[int | None] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime | None]


class ChannelStep(Base):
    """One call an intent of the `retry_and_email` channel makes, stamped before it is made
    and recorded after (design §3, per step): a step is never made twice."""

    __tablename__ = "channel_steps"
    __table_args__ = (
        CheckConstraint(_in_list("kind", STEP_KINDS), name="kind"),
        CheckConstraint(_in_list("status", STEP_STATUSES), name="status"),
        UniqueConstraint("intent_id", "kind", "lago_invoice_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    intent_id: Mapped[int] = mapped_column(
        ForeignKey("payment_request_intents.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(8))
    #: The invoice a retry or link is for; "" for the email.
    lago_invoice_id: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    payment_url: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(128))
    recipients: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)


class GroupStateRow(Base):
    """Attempts per group. `group_key` is `customer|currency|entity` ('-' when no entity), so
    the UNIQUE constraint also holds for groups without a billing entity (NULLs never clash)."""

    __tablename__ = "group_states"
    __table_args__ = (UniqueConstraint("external_customer_id", "currency", "billing_entity_code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    group_key: Mapped[str] = mapped_column(String(600), unique=True)
    external_customer_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    billing_entity_code: Mapped[str | None] = mapped_column(String(255))
    attempts_used: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None]
    exhausted_at: Mapped[datetime | None]
    last_dunned_invoice_ids: Mapped[list[str] | None] = mapped_column(PortableJSON)
    updated_at: Mapped[datetime]


class CustomerControl(Base):
    """Operators' switches per customer (`dunning pause|resume`). A pause with
    `paused_until` is a hold that ends by itself at that instant."""

    __tablename__ = "customer_controls"

    external_customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]
    paused_until: Mapped[datetime | None]


class DecisionRow(Base):
    """One decision of one sweep for one group, skips included (explains `plan`/`status`)."""

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_run", "run_id"),
        Index("ix_decisions_customer_decided", "external_customer_id", "decided_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sweep_runs.id", ondelete="CASCADE"))
    external_customer_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    billing_entity_code: Mapped[str | None] = mapped_column(String(255))
    policy: Mapped[str | None] = mapped_column(String(255))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    policy_hash: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    amount_cents: Mapped[int | None] = mapped_column(BigInteger)
    invoice_count: Mapped[int] = mapped_column(Integer, default=0)
    next_eligible_at: Mapped[datetime | None]
    decided_at: Mapped[datetime]
    intent_id: Mapped[int | None] = mapped_column(
        ForeignKey("payment_request_intents.id", ondelete="SET NULL")
    )


class PolicyFile(Base):
    """Each policy file a sweep ran with, by hash: in-flight groups are held to the schedule
    of the version their cycle started under."""

    __tablename__ = "policy_files"

    version_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(1000))
    body: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime]


class HoldoutEntry(Base):
    """A group the policy would have dunned but held out, from the first holdout decision
    until its invoices settle (one open entry per group); the report's comparison arm."""

    __tablename__ = "holdout_entries"
    __table_args__ = (
        _partial_unique_index("uq_holdout_entries_open_group", "group_key", "resolved_at IS NULL"),
        Index("ix_holdout_entries_customer", "external_customer_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    group_key: Mapped[str] = mapped_column(String(600))
    external_customer_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    billing_entity_code: Mapped[str | None] = mapped_column(String(255))
    policy: Mapped[str | None] = mapped_column(String(255))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    policy_hash: Mapped[str | None] = mapped_column(String(64))
    invoice_ids: Mapped[list[str]] = mapped_column(PortableJSON)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    entered_at: Mapped[datetime]
    outcome: Mapped[str | None] = mapped_column(String(16))
    recovered_cents: Mapped[int | None] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime | None]
    last_checked_at: Mapped[datetime | None]


class WebhookEvent(Base):
    """Lago webhooks seen, deduplicated by `X-Lago-Unique-Key` and by the sha256 of the signed
    body (the key is not signed: a replay under a new key has the same body)."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("uq_webhook_events_payload_digest", "payload_digest", unique=True),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    unique_key: Mapped[str] = mapped_column(String(255), unique=True)
    payload_digest: Mapped[str | None] = mapped_column(String(64))
    webhook_type: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]


class OperatorAction(Base):
    """What an operator did, who, when and why (0010): pauses, resumes and retries, from the
    CLI or the console. `form_nonce` is the one-time token of the console form that asked
    for it: UNIQUE, so a form posted twice applies once."""

    __tablename__ = "operator_actions"
    __table_args__ = (
        CheckConstraint(_in_list("action", OPERATOR_ACTIONS), name="action"),
        CheckConstraint(_in_list("source", ACTION_SOURCES), name="source"),
        Index("ix_operator_actions_customer_at", "external_customer_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    external_customer_id: Mapped[str] = mapped_column(String(255))
    intent_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    form_nonce: Mapped[str | None] = mapped_column(String(100), unique=True)
