"""The audit log: append-only events in a SHA-256 hash chain.

Every state change of the authority (an issuance, a delegation granted or revoked, a token
minted, the home initialised) appends one :class:`ca.records.models_audit.AuditEvent` in the same transaction
as the change itself, so an event exists exactly when its change does.

The chain. Event ``n`` stores ``prev_hash`` (event ``n-1``'s hash, or 64 zeros for the first)
and ``hash = SHA-256(prev_hash ‖ canonical JSON of event n)``, where the canonical JSON has sorted
keys, no insignificant whitespace and UTF-8 text (the shape of RFC 8785 for the values used here:
strings, integers, booleans, null, lists and objects). Editing any field of a stored event, or
deleting or inserting one, breaks every later link; :func:`verify` recomputes the chain and names
the first event that does not verify.

Concurrency. The single ``audit_head`` row holds the last ``seq`` and ``hash``. An append locks
it (an ``UPDATE … RETURNING`` of the row, :func:`locked_head`), so appenders in any number of
processes take turns and cannot fork the chain; the lock is held until the caller's transaction
ends, which keeps the order of the chain the order of commits. The head row is created by the
first append ever; two processes racing to create it are resolved by its primary key (``INSERT …
ON CONFLICT DO NOTHING``, then lock whichever row won). On SQLite the database lock serializes
writers instead.

What the chain does not prove: that nobody rewrote the *whole* chain from some point on with a
consistent set of hashes. Anchoring the head hash outside the database (a signed checkpoint, a CT
log) is what closes that gap; ``head()`` gives the value to anchor.

Checkpoints (:mod:`ca.records.audit_checkpoints`) sign the head with the audit key, and
:func:`ca.records.audit_checkpoints.verify_all` checks the chain against them; the offline export
is :mod:`ca.records.audit_export`. This module is the chain itself, which every state change
appends to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from ca.clock import Clock
from ca.errors import AuditChainError
from ca.records.models_audit import AuditEvent, AuditHead

HEAD_ID = 1
# prev_hash of the first event: there is nothing before it.
GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: one byte string per JSON value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def utc_timestamp(value: dt.datetime) -> str:
    """``2026-03-01T12:00:00.000000Z``: how event bodies, checkpoints and exports write a time."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(event: AuditEvent) -> dict[str, Any]:
    """The fields the hash covers (everything but ``hash`` itself; ``prev_hash`` is chained in)."""
    return {
        "seq": event.seq,
        "occurred_at": utc_timestamp(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "details": event.details,
    }


def event_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """SHA-256 hex over ``prev_hash`` (ASCII hex) followed by the canonical JSON of ``body``."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_json(body))
    return digest.hexdigest()


def locked_head(session: Session) -> AuditHead:
    """The ``audit_head`` row, locked until the caller's transaction ends (created if missing).

    One statement, the same on both databases: an ``UPDATE … RETURNING`` that changes nothing.
    On PostgreSQL the update takes the row's lock (as ``SELECT … FOR UPDATE`` would), waiting for
    any other appender's transaction, and returns the row as that transaction left it. SQLite has
    no row locks: the write statement takes the database's write lock (waiting out busy_timeout),
    which then serializes appenders until commit, and reads the head under it, so the read is of
    the latest committed head.
    """
    lock = (
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=AuditHead.seq)
        .returning(AuditHead)
        .execution_options(populate_existing=True)
    )
    head = session.scalars(lock).one_or_none()
    if head is not None:
        return head
    # First append ever: create the head; if another process just did, its row wins.
    # store.make_engine admits only these two dialects.
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}[dialect]
    session.execute(
        insert(AuditHead).values(id=HEAD_ID, seq=0, hash=GENESIS_HASH).on_conflict_do_nothing(index_elements=["id"])
    )
    return session.scalars(lock).one()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: Mapping[str, Any],
    clock: Clock,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction (the caller commits). The event
    returned is not in the session: its row is written by a statement of its own.

    ``details`` must be JSON (strings, integers, booleans, null, lists, objects with string keys);
    it is stored exactly as hashed. Raises TypeError/ValueError for anything else (bytes, NaN,
    datetimes): a caller bug, not bad input.
    """
    if not actor or not action:
        raise ValueError("an audit event needs an actor and an action")
    # Round-trip through canonical JSON so the stored value is exactly the hashed one
    # (tuples become lists, keys become strings, or it fails here rather than at verify time).
    stored_details = json.loads(canonical_json(dict(details)))
    # Three Core statements on the session's connection, in its transaction: lock and read the
    # head, insert the event, move the head. Through the ORM the same three cost a bulk-UPDATE
    # compile, a unit-of-work flush and the identity map's bookkeeping (a third of a tkauth-01
    # answer's CPU); nothing here needs an ORM object. The session's own pending changes are
    # flushed when it next queries or commits, in the same transaction.
    connection = session.connection()
    head_seq, head_hash = _lock_head(session, connection)
    event = AuditEvent(
        seq=head_seq + 1,
        occurred_at=clock.now().astimezone(dt.timezone.utc),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=stored_details,
        prev_hash=head_hash,
    )
    event.hash = event_hash(event.prev_hash, event_body(event))
    connection.execute(_INSERT_EVENT, {column: getattr(event, column) for column in _EVENT_COLUMNS})
    connection.execute(_MOVE_HEAD, {"new_seq": event.seq, "new_hash": event.hash})
    # An AuditHead this session loaded earlier (locked_head, head()) no longer says where the head is.
    cached = session.identity_map.get(identity_key(AuditHead, HEAD_ID))
    if cached is not None:
        session.expire(cached)
    return event


def _lock_head(session: Session, connection: Connection) -> tuple[int, str]:
    """(seq, hash) of the head, locked as :func:`locked_head` locks it (created if missing)."""
    row = connection.execute(_LOCK_HEAD).first()
    if row is None:
        locked_head(session)  # the first append ever: the head is created, then locked
        row = connection.execute(_LOCK_HEAD).one()
    return row.seq, row.hash


_HEAD = AuditHead.__table__
# Built once (their compiled forms are cached under these objects): the append's three statements.
_LOCK_HEAD = update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(seq=_HEAD.c.seq).returning(_HEAD.c.seq, _HEAD.c.hash)
_EVENT_COLUMNS = ("seq", "occurred_at", "actor", "action", "subject_type", "subject_id", "details", "prev_hash", "hash")
_INSERT_EVENT = insert(AuditEvent.__table__)
_MOVE_HEAD = (update(_HEAD).where(_HEAD.c.id == HEAD_ID)
              .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))


def head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest event: the value to anchor outside the database."""
    row = session.get(AuditHead, HEAD_ID)
    return (row.seq, row.hash) if row is not None else (0, GENESIS_HASH)


def verify(session: Session, *, batch_size: int = 1000) -> int:
    """Recompute the whole chain; return the number of events, or raise :class:`AuditChainError`.

    The error names the first event that fails: an edited event (its hash no longer matches its
    contents), a deleted event (a gap in ``seq``, or a head that points past the last event), an
    inserted or re-linked event (its ``prev_hash`` is not the previous event's hash).
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch_size))
    for event in events:
        prev_hash = verify_link(expected_seq, prev_hash, event.seq, event.prev_hash, event_body(event), event.hash)
        expected_seq += 1
    last_seq = expected_seq - 1
    head_seq, head_hash = head(session)
    if head_seq != last_seq:
        raise AuditChainError(
            f"audit events {last_seq + 1}..{head_seq} are missing: the chain head is at {head_seq}, "
            f"the last stored event is {last_seq}",
            seq=last_seq + 1,
        )
    if head_hash != prev_hash:
        raise AuditChainError(f"audit event {last_seq} does not match the chain head's hash", seq=last_seq)
    return last_seq


def query(
    session: Session,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    action: str | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """Events newest first, optionally filtered; page with ``before_seq`` (the last seq seen)."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if subject_type is not None:
        stmt = stmt.where(AuditEvent.subject_type == subject_type)
    if subject_id is not None:
        stmt = stmt.where(AuditEvent.subject_id == subject_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    return list(session.scalars(stmt))


def verify_link(expected_seq: int, prev_hash: str, seq: int, stored_prev_hash: str, body: Mapping[str, Any],
                stored_hash: str) -> str:
    """Check event ``seq`` against its predecessor's hash; return its hash (the next ``prev_hash``).

    Shared by :func:`verify`, the checkpoint verification and the offline export, so a broken
    link reads the same wherever it is found."""
    if seq != expected_seq:
        raise AuditChainError(
            f"audit event {expected_seq} is missing (the next stored event is {seq}): deleted", seq=expected_seq)
    if stored_prev_hash != prev_hash:
        raise AuditChainError(f"audit event {seq} does not link to event {seq - 1} (prev_hash differs)", seq=seq)
    if event_hash(prev_hash, body) != stored_hash:
        raise AuditChainError(f"audit event {seq} was altered: its hash does not match its contents", seq=seq)
    return stored_hash

