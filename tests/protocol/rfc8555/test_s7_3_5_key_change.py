"""RFC 8555 §7.3.5 keyChange: an inner JWS by the new key inside an outer JWS by the old one."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from ca.records.models_acme import Account
from ca.records.models_audit import AuditEvent
from protocol.support import (
    TN_SCOPE,
    RawClient,
    assert_problem,
    b64url,
    new_key,
    public_jwk,
    raw_answer,
    raw_new_order,
    sign_es256,
    table_counts,
)

KEY_CHANGE = "/acme/key-change"


def inner_jws(raw: RawClient, new, *, account=None, old_jwk=None, url=None) -> dict[str, str]:
    """RFC 8555 §7.3.5: signed by the new key, "jwk" = new key, same "url", no "nonce"."""
    header = {"alg": "ES256", "jwk": public_jwk(new), "url": raw.url(url or KEY_CHANGE)}
    payload = {"account": account or raw.kid, "oldKey": old_jwk or public_jwk(raw.key)}
    protected, body = b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode())
    return {"protected": protected, "payload": body, "signature": b64url(sign_es256(new, f"{protected}.{body}".encode()))}


def test_s7_3_5_key_change_replaces_the_key_and_keeps_the_orders(registered, client, home, session_factory):
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    new = new_key()
    response = registered.post(KEY_CHANGE, inner_jws(registered, new))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "valid"
    # The old key no longer authenticates; the new one does, for the same account and its orders.
    assert_problem(registered.post(registered.kid, None), "malformed", 400, "signature does not verify")
    renewed = RawClient(client, home.base_url, key=new)
    renewed.kid = registered.kid
    assert renewed.post(order.url, None).get_json()["status"] == "pending"
    with session_factory() as session:
        (account,) = session.scalars(select(Account)).all()
        assert json.loads(account.jwk) == public_jwk(new)
        assert "account.key-change" in session.scalars(select(AuditEvent.action)).all()


def test_s7_3_5_new_key_of_another_account_is_409_with_its_location(registered, client, home, session_factory):
    other = RawClient(client, home.base_url)
    other.register()
    before = table_counts(session_factory)
    response = registered.post(KEY_CHANGE, inner_jws(registered, other.key))
    assert_problem(response, "malformed", 409, "already in use")
    assert response.headers["Location"] == other.kid
    assert table_counts(session_factory) == before


@pytest.mark.parametrize(
    "build, code, fragment",
    [
        (lambda raw, new: inner_jws(raw, new, url=raw.url("/acme/new-order")), "malformed", "must equal the outer 'url'"),
        (lambda raw, new: inner_jws(raw, new, account=raw.kid + "x"), "unauthorized", "is not the signing account"),
        (lambda raw, new: inner_jws(raw, new, old_jwk=public_jwk(new_key())), "unauthorized", "not the account's current key"),
        (lambda raw, new: {**inner_jws(raw, new), "signature": b64url(b"\x00" * 64)}, "malformed", "does not verify with its 'jwk'"),
        (lambda raw, new: inner_jws(raw, raw.key), "malformed", "is the account's current key"),
        (lambda raw, new: {**inner_jws(raw, new), "header": {}}, "malformed", "unprotected 'header'"),
        (lambda raw, new: {"protected": "e30", "payload": ""}, "malformed", "lacks 'signature'"),
    ],
    ids=["inner-url", "other-account", "wrong-old-key", "bad-inner-signature", "same-key", "unprotected-header", "not-a-jws"],
)
def test_s7_3_5_refusals_change_nothing(registered, session_factory, build, code, fragment):
    new = new_key()
    before = table_counts(session_factory)
    payload = build(registered, new)
    response = registered.post(KEY_CHANGE, payload)
    assert_problem(response, code, 403 if code == "unauthorized" else 400, fragment)
    assert table_counts(session_factory) == before
    assert registered.post(registered.kid, None).status_code == 200  # the old key still works


def test_s7_3_5_tokens_minted_for_the_retired_key_no_longer_validate(registered, authority, client, home, session_factory):
    """RFC 8555 §7.3.5 (and RFC 9448 §5.4, tokens bound to an account key): an authority token
    minted here for the old key, unused at the keyChange, stayed redeemable by a new account made
    with the old key. The keyChange now retires the old key's tokens, audited with their jtis;
    such a token fails the challenge as unauthorized, and nothing is spent."""
    delegation_id = authority.delegate()
    old_key = registered.key
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE)
    assert registered.post(KEY_CHANGE, inner_jws(registered, new_key())).status_code == 200
    with session_factory() as session:
        retire = session.scalars(select(AuditEvent).where(AuditEvent.action == "account-key.retire")).one()
        assert retire.details["account_id"] == registered.kid.rsplit("/", 1)[1]
        assert len(retire.details["unused_token_jtis"]) == 1

    reused = RawClient(client, home.base_url, key=old_key)
    reused.register()
    order = raw_new_order(reused, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    challenge = raw_answer(reused, order, token).get_json()
    assert challenge["status"] == "invalid", challenge
    assert challenge["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "retired by a keyChange" in challenge["error"]["detail"]
    assert table_counts(session_factory) == before
    # A token minted for that key after the keyChange is the operator's new decision: it works.
    fresh = raw_new_order(reused, TN_SCOPE.to_identifier_value())
    assert raw_answer(reused, fresh, authority.token(delegation_id, reused.jwk, TN_SCOPE)).get_json()["status"] == "valid"
