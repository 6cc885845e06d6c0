"""RFC 8555 §7.3 accounts: newAccount, onlyReturnExisting, contacts, terms, external account
binding, update, deactivation and the orders list."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from sqlalchemy import select

from acme_server import create_app
from acme_server.acme import accounts
from ca.home import Home
from ca.records.models_acme import Account, ExternalAccountKey, Order
from ca.records.models_audit import AuditEvent
from protocol.support import RawClient, assert_problem, b64url, public_jwk, table_counts

NEW_ACCOUNT = "/acme/new-account"
NEW_ORDER = "/acme/new-order"
ORDER_PAYLOAD = {"identifiers": [{"type": "TNAuthList", "value": "MA-iDRYLMTIwMjU1NTAxMDA"}]}
TERMS = "https://tnca.example/terms/2026-01"


@pytest.fixture
def unchanged(session_factory):
    before = table_counts(session_factory)
    yield
    assert table_counts(session_factory) == before


def with_policy(home: Home, **acme_settings) -> Home:
    """The same home with ``[acme]`` policy keys changed (policy.toml is the operator's file)."""
    text = home.policy_path.read_text()
    for key, value in acme_settings.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {json.dumps(value)}", text)
    home.policy_path.write_text(text)
    return Home(home.path)


# --------------------------------------------------------------------------------------------
# newAccount
# --------------------------------------------------------------------------------------------


def test_s7_3_new_account_is_201_with_location_and_account_object(raw, home, session_factory):
    response = raw.post(NEW_ACCOUNT, {"contact": ["mailto:ops@example.com"], "termsOfServiceAgreed": True}, use_jwk=True)
    assert response.status_code == 201
    location = response.headers["Location"]
    assert re.fullmatch(re.escape(home.base_url) + r"/acme/acct/[a-z2-7]{20}", location)
    body = response.get_json()
    assert body == {"status": "valid", "contact": ["mailto:ops@example.com"], "orders": location + "/orders"}
    with session_factory() as session:
        account = session.scalars(select(Account)).one()
        assert account.jwk_thumbprint == b64url(raw.jwk.thumbprint())  # RFC 7638
        assert session.scalars(select(AuditEvent.action).where(AuditEvent.subject_id == account.id)).all() == ["account.create"]


def test_s7_3_1_known_key_gets_200_with_the_existing_account_and_fields_are_ignored(registered, session_factory):
    """RFC 8555 §7.3.1: "the server MUST return a response with status code 200 (OK) and provide
    the URL of that account in the Location header field" ... the request's fields are ignored."""
    before = table_counts(session_factory)
    response = registered.post(NEW_ACCOUNT, {"contact": ["mailto:new@example.com"]}, use_jwk=True)
    assert response.status_code == 200
    assert response.headers["Location"] == registered.kid
    assert response.get_json()["contact"] == []
    assert table_counts(session_factory) == before


def test_s7_3_1_only_return_existing_for_an_unknown_key_is_account_does_not_exist(raw, unchanged):
    """RFC 8555 §7.3.1: onlyReturnExisting ... "the server MUST NOT create a new account"; 400
    accountDoesNotExist."""
    response = raw.post(NEW_ACCOUNT, {"onlyReturnExisting": True}, use_jwk=True)
    assert_problem(response, "accountDoesNotExist", 400, "onlyReturnExisting")


def test_s7_3_1_only_return_existing_for_a_known_key_returns_it(registered):
    response = registered.post(NEW_ACCOUNT, {"onlyReturnExisting": True}, use_jwk=True)
    assert (response.status_code, response.headers["Location"]) == (200, registered.kid)


def test_s7_3_unknown_fields_are_ignored_and_not_echoed(raw):
    """RFC 8555 §7.3: the server MUST ignore unrecognized fields (and MUST NOT echo them)."""
    response = raw.post(NEW_ACCOUNT, {"orders": "https://evil.example/", "x-extension": 1}, use_jwk=True)
    assert response.status_code == 201
    body = response.get_json()
    assert "x-extension" not in body and body["orders"].startswith(raw.base_url)


@pytest.mark.parametrize(
    "contact, code, fragment",
    [
        (["tel:+12025550100"], "unsupportedContact", "only mailto"),
        (["https://example.com/contact"], "unsupportedContact", "only mailto"),
        (["mailto:ops@example.com?subject=hi"], "invalidContact", "header fields"),
        (["mailto:a@example.com,b@example.com"], "invalidContact", "several addresses"),
        (["mailto:not an address"], "invalidContact", "not a valid email address"),
        (["mailto:ops@localhost"], "invalidContact", "not a valid email address"),
        (["mailto:x@example.com"] * (accounts.MAX_CONTACTS + 1), "invalidContact", f"at most {accounts.MAX_CONTACTS}"),
        ("mailto:ops@example.com", "malformed", "must be an array"),
        ([7], "malformed", "'contact[0]'"),
    ],
    ids=["tel", "https", "hfields", "two-addresses", "bad-address", "no-domain-dot", "too-many", "not-a-list", "not-a-string"],
)
def test_s7_3_contact_checks(raw, unchanged, contact, code, fragment):
    """RFC 8555 §7.3: unsupported scheme → unsupportedContact; bad value → invalidContact; mailto
    with hfields or more than one addr-spec SHOULD be rejected."""
    response = raw.post(NEW_ACCOUNT, {"contact": contact}, use_jwk=True)
    assert_problem(response, code, 400, fragment)


def test_s7_3_terms_of_service_must_be_agreed_when_published(home, session_factory):
    """RFC 8555 §7.3: with a termsOfService in the directory, "the server MUST reject newAccount
    requests that do not have the 'termsOfServiceAgreed' field set to 'true'"."""
    client = create_app(with_policy(home, terms_of_service=TERMS)).test_client()
    assert client.get("/acme/directory").get_json()["meta"]["termsOfService"] == TERMS
    raw = RawClient(client, home.base_url)
    before = table_counts(session_factory)
    response = raw.post(NEW_ACCOUNT, {"contact": []}, use_jwk=True)
    assert_problem(response, "malformed", 400, TERMS)
    assert response.headers["Link"].startswith(f'<{TERMS}>;rel="terms-of-service"')
    assert table_counts(session_factory) == before
    agreed = raw.post(NEW_ACCOUNT, {"termsOfServiceAgreed": True}, use_jwk=True)
    assert agreed.status_code == 201 and agreed.get_json()["termsOfServiceAgreed"] is True


# --------------------------------------------------------------------------------------------
# External account binding (RFC 8555 §7.3.4)
# --------------------------------------------------------------------------------------------

EAB_HMAC_KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def eab_client(home, authority, session_factory):
    """A server that requires EAB, and one unbound EAB key tied to the test delegation."""
    delegation_id = authority.delegate()
    with session_factory() as session:
        session.add(ExternalAccountKey(key_id="kid-1", hmac_key=EAB_HMAC_KEY, delegation_id=delegation_id))
        session.commit()
    return create_app(with_policy(home, eab_required=True)).test_client()


def eab(raw: RawClient, *, key_id="kid-1", hmac_key=EAB_HMAC_KEY, alg="HS256", url=None, jwk=None, extra=None):
    """An RFC 8555 §7.3.4 externalAccountBinding JWS (as certbot's ExternalAccountBinding makes it)."""
    protected = {"alg": alg, "kid": key_id, "url": url or raw.url(NEW_ACCOUNT), **(extra or {})}
    protected_b64 = b64url(json.dumps(protected).encode())
    payload_b64 = b64url(json.dumps(jwk or public_jwk(raw.key)).encode())
    mac = hmac.new(hmac_key, f"{protected_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64url(mac)}


def test_s7_3_4_directory_says_external_account_required(eab_client):
    assert eab_client.get("/acme/directory").get_json()["meta"]["externalAccountRequired"] is True


def test_s7_3_4_new_account_without_binding_is_external_account_required(eab_client, home, session_factory):
    raw = RawClient(eab_client, home.base_url)
    before = table_counts(session_factory)
    assert_problem(raw.post(NEW_ACCOUNT, {}, use_jwk=True), "externalAccountRequired", 403, "external account binding")
    assert table_counts(session_factory) == before


def test_s7_3_4_valid_binding_creates_the_account_and_uses_up_the_key(eab_client, home, session_factory):
    raw = RawClient(eab_client, home.base_url)
    response = raw.post(NEW_ACCOUNT, {"externalAccountBinding": eab(raw)}, use_jwk=True)
    assert response.status_code == 201, response.get_data(as_text=True)
    with session_factory() as session:
        account = session.scalars(select(Account)).one()
        assert account.eab_key_id == "kid-1"
        assert session.get(ExternalAccountKey, "kid-1").bound_at is not None
    second = RawClient(eab_client, home.base_url)
    before = table_counts(session_factory)
    refused = second.post(NEW_ACCOUNT, {"externalAccountBinding": eab(second)}, use_jwk=True)
    assert_problem(refused, "unauthorized", 403, "already been used")
    assert table_counts(session_factory) == before


@pytest.mark.parametrize(
    "kwargs, code, status, fragment",
    [
        ({"hmac_key": b"x" * 32}, "unauthorized", 403, "MAC does not verify"),
        ({"key_id": "kid-unknown"}, "unauthorized", 403, "is unknown"),
        ({"alg": "ES256"}, "malformed", 400, "must be a MAC algorithm"),
        ({"extra": {"nonce": "AAAA"}}, "malformed", 400, "must not carry a 'nonce'"),
        ({"url": "https://elsewhere.example/acme/new-account"}, "unauthorized", 403, "must equal the outer JWS 'url'"),
        ({"jwk": {"kty": "EC", "crv": "P-256", "x": b64url(b"\x01" * 32), "y": b64url(b"\x02" * 32)}}, "malformed", 400,
         "must be the account's public JWK"),
    ],
    ids=["wrong-mac", "unknown-key-id", "not-a-mac", "nonce", "other-url", "bad-jwk"],
)
def test_s7_3_4_bad_bindings_are_refused_and_nothing_is_written(eab_client, home, session_factory, kwargs, code, status, fragment):
    raw = RawClient(eab_client, home.base_url)
    before = table_counts(session_factory)
    response = raw.post(NEW_ACCOUNT, {"externalAccountBinding": eab(raw, **kwargs)}, use_jwk=True)
    assert_problem(response, code, status, fragment)
    assert table_counts(session_factory) == before
    with session_factory() as session:
        assert session.get(ExternalAccountKey, "kid-1").bound_at is None


def test_s7_3_4_binding_over_another_account_key_is_unauthorized(eab_client, home, unchanged):
    """RFC 8555 §7.3.4: the EAB payload MUST be the same key as the outer JWS's "jwk"."""
    raw, other = RawClient(eab_client, home.base_url), RawClient(eab_client, home.base_url)
    response = raw.post(NEW_ACCOUNT, {"externalAccountBinding": eab(raw, jwk=public_jwk(other.key))}, use_jwk=True)
    assert_problem(response, "unauthorized", 403, "another key")


# --------------------------------------------------------------------------------------------
# The account resource: POST-as-GET, update, deactivation
# --------------------------------------------------------------------------------------------


def test_s7_3_post_as_get_returns_the_account(registered):
    response = registered.post(registered.kid, None)
    assert response.status_code == 200
    assert response.get_json()["status"] == "valid"


def test_s7_3_2_update_changes_contact_and_ignores_status_and_orders(registered):
    """RFC 8555 §7.3.2: the server MUST ignore updates to "orders", "termsOfServiceAgreed", and
    "status" (except deactivation)."""
    response = registered.post(
        registered.kid, {"contact": ["mailto:new@example.com"], "status": "revoked", "orders": "x", "termsOfServiceAgreed": False}
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "valid",
        "contact": ["mailto:new@example.com"],
        "orders": registered.kid + "/orders",
    }


def test_s7_3_2_contact_update_is_audited_with_before_and_after(registered, session_factory):
    """RFC 8555 §7.3.2 account update: a change of contacts (where the authority writes about the
    account's certificates) was not audited. It appends ``account.update`` with the contacts
    before and after; sending the same contacts again changes nothing and appends nothing."""
    account_id = registered.kid.rsplit("/", 1)[1]
    assert registered.post(registered.kid, {"contact": ["mailto:a@example.com"]}).status_code == 200
    assert registered.post(registered.kid, {"contact": ["mailto:b@example.com", "mailto:c@example.com"]}).status_code == 200
    assert registered.post(registered.kid, {"contact": ["mailto:b@example.com", "mailto:c@example.com"]}).status_code == 200
    with session_factory() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "account.update").order_by(AuditEvent.seq)
        ).all()
    assert [(e.subject_type, e.subject_id) for e in events] == [("account", account_id)] * 2
    assert [e.details for e in events] == [
        {"contact_before": [], "contact_after": ["mailto:a@example.com"]},
        {"contact_before": ["mailto:a@example.com"], "contact_after": ["mailto:b@example.com", "mailto:c@example.com"]},
    ]
    assert all(e.actor == f"acme:account:{account_id}" for e in events)


def test_s7_3_new_account_audits_its_contacts(raw, session_factory):
    raw.register({"contact": ["mailto:ops@example.com"]})
    with session_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "account.create")).one()
    assert event.details["contact"] == ["mailto:ops@example.com"]


def test_s7_3_2_invalid_contact_update_is_refused_and_nothing_changes(registered):
    assert_problem(registered.post(registered.kid, {"contact": ["tel:+1"]}), "unsupportedContact", 400)
    assert registered.post(registered.kid, None).get_json()["contact"] == []


def test_s7_3_another_accounts_url_is_unauthorized(registered, client, home, session_factory):
    other = RawClient(client, home.base_url)
    other.register()
    before = table_counts(session_factory)
    assert_problem(registered.post(other.kid, None), "unauthorized", 403, "is signed for account")
    assert_problem(registered.post(other.kid, {"status": "deactivated"}), "unauthorized", 403, "is signed for account")
    assert table_counts(session_factory) == before


def test_s7_3_6_deactivation_then_every_request_is_401(registered, session_factory):
    """RFC 8555 §7.3.6: after deactivation the server MUST NOT accept requests authorized by the
    key; a 401 unauthorized. Pending orders are cancelled."""
    order_url = registered.post(NEW_ORDER, ORDER_PAYLOAD).headers["Location"]
    response = registered.post(registered.kid, {"status": "deactivated"})
    assert response.status_code == 200 and response.get_json()["status"] == "deactivated"
    before = table_counts(session_factory)
    assert_problem(registered.post(registered.kid, None), "unauthorized", 401, "deactivated")
    assert_problem(registered.post(NEW_ORDER, ORDER_PAYLOAD), "unauthorized", 401, "deactivated")
    assert_problem(registered.post(order_url, None), "unauthorized", 401, "deactivated")
    assert_problem(registered.post(NEW_ACCOUNT, {}, use_jwk=True), "unauthorized", 401, "deactivated")
    assert table_counts(session_factory) == before
    with session_factory() as session:
        (order,) = session.scalars(select(Order)).all()
        assert order.status == "invalid"
        assert order.authorizations[0].status == "deactivated"
        assert "account.deactivate" in session.scalars(select(AuditEvent.action)).all()


# --------------------------------------------------------------------------------------------
# The orders list (RFC 8555 §7.1.2.1)
# --------------------------------------------------------------------------------------------


def test_s7_1_2_1_orders_list_has_the_accounts_orders_but_not_invalid_ones(registered, client, home, session_factory):
    urls = [registered.post(NEW_ORDER, ORDER_PAYLOAD).headers["Location"] for _ in range(3)]
    other = RawClient(client, home.base_url)
    other.register()
    other.post(NEW_ORDER, ORDER_PAYLOAD)
    with session_factory() as session:
        session.get(Order, urls[0].rsplit("/", 1)[1]).status = "invalid"
        session.commit()
    response = registered.post(registered.kid + "/orders", None)
    assert response.status_code == 200
    assert sorted(response.get_json()["orders"]) == sorted(urls[1:])


def test_s7_1_2_1_orders_list_is_paginated_with_link_next(registered, monkeypatch):
    monkeypatch.setattr(accounts, "ORDERS_PAGE_SIZE", 2)
    urls = {registered.post(NEW_ORDER, ORDER_PAYLOAD).headers["Location"] for _ in range(3)}
    first = registered.post(registered.kid + "/orders", None)
    assert len(first.get_json()["orders"]) == 2
    next_url = re.search(r'<([^>]+)>;rel="next"', first.headers["Link"]).group(1)
    assert next_url == registered.kid + "/orders?page=2"
    second = registered.post(next_url, None)
    assert "rel=\"next\"" not in second.headers.get("Link", "")
    assert set(first.get_json()["orders"]) | set(second.get_json()["orders"]) == urls


def test_s7_1_2_1_orders_list_needs_post_as_get(registered, unchanged):
    assert_problem(registered.post(registered.kid + "/orders", {}), "malformed", 400, "POST-as-GET")


@pytest.mark.parametrize(
    "page",
    ["99999999999999999999999", "92233720368547759", "1000001", "0", "-1", "abc", "", "%C2%B2", "%D9%A1"],
    ids=["huge", "offset-overflows", "above-the-bound", "zero", "negative", "word", "empty", "superscript", "arabic-digit"],
)
def test_s7_1_2_1_orders_list_page_out_of_range_is_malformed(registered, unchanged, page):
    """RFC 8555 §7.1.2.1: the orders list's ``page`` parameter. A page whose offset does not fit
    a 64-bit integer reached SQL and overflowed (a 500); a non-ASCII digit passed ``isdigit`` and
    failed ``int``. Each is a 400 ``malformed`` naming the parameter and its bound."""
    response = registered.post(f"{registered.kid}/orders?page={page}", None)
    assert_problem(response, "malformed", 400, "'page' must be an integer from 1 to 1000000")


def test_s7_1_2_1_orders_list_last_allowed_page_is_empty(registered):
    response = registered.post(f"{registered.kid}/orders?page=1000000", None)
    assert response.status_code == 200 and response.get_json() == {"orders": []}
