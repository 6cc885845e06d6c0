"""RFC 8739 §3.1.2: canceling an auto-renewal order, and revokeCert of a STAR certificate."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from acme_server.acme.problems import problem_for_ca_error
from ca.errors import AutoRenewalError
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Revocation
from protocol.rfc8739.star_support import (
    auto_renewal,
    issued_certificates,
    order_row,
    star_ready_order,
    star_valid_order,
    utcnow,
)
from protocol.support import RawClient, assert_problem, b64url, raw_ready_order, table_counts

CANCELED = {"status": "canceled"}


def test_s3_1_2_client_cancels_a_valid_star_order(registered, authority, session_factory):
    """"Immediately after the Order is canceled, the server: MUST update the status of the Order
    resource to "canceled" and MUST set an appropriate "expires" date; MUST respond with 403
    (Forbidden) to any requests to the star-certificate endpoint" (SHOULD: autoRenewalCanceled)."""
    order = star_valid_order(registered, authority, auto_renewal())
    before = utcnow()
    response = registered.post(order.url, CANCELED)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "canceled"
    assert before <= dt.datetime.fromisoformat(body["expires"].replace("Z", "+00:00")) <= utcnow()
    assert "error" not in body  # the client's own decision needs no explanation
    row = order_row(session_factory, order.url)
    assert (row.status, row.next_renewal_at, row.renewal_claim) == ("canceled", None, None)
    with session_factory() as session:
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "order.cancel")).all()
    assert (event.subject_id, event.details["by"], event.actor) == (row.id, "client", f"acme:account:{row.account_id}")
    assert event.details["certificates_issued"] == 1

    fetched = registered.post(body["star-certificate"], None)
    assert_problem(fetched, "autoRenewalCanceled", 403, f"order {row.id} was canceled")


def test_s3_1_2_canceling_twice_is_cancellation_invalid_and_changes_nothing(registered, authority, session_factory):
    """"Issuing a cancellation for an Order that is not in "valid" state is not allowed ... a
    server MUST return an error response with status code 400 (Bad Request) and type
    "urn:ietf:params:acme:error:autoRenewalCancellationInvalid"."""
    order = star_valid_order(registered, authority, auto_renewal())
    assert registered.post(order.url, CANCELED).status_code == 200
    before = table_counts(session_factory)
    assert_problem(registered.post(order.url, CANCELED), "autoRenewalCancellationInvalid", 400, "is canceled")
    assert table_counts(session_factory) == before


def test_s3_1_2_canceling_a_ready_star_order_is_cancellation_invalid(registered, authority, session_factory):
    order = star_ready_order(registered, authority, auto_renewal())
    before = table_counts(session_factory)
    assert_problem(registered.post(order.url, CANCELED), "autoRenewalCancellationInvalid", 400, "is ready")
    assert order_row(session_factory, order.url).status == "ready"
    assert table_counts(session_factory) == before


def test_s3_1_2_an_ordinary_order_cannot_be_canceled(registered, authority, session_factory):
    order = raw_ready_order(registered, authority)
    before = table_counts(session_factory)
    assert_problem(registered.post(order.url, CANCELED), "malformed", 400, "is not an auto-renewal order")
    assert order_row(session_factory, order.url).status == "ready"
    assert table_counts(session_factory) == before


def test_s3_1_2_any_other_change_to_an_order_is_malformed(registered, authority, session_factory):
    order = star_valid_order(registered, authority, auto_renewal())
    before = table_counts(session_factory)
    for payload in ({"status": "deactivated"}, {"status": "canceled", "expires": "2030-01-01T00:00:00Z"}, {}):
        assert_problem(registered.post(order.url, payload), "malformed", 400, '{"status": "canceled"}')
    assert order_row(session_factory, order.url).status == "valid"
    assert table_counts(session_factory) == before


def test_s3_1_2_another_account_cannot_cancel(registered, authority, client, home, session_factory):
    order = star_valid_order(registered, authority, auto_renewal())
    other = RawClient(client, home.base_url)
    other.register({})
    before = table_counts(session_factory)
    assert_problem(other.post(order.url, CANCELED), "unauthorized", 403, "belongs to another account")
    assert order_row(session_factory, order.url).status == "valid"
    assert table_counts(session_factory) == before


def test_s3_1_2_revoking_a_star_certificate_is_not_supported(registered, authority, session_factory):
    """"A server receiving a revocation request for a STAR certificate MUST return an error
    response with status code 403 (Forbidden) and type
    "urn:ietf:params:acme:error:autoRenewalRevocationNotSupported"."""
    order = star_valid_order(registered, authority, auto_renewal())
    chain = registered.post(order.body["star-certificate"], None).get_data()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    before = table_counts(session_factory)
    response = registered.post("/acme/revoke-cert", {"certificate": b64url(leaf.public_bytes(serialization.Encoding.DER))})
    assert_problem(response, "autoRenewalRevocationNotSupported", 403, "cancel the order instead")
    assert table_counts(session_factory) == before
    with session_factory() as session:
        assert session.scalars(select(Revocation)).all() == []


def test_s7_3_6_deactivating_the_account_cancels_its_star_orders(registered, authority, session_factory):
    """RFC 8555 §7.3.6: the server SHOULD cancel pending operations authorized by the key; a STAR
    order's renewals are such operations."""
    order = star_valid_order(registered, authority, auto_renewal())
    response = registered.post(registered.kid, {"status": "deactivated"})
    assert response.status_code == 200, response.get_data(as_text=True)
    row = order_row(session_factory, order.url)
    assert row.status == "canceled"
    assert row.error == {
        "type": "urn:ietf:params:acme:error:autoRenewalCanceled",
        "detail": f"account {row.account_id} was deactivated",
    }
    assert [c.serial for c in issued_certificates(session_factory, row.id)]  # the one issued stays


def test_s5_ca_auto_renewal_errors_map_to_cancellation_invalid():
    """The one table from ca errors to problem types (acme_server/acme/problems.py): a STAR order
    that cannot be canceled is RFC 8739 §5's autoRenewalCancellationInvalid, 400, with its detail."""
    error = AutoRenewalError("order o is canceled; only a valid auto-renewal order can be canceled", field="order")
    problem = problem_for_ca_error(error)
    assert (problem.type, problem.status, problem.detail) == (
        "urn:ietf:params:acme:error:autoRenewalCancellationInvalid", 400, error.detail)
