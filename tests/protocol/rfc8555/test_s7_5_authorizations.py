"""RFC 8555 §7.5: authorization objects, POST-as-GET and deactivation (§7.5.2)."""

from __future__ import annotations

from protocol.support import TN_SCOPE, RawClient, assert_problem, csr_b64, raw_new_order, raw_ready_order, table_counts


def test_s7_5_2_deactivating_a_pending_authorization_invalidates_its_order(registered, session_factory):
    """RFC 8555 §7.5.2: the client may deactivate; the order can then never become ready (§7.1.6)."""
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    response = registered.post(order.authz_url, {"status": "deactivated"})
    assert response.status_code == 200 and response.get_json()["status"] == "deactivated"
    assert registered.post(order.url, None).get_json()["status"] == "invalid"


def test_s7_5_2_a_deactivated_authorization_cannot_be_used_for_issuance(registered, authority, session_factory):
    """RFC 8555 §7.5.2: "a deactivated authorization ... MUST NOT be used for issuance"."""
    order = raw_ready_order(registered, authority)
    assert registered.post(order.authz_url, {"status": "deactivated"}).get_json()["status"] == "deactivated"
    csr, _ = csr_b64()
    before = table_counts(session_factory)
    assert_problem(registered.post(order.body["finalize"], {"csr": csr}), "orderNotReady", 403, "is invalid")
    assert table_counts(session_factory) == before


def test_s7_5_2_only_deactivation_may_be_posted(registered, session_factory):
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    assert_problem(registered.post(order.authz_url, {"status": "valid"}), "malformed", 400, '{"status": "deactivated"}')
    registered.post(order.authz_url, {"status": "deactivated"})
    assert_problem(registered.post(order.authz_url, {"status": "deactivated"}), "malformed", 400, "is deactivated")
    assert table_counts(session_factory) == before


def test_s7_5_authorization_of_another_account_is_unauthorized(registered, client, home, session_factory):
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    other = RawClient(client, home.base_url)
    other.register()
    before = table_counts(session_factory)
    assert_problem(other.post(order.authz_url, {"status": "deactivated"}), "unauthorized", 403, "another account")
    assert table_counts(session_factory) == before
    assert registered.post(order.authz_url, None).get_json()["status"] == "pending"


def test_s7_5_unknown_authorization_and_challenge_are_404_problems(registered, home):
    assert_problem(registered.post(home.base_url + "/acme/authz/nope", None), "malformed", 404, "no authorization")
    assert_problem(registered.post(home.base_url + "/acme/chall/nope", None), "malformed", 404, "no challenge")
