"""One function issues for an order (ca/orders/finalize.py ``issue_for_order``): ACME finalize
for an order's first certificate and the STAR worker (ca/lifecycle/renewal_worker.py) for each
renewal. Both build their request with ``issuance_request``, so for the same order and CSR the
two requests differ only in the validity window and the actor; what each certificate recorded
(its row and its ``certificate.issue`` audit event) is that request.
"""

from __future__ import annotations

import dataclasses

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ca.clock import FixedClock
from ca.errors import (
    ClaimConstraintsError,
    CSRError,
    DelegationError,
    IssuanceError,
    PolicyError,
    ScopeError,
    SignerError,
    TransparencyError,
)
from ca.lifecycle.renewal import RENEWAL_ACTOR
from ca.orders.finalize import IssuanceFailure, classify_failure, issuance_request
from ca.records.models_acme import Order
from ca.records.models_audit import AuditEvent
from protocol.rfc8739.star_support import Worker, auto_renewal, issued_certificates, star_valid_order
from protocol.support import app, authority, client, home, port, registered  # noqa: F401  (fixtures)


def test_acme_finalize_and_star_renewal_issue_the_request_issuance_request_builds(registered, authority, home,  # noqa: F811
                                                                                  session_factory):
    order_id = star_valid_order(registered, authority, auto_renewal()).url.rsplit("/", 1)[1]
    with session_factory() as session:
        due = session.get(Order, order_id).next_renewal_at
    assert Worker(home, session_factory, FixedClock(due)).tick() == 1
    first, renewed = issued_certificates(session_factory, order_id)

    with session_factory() as session:
        order = session.get(Order, order_id, options=[selectinload(Order.authorizations)])
        csr = x509.load_der_x509_csr(order.csr_der)  # the finalize CSR, reused by renewals (RFC 8739 §2.2)
        events = {
            event.subject_id: event
            for event in session.scalars(select(AuditEvent).where(AuditEvent.action == "certificate.issue"))
        }
        requests = [
            issuance_request(order, csr, not_before=certificate.not_before, not_after=certificate.not_after, actor=actor)
            for certificate, actor in ((first, f"acme:account:{order.account_id}"), (renewed, RENEWAL_ACTOR))
        ]

    for certificate, request in zip((first, renewed), requests):
        event = events[certificate.serial]
        assert (event.actor, event.details["kind"], event.details["scope_der"], event.details["delegation_id"],
                event.details["account_id"], event.details["order_id"]) == (
            request.actor, request.kind, request.scope.to_identifier_value(), request.delegation_id,
            request.account_id, request.order_id)
        assert (certificate.kind, certificate.scope_der, certificate.delegation_id, certificate.order_id) == (
            request.kind, request.scope.to_der(), request.delegation_id, request.order_id)
        assert (event.details["not_before"], event.details["not_after"]) == (
            request.not_before.isoformat(), request.not_after.isoformat())
    # The same request but for the window and who asked.
    first_request, renewal_request = requests
    unwindowed = {"not_before": None, "not_after": None, "actor": ""}
    assert dataclasses.replace(first_request, **unwindowed) == dataclasses.replace(renewal_request, **unwindowed)
    assert renewed.spki_sha256 == first.spki_sha256


def test_one_decision_on_what_an_issuance_failure_means():
    """ACME finalize keeps the order "ready" after a CSR fault; the STAR worker cancels on anything
    but transient trouble and retries that (ca/orders/finalize.py ``classify_failure``)."""
    cases = [
        (CSRError("CSR signature does not verify", field="csr.signature"), IssuanceFailure.CSR),
        (PolicyError("key type rsa-2048 is not allowed", field="csr.public_key"), IssuanceFailure.CSR),
        (ScopeError("the CSR's TNAuthList differs", field="csr.TNAuthList"), IssuanceFailure.CSR),
        (DelegationError("delegation d is revoked", field="delegation"), IssuanceFailure.REFUSED),
        (ScopeError("outside the issuing CA", field="scope"), IssuanceFailure.REFUSED),
        (PolicyError("notAfter beyond the policy", field="notAfter"), IssuanceFailure.REFUSED),
        (ClaimConstraintsError("stored constraints do not decode"), IssuanceFailure.REFUSED),
        (TransparencyError("1 of 2 SCTs"), IssuanceFailure.TRANSIENT),
        (SignerError("HSM busy"), IssuanceFailure.TRANSIENT),
        (IssuanceError("lint finding"), IssuanceFailure.TRANSIENT),
    ]
    assert [classify_failure(error) for error, _ in cases] == [expected for _, expected in cases]
