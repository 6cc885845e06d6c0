"""Revoking a delegation end to end: certificates issued over ACME, ``tnca revoke --delegation``,
then what the outside world sees.

After the revocation the delegation's certificates are on the CRL served at their distribution
point, ``openssl verify -crl_check`` refuses them, a ``secsipidx`` verification service with its
CRL check on rejects a PASSporT signed with one, a new order for the same numbers is refused
naming the delegation, and an authority token minted before the revocation no longer validates.
A certificate of another delegation is untouched throughout (the control).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import requests
from acme import messages
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from ca.records import audit
from ca.lifecycle import reasons, revocation
from ca.errors import RevocationError
from ca.records.models_acme import Order
from ca.records.models_authority import Delegation, Revocation
from ca.numbers.tnauthlist import TNScope
from protocol.rfc8739.star_support import auto_renewal, star_valid_order
from protocol.support import (  # noqa: F401  (fixtures)
    DELEGATED_SCOPE,
    RANGE_SCOPE,
    TN_SCOPE,
    Subscriber,
    app,
    authority,
    client,
    home,
    port,
    registered,
    server,
    table_counts,
)
from tests.lifecycle.lifecycle_support import (
    VERIFY_CRL,
    VERIFY_INTERMEDIATES,
    VERIFY_ROOTS,
    VERIFY_TIME,
    FileServer,
    Secsipidx,
    crl_url,
    issue,
    openssl,
    token_jti,
)
from tnca.cli import cli

pytestmark = pytest.mark.e2e

CONTROL_SCOPE = TNScope.parse(ranges=["12025551000:100"])  # inside the issuing CA, outside DELEGATED_SCOPE
CONTROL_TN = TNScope.parse(tns=["12025551050"])


@pytest.fixture
def secsipidx():
    tool = Secsipidx()
    yield tool
    tool.close()


@pytest.fixture
def x5u_dir(tmp_path: Path):
    directory = tmp_path / "x5u"
    directory.mkdir()
    files = FileServer(directory)
    yield directory, files.url
    files.close()


def tnca(home, *args: str):  # noqa: F811
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)


def test_revoking_a_delegation_revokes_its_certificates_everywhere_a_relying_party_looks(
    server, authority, home, session_factory, tmp_path, secsipidx, x5u_dir  # noqa: F811
):
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate(DELEGATED_SCOPE)
    control_delegation = authority.delegate(CONTROL_SCOPE, delegate="Other Enterprise")
    tn_cert = issue(subscriber, authority, delegation_id, TN_SCOPE)
    range_cert = issue(subscriber, authority, delegation_id, RANGE_SCOPE)
    control = issue(subscriber, authority, control_delegation, CONTROL_TN)
    # Minted before the revocation and never used; an order waits for it.
    unused_token = authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE)
    waiting_order = subscriber.new_order(TN_SCOPE.to_identifier_value())

    result = tnca(home, "revoke", "--delegation", delegation_id, "--comment", "customer left", "--execute", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["executed"] is True
    assert set(answer["result"]["revoked"]) == {tn_cert.serial, range_cert.serial}
    assert answer["result"]["delegations"] == [delegation_id]
    assert [t["jti"] for t in answer["plan"]["unused_tokens"]] == [token_jti(unused_token)]
    (crl_outcome,) = answer["result"]["crls"]
    assert (crl_outcome["issuer"], crl_outcome["entries"], crl_outcome["error"]) == ("issuing", 2, None)
    with session_factory() as session:
        delegation = session.get(Delegation, delegation_id)
        assert (delegation.status, delegation.revocation_reason) == ("revoked", "customer left")
        reasons = {r.certificate.serial: (r.reason_code, r.source) for r in session.scalars(select(Revocation))}
        assert reasons == {tn_cert.serial: (9, "delegation"), range_cert.serial: (9, "delegation")}
        audit.verify(session)

    # 1. The CRL at the distribution point the certificates carry (RFC 5280 §4.2.1.13).
    url = crl_url(tn_cert.certificate)
    assert url == home.base_url + "/crl/issuing.crl"
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(response.content)
    listed = {format(entry.serial_number, "x"): entry for entry in crl}
    assert set(listed) == {tn_cert.serial, range_cert.serial}
    for entry in listed.values():
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.privilege_withdrawn
    crl_pem = tmp_path / "issuing-crl.pem"
    crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    # 2. openssl: the CRL's signature, then each certificate with -crl_check.
    root_pem, issuing_pem = home.path / "certs" / "root.pem", home.path / "certs" / "issuing.pem"
    checked = openssl("crl", "-in", str(crl_pem), "-CAfile", str(issuing_pem), "-verify", "-noout")
    assert checked.returncode == 0 and "verify OK" in checked.stdout + checked.stderr, checked.stderr
    key_tn, leaf_tn, chain_tn = tn_cert.write(tmp_path, "tn")
    _, leaf_range, _ = range_cert.write(tmp_path, "range")
    key_control, leaf_control, chain_control = control.write(tmp_path, "control")
    for leaf in (leaf_tn, leaf_range):
        verdict = openssl("verify", "-crl_check", "-CRLfile", str(crl_pem), "-CAfile", str(root_pem),
                          "-untrusted", str(issuing_pem), str(leaf))
        assert verdict.returncode != 0
        assert "certificate revoked" in verdict.stdout + verdict.stderr
    verdict = openssl("verify", "-crl_check", "-CRLfile", str(crl_pem), "-CAfile", str(root_pem),
                      "-untrusted", str(issuing_pem), str(leaf_control))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    # The whole path, with the root's CRL too (the issuing CA's certificate points at it).
    assert tnca(home, "crl", "generate", "--issuer", "root").exit_code == 0
    root_crl = tmp_path / "root-crl.pem"
    fetched = requests.get(crl_url(x509.load_pem_x509_certificate(issuing_pem.read_bytes())), timeout=10)
    assert fetched.status_code == 200
    root_crl.write_bytes(x509.load_der_x509_crl(fetched.content).public_bytes(serialization.Encoding.PEM))
    verdict = openssl("verify", "-crl_check_all", "-CRLfile", str(crl_pem), "-CRLfile", str(root_crl),
                      "-CAfile", str(root_pem), "-untrusted", str(issuing_pem), str(leaf_control))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr

    # 3. secsipidx with its CRL check: a PASSporT signed with a revoked key fails; the control
    # passes, and the revoked one passes too with the CRL check off (the CRL is what refuses it).
    directory, base = x5u_dir
    (directory / "tn.pem").write_text(tn_cert.chain_pem)
    (directory / "control.pem").write_text(control.chain_pem)
    revoked_identity = secsipidx.sign(key_tn, f"{base}/tn.pem", "12025550100", "13035550100")
    control_identity = secsipidx.sign(key_control, f"{base}/control.pem", "12025551050", "13035550100")
    chain_checks = VERIFY_TIME | VERIFY_ROOTS | VERIFY_INTERMEDIATES
    with_crl = secsipidx.verifier(mode=chain_checks | VERIFY_CRL, ca_file=root_pem, ca_inter=issuing_pem, crl_file=crl_pem)
    without_crl = secsipidx.verifier(mode=chain_checks, ca_file=root_pem, ca_inter=issuing_pem)
    refused = secsipidx.check(with_crl, revoked_identity)
    assert refused.status_code != 200 and "FAILED" in refused.text, refused.text
    assert secsipidx.check(with_crl, control_identity).text.strip() == "OK"
    assert secsipidx.check(without_crl, revoked_identity).text.strip() == "OK"

    # 4. A new order for the same numbers: unauthorized, naming the delegation; nothing stored.
    before = table_counts(session_factory)
    with pytest.raises(messages.Error) as refusal:
        subscriber.new_order(TN_SCOPE.to_identifier_value())
    assert refusal.value.typ == "urn:ietf:params:acme:error:unauthorized"
    assert f"delegation {delegation_id} was revoked at" in refusal.value.detail
    assert table_counts(session_factory) == before

    # 5. The unused token, presented on the order placed before: the challenge fails naming it.
    challenge = subscriber.answer(waiting_order, unused_token)
    assert challenge.body.status == messages.STATUS_INVALID
    assert challenge.body.error.typ == "urn:ietf:params:acme:error:unauthorized"
    assert f"minted under delegation {delegation_id}, which has been revoked" in challenge.body.error.detail


def test_plan_is_refused_when_a_certificate_was_issued_under_the_delegation_after_it_was_made(
    server, authority, home, session_factory  # noqa: F811
):
    """What the operator saw is what happens: a plan made before another issuance is stale."""
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate(DELEGATED_SCOPE)
    issue(subscriber, authority, delegation_id, TN_SCOPE)
    with session_factory() as session:
        plan = revocation.plan_revoke_delegation(session, delegation_id, reason=reasons.WITHDRAWN, clock=home.clock)
    issue(subscriber, authority, delegation_id, RANGE_SCOPE)
    before = table_counts(session_factory)
    with session_factory() as session, pytest.raises(RevocationError) as refused:
        revocation.execute(session, plan, actor="test:operator", clock=home.clock, home=home)
    assert refused.value.field == "plan"
    assert "1 more certificates" in refused.value.detail and "plan again" in refused.value.detail
    assert table_counts(session_factory) == before


def test_star_order_under_a_revoked_delegation_is_canceled_with_the_reason(
    registered, authority, home, session_factory  # noqa: F811
):
    """RFC 8739 §3.1.2: after cancellation the server "MUST NOT issue any additional certificates"."""
    order = star_valid_order(registered, authority, auto_renewal())
    with session_factory() as session:
        row = session.scalars(select(Order).where(Order.auto_renewal.is_not(None))).one()
        (authz,) = row.authorizations
        delegation_id = authz.delegation_id
    result = tnca(home, "revoke", "--delegation", delegation_id, "--execute", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["result"]["canceled_orders"] == [row.id]
    with session_factory() as session:
        canceled = session.get(Order, row.id)
        assert canceled.status == "canceled"
        assert canceled.next_renewal_at is None
        assert canceled.error["type"] == "urn:ietf:params:acme:error:autoRenewalCanceled"
        assert f"delegation {delegation_id} was revoked" in canceled.error["detail"]
    assert order.url.endswith(row.id)
    assert dt.datetime.now(dt.timezone.utc) >= canceled.expires
