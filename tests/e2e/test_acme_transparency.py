"""ACME issuance with certificate transparency: the policy requires an SCT, a real log runs
(``tnca ctlog serve``), and the certificate certbot's client downloads embeds a verified SCT
(RFC 6962 §3.3); with the log down, finalize fails closed and the order becomes invalid."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from acme import messages
from cryptography import x509
from sqlalchemy import select

from acme_server import create_app
from ca.home import Home
from ca.issuing.transparency import SCT_LIST_OID, verify_embedded_scts
from protocol.support import TN_SCOPE, Subscriber, authority, home, make_csr, port, serving, table_counts  # noqa: F401
from ca.records.models_authority import Certificate
from tests.ct.ct_helpers import RunningLog, postgres_database, start_log, stop_log, tampering_proxy  # noqa: F401

pytestmark = pytest.mark.e2e


@pytest.fixture
def ct_log(home, tmp_path) -> Iterator[RunningLog]:
    """A log that accepts the home's root, on its own database."""
    (tmp_path / "ct").mkdir()
    postgres = postgres_database("acme")
    running = start_log(tmp_path / "ct", "acme-ct", home.path / "certs" / "root.pem",
                        database_url=postgres[0] if postgres else None)
    yield running
    stop_log(running)
    if postgres:
        postgres[1]()


@pytest.fixture
def ct_home(home, ct_log) -> Home:
    """The home with the policy asking for one SCT from ``ct_log``."""
    entry = f'{{ name = "{ct_log.name}", url = "{ct_log.url}", public_key = "{ct_log.public_key_file}" }}'
    text = home.policy_path.read_text()
    text = text.replace("\nlogs = []\n", f"\nlogs = [{entry}]\n").replace("\nrequired_scts = 0\n", "\nrequired_scts = 1\n")
    text = text.replace('\nsubmission_deadline = "10s"\n', '\nsubmission_deadline = "3s"\n')
    home.policy_path.write_text(text)
    ct_home = Home(home.path)
    yield ct_home
    ct_home.close()


def test_acme_certificate_embeds_a_verified_sct(ct_home, ct_log, authority, port):
    with serving(create_app(ct_home), ct_home, port) as server:
        subscriber = Subscriber(server)
        subscriber.register()
        delegation_id = authority.delegate()
        orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
        subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
        csr_pem, _ = make_csr()
        finished = subscriber.finalize(orderr, csr_pem)
    leaf, issuing = x509.load_pem_x509_certificates(finished.fullchain_pem.encode())
    leaf.extensions.get_extension_for_oid(SCT_LIST_OID)
    (sct,) = verify_embedded_scts(leaf, issuing, [ct_log.client()], required=1)
    assert sct.log_id.hex() == ct_log.log_id_hex


def test_acme_finalize_fails_closed_when_the_log_is_down(ct_home, ct_log, authority, port, session_factory):
    with serving(create_app(ct_home), ct_home, port) as server:
        subscriber = Subscriber(server)
        subscriber.register()
        delegation_id = authority.delegate()
        orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
        subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
        stop_log(ct_log)
        csr_pem, _ = make_csr()
        with pytest.raises(messages.Error) as raised:
            subscriber.finalize(orderr, csr_pem)
        assert raised.value.code == "serverInternal" and "incident" in raised.value.detail
        body = subscriber.poll(orderr)
    assert body.status == messages.STATUS_INVALID
    assert body.error.code == "serverInternal"


def _flip_last_signature_byte(body: dict) -> dict:
    signature = bytearray(base64.b64decode(body["signature"]))
    signature[-1] ^= 0x01
    return {**body, "signature": base64.b64encode(bytes(signature)).decode()}


def test_acme_finalize_fails_closed_when_the_log_answers_a_bad_sct(home, ct_log, tampering_proxy, authority, port,
                                                                   session_factory):
    """RFC 6962 §3.2: an SCT whose signature does not verify is no SCT. Through ACME: the order is
    invalid with serverInternal (an incident id, as for a log that is down), no certificate is
    signed, and the failed row keeps the reason naming the log for the operator."""
    proxy = tampering_proxy(ct_log.url, _flip_last_signature_byte)
    entry = f'{{ name = "{ct_log.name}", url = "{proxy}", public_key = "{ct_log.public_key_file}" }}'
    text = home.policy_path.read_text()
    home.policy_path.write_text(text.replace("\nlogs = []\n", f"\nlogs = [{entry}]\n")
                                .replace("\nrequired_scts = 0\n", "\nrequired_scts = 1\n"))
    bad_log_home = Home(home.path)
    try:
        with serving(create_app(bad_log_home), bad_log_home, port) as server:
            subscriber = Subscriber(server)
            subscriber.register()
            delegation_id = authority.delegate()
            orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
            subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
            csr_pem, _ = make_csr()
            with pytest.raises(messages.Error) as raised:
                subscriber.finalize(orderr, csr_pem)
            assert raised.value.code == "serverInternal" and "incident" in raised.value.detail
            assert subscriber.poll(orderr).status == messages.STATUS_INVALID
    finally:
        bad_log_home.close()
    with session_factory() as session:
        (row,) = session.scalars(select(Certificate)).all()
    assert row.stage == "failed" and row.der is None
    assert f"{ct_log.name} ({proxy}): SCT signature does not verify over the precertificate entry" in row.error
