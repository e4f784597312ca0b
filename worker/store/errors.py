"""Typed store failures with one-line messages that name the cause and the fix.

Callers (CLI, tasks) print `str(error)` and exit non-zero; no traceback is needed to act on
them. Messages never contain a database password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, OperationalError


class StoreError(Exception):
    """The state database could not do what was asked. `str()` is one line."""


class SchemaError(StoreError):
    """The database schema is missing, out of date, or newer than this code knows."""


class StoreConfigError(StoreError):
    """The settings name a database that cannot be used as given (not a database URL, an
    unsupported engine, a connection option the driver refuses, a SQLite directory that is
    missing or cannot be created): a configuration error (exit 2)."""


_PG_MISSING_DATABASE = re.compile(r'database "([^"]+)" does not exist')
_PG_MISSING_ROLE = re.compile(r'role "[^"]+" does not exist')

# PostgreSQL SQLSTATE classes/codes we explain instead of re-raising raw.
_PG_DISK_FULL = "53100"
_PG_OUT_OF_MEMORY = "53200"
_PG_TOO_MANY_CONNECTIONS = "53300"
# libpq's words for a connection option it cannot use, e.g. 'invalid sslmode value: "x"'.
_BAD_OPTION = re.compile(r"invalid connection option|invalid \w+ value|bad value for \w+")


def describe_db_error(exc: DBAPIError) -> str | None:
    """A one-line cause-and-fix for operational failures, or None if it is not one of them."""
    original = exc.orig
    text = str(original).strip().splitlines()[0] if original is not None else ""
    lowered = text.lower()
    sqlstate = getattr(original, "sqlstate", None)
    if (
        "database or disk is full" in lowered
        or sqlstate == _PG_DISK_FULL
        or ("no space left on device" in lowered)
    ):
        return (
            "the state database is full (disk or size limit reached): free disk space "
            "under the data dir or database volume, then retry"
        )
    if "database is locked" in lowered or "database table is locked" in lowered:
        return (
            "the SQLite state database is locked by another process for too long: stop the "
            "other writer (or use PostgreSQL for several workers), then retry"
        )
    if "unable to open database file" in lowered:
        return (
            "cannot open the SQLite state database: check that DUNNING_DATA_DIR exists and "
            "is writable"
        )
    if "readonly database" in lowered or "read-only" in lowered:
        return "the state database is read-only: make the data dir or file writable"
    if sqlstate == _PG_OUT_OF_MEMORY:
        return "the PostgreSQL server is out of memory: check the server, then retry"
    if sqlstate == _PG_TOO_MANY_CONNECTIONS:
        return (
            "the PostgreSQL server refuses more connections: lower the worker concurrency "
            "or raise max_connections"
        )
    # libpq puts the server's FATAL after "connection to server ... failed:": look for the
    # answers of a server that is up before concluding that it is not.
    missing = _PG_MISSING_DATABASE.search(text) if isinstance(exc, OperationalError) else None
    if missing is not None:
        name = missing.group(1)
        return (
            f'the PostgreSQL server is up but has no database "{name}": create it '
            f"(createdb {name}) or fix the database name in DUNNING_DATABASE_URL"
        )
    if isinstance(exc, OperationalError) and _PG_MISSING_ROLE.search(text):
        return (
            "the PostgreSQL server is up but does not know the user in DUNNING_DATABASE_URL: "
            "create the role or fix the URL"
        )
    if isinstance(exc, OperationalError) and "password authentication failed" in lowered:
        return (
            "the PostgreSQL server is up but rejected the password in DUNNING_DATABASE_URL: "
            "fix the password (URL-encode special characters)"
        )
    if isinstance(exc, OperationalError) and (
        "connection" in lowered or "could not connect" in lowered or "server closed" in lowered
    ):
        return (
            "cannot reach the state database server: check the host and port in "
            "DUNNING_DATABASE_URL and that the server is running"
        )
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn known operational database failures into `StoreError` (one line, no URL)."""
    try:
        yield
    except DBAPIError as exc:
        option = _BAD_OPTION.search(str(exc.orig).strip().splitlines()[0] if exc.orig else "")
        if option is not None:
            raise bad_option(option.group(0)) from None
        message = describe_db_error(exc)
        if message is None:
            raise
        raise StoreError(message) from exc


def bad_option(problem: str) -> StoreConfigError:
    """A connection option of the URL that the driver refuses (`problem` names the option,
    never the password)."""
    return StoreConfigError(
        f"invalid DUNNING_DATABASE_URL: {problem}; fix or remove that option after '?'"
    )
