"""Dialect-specific INSERT constructs (ON CONFLICT) behind one function."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.store.errors import StoreError


def insert_for(session: Session, table: Any) -> Any:
    """`INSERT` for the session's engine with `.on_conflict_do_nothing/do_update` available.

    Both dialects' constructs share that API; typed `Any` because they are distinct classes.
    """
    return insert_for_dialect(session.get_bind().dialect.name, table)


def insert_for_dialect(name: str, table: Any) -> Any:
    """`insert_for` by dialect name ("postgresql" or "sqlite")."""
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise StoreError(f"unsupported database dialect {name!r}: use SQLite or PostgreSQL")
