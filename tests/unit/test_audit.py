"""The hash-chained audit log (ca/records/audit.py): append, verify, tamper detection, concurrent appenders."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading

import pytest
from sqlalchemy import delete, select, update

from ca.records import audit
from ca.clock import FixedClock
from ca.errors import AuditChainError
from ca.records.models_audit import AuditEvent, AuditHead

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def _append(session, clock, n: int, *, action: str = "delegation.create") -> list[AuditEvent]:
    events = []
    for i in range(n):
        events.append(
            audit.append(
                session,
                actor="operator:alice",
                action=action,
                subject_type="delegation",
                subject_id=f"d{i}",
                details={"scope": f"TN 1202555010{i}", "max_lifetime_seconds": 3600, "ca": False, "note": None},
                clock=clock,
            )
        )
        clock.advance(dt.timedelta(seconds=1))
    session.commit()
    return events


def test_first_event_links_to_the_genesis_hash_and_hash_is_sha256_over_prev_and_canonical_json(session, clock):
    """hash = SHA-256(prev_hash ‖ canonical JSON), recomputed here without ca.records.audit's helpers."""
    (event,) = _append(session, clock, 1)
    assert event.seq == 1
    assert event.prev_hash == "0" * 64
    body = {
        "seq": 1,
        "occurred_at": "2026-03-01T12:00:00.123456Z",
        "actor": "operator:alice",
        "action": "delegation.create",
        "subject_type": "delegation",
        "subject_id": "d0",
        "details": {"scope": "TN 12025550100", "max_lifetime_seconds": 3600, "ca": False, "note": None},
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert event.hash == hashlib.sha256(b"0" * 64 + canonical).hexdigest()


def test_each_event_links_to_the_previous_hash_and_the_head_follows(session, clock):
    events = _append(session, clock, 4)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    for previous, current in zip(events, events[1:]):
        assert current.prev_hash == previous.hash
    assert audit.head(session) == (4, events[-1].hash)


def test_verify_accepts_an_intact_chain_and_counts_it(session, clock):
    _append(session, clock, 5)
    assert audit.verify(session) == 5


def test_verify_accepts_an_empty_log(session):
    assert audit.verify(session) == 0


def test_details_are_stored_exactly_as_hashed(session, clock):
    """Tuples and non-ASCII text survive the database round trip unchanged, so verify() agrees."""
    audit.append(session, actor="cli:bob", action="certificate.issue", subject_type="certificate",
                 subject_id="ab12", details={"entries": ("TN 1", "SPC Ü1"), "n": 2}, clock=clock)
    session.commit()
    session.expire_all()
    stored = session.scalars(select(AuditEvent)).one()
    assert stored.details == {"entries": ["TN 1", "SPC Ü1"], "n": 2}
    assert audit.verify(session) == 1


def test_details_that_are_not_json_are_refused_before_anything_is_written(session, clock):
    with pytest.raises(TypeError):
        audit.append(session, actor="cli", action="x", subject_type="t", subject_id="1",
                     details={"raw": b"\x00"}, clock=clock)
    session.rollback()
    assert session.scalar(select(AuditEvent.seq)) is None


def test_verify_names_an_edited_event(session, clock):
    """An UPDATE of any covered field breaks that event's own hash."""
    _append(session, clock, 5)
    session.execute(
        update(AuditEvent).where(AuditEvent.seq == 3).values(details={"scope": "TN 19995550100"})
    )
    session.commit()
    with pytest.raises(AuditChainError) as caught:
        audit.verify(session)
    assert caught.value.seq == 3
    assert "audit event 3 was altered" in caught.value.detail


def test_verify_names_an_edited_actor(session, clock):
    _append(session, clock, 3)
    session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="operator:mallory"))
    session.commit()
    with pytest.raises(AuditChainError, match="audit event 2 was altered"):
        audit.verify(session)


def test_verify_names_a_deleted_event(session, clock):
    _append(session, clock, 5)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    session.commit()
    with pytest.raises(AuditChainError) as caught:
        audit.verify(session)
    assert caught.value.seq == 2
    assert "audit event 2 is missing" in caught.value.detail


def test_verify_detects_deleting_the_newest_events(session, clock):
    """Truncating the tail leaves a consistent prefix; the head row still remembers the length."""
    _append(session, clock, 5)
    session.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    session.commit()
    with pytest.raises(AuditChainError) as caught:
        audit.verify(session)
    assert caught.value.seq == 4
    assert "audit events 4..5 are missing" in caught.value.detail


def test_verify_detects_a_rewritten_and_relinked_event(session, clock):
    """Recomputing an edited event's own hash still breaks the next event's prev_hash link."""
    _append(session, clock, 4)
    event = session.get(AuditEvent, 2)
    event.subject_id = "forged"
    event.hash = audit.event_hash(event.prev_hash, audit.event_body(event))
    session.commit()
    with pytest.raises(AuditChainError) as caught:
        audit.verify(session)
    assert caught.value.seq == 3
    assert "does not link to event 2" in caught.value.detail


def test_the_head_row_is_created_by_the_first_append_only(session, clock):
    assert session.get(AuditHead, audit.HEAD_ID) is None
    _append(session, clock, 2)
    heads = session.scalars(select(AuditHead)).all()
    assert [(h.id, h.seq) for h in heads] == [(audit.HEAD_ID, 2)]


def test_an_appended_event_rolls_back_with_its_transaction(session, clock):
    """The event is written in the caller's transaction: no commit, no event, head unchanged."""
    _append(session, clock, 1)
    audit.append(session, actor="cli", action="certificate.issue", subject_type="certificate",
                 subject_id="1", details={}, clock=clock)
    session.rollback()
    assert audit.head(session)[0] == 1
    assert audit.verify(session) == 1


def test_concurrent_appenders_in_separate_transactions_never_fork_the_chain(session_factory, clock):
    """Writers in separate connections take turns on the audit_head lock; every append lands once.

    Threads with their own sessions stand in for processes: each has its own database connection
    and transaction, which is what the lock serializes.
    """
    writers, per_writer = 4, 5
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def writer(index: int) -> None:
        try:
            start.wait()
            for n in range(per_writer):
                with session_factory() as s:
                    audit.append(s, actor=f"worker:{index}", action="nonce.gc", subject_type="worker",
                                 subject_id=str(index), details={"n": n}, clock=clock)
                    s.commit()
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_factory() as s:
        assert audit.verify(s) == writers * per_writer
        seqs = s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert seqs == list(range(1, writers * per_writer + 1))


def test_query_filters_by_subject_and_pages_newest_first(session, clock):
    _append(session, clock, 3)
    audit.append(session, actor="cli", action="certificate.issue", subject_type="certificate",
                 subject_id="abc", details={}, clock=clock)
    session.commit()
    assert [e.seq for e in audit.query(session)] == [4, 3, 2, 1]
    assert [e.seq for e in audit.query(session, subject_type="delegation", before_seq=3)] == [2, 1]
    assert [e.subject_id for e in audit.query(session, action="certificate.issue")] == ["abc"]
