"""Dialect-specific INSERT constructs (ON CONFLICT) behind one function."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from worker.store.errors import StoreError


def insert_for(session: Session, table: Any) -> Any:
    """`INSERT` for the session's engine with `.on_conflict_do_nothing/do_update` available.

    Both dialects' constructs share that API; typed `Any` because they are distinct classes.
    """
    return insert_for_dialect(session.get_bind().dialect.name, table)


def insert_for_dialect(name: str, table: Any) -> Any:
    """`insert_for` by dialect name ("postgresql" or "sqlite"). Each dialect's module is
    imported on first use (the PostgreSQL one costs a SQLite process about 35 ms)."""
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise StoreError(f"unsupported database dialect {name!r}: use SQLite or PostgreSQL")
