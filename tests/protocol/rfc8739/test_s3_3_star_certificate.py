"""RFC 8739 §3.3 and §3.4: fetching the current certificate of a STAR order at its
``star-certificate`` URL, by POST-as-GET and by negotiated unauthenticated GET."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from werkzeug.http import parse_date

from acme_server import create_app
from ca.clock import FixedClock
from protocol.rfc8739.star_support import (
    HOUR,
    Worker,
    auto_renewal,
    issued_certificates,
    order_row,
    star_valid_order,
    utcnow,
)
from protocol.support import RawClient, assert_problem, raw_ready_order, table_counts

PEM_CHAIN = "application/pem-certificate-chain"


def chain_of(response) -> list[x509.Certificate]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == PEM_CHAIN
    return x509.load_pem_x509_certificates(response.get_data())


def test_s3_3_post_as_get_serves_the_chain_with_cert_not_before_and_after(registered, authority, session_factory):
    """"The Server SHOULD include the "Cert-Not-Before" and "Cert-Not-After" HTTP header fields in
    the response. When they exist, they MUST be equal to the respective fields inside the
    end-entity certificate. Their format is "HTTP-date"."""
    order = star_valid_order(registered, authority, auto_renewal())
    response = registered.post(order.body["star-certificate"], None)
    leaf, issuing = chain_of(response)
    (record,) = issued_certificates(session_factory, order.url.rsplit("/", 1)[1])
    assert leaf.serial_number == int(record.serial, 16)
    assert parse_date(response.headers["Cert-Not-Before"]) == leaf.not_valid_before_utc
    assert parse_date(response.headers["Cert-Not-After"]) == leaf.not_valid_after_utc
    assert response.headers["Cert-Not-After"].endswith(" GMT")  # IMF-fixdate (RFC 7231 §7.1.1.1)
    assert response.headers["Cache-Control"] == "no-store"  # an authenticated ACME response


def test_s3_4_negotiated_unauthenticated_get_serves_the_chain(registered, authority, client):
    """§3.4: with allow-certificate-get granted, "the client can simply issue a GET to the
    star-certificate resource without authenticating itself"; §4.3: caches must find the response
    stale no later than the certificate expires."""
    order = star_valid_order(registered, authority, auto_renewal(**{"allow-certificate-get": True}))
    assert order.body["auto-renewal"]["allow-certificate-get"] is True
    path = order.body["star-certificate"].removeprefix(registered.base_url)
    response = client.get(path)
    (leaf, _issuing) = chain_of(response)
    assert parse_date(response.headers["Cert-Not-After"]) == leaf.not_valid_after_utc
    max_age = int(response.headers["Cache-Control"].removeprefix("public, max-age="))
    # Fresh until the next certificate is published (half a lifetime before this one ends).
    assert 0 < max_age <= (leaf.not_valid_after_utc - utcnow() - HOUR / 2).total_seconds() + 2
    assert client.head(path).status_code == 200
    # A cache would hand one single-use nonce to every client: a cacheable response carries none.
    assert "Replay-Nonce" not in response.headers


def test_s3_4_unauthenticated_get_without_negotiation_is_unauthorized(registered, authority, client, session_factory):
    order = star_valid_order(registered, authority, auto_renewal())
    before = table_counts(session_factory)
    response = client.get(order.body["star-certificate"].removeprefix(registered.base_url))
    assert_problem(response, "unauthorized", 403, "did not negotiate unauthenticated GET")
    assert table_counts(session_factory) == before


def test_s3_3_star_certificate_of_another_account_is_unauthorized(registered, authority, client, home):
    order = star_valid_order(registered, authority, auto_renewal())
    other = RawClient(client, home.base_url)
    other.register({})
    assert_problem(other.post(order.body["star-certificate"], None), "unauthorized", 403, "belongs to another account")


def test_s3_3_unknown_and_ordinary_orders_have_no_star_certificate(registered, authority, client, home):
    assert_problem(client.get("/acme/star-cert/nonexistent"), "malformed", 404, "no order 'nonexistent'")
    ordinary = raw_ready_order(registered, authority)
    star_url = home.base_url + "/acme/star-cert/" + ordinary.url.rsplit("/", 1)[1]
    assert_problem(registered.post(star_url, None), "malformed", 404, "is not an auto-renewal order")


def test_s3_3_the_url_serves_the_newest_certificate_after_a_renewal(registered, authority, home, session_factory):
    """§2.2: the CA "re-issues the certificate using the same CSR (and therefore the same
    identifier and public key) before the previous one expires, and publishes it to the URL"."""
    order = star_valid_order(registered, authority, auto_renewal())
    first, _ = chain_of(registered.post(order.body["star-certificate"], None))
    row = order_row(session_factory, order.url)
    worker = Worker(home, session_factory, FixedClock(row.next_renewal_at))
    assert worker.tick() == 1
    second, _ = chain_of(registered.post(order.body["star-certificate"], None))
    assert second.serial_number != first.serial_number
    assert second.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        first.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert second.subject == first.subject
    assert second.not_valid_before_utc == row.next_renewal_at  # published at its notBefore (§3.5)
    # The order's x5u follows the current certificate (RFC 9448 §7).
    assert registered.post(order.url, None).get_json()["x5u"].endswith(f"/cert-repo/{second.serial_number:x}.pem")


def test_s3_3_after_the_end_date_star_certificate_is_auto_renewal_expired(home, authority, session_factory):
    """"Immediately after the Order expires, the server MUST respond with 403 (Forbidden) to any
    requests to the star-certificate endpoint. The response SHOULD provide additional information
    using a problem document ... autoRenewalExpired. Note that the Order resource's state remains
    "valid"."""
    clock = FixedClock(utcnow())
    home.clock = clock
    raw = RawClient(create_app(home).test_client(), home.base_url)
    raw.register({})
    end = utcnow() + 2 * HOUR
    order = star_valid_order(raw, authority, auto_renewal(end=end))
    clock.advance(end - clock.now())
    assert_problem(raw.post(order.body["star-certificate"], None), "autoRenewalExpired", 403, "ended at")
    assert raw.post(order.url, None).get_json()["status"] == "valid"
    clock.advance(-dt.timedelta(seconds=1))
    assert raw.post(order.body["star-certificate"], None).status_code == 200
