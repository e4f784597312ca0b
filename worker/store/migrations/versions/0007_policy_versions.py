"""Policy versions on decisions and intents, the policy files themselves, hold expiry on
customer controls, and the holdout entries the report compares with dunned groups.

Revision ID: 0007_policy_versions
Revises: 0005_run_heartbeats
Create Date: 2026-11-23

Columns are added nullable (rows written before this revision have no version and no hold
end). Downgrade drops them again through batch mode, which SQLite needs for DROP COLUMN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_policy_versions"
down_revision: str | None = "0005_run_heartbeats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VERSIONED = ("decisions", "payment_request_intents")


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    for table in _VERSIONED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("policy_version", sa.String(32), nullable=True))
            batch.add_column(sa.Column("policy_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("customer_controls") as batch:
        batch.add_column(sa.Column("paused_until", _ts(), nullable=True))
    op.create_table(
        "policy_files",
        sa.Column("version_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.String(1000), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("first_seen_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("version_hash", name=op.f("pk_policy_files")),
    )
    op.create_table(
        "holdout_entries",
        sa.Column("id", _id(), nullable=False),
        sa.Column("group_key", sa.String(600), nullable=False),
        sa.Column("external_customer_id", sa.String(255), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billing_entity_code", sa.String(255), nullable=True),
        sa.Column("policy", sa.String(255), nullable=True),
        sa.Column("policy_version", sa.String(32), nullable=True),
        sa.Column("policy_hash", sa.String(64), nullable=True),
        sa.Column("invoice_ids", _json(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("entered_at", _ts(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("recovered_cents", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.Column("last_checked_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holdout_entries")),
    )
    op.create_index(
        "uq_holdout_entries_open_group",
        "holdout_entries",
        ["group_key"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_holdout_entries_customer", "holdout_entries", ["external_customer_id"])


def downgrade() -> None:
    op.drop_index("ix_holdout_entries_customer", table_name="holdout_entries")
    op.drop_index("uq_holdout_entries_open_group", table_name="holdout_entries")
    op.drop_table("holdout_entries")
    op.drop_table("policy_files")
    with op.batch_alter_table("customer_controls") as batch:
        batch.drop_column("paused_until")
    for table in _VERSIONED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("policy_hash")
            batch.drop_column("policy_version")
