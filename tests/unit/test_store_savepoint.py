"""``ca.records.store.savepoint``: what a savepoint holds is committed with the caller's
transaction and rolled back with it, on SQLite as on PostgreSQL.

pysqlite opens a transaction at the first INSERT/UPDATE/DELETE, not at SAVEPOINT, so a plain
``session.begin_nested()`` before any write was the outermost transaction and its release
committed a token's ``jti`` alone: a server killed before the caller's commit left the token
spent and its challenge pending (tests/e2e/test_crash_safety.py found it).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from ca.records import store
from ca.records.models_acme import SpentNonce


def _nonce(value: str) -> SpentNonce:
    return SpentNonce(value=value, expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))


def test_a_savepoint_as_first_write_is_rolled_back_with_the_callers_transaction(session_factory):
    with session_factory() as session:
        with store.savepoint(session):
            session.add(_nonce("in-savepoint"))
            session.flush()
        session.rollback()  # the caller's transaction fails after the savepoint was released
    with session_factory() as session:
        assert session.scalars(select(SpentNonce.value)).all() == []


def test_a_savepoint_as_first_write_is_committed_with_the_callers_transaction(session_factory):
    with session_factory() as session:
        with store.savepoint(session):
            session.add(_nonce("in-savepoint"))
            session.flush()
        session.add(_nonce("after"))
        session.commit()
    with session_factory() as session:
        assert sorted(session.scalars(select(SpentNonce.value))) == ["after", "in-savepoint"]


def test_a_failed_savepoint_leaves_the_callers_transaction_usable(session_factory):
    with session_factory() as session:
        session.add(_nonce("taken"))
        session.commit()
    with session_factory() as session:
        try:
            with store.savepoint(session):
                session.add(_nonce("taken"))
                session.flush()
        except Exception:  # noqa: BLE001 - the unique violation, whatever the driver calls it
            pass
        session.add(_nonce("kept"))
        session.commit()
    with session_factory() as session:
        assert sorted(session.scalars(select(SpentNonce.value))) == ["kept", "taken"]
