"""Lookup indexes: the claim scan, intents by customer/run, decisions by run/customer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Kept apart from 0001 because they only serve speed: dropping them (downgrade) loses no data.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_intents_status_next_attempt", "payment_request_intents", ["status", "next_attempt_at"]
    )
    op.create_index("ix_intents_customer", "payment_request_intents", ["external_customer_id"])
    op.create_index("ix_intents_run", "payment_request_intents", ["run_id"])
    op.create_index("ix_decisions_run", "decisions", ["run_id"])
    op.create_index(
        "ix_decisions_customer_decided", "decisions", ["external_customer_id", "decided_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_decisions_customer_decided", table_name="decisions")
    op.drop_index("ix_decisions_run", table_name="decisions")
    op.drop_index("ix_intents_run", table_name="payment_request_intents")
    op.drop_index("ix_intents_customer", table_name="payment_request_intents")
    op.drop_index("ix_intents_status_next_attempt", table_name="payment_request_intents")
