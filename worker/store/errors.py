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


class DatabaseUrlError(StoreError):
    """DUNNING_DATABASE_URL cannot be used as written: a configuration error (exit 2)."""


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
    if isinstance(exc, OperationalError) and (
        "connection" in lowered or "could not connect" in lowered or "server closed" in lowered
    ):
        return (
            "cannot reach the state database: check DUNNING_DATABASE_URL and that the "
            "server is running"
        )
    if isinstance(exc, OperationalError) and "does not exist" in lowered:
        return "the state database does not exist: create it or fix DUNNING_DATABASE_URL"
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


def bad_option(problem: str) -> DatabaseUrlError:
    """A connection option of the URL that the driver refuses (`problem` names the option,
    never the password)."""
    return DatabaseUrlError(
        f"invalid DUNNING_DATABASE_URL: {problem}; fix or remove that option after '?'"
    )
