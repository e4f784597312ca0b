"""Run heartbeats: a sweep that died (SIGKILL, lost host) is marked `abandoned`.

Revision ID: 0005_run_heartbeats
Revises: 0003_outcome_checks
Create Date: 2026-12-01

A running sweep stamps `heartbeat_at` every few seconds; a `running` row whose heartbeat
(or start) is too old is set to `abandoned` by the next sweep, instead of staying `running`
forever. The status CHECK gains `abandoned` (SQLite: the table is rebuilt by batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_run_heartbeats"
down_revision: str | None = "0003_outcome_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "status IN ('running', 'succeeded', 'failed', 'blocked')"
_AFTER = "status IN ('running', 'succeeded', 'failed', 'blocked', 'abandoned')"


def upgrade() -> None:
    with op.batch_alter_table("sweep_runs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(op.f("ck_sweep_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sweep_runs_status"), _AFTER)


def downgrade() -> None:
    op.execute(
        "UPDATE sweep_runs SET status = 'failed', "
        "error = COALESCE(error, 'abandoned: no heartbeat') WHERE status = 'abandoned'"
    )
    with op.batch_alter_table("sweep_runs") as batch:
        batch.drop_constraint(op.f("ck_sweep_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sweep_runs_status"), _BEFORE)
        batch.drop_column("heartbeat_at")
