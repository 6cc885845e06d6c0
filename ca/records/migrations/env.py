"""Alembic environment: one metadata (ca.records.models_base.Base) for the whole project."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from ca.records import models_base, store

config = context.config
target_metadata = store.METADATA


def _render_item(type_, obj, autogen_context):
    """Render project column types as plain SQLAlchemy types so migrations import nothing of ours."""
    if type_ == "type" and isinstance(obj, models_base.UTCDateTime):
        return "sa.DateTime()"
    return False


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = store.make_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection)
        connection.commit()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
