"""Engines and transactions: the same code on SQLite (embedded default) and PostgreSQL.

SQLite notes (Python 3.11's sqlite3 driver): the driver's own transaction handling is turned
off (`isolation_level=None`) and BEGIN is emitted by us, so reads are transactional too and a
write transaction can take the write lock up front with `BEGIN IMMEDIATE` (no lock upgrade
deadlocks, no `database is locked` half way through). WAL lets readers run beside the one
writer; `busy_timeout` makes a writer wait for the lock instead of failing at once.

Rule for callers: keep transactions short and never hold one across an HTTP call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session

from config import Settings
from worker.store.errors import StoreConfigError, bad_option, translate_errors
from worker.store.models import give_partial_indexes_their_clauses

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "dunning_write_tx"


def engine_for(settings: Settings) -> Engine:
    """The engine of the configured database. Only the embedded default (the SQLite file in
    the data dir) gets its directory created; a configured path must already exist."""
    return make_engine(
        settings.resolved_database_url, create_directory=settings.uses_embedded_database
    )


def make_engine(
    url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, create_directory: bool = False
) -> Engine:
    """Build the engine for `url` (sqlite:///path or postgresql+psycopg://...).

    A SQLite file's directory must exist unless `create_directory`. Raises `StoreConfigError`
    (a `StoreError`) for a URL that cannot be used: unparseable, another database, or a
    connection option the driver refuses. Nothing is connected to or written here.
    """
    try:
        parsed = make_url(url)
    except Exception:
        raise StoreConfigError("invalid DUNNING_DATABASE_URL: not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.query:
            raise StoreConfigError(
                "invalid DUNNING_DATABASE_URL: a SQLite URL takes no options after '?'; remove them"
            )
        engine = _make_sqlite_engine(url, parsed.database, busy_timeout_ms, create_directory)
    elif backend == "postgresql":
        _check_postgres_options(parsed)
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    elif backend == "postgres":
        raise StoreConfigError(
            "invalid DUNNING_DATABASE_URL: postgres:// is not a SQLAlchemy URL scheme, "
            "write postgresql+psycopg://..."
        )
    else:
        raise StoreConfigError(
            f"unsupported database {backend!r} in DUNNING_DATABASE_URL: "
            "use sqlite:///path or postgresql+psycopg://..."
        )
    give_partial_indexes_their_clauses(engine.dialect.name)
    return engine


def _check_postgres_options(url: URL) -> None:
    """Ask the driver (libpq's parser) about the URL's options before anything connects."""
    # Imported here: a SQLite ledger never loads psycopg (a fifth of a second at start).
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo

    repeated = sorted(key for key, value in url.query.items() if not isinstance(value, str))
    if repeated:
        raise bad_option(f"option {repeated[0]!r} is given more than once")
    try:
        _, params = url.get_dialect()().create_connect_args(url)
        timeout_from_conninfo(conninfo_to_dict(make_conninfo("", **params)))
    except ProgrammingError as exc:
        raise bad_option(str(exc).strip().splitlines()[0]) from None


def _make_sqlite_engine(
    url: str, database: str | None, busy_timeout_ms: int, create_directory: bool
) -> Engine:
    in_memory = database in (None, "", ":memory:") or (database or "").startswith("file::memory:")
    if not in_memory and database is not None:
        _sqlite_directory(Path(database).expanduser().parent, create=create_directory)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _sqlite_directory(directory: Path, *, create: bool) -> None:
    if directory.is_dir():
        return
    if not create:
        raise StoreConfigError(
            f"invalid DUNNING_DATABASE_URL: the directory {str(directory)!r} of the SQLite "
            "file does not exist; create it or fix the path"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreConfigError(
            f"cannot create the data directory for the SQLite database: {exc.strerror}; "
            "set DUNNING_DATA_DIR to a writable directory"
        ) from None


def is_sqlite(engine_or_session: Engine | Session | Connection) -> bool:
    bind = (
        engine_or_session.get_bind()
        if isinstance(engine_or_session, Session)
        else engine_or_session
    )
    return bind.dialect.name == "sqlite"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Session]:
    """One short write transaction; commits on success, rolls back on error.

    On SQLite it starts with `BEGIN IMMEDIATE`, so the write lock is held from the start and
    a read-then-write inside it cannot race another writer. Operational failures (disk full,
    locked, unreachable) surface as `StoreError`.
    """
    bind = engine.execution_options(**{_WRITE_OPTION: True})
    with (
        translate_errors(),
        Session(bind=bind, expire_on_commit=False) as session,
        session.begin(),
    ):
        yield session


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A read-only unit of work: one transaction, ended without committing.

    Objects read stay usable after the block (closing detaches them without expiring).
    """
    with translate_errors(), Session(bind=engine, expire_on_commit=False) as session:
        yield session
