"""Apply and inspect Alembic migrations from code (the CLI and tests use these).

`ensure_schema_current(engine)` is what every entry point calls before touching the ledger:
it refuses to run against a database that was never migrated, is behind, or was migrated by
a newer release, with one line that says what to do. It reads the stamped revision with one
query and compares it with `HEAD_REVISION`, so the check costs no Alembic import (half a
second at every start); a test keeps `HEAD_REVISION` equal to the newest migration.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from config import Settings
from worker.store.db import engine_for, make_engine
from worker.store.errors import SchemaError, StoreError, translate_errors

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: The newest revision in migrations/versions (a test checks it against Alembic's head).
HEAD_REVISION = "0011_intent_group_index"


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _engine(engine_or_url: Engine | str) -> tuple[Engine, bool]:
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return make_engine(engine_or_url), True


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise SchemaError("no migrations found in the package: reinstall lago-dunning")
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def _run(engine_or_url: Engine | str, action: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    engine, owned = _engine(engine_or_url)
    config = _config()
    try:
        with translate_errors(), engine.begin() as connection:
            config.attributes["connection"] = connection
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    except CommandError as exc:
        raise SchemaError(f"cannot {action} to {revision!r}: {_first_line(exc)}") from None
    finally:
        if owned:
            engine.dispose()


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Migrate the database up to `revision` (default: the newest this code knows)."""
    _run(engine_or_url, "upgrade", revision)


def downgrade(engine_or_url: Engine | str, revision: str) -> None:
    """Migrate the database down to `revision` (e.g. "-1", "0001" or "base")."""
    _run(engine_or_url, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with translate_errors(), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _stamped_revision(engine: Engine) -> str | None:
    """`current_revision` with one query (this code never branches its migrations)."""
    with translate_errors(), engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        versions = list(rows)
    if len(versions) > 1:
        return current_revision(engine)  # Alembic says what is wrong with several heads
    return versions[0] if versions else None


def ensure_schema_current(engine: Engine) -> None:
    """Raise `SchemaError` (one line) unless the database is at the head revision."""
    current = _stamped_revision(engine)
    head = HEAD_REVISION
    if current is None:
        raise SchemaError("the database has no schema: run `dunning db upgrade`")
    if current == head:
        return
    if current not in known_revisions():
        raise SchemaError(
            f"the database was migrated by a newer lago-dunning (revision {current}, this "
            f"release knows up to {head}): upgrade lago-dunning"
        )
    raise SchemaError(
        f"the database schema is out of date (revision {current}, expected {head}): "
        "run `dunning db upgrade`"
    )


def current_engine(settings: Settings) -> Engine:
    """The engine of the configured database, checked to be at the head revision."""
    engine = engine_for(settings)
    try:
        ensure_schema_current(engine)
    except Exception:
        engine.dispose()
        raise
    return engine


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "SchemaError",
    "StoreError",
    "current_revision",
    "downgrade",
    "ensure_schema_current",
    "head_revision",
    "upgrade",
]
