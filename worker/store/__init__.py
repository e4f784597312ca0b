"""The state database: SQLAlchemy models, repository functions and Alembic migrations.

Entry points: `db.make_engine`, `db.write_tx` / `db.read_session`, `migrate.upgrade` /
`migrate.ensure_schema_current`, and one repository module per concern (`runs`, `intents`,
`group_states`, `decisions`, `controls`, `webhook_events`). Failures callers should show to
users are `errors.StoreError` / `errors.SchemaError` (one-line messages).
"""

from worker.store.errors import SchemaError, StoreError

__all__ = ["SchemaError", "StoreError"]
