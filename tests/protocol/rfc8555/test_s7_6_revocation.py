"""RFC 8555 §7.6 revokeCert: by the account that holds the certificate, by an account holding
valid authorizations for all of its TNAuthList, or by the certificate's own key; reason codes."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update

from ca.records import delegations
from ca.records.models_acme import Authorization, Order
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Delegation, Revocation
from ca.numbers.tnauthlist import TNScope
from tests.helpers import certificate_with_bit_string_common_name
from protocol.support import (
    RANGE_SCOPE,
    TN_SCOPE,
    RawClient,
    assert_problem,
    b64url,
    csr_b64,
    raw_issue,
    raw_ready_order,
    table_counts,
)

REVOKE = "/acme/revoke-cert"


@pytest.fixture
def issued(registered, authority):
    """(certificate DER, its private key) issued to ``registered`` for TN_SCOPE."""
    certificate, key = raw_issue(registered, authority)
    return certificate.public_bytes(serialization.Encoding.DER), key


def test_s7_6_account_that_holds_the_certificate_revokes_it(registered, issued, session_factory):
    der, _ = issued
    response = registered.post(REVOKE, {"certificate": b64url(der), "reason": 4})
    assert response.status_code == 200
    assert response.headers["Replay-Nonce"]
    with session_factory() as session:
        revocation = session.scalars(select(Revocation)).one()
        assert (revocation.reason_code, revocation.source) == (4, "acme")
        assert revocation.actor == "acme:account:" + registered.kid.rsplit("/", 1)[1]
        assert "certificate.revoke" in session.scalars(select(AuditEvent.action)).all()


def test_s7_6_request_signed_by_the_certificate_key_revokes_it(raw, issued, client, home, session_factory):
    """RFC 8555 §7.6: "... or a request signed with the certificate's private key (jwk)"."""
    der, key = issued
    by_key = RawClient(client, home.base_url, key=key)
    response = by_key.post(REVOKE, {"certificate": b64url(der)}, use_jwk=True)
    assert response.status_code == 200
    with session_factory() as session:
        revocation = session.scalars(select(Revocation)).one()
        # RFC 5280 §5.3.1: no reason given → no reasonCode entry.
        assert (revocation.reason_code, revocation.actor) == (None, "acme:certificate-key")


def test_s7_6_account_with_valid_authorizations_for_the_scope_may_revoke(issued, client, home, authority):
    der, _ = issued
    other = RawClient(client, home.base_url)
    other.register()
    raw_ready_order(other, authority, TN_SCOPE)
    assert other.post(REVOKE, {"certificate": b64url(der), "reason": 1}).status_code == 200


def test_s7_6_authorizations_under_a_revoked_delegation_do_not_revoke_the_new_holders_certificate(
    client, home, authority, session_factory
):
    """A validated a number under D1; D1 was revoked; B got a certificate for the number under D2.
    A's valid-looking authorization must not let A revoke B's certificate (RFC 8555 §7.6 asks for
    authorizations the server still honours; RFC 8555 §7.1.6: the server revoked them)."""
    former = RawClient(client, home.base_url)
    former.register()
    first = authority.delegate(TNScope.parse(ranges=["12025550100:10"]), delegate="Former Holder")
    raw_ready_order(former, authority, TN_SCOPE, delegation_id=first)
    authority.revoke(first)
    successor = RawClient(client, home.base_url)
    successor.register()
    second = authority.delegate(TNScope.parse(ranges=["12025550100:10"]), delegate="New Holder")
    order = raw_ready_order(successor, authority, TN_SCOPE, delegation_id=second)
    csr, _ = csr_b64()
    certificate_url = successor.post(order.body["finalize"], {"csr": csr}).get_json()["certificate"]
    pem = successor.post(certificate_url, None).get_data()
    der = x509.load_pem_x509_certificates(pem)[0].public_bytes(serialization.Encoding.DER)

    before = table_counts(session_factory)
    response = former.post(REVOKE, {"certificate": b64url(der), "reason": 1})
    assert_problem(response, "unauthorized", 403, "neither obtained certificate")
    assert table_counts(session_factory) == before
    assert successor.post(certificate_url, None).status_code == 200


def test_s7_6_authorizations_under_an_ended_delegation_do_not_authorize_revocation(
    issued, client, home, authority, session_factory
):
    """A delegation that has ended grants nothing, though no revocation touched its authorizations."""
    der, _ = issued
    other = RawClient(client, home.base_url)
    other.register()
    ending = authority.delegate(TNScope.parse(ranges=["12025550100:10"]), delegate="Ending Holder")
    raw_ready_order(other, authority, TN_SCOPE, delegation_id=ending)
    with session_factory() as session:
        session.execute(update(Delegation).where(Delegation.id == ending)
                        .values(not_after=home.clock.now() - dt.timedelta(seconds=1)))
        session.commit()
    before = table_counts(session_factory)
    assert_problem(other.post(REVOKE, {"certificate": b64url(der)}), "unauthorized", 403, "neither obtained certificate")
    assert table_counts(session_factory) == before


def test_s7_1_6_revoking_a_delegation_revokes_its_authorizations_and_invalidates_open_orders(
    registered, authority, session_factory
):
    """RFC 8555 §7.1.6: a valid authorization the server revokes is "revoked", and an order with an
    authorization in a final unusable state is "invalid"; its error says which delegation ended it."""
    delegation_id = authority.delegate()
    ready = raw_ready_order(registered, authority, delegation_id=delegation_id)
    with session_factory() as session:
        plan = delegations.plan_revoke(session, delegation_id, reason="test: delegate left", clock=authority.home.clock)
        assert (plan.valid_authorizations, plan.open_orders) == (1, 1)
    authority.revoke(delegation_id)
    authorization = registered.post(ready.authz_url, None).get_json()
    assert authorization["status"] == "revoked"
    body = registered.post(ready.url, None).get_json()
    assert body["status"] == "invalid"
    assert body["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert f"delegation {delegation_id} was revoked" in body["error"]["detail"]
    with session_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "delegation.revoke")).one()
        assert (event.details["authorizations_revoked"], event.details["orders_invalidated"]) == (1, 1)
        assert session.scalars(select(Authorization.status)).all() == ["revoked"]
        assert session.scalars(select(Order.status)).all() == ["invalid"]


def test_s7_6_unrelated_account_is_unauthorized(issued, client, home, authority, session_factory):
    der, _ = issued
    other = RawClient(client, home.base_url)
    other.register()
    raw_ready_order(other, authority, RANGE_SCOPE)  # authorized for other numbers only
    before = table_counts(session_factory)
    response = other.post(REVOKE, {"certificate": b64url(der)})
    assert_problem(response, "unauthorized", 403, "neither obtained certificate")
    assert table_counts(session_factory) == before


def test_s7_6_jwk_that_is_not_the_certificate_key_is_unauthorized(raw, issued, session_factory):
    der, _ = issued
    before = table_counts(session_factory)
    assert_problem(raw.post(REVOKE, {"certificate": b64url(der)}, use_jwk=True), "unauthorized", 403, "not the certificate's public key")
    assert table_counts(session_factory) == before


def test_s7_6_already_revoked_is_already_revoked(registered, issued, session_factory):
    der, _ = issued
    registered.post(REVOKE, {"certificate": b64url(der)})
    before = table_counts(session_factory)
    assert_problem(registered.post(REVOKE, {"certificate": b64url(der)}), "alreadyRevoked", 400, "already revoked")
    assert table_counts(session_factory) == before


@pytest.mark.parametrize("reason", [2, 6, 7, 8, 9, 10, 11, -1])
def test_s7_6_disallowed_reason_is_bad_revocation_reason_listing_the_allowed_ones(registered, issued, session_factory, reason):
    der, _ = issued
    before = table_counts(session_factory)
    response = registered.post(REVOKE, {"certificate": b64url(der), "reason": reason})
    assert_problem(response, "badRevocationReason", 400, "allowed: 0 (unspecified), 1 (key_compromise)")
    assert table_counts(session_factory) == before


@pytest.mark.parametrize(
    "payload, status, fragment",
    [
        ({"certificate": "not base64url!"}, 400, "base64url"),
        ({"certificate": b64url(b"\x30\x03\x02\x01\x00")}, 400, "not a DER X.509 certificate"),
        ({}, 400, "'certificate' must be a base64url string"),
    ],
    ids=["not-base64url", "not-a-certificate", "missing"],
)
def test_s7_6_malformed_requests_are_malformed(registered, session_factory, payload, status, fragment):
    before = table_counts(session_factory)
    assert_problem(registered.post(REVOKE, payload), "malformed", status, fragment)
    assert table_counts(session_factory) == before


def test_s7_6_certificate_with_an_unknown_version_is_malformed(registered, issued, session_factory):
    """X.509 versions are v1-v3 (RFC 5280 §4.1.2.1); cryptography raises InvalidVersion, which is
    not a ValueError, for any other."""
    der, _ = issued
    mutated = bytearray(der)
    version = mutated.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT Version v3
    mutated[version + 4] = 14
    before = table_counts(session_factory)
    response = registered.post(REVOKE, {"certificate": b64url(bytes(mutated))})
    assert_problem(response, "malformed", 400, "14 is not a valid X509 version")
    assert table_counts(session_factory) == before


def test_s7_6_certificate_whose_names_do_not_decode_is_malformed(registered, session_factory):
    """A commonName typed BIT STRING: cryptography raises TypeError when it decodes the name."""
    before = table_counts(session_factory)
    response = registered.post(REVOKE, {"certificate": b64url(certificate_with_bit_string_common_name())})
    assert_problem(response, "malformed", 400, "'certificate' is not a DER X.509 certificate (oid must be")
    assert table_counts(session_factory) == before


def test_s7_6_reason_must_be_an_integer(registered, issued):
    der, _ = issued
    assert_problem(registered.post(REVOKE, {"certificate": b64url(der), "reason": True}), "malformed", 400, "integer")


def test_s7_6_certificate_not_issued_here_is_a_404_problem(registered, home):
    stranger = home.issuing_ca().certificate.public_bytes(serialization.Encoding.DER)  # ours, but not an ACME issuance
    assert_problem(registered.post(REVOKE, {"certificate": b64url(stranger)}), "malformed", 404, "was not issued by this authority")


@pytest.mark.parametrize("same_account", [True, False], ids=["same-account", "another-account"])
def test_s6_7_a_key_revoked_for_key_compromise_is_bad_public_key_at_finalize(
    registered, issued, authority, client, home, session_factory, same_account
):
    """RFC 8555 §6.7 badPublicKey, RFC 5280 §5.3.1 keyCompromise: a key whose certificate was
    revoked as compromised was certified again. finalize now refuses a CSR with that key,
    naming the revoked certificate; nothing is written and the order stays "ready" for a CSR
    with a new key (RFC 8555 §7.4)."""
    der, key = issued
    assert registered.post(REVOKE, {"certificate": b64url(der), "reason": 1}).status_code == 200
    serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
    subscriber = registered
    if not same_account:
        subscriber = RawClient(client, home.base_url)
        subscriber.register()
    order = raw_ready_order(subscriber, authority)
    csr, _ = csr_b64(key)
    before = table_counts(session_factory)
    response = subscriber.post(order.body["finalize"], {"csr": csr})
    assert_problem(response, "badPublicKey", 400, f"certificate {serial}, revoked for keyCompromise")
    assert table_counts(session_factory) == before
    assert subscriber.post(order.url, None).get_json()["status"] == "ready"
    fresh, _ = csr_b64()
    assert subscriber.post(order.body["finalize"], {"csr": fresh}).get_json()["status"] == "valid"


def test_s6_7_a_key_revoked_for_another_reason_may_be_certified_again(registered, issued, authority):
    """Only keyCompromise says the key is unsafe; superseded (4) says nothing about the key."""
    der, key = issued
    assert registered.post(REVOKE, {"certificate": b64url(der), "reason": 4}).status_code == 200
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64(key)
    assert registered.post(order.body["finalize"], {"csr": csr}).get_json()["status"] == "valid"
