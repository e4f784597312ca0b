"""Webhook events remember a digest of the signed body, UNIQUE like the unique key.

Revision ID: 0004_webhook_payload_digest
Revises: 0003_outcome_checks
Create Date: 2026-12-01

`X-Lago-Unique-Key` is not covered by Lago's signature and its JWTs carry no expiry: a
captured webhook replayed under a new unique key must still be recognised. Rows written
before this revision have no digest (NULL, which a UNIQUE index allows many times).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_webhook_payload_digest"
down_revision: str | None = "0003_outcome_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_events", sa.Column("payload_digest", sa.String(64), nullable=True))
    op.create_index(
        "uq_webhook_events_payload_digest", "webhook_events", ["payload_digest"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_webhook_events_payload_digest", table_name="webhook_events")
    # Batch mode: SQLite rebuilds the table (older SQLite cannot drop a column in place).
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("payload_digest")
