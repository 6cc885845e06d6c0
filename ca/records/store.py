"""Engines and sessions: the one way this project talks to its database.

The schema covers the whole domain from the start (delegations, certificates, revocations,
audit events, ACME accounts, orders, authorizations, challenges, nonces, authority tokens and
their used ``jti``s) so that later work extends it rather than reshaping it. Alembic
(``migrations/``) is the only way the schema changes; ``tests/unit/test_migrations.py`` fails when
the models and the migrations drift.

The models live in ``models_authority``, ``models_acme``, ``models_audit``, ``models_people`` and ``models_monitor``
on the declarative base of ``models_base``. They are all imported here, so that whoever makes an
engine (every process that uses the database does) has every table in :data:`METADATA`: foreign
keys and relationships between the groups are resolved by table name only once every group is
loaded.

Functions that manipulate data take a ``Session``; the caller (a request, a CLI command, a
worker) owns begin and commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ca.errors import PolicyError
# Imported for their tables, which they add to Base.metadata (see the module docstring).
from ca.records import models_acme, models_audit, models_authority, models_monitor, models_people  # noqa: F401
from ca.records.models_base import Base

# The whole schema, every model group above loaded: what Alembic compares and tests create.
METADATA: MetaData = Base.metadata


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; busy_timeout makes writers queue
    # instead of failing with "database is locked" when several processes share the file.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings this project relies on (SQLite pragmas).

    Only SQLite and PostgreSQL are supported: the migrations, the row locks and the audit head's
    upsert are written and tested for those two.
    """
    # hide_parameters: a failed statement is logged without its bound values (a TNAuthList of
    # thousands of entries once wrote half a megabyte of parameters per request to the log).
    engine = create_engine(url, hide_parameters=True, **kwargs)
    if engine.dialect.name not in SUPPORTED_DIALECTS:
        engine.dispose()
        raise PolicyError(f"database {engine.dialect.name} is not supported: use SQLite or PostgreSQL",
                          field="[database] url")
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded attributes after commit (callers read rows they just wrote)."""
    return sessionmaker(bind=engine, expire_on_commit=False)
