"""Operators' actions: who paused, resumed or retried what, when and why.

Revision ID: 0010_operator_actions
Revises: 0009_channels
Create Date: 2026-12-02

- `operator_actions`: one row per pause, resume or retry, from the CLI or the console, with
  the actor, the reason and what it did; `form_nonce` (UNIQUE) is the console form's one-time
  token, so a replayed form cannot apply twice. Shown on the customer's timeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_operator_actions"
down_revision: str | None = "0009_channels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("external_customer_id", sa.String(255), nullable=False),
        sa.Column("intent_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("form_nonce", sa.String(100), nullable=True),
        sa.CheckConstraint(
            "action IN ('pause', 'resume', 'retry')", name=op.f("ck_operator_actions_action")
        ),
        sa.CheckConstraint("source IN ('cli', 'console')", name=op.f("ck_operator_actions_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
        sa.UniqueConstraint("form_nonce", name=op.f("uq_operator_actions_form_nonce")),
    )
    op.create_index(
        "ix_operator_actions_customer_at", "operator_actions", ["external_customer_id", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_operator_actions_customer_at", table_name="operator_actions")
    op.drop_table("operator_actions")
