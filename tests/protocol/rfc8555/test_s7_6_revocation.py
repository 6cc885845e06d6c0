"""RFC 8555 §7.6 revokeCert: by the account that holds the certificate, by an account holding
valid authorizations for all of its TNAuthList, or by the certificate's own key; reason codes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from ca.store import AuditEvent, Revocation
from tests.helpers import certificate_with_bit_string_common_name
from protocol.support import (
    RANGE_SCOPE,
    TN_SCOPE,
    RawClient,
    assert_problem,
    b64url,
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
