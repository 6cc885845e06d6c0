"""RFC 8555 §7.4 orders: requested validity, finalize with a CSR, polling, certificate download.

Finalize follows RFC 9448 §6 step 9 (the token's ``ca`` against the CSR's basicConstraints) and
issues through ``ca.issuing.issuance.issue``: delegation claim constraints, ``notAfter`` no later than the
token's ``exp`` (RFC 9447 §7).
"""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select
from sqlalchemy import update as sql_update

from acme_server import create_app
from ca.home import Home
from ca.numbers.claims import ClaimConstraints
from ca.records.models_acme import Order
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, Delegation
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST
from tests.helpers import csr_with_bit_string_common_name
from protocol.support import (
    RANGE_SCOPE,
    TN_SCOPE,
    RawClient,
    assert_problem,
    b64url,
    csr_b64,
    raw_answer,
    raw_new_order,
    raw_ready_order,
    table_counts,
    with_compat,
)

JWT_CLAIM_CONSTRAINTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.27")


def rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def finalize(raw: RawClient, order, csr: str):
    return raw.post(order.body["finalize"], {"csr": csr})


def download(raw: RawClient, order_url: str) -> list[x509.Certificate]:
    certificate_url = raw.post(order_url, None).get_json()["certificate"]
    response = raw.post(certificate_url, None)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pem-certificate-chain"
    text = response.get_data(as_text=True)
    # RFC 8555 §7.4.2 with erratum 5983: PEM blocks back to back, no blank lines, nothing else.
    assert "\n\n" not in text and text.startswith("-----BEGIN CERTIFICATE-----\n") and text.endswith("-----END CERTIFICATE-----\n")
    return x509.load_pem_x509_certificates(text.encode())


# --------------------------------------------------------------------------------------------
# notBefore / notAfter
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"identifiers": [{"type": "\ud800", "value": "x"}]},
        {"identifiers": [{"type": "TNAuthList", "value": "\udfff"}]},
        {"identifiers": [{"type": "TNAuthList", "value": "MAigBhYEMTIzNA"}], "\ud83d": 1},
    ],
    ids=["type", "value", "member-name"],
)
def test_s7_4_lone_surrogates_are_malformed_rfc7493_s2_1(registered, session_factory, payload):
    """JSON may escape half a surrogate pair; such a string is no Unicode text (RFC 7493 §2.1).
    Echoed into the problem it made the response's UTF-8 encoding fail: a 500."""
    before = table_counts(session_factory)
    assert_problem(registered.post("/acme/new-order", payload), "malformed", 400, "lone UTF-16 surrogate")
    assert table_counts(session_factory) == before


def test_s6_2_a_lone_surrogate_in_the_protected_header_is_malformed(registered, session_factory):
    before = table_counts(session_factory)
    response = registered.post("/acme/new-order", {"identifiers": []}, protected={"x-note": "\ud800"})
    assert_problem(response, "malformed", 400, "the protected header is not JSON")
    assert table_counts(session_factory) == before


def test_s7_4_requested_validity_is_honoured_exactly(registered, authority, home):
    """RFC 8555 §7.4: the server MUST NOT issue with other contents than requested."""
    not_before, not_after = now() + dt.timedelta(minutes=5), now() + dt.timedelta(minutes=50)
    order = raw_ready_order(registered, authority, notBefore=rfc3339(not_before), notAfter=rfc3339(not_after))
    assert (order.body["notBefore"], order.body["notAfter"]) == (rfc3339(not_before), rfc3339(not_after))
    csr, _ = csr_b64()
    assert finalize(registered, order, csr).get_json()["status"] == "valid"
    leaf = download(registered, order.url)[0]
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (not_before, not_after)


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"notBefore": "2020-01-01T00:00:00Z"}, "notBefore 2020-01-01T00:00:00Z is in the past"),
        ({"notAfter": "yesterday"}, "not an RFC 3339 date-time"),
        ({"notAfter": "2030-01-01T00:00:00"}, "with a time offset"),
        ({"notBefore": 20300101}, "must be an RFC 3339 date-time string"),
        # Times relative to now are computed when the test runs, not when it is collected.
        (lambda: {"notAfter": rfc3339(now() - dt.timedelta(hours=1))}, "must be later than notBefore and than now"),
        (lambda: {"notAfter": rfc3339(now() + dt.timedelta(days=90))}, "exceeds the policy maximum"),
        (lambda: {"notAfter": rfc3339(now() + dt.timedelta(minutes=2))}, "below the policy minimum of 5m"),
    ],
    ids=["not-before-past", "not-after-garbage", "no-offset", "not-a-string", "not-after-past", "too-long", "too-short"],
)
def test_s7_4_validity_outside_the_policy_is_refused_at_new_order(registered, session_factory, fields, fragment):
    fields = fields() if callable(fields) else fields
    before = table_counts(session_factory)
    response = registered.post("/acme/new-order", {"identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}], **fields})
    assert_problem(response, "malformed", 400, fragment)
    assert table_counts(session_factory) == before


def test_s7_4_validity_beyond_the_delegation_maximum_fails_the_challenge(registered, authority, session_factory):
    delegation_id = authority.delegate(max_lifetime=dt.timedelta(hours=1))
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value(), notAfter=rfc3339(now() + dt.timedelta(hours=20)))
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=dt.timedelta(hours=23))
    before = table_counts(session_factory)
    challenge = raw_answer(registered, order, token).get_json()
    assert challenge["status"] == "invalid" and "at most 1h" in challenge["error"]["detail"]
    assert table_counts(session_factory) == before


# --------------------------------------------------------------------------------------------
# finalize: guard clauses
# --------------------------------------------------------------------------------------------


def test_s7_4_finalize_before_the_order_is_ready_is_order_not_ready(registered, session_factory):
    """RFC 8555 §7.4: "... the server MUST return a 403 (Forbidden) error with a problem document
    of type 'orderNotReady'"."""
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    csr, _ = csr_b64()
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "orderNotReady", 403, "is pending")
    assert table_counts(session_factory) == before


@pytest.mark.parametrize(
    "csr, code, fragment",
    [
        (None, "malformed", "lacks 'csr'"),
        ("not base64url!", "badCSR", "base64url"),
        (b64url(b"\x30\x03\x02\x01\x00"), "badCSR", "not a DER PKCS#10"),
    ],
    ids=["missing", "not-base64url", "not-a-csr"],
)
def test_s7_4_malformed_csr_is_refused_and_the_order_stays_ready(registered, authority, session_factory, csr, code, fragment):
    order = raw_ready_order(registered, authority)
    before = table_counts(session_factory)
    payload = {} if csr is None else {"csr": csr}
    assert_problem(registered.post(order.body["finalize"], payload), code, 400, fragment)
    assert table_counts(session_factory) == before
    assert registered.post(order.url, None).get_json()["status"] == "ready"


def test_s7_4_csr_with_an_unknown_version_is_bad_csr(registered, authority, session_factory):
    """PKCS#10 (RFC 2986 §4.1) knows version 0 only; cryptography raises InvalidVersion, which is
    not a ValueError, for any other (found by fuzzing the CT log's certificate parsing)."""
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64()
    der = bytearray(base64.urlsafe_b64decode(csr + "=="))
    version = der.index(b"\x02\x01\x00")  # CertificationRequestInfo.version, the first INTEGER
    der[version + 2] = 5
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, b64url(bytes(der))), "badCSR", 400, "5 is not a valid CSR version")
    assert table_counts(session_factory) == before
    assert registered.post(order.url, None).get_json()["status"] == "ready"


def test_s7_4_csr_whose_subject_does_not_decode_is_bad_csr(registered, authority, session_factory):
    """A commonName typed BIT STRING in a correctly signed CSR: cryptography decodes names lazily
    and raises TypeError, which escaped as a 500 (found by fuzzing the CT log's parsing)."""
    order = raw_ready_order(registered, authority)
    der, _ = csr_with_bit_string_common_name()
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, b64url(der)), "badCSR", 400, "BitString")
    assert table_counts(session_factory) == before
    assert registered.post(order.url, None).get_json()["status"] == "ready"


def test_s7_4_csr_with_a_bad_signature_is_bad_csr(registered, authority, session_factory):
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64()
    der = bytearray(base64.urlsafe_b64decode(csr + "=="))
    der[der.find(b"Example Enterprise")] ^= 0x01
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, b64url(bytes(der))), "badCSR", 400, "signature does not verify")
    assert table_counts(session_factory) == before
    assert registered.post(order.url, None).get_json()["status"] == "ready"


@pytest.mark.parametrize(
    "make_key, name",
    [(lambda: ec.generate_private_key(ec.SECP384R1()), "ec-p384"),
     (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2048")],
    ids=["P-384", "RSA-2048"],
)
def test_rfc8226_s4_csr_key_type_outside_the_policy_is_bad_csr_and_a_retry_succeeds(
    registered, authority, session_factory, make_key, name
):
    """RFC 8226 §4 / policy [keys]: end-entity keys are P-256; RFC 8555 §7.4: after badCSR the
    order stays ready so the client can send a better CSR."""
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64(make_key())
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "badCSR", 400, f"key type {name} is not allowed")
    assert table_counts(session_factory) == before
    good, _ = csr_b64()
    assert finalize(registered, order, good).get_json()["status"] == "valid"


def test_s6_7_csr_rsa_key_with_exponent_3_is_bad_public_key_and_a_retry_succeeds(registered, authority, session_factory):
    """RFC 8555 §6.7 badPublicKey: an RSA CSR key whose public exponent is not 65537 is refused
    before its signature is verified (whatever the policy's key types); RFC 8555 §7.4: the order
    stays ready for a better CSR."""
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64(rsa.generate_private_key(public_exponent=3, key_size=2048))
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "badPublicKey", 400, "public exponent 3")
    assert table_counts(session_factory) == before
    good, _ = csr_b64()
    assert finalize(registered, order, good).get_json()["status"] == "valid"


def test_s7_4_csr_tnauthlist_other_than_the_orders_is_bad_csr(registered, authority, session_factory):
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64(scope=RANGE_SCOPE)
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "badCSR", 400, "differs from the requested scope")
    assert table_counts(session_factory) == before


@pytest.mark.parametrize("der", [b"\xff\x01", b"\x30\x03\x02\x01\x00", b"\x30\x00", b"\x30\x06\xa0\x04\x16\x02\x31"],
                         ids=["not-der", "wrong-choice", "empty", "truncated"])
def test_s7_4_csr_tnauthlist_that_does_not_decode_is_bad_csr_and_the_order_stays_ready(
    registered, authority, session_factory, der
):
    """RFC 8555 §7.4: a CSR whose TNAuthList extension (RFC 8226 §9) does not decode is the CSR's
    fault, ``badCSR``; the order stays "ready" for a better CSR. It used to invalidate the order
    (and so spend its token) as if the scope were refused for good."""
    order = raw_ready_order(registered, authority)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Example Enterprise")]))
        .add_extension(x509.UnrecognizedExtension(OID_TN_AUTH_LIST, der), critical=False)
        .sign(key, hashes.SHA256())
    )
    before = table_counts(session_factory)
    response = finalize(registered, order, b64url(csr.public_bytes(serialization.Encoding.DER)))
    assert_problem(response, "badCSR", 400, "CSR TNAuthList")
    assert table_counts(session_factory) == before
    assert registered.post(order.url, None).get_json()["status"] == "ready"
    good, _ = csr_b64()
    assert finalize(registered, order, good).get_json()["status"] == "valid"


def test_s7_4_csr_tnauthlist_equal_to_the_orders_is_accepted(registered, authority):
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64(scope=TN_SCOPE)
    assert finalize(registered, order, csr).get_json()["status"] == "valid"


def test_rfc9448_s6_step9_ca_token_with_an_end_entity_csr_is_bad_csr(registered, authority, session_factory):
    """RFC 9448 §6 step 9: "atc.ca" must correspond to the CSR's basicConstraints cA."""
    order = raw_ready_order(registered, authority, ca=True)
    csr, _ = csr_b64()
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "badCSR", 400, "the authority token's 'ca' is true")
    assert table_counts(session_factory) == before


def test_rfc9448_s6_step9_end_entity_token_with_a_ca_csr_is_bad_csr(registered, authority, session_factory):
    order = raw_ready_order(registered, authority, ca=False)
    csr, _ = csr_b64(ca=True)
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "badCSR", 400, "the authority token's 'ca' is false")
    assert table_counts(session_factory) == before


def test_rfc9448_s6_ca_token_and_ca_csr_give_a_delegate_ca_certificate(registered, authority):
    """RFC 9060 §4 sub-delegation: cA=TRUE, keyCertSign, and the TNAuthList of the order."""
    order = raw_ready_order(registered, authority, RANGE_SCOPE, ca=True)
    csr, _ = csr_b64(ca=True)
    assert finalize(registered, order, csr).get_json()["status"] == "valid"
    leaf = download(registered, order.url)[0]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert TNScope.from_der(leaf.extensions.get_extension_for_oid(OID_TN_AUTH_LIST).value.value) == RANGE_SCOPE


def test_finalize_with_the_account_key_in_the_csr_is_accepted(registered, authority, home):
    """Documented compatibility switch for RFC 8555 §11.1 (docs/rfc-support.md): field clients
    reuse the account key for the certificate, and the issue asks to accept it when
    ``[compat] csr_key_may_equal_account_key`` is on."""
    client = create_app(with_compat(home, csr_key_may_equal_account_key=True)).test_client()
    raw = RawClient(client, home.base_url, key=registered.key)
    raw.kid = registered.kid
    order = raw_ready_order(raw, authority)
    csr, _ = csr_b64(registered.key)
    response = finalize(raw, order, csr)
    assert response.get_json()["status"] == "valid", response.get_json()


def test_s11_1_csr_with_the_account_key_is_bad_csr_naming_the_switch(registered, authority, session_factory):
    """RFC 8555 §11.1: "the server MUST verify that the public key in the CSR is not the account
    key" unless the operator turned on the compatibility switch; the order stays "ready" for a
    CSR with another key (RFC 8555 §7.4)."""
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64(registered.key)
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "badCSR", 400,
                   "[compat] csr_key_may_equal_account_key = true in tnca.toml")
    assert table_counts(session_factory) == before
    assert registered.post(order.url, None).get_json()["status"] == "ready"
    good, _ = csr_b64()
    assert finalize(registered, order, good).get_json()["status"] == "valid"


def test_finalize_after_the_delegation_was_revoked_is_order_not_ready_and_the_order_invalid(registered, authority, session_factory):
    """Revoking the delegation invalidated the ready order (RFC 8555 §7.1.6); finalize of an order
    that is not ready is orderNotReady (RFC 8555 §7.4), and the order's error names the delegation."""
    delegation_id = authority.delegate()
    order = raw_ready_order(registered, authority, delegation_id=delegation_id)
    authority.revoke(delegation_id)
    csr, _ = csr_b64()
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "orderNotReady", 403, f"order {order.url.rsplit('/', 1)[1]} is invalid")
    assert table_counts(session_factory) == before
    body = registered.post(order.url, None).get_json()
    assert body["status"] == "invalid" and body["error"]["type"].endswith(":unauthorized")
    assert f"delegation {delegation_id} was revoked" in body["error"]["detail"]


def test_finalize_after_the_delegation_ended_is_unauthorized_and_the_order_invalid(registered, authority, session_factory):
    """A delegation that ends leaves its ready orders as they were; finalize finds it inactive."""
    delegation_id = authority.delegate()
    order = raw_ready_order(registered, authority, delegation_id=delegation_id)
    with session_factory() as session:
        session.execute(sql_update(Delegation).where(Delegation.id == delegation_id)
                        .values(not_after=authority.home.clock.now() - dt.timedelta(seconds=1)))
        session.commit()
    csr, _ = csr_b64()
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "unauthorized", 403, f"delegation {delegation_id} expired at")
    assert table_counts(session_factory) == before
    body = registered.post(order.url, None).get_json()
    assert body["status"] == "invalid" and body["error"]["type"].endswith(":unauthorized")


# --------------------------------------------------------------------------------------------
# finalize: what gets issued
# --------------------------------------------------------------------------------------------


def test_s7_4_finalize_issues_the_certificate_in_one_transaction(registered, authority, home, session_factory):
    constraints = ClaimConstraints(must_include=("confidence",), permitted_values=(("confidence", ("high",)),))
    delegation_id = authority.delegate(constraints=constraints)
    order = raw_ready_order(registered, authority, delegation_id=delegation_id)
    csr, key = csr_b64()
    response = finalize(registered, order, csr)
    assert response.status_code == 200
    assert response.headers["Location"] == order.url
    body = response.get_json()
    assert body["status"] == "valid"
    assert re.fullmatch(re.escape(home.base_url) + r"/acme/cert/[0-9a-f]+", body["certificate"])
    chain = download(registered, order.url)
    leaf = chain[0]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert [c.subject for c in chain[1:]] == [home.issuing_ca().certificate.subject]
    # The claim constraints are the delegation's, byte for byte (RFC 8226 §8).
    assert leaf.extensions.get_extension_for_oid(JWT_CLAIM_CONSTRAINTS).value.value == constraints.to_der()
    with session_factory() as session:
        record = session.scalars(select(Certificate)).one()
        stored_order = session.get(Order, order.url.rsplit("/", 1)[1])
        authz = stored_order.authorizations[0]
        assert (record.order_id, record.account_id, record.delegation_id) == (stored_order.id, stored_order.account_id, delegation_id)
        # RFC 9447 §7: never valid after the authority token.
        assert leaf.not_valid_after_utc <= authz.token_expires
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "certificate.issue")).one().subject_id == record.serial


def test_s7_4_finalizing_a_valid_order_again_is_order_not_ready(registered, authority, session_factory):
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64()
    finalize(registered, order, csr)
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "orderNotReady", 403, "is valid")
    assert table_counts(session_factory) == before


def test_s7_4_processing_order_carries_retry_after(registered, session_factory):
    """RFC 8555 §7.4: while "processing" the server MAY send Retry-After; clients wait that long."""
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    with session_factory() as session:
        session.get(Order, order.url.rsplit("/", 1)[1]).status = "processing"
        session.commit()
    response = registered.post(order.url, None)
    assert response.get_json()["status"] == "processing"
    assert response.headers["Retry-After"] == "1"


def test_s7_1_6_order_past_its_expiry_becomes_invalid(registered, session_factory):
    """RFC 8555 §7.1.6: the order moves to "invalid" if it expires."""
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    with session_factory() as session:
        stored = session.get(Order, order.url.rsplit("/", 1)[1])
        stored.expires = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        stored.authorizations[0].expires = stored.expires
        session.commit()
    body = registered.post(order.url, None).get_json()
    assert body["status"] == "invalid" and "expired" in body["error"]["detail"]
    assert registered.post(order.authz_url, None).get_json()["status"] == "expired"


# --------------------------------------------------------------------------------------------
# Resource access
# --------------------------------------------------------------------------------------------


def test_s7_4_orders_and_certificates_of_another_account_are_unauthorized(registered, authority, client, home, session_factory):
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64()
    certificate_url = finalize(registered, order, csr).get_json()["certificate"]
    other = RawClient(client, home.base_url)
    other.register()
    before = table_counts(session_factory)
    assert_problem(other.post(order.url, None), "unauthorized", 403, "another account")
    assert_problem(other.post(order.body["finalize"], {"csr": csr}), "unauthorized", 403, "another account")
    assert_problem(other.post(certificate_url, None), "unauthorized", 403, "another account")
    assert table_counts(session_factory) == before


def test_s7_4_unknown_order_and_certificate_are_404_problems(registered, home):
    assert_problem(registered.post(home.base_url + "/acme/order/nope", None), "malformed", 404, "no order")
    assert_problem(registered.post(home.base_url + "/acme/cert/abc123", None), "malformed", 404, "no certificate")


def test_s7_4_2_certificate_download_needs_post_as_get(registered, authority):
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64()
    certificate_url = finalize(registered, order, csr).get_json()["certificate"]
    assert_problem(registered.post(certificate_url, {}), "malformed", 400, "POST-as-GET")
    assert_problem(registered.client.get(registered.path(certificate_url)), "malformed", 405)


def test_rfc9448_s7_valid_order_names_a_plain_get_x5u_with_the_chain(registered, authority, client):
    """RFC 9448 §7: PASSporT x5u needs plain GET; the CA MAY host the chain and name it in "x5u"."""
    order = raw_ready_order(registered, authority)
    csr, _ = csr_b64()
    body = finalize(registered, order, csr).get_json()
    serial = body["certificate"].rsplit("/", 1)[1]
    assert body["x5u"] == registered.base_url + f"/cert-repo/{serial}.pem"
    published = client.get(registered.path(body["x5u"]))
    assert published.status_code == 200
    assert published.headers["Content-Type"] == "application/pem-certificate-chain"
    downloaded = registered.post(body["certificate"], None).get_data()
    assert published.get_data() == downloaded
    max_age = int(published.headers["Cache-Control"].split("max-age=")[1])
    assert 0 < max_age <= 24 * 3600
    assert client.get("/cert-repo/00.pem").status_code == 404


# --------------------------------------------------------------------------------------------
# Validity that can never be issued; finalize failures that are nobody's fault
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"notBefore": "9999-12-31T23:59:59Z"}, "notBefore 9999-12-31T23:59:59Z is too late"),
        ({"notBefore": "9999-12-31T23:59:59Z", "notAfter": "9999-12-31T23:59:59Z"}, "notBefore 9999-12-31T23:59:59Z is too late"),
        ({"notAfter": "9999-12-31T23:59:59Z"}, "exceeds the policy maximum"),
        ({"notBefore": "0001-01-01T00:00:00Z"}, "notBefore 0001-01-01T00:00:00Z is in the past"),
        # The issuing CA's last minute: no certificate of the minimum lifetime fits before its end.
        (lambda home: {"notBefore": rfc3339(home.issuing_ca().certificate.not_valid_after_utc - dt.timedelta(minutes=1))},
         "is too late"),
    ],
    ids=["not-before-year-9999", "both-year-9999", "not-after-year-9999", "not-before-year-1", "not-before-issuer-end"],
)
def test_s7_4_validity_no_certificate_can_ever_have_is_malformed_at_new_order(registered, home, session_factory, fields,
                                                                             fragment):
    """RFC 8555 §7.4: a notBefore no certificate of the issuing CA can start at was accepted, and
    finalize then overflowed the date arithmetic (a 500, the order stuck "processing", its token
    spent). newOrder refuses it as malformed and stores nothing."""
    fields = fields(home) if callable(fields) else fields
    before = table_counts(session_factory)
    response = registered.post("/acme/new-order", {"identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}], **fields})
    assert_problem(response, "malformed", 400, fragment)
    assert table_counts(session_factory) == before


@pytest.mark.parametrize("exception", [OverflowError("date value out of range"), RuntimeError("a bug")],
                         ids=["overflow", "bug"])
def test_s7_1_6_finalize_failing_unexpectedly_leaves_the_order_invalid_not_processing(
    registered, authority, session_factory, monkeypatch, exception
):
    """RFC 8555 §7.1.6: "processing" lasts while the certificate is issued. An exception other
    than a ``ca.errors`` one escaped finalize after the order was claimed, leaving it
    "processing" for ever; now the order becomes "invalid" with a serverInternal error and the
    response is a serverInternal problem naming an incident."""
    import ca.orders.finalize as finalize_module

    order = raw_ready_order(registered, authority)

    def failing_issue(*args, **kwargs):
        raise exception

    monkeypatch.setattr(finalize_module, "issue", failing_issue)
    csr, _ = csr_b64()
    before = table_counts(session_factory)
    assert_problem(finalize(registered, order, csr), "serverInternal", 500, "incident")
    assert table_counts(session_factory) == before
    body = registered.post(order.url, None).get_json()
    assert body["status"] == "invalid", body
    assert body["error"]["type"] == "urn:ietf:params:acme:error:serverInternal"
