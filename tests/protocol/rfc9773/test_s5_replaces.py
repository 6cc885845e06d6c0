"""RFC 9773 §5: newOrder's ``replaces`` names the certificate an order renews.

The server checks what §5 asks: the certificate is one it issued, to the same account, sharing a
number with the order, and not already replaced by another order that can still issue (409
``alreadyReplaced``); it reflects the field in the order. A refused newOrder stores nothing.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from acme_server.acme.renewal_info import cert_id
from ca.records.models_acme import Order
from protocol.support import (
    RANGE_SCOPE,
    TN_SCOPE,
    RawClient,
    assert_problem,
    b64url,
    csr_b64,
    raw_answer,
    raw_issue,
    raw_new_order,
    raw_ready_order,
    table_counts,
)

NEW_ORDER = "/acme/new-order"


def replacing(raw: RawClient, replaces, scope=TN_SCOPE):  # type: ignore[no-untyped-def]
    payload = {"identifiers": [{"type": "TNAuthList", "value": scope.to_identifier_value()}], "replaces": replaces}
    return raw.post(NEW_ORDER, payload)


@pytest.fixture
def certificate(registered, authority) -> x509.Certificate:
    return raw_issue(registered, authority)[0]


def test_s5_replacement_order_is_created_and_reflects_replaces(registered, certificate):
    response = replacing(registered, cert_id(certificate))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["replaces"] == cert_id(certificate)
    # Polling shows it too.
    assert registered.post(response.headers["Location"], None).get_json()["replaces"] == cert_id(certificate)


def test_s5_replacement_order_issues_like_any_other(registered, authority, certificate):
    order = raw_ready_order(registered, authority, TN_SCOPE, replaces=cert_id(certificate))
    csr, _key = csr_b64()
    finalized = registered.post(order.body["finalize"], {"csr": csr}).get_json()
    assert (finalized["status"], finalized["replaces"]) == ("valid", cert_id(certificate))


def test_s5_a_second_replacement_is_409_already_replaced_naming_the_first(registered, certificate, session_factory):
    first = replacing(registered, cert_id(certificate))
    before = table_counts(session_factory)
    second = replacing(registered, cert_id(certificate))
    assert_problem(second, "alreadyReplaced", 409, f"is already replaced by order {first.headers['Location']} (pending)")
    assert second.headers["Location"] == first.headers["Location"]
    assert table_counts(session_factory) == before


def test_s5_a_replacement_whose_order_became_invalid_no_longer_holds(registered, authority, certificate):
    """§5: "… not already been marked as replaced by a different Order that is not 'invalid'"."""
    first = raw_new_order(registered, TN_SCOPE.to_identifier_value(), replaces=cert_id(certificate))
    # A token for another account's key fails the challenge: the authorization and the order go invalid.
    other = RawClient(registered.client, registered.base_url)
    failed = raw_answer(registered, first, authority.token(authority.delegate(), other.jwk, TN_SCOPE))
    assert failed.get_json()["status"] == "invalid"
    assert registered.post(first.url, None).get_json()["status"] == "invalid"
    assert replacing(registered, cert_id(certificate)).status_code == 201


def test_s5_an_expired_replacement_order_no_longer_holds(registered, certificate, session_factory):
    first = replacing(registered, cert_id(certificate))
    first_id = first.headers["Location"].rsplit("/", 1)[1]
    with session_factory() as session:
        session.execute(update(Order).where(Order.id == first_id).values(
            expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
        session.commit()
    assert replacing(registered, cert_id(certificate)).status_code == 201
    with session_factory() as session:
        assert session.get(Order, first_id).status == "invalid"  # marked when the second was accepted


def test_s5_a_certificate_of_another_account_is_unauthorized(registered, client, home, authority, certificate, session_factory):
    other = RawClient(client, home.base_url)
    other.register()
    before = table_counts(session_factory)
    assert_problem(replacing(other, cert_id(certificate)), "unauthorized", 403,
                   f"names certificate {certificate.serial_number:x}, which was not issued to this account")
    assert table_counts(session_factory) == before


def test_s5_a_certificate_sharing_no_number_with_the_order_is_malformed(registered, certificate, session_factory):
    before = table_counts(session_factory)
    assert_problem(replacing(registered, cert_id(certificate), RANGE_SCOPE), "malformed", 400,
                   "shares no telephone number with the order's")
    assert table_counts(session_factory) == before


@pytest.mark.parametrize(
    "replaces, fragment",
    [
        (42, '"replaces" is a string'),
        (["a.b"], '"replaces" is a string'),
        ("", "\"replaces\" is not a certificate identifier: a certID is base64url(AKI keyIdentifier) '.' "),
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ", "\"replaces\" is not a certificate identifier: a certID is base64url"),
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AAE", '"replaces" is not a certificate identifier: certID serial is not the DER'),
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", '"replaces" names no certificate: this authority issued no certificate'),
    ],
    ids=["number", "list", "empty", "no-dot", "non-minimal-serial", "unknown"],
)
def test_s5_bad_or_unknown_replaces_is_malformed(registered, session_factory, replaces, fragment):
    before = table_counts(session_factory)
    assert_problem(replacing(registered, replaces), "malformed", 400, fragment)
    assert table_counts(session_factory) == before


def test_s5_a_certificate_of_another_issuing_key_is_unknown(registered, certificate):
    """The identifier names the issuer's key too: our serial under someone else's AKI is not ours."""
    foreign = cert_id(certificate).split(".")
    foreign[0] = "aYhba4dGQEHhs3uEe6CuLN4ByNQ"
    assert_problem(replacing(registered, ".".join(foreign)), "malformed", 400, "under key identifier 69885b6b")


def test_s5_racing_replacements_create_exactly_one_order(app, home, registered, certificate, session_factory):
    """Two newOrders replacing one certificate at once: one 201, one 409, whichever commits first."""
    racers = []
    for _ in range(2):
        racer = RawClient(app.test_client(), home.base_url, key=registered.key)
        racer.kid = registered.kid
        racers.append(racer)
    bodies = [racer.jws(NEW_ORDER, {"identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}],
                                    "replaces": cert_id(certificate)}) for racer in racers]
    start = threading.Barrier(len(racers))
    statuses: list[int] = []

    def race(racer: RawClient, body) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        statuses.append(racer.post(NEW_ORDER, body=body).status_code)

    threads = [threading.Thread(target=race, args=pair) for pair in zip(racers, bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409]
    with session_factory() as session:
        assert len(session.scalars(select(Order).where(Order.replaces_serial == f"{certificate.serial_number:x}")).all()) == 1


def test_s5_the_database_holds_one_replacing_order_per_certificate(registered, certificate, session_factory):
    """The unique partial index decides races: a second claiming order cannot be stored; an
    invalid or canceled one can (they no longer replace anything)."""
    response = replacing(registered, cert_id(certificate))
    first_id = response.headers["Location"].rsplit("/", 1)[1]
    with session_factory() as session:
        first = session.get(Order, first_id)

        def copy(status: str) -> Order:
            return Order(account_id=first.account_id, status=status, expires=first.expires,
                         identifiers=first.identifiers, scope_der=first.scope_der,
                         replaces_serial=first.replaces_serial, replaces=first.replaces)

        session.add_all([copy("invalid"), copy("canceled")])
        session.commit()
        session.add(copy("ready"))
        with pytest.raises(IntegrityError):
            session.commit()


BASE64URL_TEXT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.", max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(replaces=st.one_of(
    BASE64URL_TEXT,
    st.tuples(st.binary(max_size=70), st.binary(max_size=24)).map(lambda pair: f"{b64url(pair[0])}.{b64url(pair[1])}"),
    st.none() | st.booleans() | st.integers() | st.lists(st.text(max_size=8), max_size=3),
))
def test_s5_any_replaces_naming_no_certificate_is_malformed_never_a_500(registered, session_factory, replaces):
    before = table_counts(session_factory)
    assert_problem(replacing(registered, replaces), "malformed", 400, '"replaces"')
    assert table_counts(session_factory) == before
