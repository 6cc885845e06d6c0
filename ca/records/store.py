"""Engines and sessions: the one way this project talks to its database.

The schema covers the whole domain from the start (delegations, certificates, revocations,
audit events, ACME accounts, orders, authorizations, challenges, nonces, authority tokens and
their used ``jti``s) so that later work extends it rather than reshaping it. Alembic
(``ca/records/migrations/``) is the only way the schema changes; ``tests/unit/test_migrations.py``
fails when the models and the migrations drift.

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

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from ca import metrics
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
    event.listen(engine, "handle_error", _count_database_error)
    return engine


def _count_database_error(context: ExceptionContext) -> None:
    """Every error the driver raises, connecting included, in ``tnca_database_errors_total``:
    ``disconnect`` when SQLAlchemy saw the connection drop, else the PEP 249 class of the error
    (``operational``, ``integrity``: a unique constraint doing its job counts too, …)."""
    if context.is_disconnect:
        kind = "disconnect"
    elif isinstance(context.sqlalchemy_exception, DBAPIError):
        kind = type(context.sqlalchemy_exception).__name__.removesuffix("Error").lower() or "database"
    else:
        kind = "other"
    metrics.database_error(kind)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded attributes after commit (callers read rows they just wrote)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def savepoint(session: Session) -> SessionTransaction:
    """``session.begin_nested()`` that is a savepoint inside the caller's transaction on SQLite too.

    pysqlite opens its transaction at the first INSERT, UPDATE or DELETE, not at a SAVEPOINT: a
    savepoint before any write is itself the outermost transaction, and releasing it COMMITS what
    it holds, ahead of the caller's commit. A token's ``jti`` was committed that way while the
    challenge it was spent on was not (a process killed between the two burned the token; found
    by tests/e2e/test_crash_safety.py). An UPDATE that matches nothing opens the transaction first.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE issuers SET id = id WHERE 0"))
    return session.begin_nested()

