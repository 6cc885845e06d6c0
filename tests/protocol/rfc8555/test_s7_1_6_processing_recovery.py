"""RFC 8555 §7.1.6: an order is ``processing`` only while its certificate is being made. A finalize
whose process died (kill -9) leaves the order claimed; ``ca/orders/recovery.py`` reconciles it:
``ready`` again (the authorization the token validated still stands, so the token is not burned)
with its unfinished precertificate marked failed, or ``valid`` if its certificate was stored;
each reconciliation audited. The end-to-end proof under kill -9 is tests/e2e/test_crash_safety.py.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest
from cryptography import x509
from sqlalchemy import select, update

from ca.errors import OrderNotReadyError
from ca.orders import finalize as finalizing
from ca.orders import recovery
from ca.orders.authority import Authority
from ca.records.models_acme import Order
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, Issuer
from protocol.support import csr_b64, raw_ready_order
from tests.protocol.support import make_csr

NOW = dt.datetime.now(dt.timezone.utc)


def dead_process_claim() -> str:
    """A claim naming a process of this host that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{recovery._HOST}/{child.pid}/{recovery._start_time(os.getpid())}/deadbeef0000"


def claim_order(session_factory, order_id: str, claim: str, since: dt.datetime) -> None:
    with session_factory() as session:
        session.execute(update(Order).where(Order.id == order_id)
                        .values(status="processing", processing_claim=claim, processing_since=since))
        session.commit()


def order_id_of(raw_order) -> str:
    return raw_order.url.rsplit("/", 1)[1]


def test_is_abandoned_tells_dead_live_own_and_old_claims_apart():
    dead = dead_process_claim()
    assert recovery.is_abandoned(dead, NOW, NOW)
    held = recovery.new_claim()
    try:
        assert not recovery.is_abandoned(held, NOW, NOW)  # this process's request still holds it
    finally:
        recovery.release(held)
    assert recovery.is_abandoned(held, NOW, NOW)  # released without being recorded: abandoned
    other_live = f"{recovery._HOST}/1/{recovery._start_time(1)}/cafe00000000"
    assert not recovery.is_abandoned(other_live, NOW, NOW)  # a live process of this host
    foreign = "another-host/123/456/cafe00000000"
    assert not recovery.is_abandoned(foreign, NOW, NOW)
    assert recovery.is_abandoned(foreign, NOW - recovery.ABANDONED_AFTER, NOW)
    assert not recovery.is_abandoned(None, None, NOW)


def test_s7_1_6_an_order_left_processing_by_a_dead_process_is_ready_again_and_finalizes(
        registered, authority, session_factory):
    order = raw_ready_order(registered, authority)
    claim_order(session_factory, order_id_of(order), dead_process_claim(), NOW)
    # The precertificate the dead finalize had recorded (and perhaps logged) before it died.
    with session_factory() as session:
        issuer_id = session.scalar(select(Issuer.id).limit(1))
        session.add(Certificate(serial="0a1b2c3d4e5f", issuer_id=issuer_id, order_id=order_id_of(order),
                                kind="end-entity", scope_der=b"\x30\x00", subject="CN=x", spki_sha256="0" * 64,
                                not_before=NOW, not_after=NOW + dt.timedelta(hours=1), created_at=NOW,
                                stage="precertificate", precertificate_der=b"\x30\x00"))
        session.commit()

    body = registered.post(order.url, None).get_json()  # the next poll reconciles it
    assert body["status"] == "ready", body
    with session_factory() as session:
        precertificate = session.scalar(select(Certificate).where(Certificate.serial == "0a1b2c3d4e5f"))
        assert precertificate.stage == "failed" and "stopped before the certificate was signed" in precertificate.error
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == recovery.AUDIT_ACTION_RECOVER)).all()
        assert event.subject_id == order_id_of(order)
        assert event.details["status"] == "ready" and event.details["precertificates_failed"] == ["0a1b2c3d4e5f"]
        stored = session.get(Order, order_id_of(order))
        assert stored.processing_claim is None and stored.processing_since is None

    csr, _ = csr_b64()
    finished = registered.post(order.body["finalize"], {"csr": csr}).get_json()
    assert finished["status"] == "valid", finished


def test_an_order_processing_under_a_live_claim_is_left_alone(registered, authority, session_factory):
    order = raw_ready_order(registered, authority)
    held = recovery.new_claim()
    try:
        # Claimed just now (not at import: a long suite run must not age it past ABANDONED_AFTER).
        claim_order(session_factory, order_id_of(order), held, dt.datetime.now(dt.timezone.utc))
        assert registered.post(order.url, None).get_json()["status"] == "processing"
    finally:
        recovery.release(held)


def test_recover_abandoned_at_start_makes_an_order_with_its_certificate_valid(registered, authority, home,
                                                                              session_factory):
    """The certificate and "valid" are one transaction; should a certificate row exist anyway, the
    order is valid, not finalized twice."""
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64()
    assert registered.post(order.body["finalize"], {"csr": csr}).get_json()["status"] == "valid"
    claim_order(session_factory, order_id_of(order), dead_process_claim(), NOW)
    with session_factory() as session:
        assert recovery.recover_abandoned(session, clock=home.clock) == [order_id_of(order)]
    with session_factory() as session:
        assert session.get(Order, order_id_of(order)).status == "valid"


def test_a_finalize_whose_claim_was_taken_by_recovery_stores_nothing(registered, authority, home, session_factory,
                                                                     monkeypatch):
    """A finalize commits "valid" only while its claim stands: when recovery took the order while
    the certificate was being made (a finalize slower than ABANDONED_AFTER), the late finalize is
    orderNotReady and stores no certificate. The race is made deterministic by taking the claim
    from another session while the finalize is issuing."""
    order = raw_ready_order(registered, authority)
    real_issue = finalizing.issue_for_order

    def lose_the_claim_then_issue(*args, **kwargs):
        with session_factory() as other:
            other.execute(update(Order).where(Order.id == order_id_of(order)).values(processing_claim="taken"))
            other.commit()
        return real_issue(*args, **kwargs)

    monkeypatch.setattr(finalizing, "issue_for_order", lose_the_claim_then_issue)
    csr_pem, _ = make_csr()
    with session_factory() as session:
        stored = session.get(Order, order_id_of(order))
        with pytest.raises(OrderNotReadyError, match="recovered from an abandoned finalize"):
            finalizing.finalize(session, Authority.of_home(home), stored, x509.load_pem_x509_csr(csr_pem),
                                actor="test", account_key_spki=b"")
    with session_factory() as session:
        assert session.scalars(select(Certificate).where(Certificate.stage == "issued")).all() == []
        assert session.get(Order, order_id_of(order)).processing_claim == "taken"
