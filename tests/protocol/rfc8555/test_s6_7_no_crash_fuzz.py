"""Property: whatever JSON a client signs, every ACME resource answers with a result or a problem
document, never a server error (RFC 8555 §6.7: bad input never produces a 500)."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.encoding import b64url_decode
from protocol.support import TN_SCOPE, b64url, csr_b64, raw_ready_order
from tests.helpers import mutated_der

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# Payload objects with the member names the handlers read, so the fuzz reaches past "unknown field".
MEMBER_NAMES = st.sampled_from([
    "identifiers", "notBefore", "notAfter", "csr", "certificate", "reason", "contact", "status",
    "termsOfServiceAgreed", "onlyReturnExisting", "externalAccountBinding", "tkauth", "atc", "account",
    "oldKey", "protected", "payload", "signature", "type", "value", "replaces", "auto-renewal",
])
PAYLOADS = st.dictionaries(MEMBER_NAMES, JSON_VALUES, max_size=4) | JSON_VALUES


@pytest.fixture
def resources(registered, authority):
    """URLs of every kind of ACME resource, owned by ``registered``."""
    order = raw_ready_order(registered, authority, TN_SCOPE)
    authz = registered.post(order.authz_url, None).get_json()
    issued_order = raw_ready_order(registered, authority, TN_SCOPE)
    csr, _ = csr_b64()
    certificate = registered.post(issued_order.body["finalize"], {"csr": csr}).get_json()["certificate"]
    return [
        "/acme/new-order", "/acme/revoke-cert", "/acme/key-change", registered.kid, registered.kid + "/orders",
        order.url, order.body["finalize"], order.authz_url, authz["challenges"][0]["url"], certificate,
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_s6_7_any_signed_payload_gets_a_result_or_a_problem_never_a_500(registered, resources, data):
    url = data.draw(st.sampled_from(resources), label="resource")
    payload = data.draw(PAYLOADS, label="payload")
    response = registered.post(url, json.dumps(payload))
    assert response.status_code < 500, (url, payload, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/problem+json"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.dictionaries(st.sampled_from(["alg", "nonce", "url", "kid", "jwk", "crit", "b64", "typ"]), JSON_VALUES,
                              max_size=4))
def test_s6_2_any_protected_header_gets_a_problem_never_a_500(registered, header):
    response = registered.post("/acme/new-order", {"identifiers": []}, protected=header)
    assert response.status_code < 500, (header, response.get_data(as_text=True))


@pytest.fixture
def der_targets(registered, authority):
    """A ready order's finalize URL with a good CSR, and an issued certificate: the two places an
    ACME client hands the server DER (RFC 8555 §7.4 csr, §7.6 certificate)."""
    order = raw_ready_order(registered, authority, TN_SCOPE)
    csr, _ = csr_b64()
    issued_order = raw_ready_order(registered, authority, TN_SCOPE)
    certificate_url = registered.post(issued_order.body["finalize"], {"csr": csr}).get_json()["certificate"]
    chain = x509.load_pem_x509_certificates(registered.post(certificate_url, None).get_data())
    certificate_der = chain[0].public_bytes(serialization.Encoding.DER)
    return order.body["finalize"], b64url_decode(csr, field="csr"), certificate_der


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_s7_4_and_s7_6_mutated_der_gets_a_problem_never_a_500(registered, der_targets, data):
    """A CSR or certificate with a byte flipped, cut, extended or spliced: badCSR, malformed or a
    404 problem (or, for a change DER and the signature survive, a result), never a 500."""
    finalize_url, csr_der, certificate_der = der_targets
    if data.draw(st.booleans(), label="finalize"):
        url, payload = finalize_url, {"csr": b64url(mutated_der(csr_der, data))}
    else:
        url, payload = "/acme/revoke-cert", {"certificate": b64url(mutated_der(certificate_der, data))}
    response = registered.post(url, payload)
    assert response.status_code < 500, (url, payload, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/problem+json"
