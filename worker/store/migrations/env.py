"""Alembic environment: the URL comes from the settings unless one is given.

Precedence: a connection passed in by `worker.store.migrate` (config.attributes["connection"]),
then `sqlalchemy.url` set on the config, then `config.load_settings().resolved_database_url`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from config import load_settings
from worker.store.db import engine_for, make_engine
from worker.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or load_settings().resolved_database_url
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    engine = make_engine(url) if url else engine_for(load_settings())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
