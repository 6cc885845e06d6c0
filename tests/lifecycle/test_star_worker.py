"""The STAR renewal worker (ca/lifecycle/renewal_worker.py, ``tnca worker``): when it renews, what it issues, when it
stops. The server side is real (orders placed through the ACME app); the worker runs in-process
on a clock the test moves, as ``tnca worker`` would run at those times.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from ca.lifecycle import renewal, renewal_worker
from ca.orders.authority import Authority
from ca.records import delegations
from ca.clock import FixedClock
from ca.records.models_acme import Order
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, Revocation
from protocol.rfc8739.star_support import (
    HOUR,
    Worker,
    auto_renewal,
    issued_certificates,
    order_row,
    star_valid_order,
    utcnow,
)
from protocol.support import app, authority, client, home, port, registered  # noqa: F401  (fixtures)
from tests.helpers import row_counts

SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)


def star_order(registered, authority, **auto) -> str:  # noqa: F811
    order = star_valid_order(registered, authority, auto_renewal(**auto))
    return order.url.rsplit("/", 1)[1]


def worker_at(home, session_factory, moment: dt.datetime) -> Worker:  # noqa: F811
    return Worker(home, session_factory, FixedClock(moment))


def test_renewal_happens_at_the_next_certificates_not_before_and_not_earlier(registered, authority, home, session_factory):  # noqa: F811
    order_id = star_order(registered, authority)
    (first,) = issued_certificates(session_factory, order_id)
    due = order_row(session_factory, registered.base_url + "/acme/order/" + order_id).next_renewal_at
    worker = worker_at(home, session_factory, due - SECOND)
    with session_factory() as session:
        before = row_counts(session)
    assert worker.tick() == 0
    with session_factory() as session:
        assert row_counts(session) == before  # not due: nothing written, not even a claim

    assert worker.at(due) == 1
    first_again, second = issued_certificates(session_factory, order_id)
    assert first_again.serial == first.serial
    # RFC 8739 §3.5: nrd[1] = notAfter of the first; notBefore = nrd[1] - T/2; notAfter = nrd[1] + T.
    assert (second.not_before, second.not_after) == (first.not_after - HOUR / 2, first.not_after + HOUR)
    assert second.spki_sha256 == first.spki_sha256  # §2.2: the same CSR, the same key
    assert worker.next_renewal_at(order_id) == second.not_after - HOUR / 2
    with session_factory() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "certificate.issue", AuditEvent.subject_id == second.serial)
        ).one()
        order = session.get(Order, order_id)
        assert (order.status, order.renewal_claim) == ("valid", None)
    assert event.actor == renewal.RENEWAL_ACTOR
    assert (event.details["order_id"], event.details["not_after"]) == (order_id, second.not_after.isoformat())


def test_renewals_continue_to_the_end_date_and_stop_there(registered, authority, home, session_factory):  # noqa: F811
    """RFC 8739 §3.3: "The server MUST NOT issue any additional certificates for this Order beyond
    its auto-renewal end-date"; the order stays valid afterwards."""
    end = utcnow() + 3 * HOUR
    order_id = star_order(registered, authority, end=end)
    worker = worker_at(home, session_factory, utcnow())
    while (due := worker.next_renewal_at(order_id)) is not None:
        assert worker.at(due) == 1
    certificates = issued_certificates(session_factory, order_id)
    assert len(certificates) == 3  # nominal periods [0, 1 h], [1 h, 2 h], [2 h, 3 h]
    assert certificates[-1].not_after == end
    # Each next certificate is valid before the current one ends: no gap for the relying parties.
    for current, following in zip(certificates, certificates[1:]):
        assert following.not_before < current.not_after
    assert worker.at(end + HOUR) == 0
    assert order_row(session_factory, registered.base_url + "/acme/order/" + order_id).status == "valid"


def test_a_worker_that_was_down_resumes_with_a_certificate_covering_now(registered, authority, home, session_factory):  # noqa: F811
    end = utcnow() + 6 * HOUR
    order_id = star_order(registered, authority, end=end)
    (first,) = issued_certificates(session_factory, order_id)
    late = first.not_after + 2 * HOUR + 10 * MINUTE  # three slots missed
    assert worker_at(home, session_factory, late).tick() == 1
    _first, resumed = issued_certificates(session_factory, order_id)
    # Nominal renewal dates stay on the lifetime grid: nrd = first.notAfter + 2 h.
    assert resumed.not_after == first.not_after + 3 * HOUR
    assert resumed.not_before <= late < resumed.not_after


def test_the_worker_cancels_a_star_order_whose_delegation_was_revoked(registered, authority, home, session_factory):  # noqa: F811
    """The delegation is revoked by a path that leaves its STAR orders alone (here the bare
    ``ca.records.delegations`` change; ``tnca delegation revoke`` also cancels them at once): within one
    tick the order is canceled, whether or not a renewal is due, and nothing more is issued."""
    delegation_id = authority.delegate()
    order = star_valid_order(registered, authority, auto_renewal(), delegation_id=delegation_id)
    order_id = order.url.rsplit("/", 1)[1]
    with session_factory() as session:
        plan = delegations.plan_revoke(session, delegation_id, reason="test: delegate left", clock=home.clock)
        delegations.execute_revoke(session, plan, actor="test:operator", clock=home.clock)
        session.commit()
    worker = worker_at(home, session_factory, utcnow())
    assert worker.tick() == 0
    row = order_row(session_factory, order.url)
    assert (row.status, row.next_renewal_at) == ("canceled", None)
    assert row.error == {
        "type": "urn:ietf:params:acme:error:autoRenewalCanceled",
        "detail": f"auto-renewal stopped: delegation {delegation_id} is revoked",
    }
    response = registered.post(order.body["star-certificate"], None)
    assert response.status_code == 403
    assert response.get_json()["detail"] == row.error["detail"]
    with session_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "order.cancel")).one()
    assert (event.subject_id, event.details["by"], event.actor) == (order_id, "authority", renewal.RENEWAL_ACTOR)
    assert worker.at(utcnow() + 2 * HOUR) == 0
    assert len(issued_certificates(session_factory, order_id)) == 1


def test_a_renewal_refused_by_issuance_cancels_the_order_with_the_reason(registered, authority, home, session_factory):  # noqa: F811
    """When issuance refuses for good at renewal time, the order stops with the refusal as its
    reason. Here the policy stopped accepting the CSR's key type (P-256) after the first issuance."""
    order_id = star_order(registered, authority)
    due = order_row(session_factory, registered.base_url + "/acme/order/" + order_id).next_renewal_at
    text = home.policy_path.read_text().replace('end_entity = ["ec-p256"]', 'end_entity = ["ec-p384"]')
    home.policy_path.write_text(text)
    changed = type(home)(home.path)
    assert Worker(changed, session_factory, FixedClock(due)).tick() == 0
    row = order_row(session_factory, registered.base_url + "/acme/order/" + order_id)
    assert row.status == "canceled"
    assert row.error["detail"].startswith("renewal refused: CSR key type ec-p256 is not allowed")
    with session_factory() as session:  # refused before any precertificate: nothing recorded
        assert len(session.scalars(select(Certificate).where(Certificate.order_id == order_id)).all()) == 1
    changed.close()


def test_rfc5280_s5_3_1_a_renewal_whose_key_was_revoked_for_key_compromise_cancels_the_order(registered, authority, home, session_factory):  # noqa: F811
    """RFC 8739 §2.2 renewals reuse the finalize CSR, and so its key: once a certificate of that
    key is revoked for keyCompromise (RFC 5280 §5.3.1) the worker must not certify it again
    (ca.orders.finalize.issue_for_order refuses it); the order stops, saying why."""
    order_id = star_order(registered, authority)
    (first,) = issued_certificates(session_factory, order_id)
    due = order_row(session_factory, registered.base_url + "/acme/order/" + order_id).next_renewal_at
    with session_factory() as session:
        certificate = session.scalars(select(Certificate).where(Certificate.order_id == order_id,
                                                                Certificate.stage == "issued")).one()
        session.add(Revocation(certificate_id=certificate.id, reason_code=1, actor="test:operator", source="operator"))
        session.commit()
    assert worker_at(home, session_factory, due).tick() == 0
    row = order_row(session_factory, registered.base_url + "/acme/order/" + order_id)
    assert row.status == "canceled"
    assert "revoked for keyCompromise" in row.error["detail"]
    assert len(issued_certificates(session_factory, order_id)) == 1


def test_a_cancellation_between_claim_and_renewal_issues_nothing(registered, authority, home, session_factory):  # noqa: F811
    """RFC 8739 §3.1.2: "After a successful cancellation, the server MUST NOT issue any additional
    certificates for this Order" — also when a worker had already claimed it."""
    order_id = star_order(registered, authority)
    due = order_row(session_factory, registered.base_url + "/acme/order/" + order_id).next_renewal_at
    clock = FixedClock(due)
    (claim,) = renewal_worker.claim_due(session_factory, clock=clock, limit=10)
    with session_factory() as session:
        renewal.cancel(session, session.get(Order, order_id), actor="test", by=renewal.CANCELED_BY_CLIENT, clock=clock)
        session.commit()
    result = renewal_worker.renew_claimed(session_factory, Authority.of_home(home, clock=clock), claim)
    assert result.outcome == "lost"
    assert len(issued_certificates(session_factory, order_id)) == 1
    with session_factory() as session:  # not even a precertificate
        assert len(session.scalars(select(Certificate).where(Certificate.order_id == order_id)).all()) == 1


def test_a_claim_whose_lease_ran_out_is_taken_over_and_the_old_claim_commits_nothing(registered, authority, home, session_factory):  # noqa: F811
    """A worker that stalls past its lease loses the order to another; when it wakes up, its
    claim no longer stands and it issues nothing: the renewal happens once."""
    order_id = star_order(registered, authority)
    due = order_row(session_factory, registered.base_url + "/acme/order/" + order_id).next_renewal_at
    stalled_clock = FixedClock(due)
    (stalled,) = renewal_worker.claim_due(session_factory, clock=stalled_clock, limit=10)
    assert renewal_worker.claim_due(session_factory, clock=stalled_clock, limit=10) == []  # claimed: not due
    later = FixedClock(due + renewal_worker.CLAIM_LEASE)
    (taken_over,) = renewal_worker.claim_due(session_factory, clock=later, limit=10)
    assert taken_over.token != stalled.token
    assert renewal_worker.renew_claimed(session_factory, Authority.of_home(home, clock=later), taken_over).outcome == "renewed"
    assert renewal_worker.renew_claimed(session_factory, Authority.of_home(home, clock=stalled_clock), stalled).outcome == "lost"
    assert len(issued_certificates(session_factory, order_id)) == 2


def test_cancel_unauthorized_leaves_orders_of_active_delegations_alone(registered, authority, home, session_factory):  # noqa: F811
    order_id = star_order(registered, authority)
    assert renewal.cancel_unauthorized(session_factory, clock=FixedClock(utcnow())) == []
    assert order_row(session_factory, registered.base_url + "/acme/order/" + order_id).status == "valid"
