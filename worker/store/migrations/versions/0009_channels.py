"""Channels: how an intent asks, and the steps of the retry-and-email channel.

Revision ID: 0009_channels
Revises: 0008_overdue_ageing
Create Date: 2026-12-02

- `payment_request_intents.channel`: `payment_request` (every existing row) or
  `retry_and_email` (payment retries and links in our own email, for a Lago without the
  premium licence).
- `channel_steps`: each retry, link and email of a `retry_and_email` intent, stamped before
  the call and recorded after, so none is ever made twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_channels"
down_revision: str | None = "0008_overdue_ageing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "payment_request_intents",
        sa.Column("channel", sa.String(32), nullable=False, server_default="payment_request"),
    )
    op.create_table(
        "channel_steps",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("intent_id", _id(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("lago_invoice_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("payment_url", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('retry', 'link', 'email')", name=op.f("ck_channel_steps_kind")
        ),
        sa.CheckConstraint(
            "status IN ('started', 'done', 'refused', 'unknown')",
            name=op.f("ck_channel_steps_status"),
        ),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_request_intents.id"],
            name=op.f("fk_channel_steps_intent_id_payment_request_intents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_steps")),
        sa.UniqueConstraint(
            "intent_id",
            "kind",
            "lago_invoice_id",
            name=op.f("uq_channel_steps_intent_id_kind_lago_invoice_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("channel_steps")
    with op.batch_alter_table("payment_request_intents") as batch:
        batch.drop_column("channel")
