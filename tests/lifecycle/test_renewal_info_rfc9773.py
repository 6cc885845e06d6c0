"""ACME Renewal Information (RFC 9773): the renewalInfo resource, as certbot's ``acme`` client
(``ClientV2.renewal_time``) and a plain HTTP GET see it.

The window is the last third of the validity minus its last sixth, and moves to "now" (entirely
in the past) when the certificate or its delegation is revoked, or the delegation ends first.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acme_server.acme.renewal_info import cert_id, parse_cert_id
from acme_server.acme.problems import AcmeProblem
from ca.records import delegations
from ca.lifecycle.reasons import CRLReason
from protocol.support import TN_SCOPE, Subscriber, app, authority, client, home, make_csr, port, server  # noqa: F401
from tests.lifecycle.lifecycle_support import issue

pytestmark = pytest.mark.e2e

# RFC 9773 §4.1's example: AKI keyIdentifier 69:88:5B:…:C8:D4 and serial 00:87:65:43:21.
RFC_AKI = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
RFC_SERIAL = 0x87654321
RFC_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def certificate_with(aki: bytes, serial: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ARI example")])
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_s4_1_cert_id_of_the_rfc_example():
    """RFC 9773 §4.1: base64url(keyIdentifier) "." base64url(serial DER content), unpadded."""
    certificate = certificate_with(RFC_AKI, RFC_SERIAL)
    assert cert_id(certificate) == RFC_CERT_ID
    assert parse_cert_id(RFC_CERT_ID) == (RFC_AKI, RFC_SERIAL)


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF00, 2**127 + 1, 2**159 - 1])
def test_s4_1_cert_id_matches_what_certbots_client_builds(serial):
    certificate = certificate_with(RFC_AKI, serial)
    assert cert_id(certificate) == acme_client._renewal_info_path_component(certificate)
    assert parse_cert_id(cert_id(certificate)) == (RFC_AKI, serial)


def ari_url(server, certificate: x509.Certificate) -> str:  # noqa: F811
    return server.base_url + "/acme/renewal-info/" + cert_id(certificate)


def test_s3_directory_names_the_renewal_info_resource(server):  # noqa: F811
    directory = requests.get(server.directory_url, timeout=10).json()
    assert directory["renewalInfo"] == server.base_url + "/acme/renewal-info"


def test_s4_2_window_is_the_last_third_before_the_last_sixth_with_retry_after(server, authority):  # noqa: F811
    subscriber = Subscriber(server)
    subscriber.register()
    issued = issue(subscriber, authority, authority.delegate(), TN_SCOPE)
    leaf = issued.certificate
    response = requests.get(ari_url(server, leaf), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    window = messages.RenewalInfo.from_json(response.json()).suggested_window
    validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert window.start == (leaf.not_valid_before_utc + validity * 2 / 3).replace(microsecond=0)
    assert window.end == (leaf.not_valid_before_utc + validity * 5 / 6).replace(microsecond=0)
    # §4.3: Retry-After is always there; a 24th of the validity, at least a minute.
    retry_after = int(response.headers["Retry-After"])
    assert retry_after == max(60, int(validity.total_seconds()) // 24)
    assert response.headers["Cache-Control"] == f"public, max-age={retry_after}"
    # certbot's client picks its renewal time inside the window (§4.2's recommended algorithm).
    renew_at, _next_check = subscriber.acme.renewal_time(issued.chain_pem.encode())
    assert window.start <= renew_at.astimezone(dt.timezone.utc) <= window.end


def _assert_immediate(server, subscriber, issued) -> None:  # noqa: F811
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    response = requests.get(ari_url(server, issued.certificate), timeout=10)
    assert response.status_code == 200
    window = messages.RenewalInfo.from_json(response.json()).suggested_window
    after = dt.datetime.now(dt.timezone.utc)
    # Entirely in the past, so §4.2 step 3 applies: "attempt renewal immediately".
    assert window.start < window.end and before - dt.timedelta(seconds=1) <= window.end <= after
    renew_at, _ = subscriber.acme.renewal_time(issued.chain_pem.encode())
    assert renew_at.astimezone(dt.timezone.utc) <= after


def test_s4_2_revoked_delegation_moves_the_window_to_now(server, authority):  # noqa: F811
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate()
    issued = issue(subscriber, authority, delegation_id, TN_SCOPE)
    authority.revoke(delegation_id)
    _assert_immediate(server, subscriber, issued)


def test_s4_2_revoked_certificate_moves_the_window_to_now(server, authority):  # noqa: F811
    subscriber = Subscriber(server)
    subscriber.register()
    issued = issue(subscriber, authority, authority.delegate(), TN_SCOPE)
    subscriber.acme.revoke(issued.certificate, int(CRLReason.KEY_COMPROMISE))
    _assert_immediate(server, subscriber, issued)


def test_s4_2_delegation_ending_before_the_certificate_moves_the_window_to_now(server, authority, home, session_factory):  # noqa: F811
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate()
    issued = issue(subscriber, authority, delegation_id, TN_SCOPE)
    with session_factory() as session:
        delegations.update(session, delegation_id, clock=home.clock, actor="test:operator",
                           not_after=issued.certificate.not_valid_after_utc - dt.timedelta(minutes=10))
        session.commit()
    _assert_immediate(server, subscriber, issued)


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ", 400, "a certID is base64url(AKI keyIdentifier) '.' base64url"),
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ=.AIdlQyE", 400, "without '=' padding"),
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdl+yE", 400, "outside the base64url alphabet"),
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AAE", 400, "not the DER encoding of a serial number"),  # 00 01
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.gA", 400, "not positive"),  # 80: negative
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ." + "AQ" * 22, 400, "RFC 5280 §4.1.2.2 allows at most 20"),
        ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.a.b", 400, "a certID is"),
        (RFC_CERT_ID, 404, "this authority issued no certificate with serial 87654321"),
    ],
    ids=["no-dot", "padding", "alphabet", "non-minimal-serial", "negative-serial", "too-long", "two-dots", "unknown"],
)
def test_s4_1_bad_or_unknown_cert_id_is_a_problem_document(client, path, status, fragment):  # noqa: F811
    response = client.get("/acme/renewal-info/" + path)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = messages.Error.from_json(response.get_json())
    assert problem.typ == "urn:ietf:params:acme:error:malformed"
    assert fragment in problem.detail, problem.detail


def test_s4_1_the_serial_of_a_certificate_under_another_key_identifier_is_unknown(server, authority, client):  # noqa: F811
    subscriber = Subscriber(server)
    subscriber.register()
    leaf = issue(subscriber, authority, authority.delegate(), TN_SCOPE).certificate
    foreign = cert_id(certificate_with(b"\x01" * 20, leaf.serial_number))
    response = client.get("/acme/renewal-info/" + foreign)
    assert response.status_code == 404
    assert client.get("/acme/renewal-info/" + cert_id(leaf)).status_code == 200


def test_parse_cert_id_refuses_with_an_acme_problem():
    with pytest.raises(AcmeProblem) as refused:
        parse_cert_id("")
    assert (refused.value.code, refused.value.status) == ("malformed", 400)


def test_s5_certbot_renewal_names_the_replaced_certificate_once(server, authority):  # noqa: F811
    """RFC 9773 §5 with certbot's own certID encoding: the renewal is issued and reflects
    ``replaces``; a second order replacing the same certificate is refused with 409 (the
    alreadyReplaced problem itself is checked in protocol/rfc9773/test_s5_replaces.py)."""
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate()
    issued = issue(subscriber, authority, delegation_id, TN_SCOPE)
    replaces = acme_client._renewal_info_path_component(issued.certificate)
    renewal = subscriber.new_order(TN_SCOPE.to_identifier_value(), replaces=replaces)
    assert subscriber.acme._post_as_get(renewal.uri).json()["replaces"] == replaces
    subscriber.answer(renewal, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
    csr_pem, _key = make_csr()
    renewed = x509.load_pem_x509_certificates(subscriber.finalize(renewal, csr_pem).fullchain_pem.encode())[0]
    assert renewed.serial_number != issued.certificate.serial_number
    # certbot's client turns every 409 into a ConflictError holding the Location: the renewal.
    with pytest.raises(acme_errors.ConflictError) as refused:
        subscriber.new_order(TN_SCOPE.to_identifier_value(), replaces=replaces)
    assert refused.value.location == renewal.uri

