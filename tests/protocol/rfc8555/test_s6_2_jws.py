"""RFC 8555 §6.2 request authentication, one check per test, in the order the server applies them.

Each refusal asserts the exact problem type and status, a detail naming the fault, and that no
row was written. The JWS are made by hand (RawClient), since certbot's client cannot be made to
send most of these mistakes.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acme_server.acme.jws import MAX_JWS_BODY_BYTES
from acme_server.acme.keys import SUPPORTED_ALGORITHMS
from protocol.support import JOSE, RawClient, assert_problem, b64url, public_jwk, table_counts

NEW_ACCOUNT = "/acme/new-account"
NEW_ORDER = "/acme/new-order"
ORDER_PAYLOAD = {"identifiers": [{"type": "TNAuthList", "value": "MA-iDRYLMTIwMjU1NTAxMDA"}]}


@pytest.fixture
def unchanged(session_factory):
    """Asserts, after the test body, that no table but the spent nonces changed."""
    before = table_counts(session_factory)
    yield
    assert table_counts(session_factory) == before


# --------------------------------------------------------------------------------------------
# Media type, size and shape
# --------------------------------------------------------------------------------------------


def test_s6_2_wrong_content_type_is_415_malformed(raw, unchanged):
    """RFC 8555 §6.2: requests MUST use application/jose+json; the server answers 415 otherwise."""
    response = raw.post(NEW_ACCOUNT, {}, content_type="application/json")
    assert_problem(response, "malformed", 415, "application/jose+json")


def test_s6_2_oversized_body_is_413_problem(raw, unchanged):
    """A body over the limit is refused before it is parsed, as a problem document."""
    response = raw.post(NEW_ACCOUNT, body="x" * (MAX_JWS_BODY_BYTES + 1))
    assert_problem(response, "malformed", 413, "exceeds the limit")


def test_s6_2_body_that_is_not_json_is_malformed(raw, unchanged):
    assert_problem(raw.post(NEW_ACCOUNT, body=b"\xff{not json"), "malformed", 400, "not JSON")


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda jws: {"signatures": [{"protected": jws["protected"], "signature": jws["signature"]}], "payload": jws["payload"]},
         "general JWS serialization"),
        (lambda jws: {**jws, "header": {"nonce": "AAAA"}}, "unprotected 'header'"),
        (lambda jws: {k: v for k, v in jws.items() if k != "signature"}, "lacks 'signature'"),
        (lambda jws: {**jws, "extra": 1}, "unexpected JWS member"),
        (lambda jws: {**jws, "protected": jws["protected"] + "=="}, "padding"),
        (lambda jws: {**jws, "payload": 7}, "must be a string"),
        (lambda jws: [jws], "must be a flattened JWS"),
    ],
    ids=["general-serialization", "unprotected-header", "no-signature", "unknown-member", "padded-base64url",
         "payload-not-string", "array"],
)
def test_s6_2_jws_shape_errors_are_malformed(raw, unchanged, mutate, fragment):
    """RFC 8555 §6.2: flattened serialization only, no unprotected header; refused before parsing."""
    jws = raw.jws(NEW_ACCOUNT, {}, use_jwk=True)
    assert_problem(raw.post(NEW_ACCOUNT, body=mutate(jws)), "malformed", 400, fragment)


def test_s6_2_unprotected_nonce_and_url_are_never_read(raw, unchanged):
    """The josepy pitfall (RFC 8555 §6.2 forbids the unprotected header): a valid signature over a
    protected header without nonce and url must not be completed by an unprotected header that
    carries them."""
    jws = raw.jws(NEW_ACCOUNT, {}, use_jwk=True, protected={"nonce": None, "url": None})
    jws["header"] = {"nonce": raw.nonce(), "url": raw.url(NEW_ACCOUNT)}
    assert_problem(raw.post(NEW_ACCOUNT, body=jws), "malformed", 400, "unprotected 'header'")


@pytest.mark.parametrize(
    "protected, fragment",
    [({"crit": ["exp"]}, "critical header parameters"), ({"b64": False}, "unencoded payload")],
    ids=["crit", "b64-false"],
)
def test_s6_2_critical_and_unencoded_payload_headers_are_malformed(raw, unchanged, protected, fragment):
    """RFC 7515 §4.1.11 (unknown crit MUST be rejected); RFC 8555 §6.2: no unencoded payload."""
    response = raw.post(NEW_ACCOUNT, {}, use_jwk=True, protected=protected)
    assert_problem(response, "malformed", 400, fragment)


# --------------------------------------------------------------------------------------------
# Algorithm
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "HS256", "ES512", "PS256"])
def test_s6_2_unsupported_alg_is_bad_signature_algorithm_with_algorithms(raw, unchanged, alg):
    """RFC 8555 §6.2: "alg" MUST NOT be "none" or a MAC; the problem MUST list "algorithms"."""
    response = raw.post(NEW_ACCOUNT, {}, use_jwk=True, alg=alg)
    error = assert_problem(response, "badSignatureAlgorithm", 400, repr(alg))
    assert json.loads(response.get_data())["algorithms"] == list(SUPPORTED_ALGORITHMS)
    assert error.detail


def test_s6_2_alg_that_does_not_match_the_key_is_bad_signature_algorithm(raw, unchanged):
    response = raw.post(NEW_ACCOUNT, {}, use_jwk=True, alg="RS256", signature=b"\x00" * 256)
    assert_problem(response, "badSignatureAlgorithm", 400, "EC P-256 key signs with 'ES256'")


@pytest.mark.parametrize(
    "make_key, alg",
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ed25519.Ed25519PrivateKey.generate, "EdDSA"),
    ],
    ids=["ES256", "RS256-2048", "EdDSA-Ed25519"],
)
def test_s6_2_es256_rs256_and_eddsa_account_keys_are_accepted(client, home, make_key, alg):
    """RFC 8555 §6.2: ES256 MUST and EdDSA SHOULD be implemented; RS256 with at least 2048 bits."""
    raw = RawClient(client, home.base_url, key=make_key())
    response = raw.post(NEW_ACCOUNT, {"termsOfServiceAgreed": True}, use_jwk=True, alg=alg)
    assert response.status_code == 201, response.get_data(as_text=True)


def test_s6_2_short_rsa_key_is_bad_public_key(client, home, unchanged):
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    raw = RawClient(client, home.base_url, key=key)
    response = raw.post(NEW_ACCOUNT, {}, use_jwk=True, alg="RS256")
    assert_problem(response, "badPublicKey", 400, "1024 bits")


@pytest.fixture(scope="module")
def rsa_2048():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("exponent", [3, 2**32 + 1, 2**4096 + 1, 65538], ids=["e-3", "e-2^32+1", "e-huge", "e-even"])
def test_s6_2_rsa_account_key_with_an_exponent_other_than_65537_is_bad_public_key(client, home, unchanged, rsa_2048,
                                                                                 exponent):
    """RFC 8555 §6.7 badPublicKey: an RSA account key whose public exponent is not 65537 (an
    enormous one made every verification cost milliseconds). Refused when the key is parsed,
    before any signature is checked, so the JWS need not verify."""
    raw = RawClient(client, home.base_url, key=rsa_2048)
    jwk = {**public_jwk(rsa_2048), "e": b64url(exponent.to_bytes((exponent.bit_length() + 7) // 8, "big"))}
    response = raw.post(NEW_ACCOUNT, {}, use_jwk=True, alg="RS256", jwk=jwk)
    assert_problem(response, "badPublicKey", 400, "public exponent")


def test_s6_2_private_key_material_in_jwk_is_malformed(raw, unchanged):
    jwk = {**public_jwk(raw.key), "d": b64url(b"\x01" * 32)}
    assert_problem(raw.post(NEW_ACCOUNT, {}, use_jwk=True, jwk=jwk), "malformed", 400, "private")


def test_s6_2_jwk_point_not_on_the_curve_is_malformed(raw, unchanged):
    jwk = {**public_jwk(raw.key), "y": b64url(b"\x01" * 32)}
    assert_problem(raw.post(NEW_ACCOUNT, {}, use_jwk=True, jwk=jwk), "malformed", 400, "not a point on P-256")


# --------------------------------------------------------------------------------------------
# jwk xor kid
# --------------------------------------------------------------------------------------------


def test_s6_2_both_jwk_and_kid_is_malformed(registered, unchanged):
    response = registered.post(NEW_ORDER, ORDER_PAYLOAD, protected={"jwk": public_jwk(registered.key)})
    assert_problem(response, "malformed", 400, "both 'jwk' and 'kid'")


def test_s6_2_neither_jwk_nor_kid_is_malformed(raw, unchanged):
    response = raw.post(NEW_ACCOUNT, {}, use_jwk=False, protected={"kid": None})
    assert_problem(response, "malformed", 400, "neither 'jwk' nor 'kid'")


def test_s6_2_new_account_signed_with_kid_is_malformed(registered, unchanged):
    """RFC 8555 §6.2: newAccount MUST carry "jwk"."""
    assert_problem(registered.post(NEW_ACCOUNT, {}), "malformed", 400, "needs the account key in 'jwk'")


def test_s6_2_other_resources_signed_with_jwk_are_malformed(registered, unchanged):
    """RFC 8555 §6.2: everything but newAccount and revokeCert MUST carry "kid"."""
    response = registered.post(NEW_ORDER, ORDER_PAYLOAD, use_jwk=True)
    assert_problem(response, "malformed", 400, "needs the account URL in 'kid'")


def test_s6_2_kid_of_no_account_is_account_does_not_exist(raw, home, unchanged):
    raw.kid = home.base_url + "/acme/acct/doesNotExist"
    assert_problem(raw.post(NEW_ORDER, ORDER_PAYLOAD), "accountDoesNotExist", 400, "doesNotExist")


def test_s6_2_kid_that_is_not_an_account_url_is_account_does_not_exist(raw, unchanged):
    raw.kid = "https://elsewhere.example/acme/acct/1"
    assert_problem(raw.post(NEW_ORDER, ORDER_PAYLOAD), "accountDoesNotExist", 400, "elsewhere.example")


# --------------------------------------------------------------------------------------------
# url and signature
# --------------------------------------------------------------------------------------------


def test_s6_4_url_other_than_the_request_url_is_unauthorized(registered, home, unchanged):
    """RFC 8555 §6.4: "url" MUST equal the request URL; otherwise reject as unauthorized."""
    jws = registered.jws(home.base_url + "/acme/new-account", ORDER_PAYLOAD)
    response = registered.post(NEW_ORDER, body=jws)
    assert_problem(response, "unauthorized", 403, f"expected '{home.base_url}/acme/new-order'")


def test_s6_4_url_is_compared_with_the_external_base_url_not_the_host_header(registered, unchanged):
    """Behind a proxy the externally visible URL counts (RFC 8555 §6.4), not what the server sees."""
    jws = registered.jws("http://localhost/acme/new-order", ORDER_PAYLOAD)
    assert_problem(registered.post(NEW_ORDER, body=jws), "unauthorized", 403, "'url' incorrect")


def test_s6_4_missing_url_is_malformed(registered, unchanged):
    response = registered.post(NEW_ORDER, ORDER_PAYLOAD, protected={"url": None})
    assert_problem(response, "malformed", 400, "lacks 'url'")


def test_s6_2_signature_by_another_key_is_malformed(registered, unchanged):
    other = ec.generate_private_key(ec.SECP256R1())
    jws = registered.jws(NEW_ORDER, ORDER_PAYLOAD)
    forged = registered.jws(NEW_ORDER, ORDER_PAYLOAD, key=other)
    jws["signature"] = forged["signature"]
    assert_problem(registered.post(NEW_ORDER, body=jws), "malformed", 400, "signature does not verify")


def test_s6_2_truncated_es256_signature_is_malformed(registered, unchanged):
    response = registered.post(NEW_ORDER, ORDER_PAYLOAD, signature=b"\x01" * 63)
    assert_problem(response, "malformed", 400, "signature does not verify")


# --------------------------------------------------------------------------------------------
# Payload
# --------------------------------------------------------------------------------------------


def test_s6_3_post_as_get_to_a_resource_that_needs_a_payload_is_malformed(registered, unchanged):
    assert_problem(registered.post(NEW_ORDER, None), "malformed", 400, "POST-as-GET is not accepted here")


def test_s6_2_payload_that_is_not_a_json_object_is_malformed(registered, unchanged):
    assert_problem(registered.post(NEW_ORDER, "[1, 2]"), "malformed", 400, "must be a JSON object")
    assert_problem(registered.post(NEW_ORDER, b"\x00\xff"), "malformed", 400, "not JSON")


# --------------------------------------------------------------------------------------------
# Hostile input never reaches a 500
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, code, fragment",
    [
        ("[" * 20000 + "]" * 20000, "malformed", "nests JSON too deeply"),
        ({"identifiers": [{"type": "TNAuthList", "value": "MA-iDRYLMTIwMjU1NTAxMDA"}], "notAfter": "9999-12-31T23:59:59-23:59"},
         "malformed", "not a valid date-time"),
        ({"identifiers": [{"type": "TNAuthList", "value": "MA-iDRYLMTIwMjU1NTAxMDA"}], "notBefore": "2030-02-30T00:00:00Z"},
         "malformed", "not a valid date-time"),
    ],
    ids=["deep-nesting", "overflowing-offset", "no-such-day"],
)
def test_hostile_payloads_are_problems_not_crashes(registered, unchanged, payload, code, fragment):
    assert_problem(registered.post(NEW_ORDER, payload), code, 400, fragment)


@pytest.mark.parametrize(
    "jwk, code, fragment",
    [
        ({"kty": "EC", "crv": ["P-256"], "x": "AA", "y": "AA"}, "badPublicKey", "curve"),
        ({"kty": ["EC"]}, "malformed", "'kty'"),
        ({"kty": "EC", "crv": "P-256", "x": 1, "y": 2}, "malformed", "base64url string"),
        ({"kty": "RSA", "n": "AQAB"}, "malformed", "lacks the required member 'e'"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "malformed", "symmetric"),
    ],
    ids=["unhashable-crv", "kty-not-a-string", "coordinates-not-strings", "rsa-without-e", "symmetric-key"],
)
def test_s6_2_hostile_jwk_values_are_problems_not_crashes(raw, unchanged, jwk, code, fragment):
    response = raw.post(NEW_ACCOUNT, {}, use_jwk=True, jwk=jwk)
    assert_problem(response, code, 400, fragment)
