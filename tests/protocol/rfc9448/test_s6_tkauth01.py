"""RFC 9448 §6 (with RFC 9447 §3–§7): validating the tkauth-01 challenge response.

A token that fails any check turns the challenge "invalid" with an ``error`` problem (the POST
itself answers 200 with that challenge, RFC 8555 §7.5.1), the authorization and order "invalid";
nothing else is written: no used ``jti``, no audit event, no certificate. A response that is not
an answer at all is an HTTP error and leaves the challenge pending; so is an answer whose x5u
could not be fetched for now (fetcher busy, host too slow): 503 rateLimited with Retry-After.
"""

from __future__ import annotations

import datetime as dt

import pytest
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from acme_server import create_app
from acme_server.state import EXTENSION_KEY
from ca.records.models_acme import Authorization, UsedTokenJTI
from ca.records.models_audit import AuditEvent
from ca.tokens.x5u import X5UError
from protocol.support import (
    DELEGATED_SCOPE,
    RANGE_SCOPE,
    TN_SCOPE,
    ExternalTokenAuthority,
    RawClient,
    assert_problem,
    atc_claims,
    home_token,
    public_jwk,
    raw_answer,
    raw_challenge_url,
    raw_new_order,
    sign_compact,
    table_counts,
    trusting,
)


def assert_challenge_failed(raw, order, response, code: str, fragment: str, before: dict, session_factory) -> None:
    """The three things every token refusal must show: the problem, the states, nothing written."""
    assert response.status_code == 200, response.get_data(as_text=True)
    challenge = response.get_json()
    assert challenge["status"] == "invalid"
    error = messages.Error.from_json(challenge["error"])
    assert error.typ == "urn:ietf:params:acme:error:" + code, error
    assert fragment in error.detail, error.detail
    assert raw.post(order.authz_url, None).get_json()["status"] == "invalid"
    order_body = raw.post(order.url, None).get_json()
    assert order_body["status"] == "invalid"
    # RFC 8555 §7.1.3/§7.1.6: the order's error is the failed authorization's own problem.
    assert order_body["error"]["type"] == error.typ, order_body["error"]
    assert table_counts(session_factory) == before


# --------------------------------------------------------------------------------------------
# Accepted responses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["tkauth", "atc"])
def test_s6_valid_token_validates_challenge_authorization_and_order(registered, authority, session_factory, field):
    """RFC 9448 §4: the response is {"tkauth": token}; SHAKEN clients send {"atc": token}."""
    delegation_id = authority.delegate()
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=dt.timedelta(minutes=30))
    response = raw_answer(registered, order, token, field=field)
    assert response.status_code == 200
    # RFC 8555 §7.5.1: the challenge links "up" to its authorization.
    assert f'<{order.authz_url}>;rel="up"' in response.headers.getlist("Link")
    challenge = response.get_json()
    assert challenge["status"] == "valid" and "validated" in challenge and "error" not in challenge
    authz = registered.post(order.authz_url, None).get_json()
    assert authz["status"] == "valid"
    assert registered.post(order.url, None).get_json()["status"] == "ready"
    with session_factory() as session:
        stored = session.get(Authorization, order.authz_url.rsplit("/", 1)[1])
        (used,) = session.scalars(select(UsedTokenJTI)).all()
        assert (stored.token_jti, stored.token_ca, stored.delegation_id) == (used.jti, False, delegation_id)
        # RFC 9447 §7: nothing authorized by the token outlives it.
        assert stored.expires <= stored.token_expires
        assert used.challenge_id == challenge["url"].rsplit("/", 1)[1]
        assert "authorization.validate" in session.scalars(select(AuditEvent.action)).all()


def test_s6_both_fields_with_the_same_token_are_accepted(registered, authority):
    delegation_id = authority.delegate()
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE)
    response = registered.post(raw_challenge_url(registered, order), {"tkauth": token, "atc": token})
    assert response.get_json()["status"] == "valid"


def test_s7_5_1_answering_a_valid_challenge_again_changes_nothing(registered, authority, session_factory):
    delegation_id = authority.delegate()
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    raw_answer(registered, order, authority.token(delegation_id, registered.jwk, TN_SCOPE))
    second_token = authority.token(delegation_id, registered.jwk, TN_SCOPE)
    before = table_counts(session_factory)
    again = raw_answer(registered, order, second_token)
    assert again.status_code == 200 and again.get_json()["status"] == "valid"
    assert table_counts(session_factory) == before


def test_s6_token_from_a_trusted_external_authority_is_accepted(home, registered, authority):
    """RFC 9448 §6 steps 2–4: a token whose x5c chains to a configured trusted token authority."""
    external = ExternalTokenAuthority()
    raw = RawClient(create_app(trusting(home, external)).test_client(), home.base_url, key=registered.key)
    raw.kid = registered.kid
    authority.delegate()
    order = raw_new_order(raw, RANGE_SCOPE.to_identifier_value())
    assert raw_answer(raw, order, external.token(raw.jwk, RANGE_SCOPE)).get_json()["status"] == "valid"


# --------------------------------------------------------------------------------------------
# Responses that are not answers: HTTP error, challenge stays pending
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({}, "'tkauth' (RFC 9448 §4) or 'atc'"),
        ({"keyAuthorization": "x.y"}, "'tkauth' (RFC 9448 §4) or 'atc'"),
        ({"tkauth": 7}, "compact serialization string"),
        ({"tkauth": "a.b.c", "atc": "d.e.f"}, "different values"),
    ],
    ids=["empty", "http-01-style", "not-a-string", "two-tokens"],
)
def test_s7_5_1_response_without_a_usable_token_is_malformed_and_the_challenge_stays_pending(
    registered, authority, session_factory, payload, fragment
):
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_problem(registered.post(raw_challenge_url(registered, order), payload), "malformed", 400, fragment)
    assert registered.post(order.authz_url, None).get_json()["challenges"][0]["status"] == "pending"
    assert table_counts(session_factory) == before


def test_s7_5_1_challenge_of_another_account_is_unauthorized(registered, client, home, session_factory):
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    url = raw_challenge_url(registered, order)
    other = RawClient(client, home.base_url)
    other.register()
    before = table_counts(session_factory)
    assert_problem(other.post(url, {"tkauth": "a.b.c"}), "unauthorized", 403, "another account")
    assert_problem(other.post(order.authz_url, None), "unauthorized", 403, "another account")
    assert table_counts(session_factory) == before


class ScriptedFetcher:
    """An x5u fetcher that raises the scripted errors in turn, then serves ``chain``."""

    def __init__(self, chain, *errors: X5UError) -> None:
        self.chain = chain
        self.errors = list(errors)

    def fetch(self, url: str):
        if self.errors:
            raise self.errors.pop(0)
        return self.chain


@pytest.mark.parametrize(
    "error, retry_after",
    [
        (X5UError("x5u ta.example.net: the fetcher is busy with other x5u fetches; try again shortly", retry_after=5.0), "5"),
        (X5UError("x5u ta.example.net: no complete answer within 5.0 s", retry_after=29.2), "30"),
    ],
    ids=["busy", "timed-out"],
)
def test_s6_step2_x5u_not_fetched_for_now_leaves_the_challenge_pending_and_the_token_unspent(
    home, registered, authority, session_factory, error, retry_after
):
    """A busy fetcher or a slow x5u host says nothing about the token: 503 rateLimited with
    Retry-After, nothing written, and the same token validates once the chain can be fetched."""
    external = ExternalTokenAuthority()
    app = create_app(trusting(home, external))
    app.extensions[EXTENSION_KEY].x5u_fetcher = ScriptedFetcher((external.certificate,), error)
    raw = RawClient(app.test_client(), home.base_url, key=registered.key)
    raw.kid = registered.kid
    authority.delegate()
    order = raw_new_order(raw, RANGE_SCOPE.to_identifier_value())
    token = sign_compact({"typ": "JWT", "alg": "ES256", "x5u": "https://ta.example.net/ta.pem"},
                         atc_claims(raw.jwk, RANGE_SCOPE), external.key)
    before = table_counts(session_factory)
    response = raw_answer(raw, order, token)
    assert_problem(response, "rateLimited", 503, f"token header 'x5u': {error.detail}")
    assert response.headers["Retry-After"] == retry_after
    assert raw.post(order.authz_url, None).get_json()["challenges"][0]["status"] == "pending"
    assert raw.post(order.url, None).get_json()["status"] == "pending"
    assert table_counts(session_factory) == before
    assert raw_answer(raw, order, token).get_json()["status"] == "valid"


def test_s6_step2_x5u_refused_for_good_fails_the_challenge(home, registered, authority, session_factory):
    """A final x5u refusal (here a 404) is the token's failure, as before: challenge invalid."""
    external = ExternalTokenAuthority()
    app = create_app(trusting(home, external))
    app.extensions[EXTENSION_KEY].x5u_fetcher = ScriptedFetcher(
        (external.certificate,), X5UError("x5u ta.example.net: expected HTTP 200, got 404"))
    raw = RawClient(app.test_client(), home.base_url, key=registered.key)
    raw.kid = registered.kid
    authority.delegate()
    order = raw_new_order(raw, RANGE_SCOPE.to_identifier_value())
    token = sign_compact({"typ": "JWT", "alg": "ES256", "x5u": "https://ta.example.net/ta.pem"},
                         atc_claims(raw.jwk, RANGE_SCOPE), external.key)
    before = table_counts(session_factory)
    assert_challenge_failed(raw, order, raw_answer(raw, order, token), "unauthorized", "expected HTTP 200, got 404",
                            before, session_factory)


# --------------------------------------------------------------------------------------------
# Refused tokens: challenge invalid, nothing written
# --------------------------------------------------------------------------------------------


def test_s6_step8_token_bound_to_another_account_key_is_refused(registered, authority, client, home, session_factory):
    """RFC 9448 §6 step 8: atc.fingerprint MUST match the requesting account's key."""
    delegation_id = authority.delegate()
    other = RawClient(client, home.base_url)
    token = authority.token(delegation_id, other.jwk, TN_SCOPE)
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    response = raw_answer(registered, order, token)
    assert_challenge_failed(registered, order, response, "unauthorized", "'atc.fingerprint' is for another account key",
                            before, session_factory)


def test_s6_step6_token_for_another_tnauthlist_is_refused(registered, authority, session_factory):
    """RFC 9448 §6 step 6: atc.tkvalue MUST be the identifier's TNAuthList."""
    delegation_id = authority.delegate()
    token = authority.token(delegation_id, registered.jwk, RANGE_SCOPE)
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(registered, order, raw_answer(registered, order, token), "unauthorized",
                            "'atc.tkvalue' is for another TNAuthList", before, session_factory)


def test_rfc8555_s7_1_3_order_error_carries_the_authorization_problem_type(registered, authority, session_factory):
    """RFC 8555 §7.1.3 ("error": the error that occurred while processing the order) and §7.1.6
    (a failed authorization makes the order invalid): the order's error is the challenge's
    problem, type and detail, not a generic ``malformed``."""
    delegation_id = authority.delegate()
    token = authority.token(delegation_id, registered.jwk, RANGE_SCOPE)
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    challenge = raw_answer(registered, order, token).get_json()
    body = registered.post(order.url, None).get_json()
    assert body["status"] == "invalid"
    assert body["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "'atc.tkvalue' is for another TNAuthList" in body["error"]["detail"]
    assert challenge["error"]["detail"] in body["error"]["detail"]


def test_s6_step7_expired_token_is_refused(registered, home, authority, session_factory):
    """RFC 9448 §6 step 7 / RFC 9447 §4: "exp" is mandatory and checked."""
    authority.delegate()
    token = home_token(home, registered.jwk, TN_SCOPE, exp=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(registered, order, raw_answer(registered, order, token), "unauthorized",
                            "token 'exp'", before, session_factory)


def test_s6_replayed_jti_is_refused(registered, authority, session_factory):
    """Tokens are single use (ca/tokens/authority_tokens.py): the second presentation of a jti fails."""
    delegation_id = authority.delegate()
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE)
    first = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    assert raw_answer(registered, first, token).get_json()["status"] == "valid"
    second = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(registered, second, raw_answer(registered, second, token), "unauthorized",
                            "token already used", before, session_factory)


def test_s6_steps2to4_token_signed_by_an_untrusted_key_is_refused(registered, authority, session_factory):
    """RFC 9448 §6 steps 2–4: the signer must chain to a trusted token authority."""
    authority.delegate()
    stranger = ExternalTokenAuthority("Stranger")
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(registered, order, raw_answer(registered, order, stranger.token(registered.jwk, TN_SCOPE)),
                            "unauthorized", "does not chain to a trusted token authority", before, session_factory)


def test_s6_token_signed_by_our_key_but_never_minted_is_refused(registered, home, authority, session_factory):
    """A token our token authority's key signed outside ``tnca token mint`` carries no delegation."""
    authority.delegate()
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(registered, order, raw_answer(registered, order, home_token(home, registered.jwk, TN_SCOPE)),
                            "unauthorized", "never minted", before, session_factory)


def test_s6_scope_outside_every_delegation_is_refused(home, registered, authority, session_factory):
    """RFC 9060 §4: the requested scope must be inside an active delegation, whoever signed the token."""
    external = ExternalTokenAuthority()
    raw = RawClient(create_app(trusting(home, external)).test_client(), home.base_url, key=registered.key)
    raw.kid = registered.kid
    authority.delegate()  # covers DELEGATED_SCOPE only
    outside = type(TN_SCOPE).parse(tns=["12025559999"])
    assert not DELEGATED_SCOPE.contains(outside)
    order = raw_new_order(raw, outside.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(raw, order, raw_answer(raw, order, external.token(raw.jwk, outside)), "unauthorized",
                            "is not covered by any active delegation", before, session_factory)


def test_s6_token_of_a_revoked_delegation_is_refused(registered, authority, session_factory):
    delegation_id = authority.delegate()
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE)
    # The order comes first: once the delegation is revoked, newOrder itself refuses the scope.
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    authority.revoke(delegation_id)
    before = table_counts(session_factory)
    assert_challenge_failed(registered, order, raw_answer(registered, order, token), "unauthorized",
                            "has been revoked", before, session_factory)


def test_s6_ca_token_over_a_delegation_without_sub_delegation_is_refused(home, registered, authority, session_factory):
    """RFC 9447 §4 "ca" asks for a CA certificate; the delegation must allow it (RFC 9060 §4)."""
    external = ExternalTokenAuthority()
    raw = RawClient(create_app(trusting(home, external)).test_client(), home.base_url, key=registered.key)
    raw.kid = registered.kid
    authority.delegate(ca=False)
    order = raw_new_order(raw, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(raw, order, raw_answer(raw, order, external.token(raw.jwk, TN_SCOPE, ca=True)),
                            "unauthorized", "does not allow sub-delegation", before, session_factory)


def test_rfc9447_s7_order_not_after_beyond_the_token_exp_is_refused(registered, authority, session_factory):
    """RFC 9447 §7: certificates SHOULD NOT expire later than the token; an order asking for that fails."""
    delegation_id = authority.delegate()
    not_after = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).replace(microsecond=0)
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value(), notAfter=not_after.isoformat().replace("+00:00", "Z"))
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=dt.timedelta(hours=1))
    before = table_counts(session_factory)
    assert_challenge_failed(registered, order, raw_answer(registered, order, token), "unauthorized",
                            "may not outlive its token", before, session_factory)


def test_s6_garbage_token_is_refused(registered, authority, session_factory):
    authority.delegate()
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_challenge_failed(registered, order, raw_answer(registered, order, "not-a-jws"), "unauthorized",
                            "compact serialization", before, session_factory)


def test_s6_step8_eddsa_account_key_fingerprint(client, home, authority):
    """RFC 8555 §6.2 (EdDSA SHOULD) with RFC 9448 §6 step 8: the fingerprint of an Ed25519
    account key is its RFC 7638 thumbprint over crv, kty and x (RFC 8037 §2)."""
    raw = RawClient(client, home.base_url, key=ed25519.Ed25519PrivateKey.generate())
    response = raw.post("/acme/new-account", {}, use_jwk=True, alg="EdDSA")
    assert response.status_code == 201
    raw.kid = response.headers["Location"]
    delegation_id = authority.delegate()
    order = raw_new_order(raw, TN_SCOPE.to_identifier_value())
    token = authority.token(delegation_id, public_jwk(raw.key), TN_SCOPE)
    challenge = raw_answer(raw, order, token).get_json()
    assert challenge["status"] == "valid", challenge
