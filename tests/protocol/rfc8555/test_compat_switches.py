"""The two JWS compatibility switches for deployed SHAKEN clients (docs/rfc-support.md).

Each is off by default: the request is refused with ``malformed`` and a detail that names the
switch, and nothing is written. On, the client's form is accepted, and only that form.

- ``[compat] empty_payload_signed_without_dot``: an empty-payload JWS signed over
  ``BASE64URL(protected)`` alone, not RFC 7515 §5.1's ``BASE64URL(protected) || '.'``.
- ``[compat] new_account_empty_payload``: newAccount with the empty payload (RFC 8555 §7.3 asks
  for a JSON object) reads as ``{}``.
"""

from __future__ import annotations

import pytest

from acme_server import create_app
from protocol.support import RawClient, assert_problem, b64url, sign_es256, table_counts, with_compat

NEW_ACCOUNT = "/acme/new-account"


def without_dot(raw: RawClient, url: str, payload=None, **kwargs) -> dict[str, str]:
    """A JWS as the SHAKEN client signs it: the signature covers the protected header only."""
    jws = raw.jws(url, payload, **kwargs)
    jws["signature"] = b64url(sign_es256(raw.key, jws["protected"].encode("ascii")))
    return jws


@pytest.fixture
def compat_client(home):
    return create_app(with_compat(home, empty_payload_signed_without_dot=True, new_account_empty_payload=True)).test_client()


def test_rfc7515_s5_1_signature_without_the_dot_is_refused_naming_the_switch(registered, session_factory):
    """RFC 7515 §5.1 / RFC 8555 §6.2: by default only the RFC signing input verifies."""
    before = table_counts(session_factory)
    response = registered.post(registered.kid, body=without_dot(registered, registered.kid, use_jwk=False))
    assert_problem(response, "malformed", 400, "[compat] empty_payload_signed_without_dot = true")
    assert table_counts(session_factory) == before


def test_rfc8555_s7_3_empty_new_account_payload_is_refused_naming_the_switch(raw, session_factory):
    """RFC 8555 §7.3: newAccount carries a JSON object; by default "" is refused."""
    before = table_counts(session_factory)
    assert_problem(raw.post(NEW_ACCOUNT, None, use_jwk=True), "malformed", 400,
                   "[compat] new_account_empty_payload = true")
    assert table_counts(session_factory) == before


def test_switches_on_accept_the_shaken_client_flow(compat_client, home):
    """newAccount "" signed without the dot creates the account (201), again returns it (200 and
    the same Location), and a POST-as-GET signed without the dot reads it."""
    raw = RawClient(compat_client, home.base_url)
    first = raw.post(NEW_ACCOUNT, body=without_dot(raw, NEW_ACCOUNT, use_jwk=True))
    assert first.status_code == 201, first.get_data(as_text=True)
    again = raw.post(NEW_ACCOUNT, body=without_dot(raw, NEW_ACCOUNT, use_jwk=True))
    assert again.status_code == 200 and again.headers["Location"] == first.headers["Location"]
    raw.kid = first.headers["Location"]
    fetched = raw.post(raw.kid, body=without_dot(raw, raw.kid, use_jwk=False))
    assert fetched.status_code == 200 and fetched.get_json()["status"] == "valid"
    # The RFC forms keep working beside them.
    assert raw.post(raw.kid, None).status_code == 200


def test_without_dot_applies_to_the_empty_payload_only(compat_client, home, session_factory):
    """A signature over the protected header alone never authenticates a non-empty payload."""
    raw = RawClient(compat_client, home.base_url)
    raw.register()
    before = table_counts(session_factory)
    jws = raw.jws("/acme/new-order", {"identifiers": []})
    jws["signature"] = b64url(sign_es256(raw.key, jws["protected"].encode("ascii")))
    assert_problem(raw.post("/acme/new-order", body=jws), "malformed", 400, "does not verify with the account key")
    assert table_counts(session_factory) == before


def test_empty_new_account_still_needs_terms_and_eab_where_required(home, session_factory):
    """Read as {}, an empty newAccount gets exactly what {} gets: the terms refusal, and
    externalAccountRequired where EAB is required (RFC 8555 §7.3, §7.3.4)."""
    from protocol.support import with_policy

    with_policy(home, "acme", terms_of_service="https://ca.example/terms", eab_required=True)
    client = create_app(with_compat(home, new_account_empty_payload=True)).test_client()
    raw = RawClient(client, home.base_url)
    before = table_counts(session_factory)
    assert_problem(raw.post(NEW_ACCOUNT, None, use_jwk=True), "malformed", 400, "agree to the terms of service")
    client = create_app(with_policy(home, "acme", terms_of_service="")).test_client()
    raw = RawClient(client, home.base_url, key=raw.key)
    assert_problem(raw.post(NEW_ACCOUNT, None, use_jwk=True), "externalAccountRequired", 403)
    assert table_counts(session_factory) == before
