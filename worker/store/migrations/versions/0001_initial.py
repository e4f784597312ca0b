"""The ledger: sweep runs, payment-request intents, group states, controls, decisions, webhooks.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Hand-reviewed. Types are spelled out here (not imported from the models) so this migration
keeps meaning the same thing when the models change later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATUSES = "status IN ('pending', 'sending')"


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sweep_runs",
        sa.Column("id", _id(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("slot", sa.String(64), nullable=True),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=True),
        sa.Column("invoices_seen", sa.Integer(), nullable=False),
        sa.Column("groups", sa.Integer(), nullable=False),
        sa.Column("intents_created", sa.Integer(), nullable=False),
        sa.Column("requests_sent", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("malformed", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'blocked')",
            name=op.f("ck_sweep_runs_status"),
        ),
        sa.CheckConstraint(
            "trigger IN ('beat', 'cli', 'celery', 'api')", name=op.f("ck_sweep_runs_trigger")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep_runs")),
        sa.UniqueConstraint("slot", name=op.f("uq_sweep_runs_slot")),
    )
    op.create_table(
        "payment_request_intents",
        sa.Column("id", _id(), nullable=False),
        sa.Column("run_id", _id(), nullable=True),
        sa.Column("external_customer_id", sa.String(255), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billing_entity_code", sa.String(255), nullable=True),
        sa.Column("group_key", sa.String(600), nullable=False),
        sa.Column("invoice_ids", _json(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("policy", sa.String(255), nullable=True),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lago_payment_request_id", sa.String(64), nullable=True),
        sa.Column("lago_invoice_ids", _json(), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", _ts(), nullable=True),
        sa.Column("post_started_at", _ts(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("ambiguous_tries", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts(), nullable=False),
        sa.Column("last_error_code", sa.String(128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("sent_at", _ts(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("recovered_cents", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'adopted', 'refused', 'blocked', "
            "'needs_review', 'cancelled')",
            name=op.f("ck_payment_request_intents_status"),
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('paid', 'partially_paid', 'failed', 'voided', "
            "'disputed', 'open')",
            name=op.f("ck_payment_request_intents_outcome"),
        ),
        sa.CheckConstraint(
            "attempt_number >= 1", name=op.f("ck_payment_request_intents_attempt_number")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sweep_runs.id"],
            name=op.f("fk_payment_request_intents_run_id_sweep_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_request_intents")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_payment_request_intents_dedupe_key")),
        sa.UniqueConstraint(
            "lago_payment_request_id",
            name=op.f("uq_payment_request_intents_lago_payment_request_id"),
        ),
    )
    # The exactly-once invariant: at most one open (pending|sending) intent per group.
    op.create_index(
        "uq_intents_open_group",
        "payment_request_intents",
        ["group_key"],
        unique=True,
        sqlite_where=sa.text(OPEN_STATUSES),
        postgresql_where=sa.text(OPEN_STATUSES),
    )
    op.create_table(
        "group_states",
        sa.Column("id", _id(), nullable=False),
        sa.Column("group_key", sa.String(600), nullable=False),
        sa.Column("external_customer_id", sa.String(255), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billing_entity_code", sa.String(255), nullable=True),
        sa.Column("attempts_used", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", _ts(), nullable=True),
        sa.Column("exhausted_at", _ts(), nullable=True),
        sa.Column("last_dunned_invoice_ids", _json(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_states")),
        sa.UniqueConstraint(
            "external_customer_id",
            "currency",
            "billing_entity_code",
            name=op.f("uq_group_states_external_customer_id_currency_billing_entity_code"),
        ),
        sa.UniqueConstraint("group_key", name=op.f("uq_group_states_group_key")),
    )
    op.create_table(
        "customer_controls",
        sa.Column("external_customer_id", sa.String(255), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("external_customer_id", name=op.f("pk_customer_controls")),
    )
    op.create_table(
        "decisions",
        sa.Column("id", _id(), nullable=False),
        sa.Column("run_id", _id(), nullable=True),
        sa.Column("external_customer_id", sa.String(255), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billing_entity_code", sa.String(255), nullable=True),
        sa.Column("policy", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("invoice_count", sa.Integer(), nullable=False),
        sa.Column("next_eligible_at", _ts(), nullable=True),
        sa.Column("decided_at", _ts(), nullable=False),
        sa.Column("intent_id", _id(), nullable=True),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_request_intents.id"],
            name=op.f("fk_decisions_intent_id_payment_request_intents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sweep_runs.id"],
            name=op.f("fk_decisions_run_id_sweep_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", _id(), nullable=False),
        sa.Column("unique_key", sa.String(255), nullable=False),
        sa.Column("webhook_type", sa.String(128), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("processed_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("unique_key", name=op.f("uq_webhook_events_unique_key")),
    )


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_table("decisions")
    op.drop_table("customer_controls")
    op.drop_table("group_states")
    op.drop_index("uq_intents_open_group", table_name="payment_request_intents")
    op.drop_table("payment_request_intents")
    op.drop_table("sweep_runs")
