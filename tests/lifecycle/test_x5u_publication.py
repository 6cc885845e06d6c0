"""Publication of issued chains for PASSporT ``x5u`` (RFC 9448 §7): a stable plain-GET URL named
by the valid order, cacheable no longer than the certificate lives, gone once it is revoked."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from cryptography import x509

from acme_server import create_app
from ca.clock import FixedClock
from ca.home import Home
from ca.lifecycle.reasons import CRLReason
from protocol.support import TN_SCOPE, Subscriber, app, authority, client, home, port, server  # noqa: F401
from tests.lifecycle.lifecycle_support import issue

pytestmark = pytest.mark.e2e

PEM_CHAIN = "application/pem-certificate-chain"


def order_x5u(subscriber: Subscriber, order_url: str) -> str:
    return subscriber.acme._post_as_get(order_url).json()["x5u"]


def test_rfc9448_s7_valid_order_names_a_plain_get_chain_cached_no_longer_than_the_certificate_lives(
    server, authority, home  # noqa: F811
):
    subscriber = Subscriber(server)
    subscriber.register()
    issued = issue(subscriber, authority, authority.delegate(), TN_SCOPE)
    x5u = order_x5u(subscriber, issued.order_url)
    assert x5u == f"{home.base_url}/cert-repo/{issued.serial}.pem"
    response = requests.get(x5u, timeout=10)  # no JWS: a verification service just fetches it
    assert response.status_code == 200
    assert response.headers["Content-Type"] == PEM_CHAIN
    chain = x509.load_pem_x509_certificates(response.content)
    issuing = x509.load_pem_x509_certificate((home.path / "certs" / "issuing.pem").read_bytes())
    assert chain == [issued.certificate, issuing]  # RFC 9060 §7: end-entity first, no root
    max_age = int(response.headers["Cache-Control"].removeprefix("public, max-age="))
    remaining = issued.certificate.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    assert 0 < max_age <= remaining.total_seconds()


def test_expired_chain_may_not_be_cached_and_a_revoked_one_is_gone(server, authority, home):  # noqa: F811
    subscriber = Subscriber(server)
    subscriber.register()
    issued = issue(subscriber, authority, authority.delegate(), TN_SCOPE)
    path = f"/cert-repo/{issued.serial}.pem"

    later = Home(home.path)
    later.clock = FixedClock(issued.certificate.not_valid_after_utc + dt.timedelta(seconds=1))
    expired = create_app(later).test_client().get(path)
    assert (expired.status_code, expired.headers["Cache-Control"]) == (200, "public, max-age=0")
    later.close()

    subscriber.acme.revoke(issued.certificate, int(CRLReason.KEY_COMPROMISE))
    gone = requests.get(home.base_url + path, timeout=10)
    assert gone.status_code == 410
    assert gone.text.startswith(f"certificate {issued.serial} was revoked at ")
    assert int(gone.headers["Cache-Control"].removeprefix("public, max-age=")) <= 86400
    assert requests.get(home.base_url + "/cert-repo/abcdef.pem", timeout=10).status_code == 404
