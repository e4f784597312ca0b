"""Outcome checks: when reconciliation looks again at a sent or adopted payment request.

Revision ID: 0003_outcome_checks
Revises: 0002
Create Date: 2026-11-22

A table of its own (not columns on the intents) so the sweep's claim path stays untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_outcome_checks"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intent_outcome_checks",
        sa.Column("intent_id", _id(), nullable=False),
        sa.Column("next_check_at", _ts(), nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("last_checked_at", _ts(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_request_intents.id"],
            name=op.f("fk_intent_outcome_checks_intent_id_payment_request_intents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("intent_id", name=op.f("pk_intent_outcome_checks")),
    )
    op.create_index(
        "ix_intent_outcome_checks_next_check_at", "intent_outcome_checks", ["next_check_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_intent_outcome_checks_next_check_at", table_name="intent_outcome_checks")
    op.drop_table("intent_outcome_checks")
