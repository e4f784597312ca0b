"""Overdue ageing per sweep, and the send figures of a run on its row.

Revision ID: 0008_overdue_ageing
Revises: 0007_policy_versions (chained after it when main was merged in)
Create Date: 2026-12-01

- `overdue_snapshots` / `overdue_ageing`: what a full sweep's listing showed as overdue, per
  currency and ageing bucket (days past the due date). The ledger keeps no invoices, so this is
  where "what is outstanding now" comes from for `dunning report`.
- `sweep_runs.requests_rescheduled` / `requests_refused`: with `requests_sent`, what became of
  the intents a run created, whoever sent them (the run itself or the fanned-out tasks).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_overdue_ageing"
down_revision: str | None = "0007_policy_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "sweep_runs",
        sa.Column("requests_rescheduled", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "sweep_runs",
        sa.Column("requests_refused", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "overdue_snapshots",
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("taken_at", _ts(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sweep_runs.id"],
            name=op.f("fk_overdue_snapshots_run_id_sweep_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_overdue_snapshots")),
    )
    op.create_index("ix_overdue_snapshots_taken_at", "overdue_snapshots", ["taken_at"])
    op.create_table(
        "overdue_ageing",
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("bucket", sa.String(8), nullable=False),
        sa.Column("invoices", sa.Integer(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("due_cents", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["overdue_snapshots.run_id"],
            name=op.f("fk_overdue_ageing_run_id_overdue_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "currency", "bucket", name=op.f("pk_overdue_ageing")),
    )


def downgrade() -> None:
    op.drop_table("overdue_ageing")
    op.drop_index("ix_overdue_snapshots_taken_at", table_name="overdue_snapshots")
    op.drop_table("overdue_snapshots")
    op.drop_column("sweep_runs", "requests_refused")
    op.drop_column("sweep_runs", "requests_rescheduled")
