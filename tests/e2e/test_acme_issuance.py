"""ACME over real HTTP with certbot's ``acme`` client: account → order → tkauth-01 → finalize →
download → revoke, for TN, range and SPC scopes, both identifier encodings and both response
field names; key change, deactivation and the orders list; errors as a client sees them.

The server is the real app on a loopback port (werkzeug in a thread; ``test_acme_gunicorn.py``
runs ``tnca serve``). The delegations and tokens are made with the operator's ``ca`` functions.
"""

from __future__ import annotations

import datetime as dt
import json

import josepy as jose
import pytest
from acme import client as acme_client
from acme import errors as acme_errors
from acme import jws as acme_jws
from acme import messages
from cryptography import x509
from sqlalchemy import select

from ca.records.models_authority import Certificate, Revocation
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST
from protocol.support import (  # noqa: F401  (fixtures)
    RANGE_SCOPE,
    SPC_SCOPE,
    TN_SCOPE,
    Subscriber,
    app,
    authority,
    home,
    make_csr,
    new_key,
    padded_base64,
    port,
    server,
    subscriber,
    table_counts,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "scope, encode, field",
    [
        (TN_SCOPE, TNScope.to_identifier_value, "tkauth"),
        (TN_SCOPE, padded_base64, "atc"),
        (RANGE_SCOPE, TNScope.to_identifier_value, "atc"),
        (RANGE_SCOPE, padded_base64, "tkauth"),
        (SPC_SCOPE, TNScope.to_identifier_value, "tkauth"),
        (SPC_SCOPE, padded_base64, "atc"),
    ],
    ids=["TN-base64url-tkauth", "TN-padded-atc", "range-base64url-atc", "range-padded-tkauth", "SPC-base64url-tkauth",
         "SPC-padded-atc"],
)
def test_issuance_flow_over_http_with_certbots_client(subscriber, authority, session_factory, scope, encode, field):
    subscriber.register(email="noc@enterprise.example")
    delegation_id = authority.delegate()
    orderr = subscriber.new_order(encode(scope))
    assert orderr.body.status == messages.STATUS_PENDING
    token = authority.token(delegation_id, subscriber.public_jwk, scope)
    challr = subscriber.answer(orderr, token, field=field)
    assert challr.body.status == messages.STATUS_VALID

    csr_pem, key = make_csr()
    finished = subscriber.finalize(orderr, csr_pem)
    assert finished.body.status == messages.STATUS_VALID
    chain = x509.load_pem_x509_certificates(finished.fullchain_pem.encode())
    leaf = chain[0]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert TNScope.from_der(leaf.extensions.get_extension_for_oid(OID_TN_AUTH_LIST).value.value) == scope
    leaf.verify_directly_issued_by(chain[1])

    subscriber.acme.revoke(leaf, 4)
    with session_factory() as session:
        record = session.scalars(select(Certificate)).one()
        assert session.scalars(select(Revocation)).one().certificate_id == record.id
    with pytest.raises(messages.Error) as raised:
        subscriber.acme.revoke(leaf, 4)
    assert raised.value.code == "alreadyRevoked"


def test_revocation_signed_with_the_certificate_key(subscriber, server, authority, session_factory):
    """RFC 8555 §7.6: a client holding only the certificate's key (no account) can revoke it."""
    subscriber.register()
    delegation_id = authority.delegate()
    orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
    csr_pem, key = make_csr()
    leaf = x509.load_pem_x509_certificates(subscriber.finalize(orderr, csr_pem).fullchain_pem.encode())[0]

    net = acme_client.ClientNetwork(jose.JWKEC(key=key), alg=jose.ES256, user_agent="tnca-tests")
    acme_client.ClientV2(subscriber.directory, net).revoke(leaf, 1)
    with session_factory() as session:
        assert session.scalars(select(Revocation.reason_code)).one() == 1


def test_key_change_then_the_new_key_runs_the_account(subscriber, authority):
    """RFC 8555 §7.3.5 over HTTP: orders made before the change stay usable with the new key."""
    regr = subscriber.register()
    delegation_id = authority.delegate()
    orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    new_private = new_key()
    new_jwk = jose.JWKEC(key=new_private)
    inner = acme_jws.JWS.sign(
        json.dumps({"account": regr.uri, "oldKey": subscriber.public_jwk.to_partial_json()}).encode(),
        key=new_jwk, alg=jose.ES256, nonce=None, url=subscriber.directory["keyChange"],
    )
    response = subscriber.acme._post(subscriber.directory["keyChange"], inner)
    assert response.status_code == 200
    subscriber.net.key = new_jwk
    # The token must be bound to the key the account has now (RFC 9448 §6 step 8).
    subscriber.answer(orderr, authority.token(delegation_id, new_jwk.public_key(), TN_SCOPE))
    csr_pem, _ = make_csr()
    assert subscriber.finalize(orderr, csr_pem).body.status == messages.STATUS_VALID


def test_orders_list_then_deactivation(subscriber):
    """RFC 8555 §7.1.2.1 orders list; §7.3.6 deactivation, after which the account is refused."""
    regr = subscriber.register()
    urls = {subscriber.new_order(TN_SCOPE.to_identifier_value()).uri for _ in range(2)}
    account = subscriber.acme._post_as_get(regr.uri).json()
    assert set(subscriber.acme._post_as_get(account["orders"]).json()["orders"]) == urls

    deactivated = subscriber.acme.deactivate_registration(regr)
    assert deactivated.body.status == "deactivated"  # certbot keeps Registration.status a string
    with pytest.raises(messages.Error) as raised:
        subscriber.new_order(TN_SCOPE.to_identifier_value())
    assert (raised.value.code, "deactivated" in raised.value.detail) == ("unauthorized", True)


def test_existing_account_is_a_conflict_for_certbots_client(server):
    """RFC 8555 §7.3.1: 200 + Location for a known key; certbot reports it as ConflictError."""
    key = new_key()
    first = Subscriber(server, key)
    regr = first.register()
    with pytest.raises(acme_errors.ConflictError) as raised:
        Subscriber(server, key).register()
    assert raised.value.location == regr.uri


def test_failed_token_is_reported_in_the_challenge_error(subscriber, authority, server, session_factory):
    """RFC 8555 §7.5.1: the answer is 200 with the challenge; its error says why it failed."""
    subscriber.register()
    delegation_id = authority.delegate()
    orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    token = authority.token(delegation_id, subscriber.public_jwk, RANGE_SCOPE)
    before = table_counts(session_factory)
    challr = subscriber.answer(orderr, token)
    assert challr.body.status == messages.STATUS_INVALID
    assert challr.body.error.code == "unauthorized" and "'atc.tkvalue'" in challr.body.error.detail
    assert table_counts(session_factory) == before
    with pytest.raises(acme_errors.ValidationError):
        subscriber.acme.poll_authorizations(orderr, dt.datetime.now() + dt.timedelta(seconds=5))
