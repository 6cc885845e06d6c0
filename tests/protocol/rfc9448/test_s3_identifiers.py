"""RFC 9448 §3 (TNAuthList identifiers in newOrder) and §4 (the authorization and its challenge)."""

from __future__ import annotations

import base64
import re

import pytest
from acme import messages
from sqlalchemy import select

from ca.records.models_acme import Order
from ca.numbers.tnauthlist import TNScope
from protocol.support import (
    RANGE_SCOPE,
    SPC_SCOPE,
    TN_SCOPE,
    assert_problem,
    padded_base64,
    raw_new_order,
    table_counts,
)

NEW_ORDER = "/acme/new-order"


@pytest.fixture
def unchanged(session_factory):
    before = table_counts(session_factory)
    yield
    assert table_counts(session_factory) == before


@pytest.mark.parametrize("scope", [TN_SCOPE, RANGE_SCOPE, SPC_SCOPE], ids=["TN", "range", "SPC"])
@pytest.mark.parametrize("encode", [TNScope.to_identifier_value, padded_base64], ids=["base64url", "padded-base64"])
def test_s3_tnauthlist_identifier_in_either_encoding_is_accepted_and_compared_as_der(registered, session_factory, scope, encode):
    """RFC 9448 §3: the value is base64url DER; SHAKEN clients send padded standard base64. Both
    decode to the same TNAuthList, which is what the order stores and compares."""
    value = encode(scope)
    order = raw_new_order(registered, value)
    assert order.body["status"] == "pending"
    assert order.body["identifiers"] == [{"type": "TNAuthList", "value": value}]
    with session_factory() as session:
        (stored,) = session.scalars(select(Order)).all()
        assert stored.scope_der == scope.to_der()


def test_s3_order_object_has_the_rfc8555_fields(registered, home):
    """RFC 8555 §7.1.3: status, expires, identifiers, authorizations, finalize; Location header."""
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    assert re.fullmatch(re.escape(home.base_url) + r"/acme/order/[a-z2-7]{20}", order.url)
    body = messages.Order.from_json(order.body)
    assert body.status == messages.STATUS_PENDING
    assert body.finalize == order.url + "/finalize"
    assert len(body.authorizations) == 1 and body.expires is not None


def test_s4_authorization_offers_one_tkauth01_challenge(registered, home):
    """RFC 9448 §4: a TNAuthList authorization has a tkauth-01 challenge with tkauth-type "atc"."""
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    authz = registered.post(order.authz_url, None).get_json()
    assert authz["status"] == "pending"
    assert authz["identifier"] == {"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}
    (challenge,) = authz["challenges"]
    assert challenge["type"] == "tkauth-01"
    assert challenge["tkauth-type"] == "atc"
    assert challenge["status"] == "pending"
    assert challenge["token-authority"] == home.base_url
    assert challenge["url"].startswith(home.base_url + "/acme/chall/")
    # RFC 8555 §8: a challenge token has at least 128 bits of entropy, base64url.
    assert len(base64.urlsafe_b64decode(challenge["token"] + "==")) >= 16


def test_s3_other_identifier_types_are_unsupported_identifier_with_a_subproblem(registered, unchanged):
    """RFC 8555 §7.4 / §6.7.1: each refused identifier gets a subproblem naming it."""
    response = registered.post(NEW_ORDER, {"identifiers": [
        {"type": "ip", "value": "192.0.2.1"},
        {"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()},
    ]})
    error = assert_problem(response, "unsupportedIdentifier", 400, "1 of 2 identifier(s)")
    (sub,) = error.subproblems
    assert sub.typ == "urn:ietf:params:acme:error:unsupportedIdentifier"
    # A "dns" identifier beside the TNAuthList one is supported (docs/identity.md); "ip" is not.
    assert sub.identifier.value == "192.0.2.1" and "'ip'" in sub.detail


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("not base64!", "TNAuthList"),
        ("MAA", "TNAuthList"),  # 30 00: an empty TNAuthorizationList (SIZE (1..MAX))
        (base64.urlsafe_b64encode(bytes.fromhex("3010a20e160c2b3132303235353531323132")).decode().rstrip("="), "TNAuthList"),
        (base64.urlsafe_b64encode(bytes.fromhex("300680043730394a")).decode().rstrip("="), "TNAuthList"),
    ],
    ids=["not-base64", "empty-list", "plus-in-number", "implicit-tag"],
)
def test_s3_value_that_is_not_a_der_tnauthlist_is_malformed_with_a_subproblem(registered, unchanged, value, fragment):
    """core-standards A.1 negative vectors: the server validates the DER at newOrder."""
    response = registered.post(NEW_ORDER, {"identifiers": [{"type": "TNAuthList", "value": value}]})
    error = assert_problem(response, "malformed", 400)
    (sub,) = error.subproblems
    assert sub.identifier.value == value and fragment in sub.detail


def test_s3_two_tnauthlist_identifiers_are_rejected(registered, unchanged):
    """One TNAuthList per order (docs/rfc-support.md): the certificate carries exactly one."""
    response = registered.post(NEW_ORDER, {"identifiers": [
        {"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()},
        {"type": "TNAuthList", "value": RANGE_SCOPE.to_identifier_value()},
    ]})
    error = assert_problem(response, "rejectedIdentifier", 400, "exactly one TNAuthList")
    assert error.subproblems[0].identifier.value == RANGE_SCOPE.to_identifier_value()


def test_s3_scope_outside_the_issuing_ca_is_rejected_identifier(registered, unchanged):
    outside = TNScope.parse(ranges=["13035550000:100"])
    response = registered.post(NEW_ORDER, {"identifiers": [{"type": "TNAuthList", "value": outside.to_identifier_value()}]})
    error = assert_problem(response, "rejectedIdentifier", 400, "rejected")
    assert "outside this authority's TNAuthList" in error.subproblems[0].detail


@pytest.mark.parametrize("identifiers", [[], "TNAuthList", [{"type": "TNAuthList"}], [["TNAuthList", "x"]]],
                         ids=["empty", "string", "no-value", "array-item"])
def test_s7_4_identifiers_of_the_wrong_shape_are_malformed(registered, unchanged, identifiers):
    assert_problem(registered.post(NEW_ORDER, {"identifiers": identifiers}), "malformed", 400, "identifier")


def test_s3_identifier_with_more_entries_than_the_limit_is_rejected_identifier(registered, session_factory):
    """RFC 9448 §3 / RFC 8555 §7.4: a TNAuthList of more than MAX_ORDER_SCOPE_ENTRIES entries
    (after normalization: adjacent numbers count as one range) is refused as rejectedIdentifier
    naming the limit, before any database statement (the scope checks and the delegation lookup
    cost time in the number of entries)."""
    from sqlalchemy import event

    from ca.orders import placing

    # Every other number, so normalization merges nothing: 1,001 entries.
    many = TNScope.parse(tns=[str(12025550000 + 2 * index) for index in range(placing.MAX_ORDER_SCOPE_ENTRIES + 1)])
    merged = TNScope.parse(tns=[str(12025550000 + index) for index in range(placing.MAX_ORDER_SCOPE_ENTRIES + 1)])
    statements: list[str] = []
    engine = registered.client.application.extensions["tnca"].engine

    def count(conn, cursor, statement, *args):  # noqa: ANN001
        statements.append(statement)

    before = table_counts(session_factory)
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = registered.post(NEW_ORDER, {"identifiers": [{"type": "TNAuthList", "value": many.to_identifier_value()}]})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    error = assert_problem(response, "rejectedIdentifier", 400, "rejected")
    assert table_counts(session_factory) == before
    assert f"at most {placing.MAX_ORDER_SCOPE_ENTRIES}" in error.subproblems[0].detail
    assert "1001 entries" in error.subproblems[0].detail
    # Only the JWS checks ran (the nonce, the account); nothing about the scope.
    assert not any("delegation" in statement.lower() or "orders" in statement.lower() for statement in statements)
    # 1,001 adjacent numbers normalize to one range: within the limit.
    accepted = registered.post(NEW_ORDER, {"identifiers": [{"type": "TNAuthList", "value": merged.to_identifier_value()}]})
    assert accepted.status_code == 201, accepted.get_data(as_text=True)
