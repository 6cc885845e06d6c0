"""The issuance pipeline (ca.issuing.issuance.issue) with the home's CT client (Home.transparency, built
from the policy's ``[ct]`` section) against two running logs that accept the home's root: the
delegate certificate comes out with both SCTs embedded (RFC 6962 §3.3), or, with a log down and
two required, issuance fails closed naming that log (STI-CT §3.1).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from ca.records import models_authority
from ca.home import Home
from ca.errors import TransparencyError
from ca.issuing.issuance import IssuanceRequest, issue
from ca.numbers.tnauthlist import TNScope
from ca.issuing.transparency import CTSubmitter, verify_embedded_scts
from ct_helpers import stop_log, wait_for_tree_size
from tests.helpers import row_counts
from tnca.cli import cli


@pytest.fixture
def home_with_two_logs(tmp_path: Path, session_factory, database_url, log_factory, monkeypatch):
    path = tmp_path / "authority"
    result = CliRunner().invoke(cli, ["--home", str(path), "init"], env={"TNCA_DATABASE_URL": database_url},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    dev1 = log_factory("dev1", roots=path / "certs" / "root.pem")
    dev2 = log_factory("dev2", roots=path / "certs" / "root.pem")
    policy = (path / "policy.toml").read_text()
    logs = ", ".join(f'{{ name = "{log.name}", url = "{log.url}", public_key = "{log.public_key_file}" }}' for log in (dev1, dev2))
    policy = policy.replace("\nlogs = []\n", f"\nlogs = [{logs}]\n").replace("\nrequired_scts = 0\n", "\nrequired_scts = 2\n")
    policy = policy.replace('\nsubmission_deadline = "10s"\n', '\nsubmission_deadline = "2s"\n')
    (path / "policy.toml").write_text(policy)
    monkeypatch.setenv("TNCA_DATABASE_URL", database_url)
    home = Home(path)
    yield home, dev1, dev2
    home.close()


def request() -> IssuanceRequest:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))  # the subject comes from the record (docs/identity.md)
           .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    return IssuanceRequest(csr=csr, scope=TNScope.parse(tns=["12025550123"]), actor="ct-test")


def test_s3_3_issued_delegate_certificate_embeds_verified_scts_from_both_logs(home_with_two_logs):
    home, dev1, dev2 = home_with_two_logs
    transparency = home.transparency()
    assert isinstance(transparency, CTSubmitter) and transparency.required == 2
    issuer = home.issuing_ca()
    with home.sessionmaker() as session:
        issued = issue(session, request(), issuer=issuer, policy=home.policy, clock=home.clock, transparency=transparency)
        session.commit()
        record = session.scalars(select(models_authority.Certificate).where(models_authority.Certificate.id == issued.record_id)).one()
        precertificate_der = record.precertificate_der
        recorded_scts = record.scts
    assert len(verify_embedded_scts(issued.certificate, issuer.certificate, transparency.logs, required=2)) == 2
    assert {entry["log_url"] for entry in recorded_scts} == {dev1.url, dev2.url}
    for log in (dev1, dev2):
        wait_for_tree_size(log, 1)
        [entry] = log.get("get-entries", start=0, end=0).json()["entries"]
        extra = base64.b64decode(entry["extra_data"])
        assert extra[3:3 + int.from_bytes(extra[:3], "big")] == precertificate_der
    assert issued.certificate.public_bytes(serialization.Encoding.DER) != precertificate_der


def test_issuance_fails_closed_naming_the_log_that_is_down(home_with_two_logs):
    home, dev1, dev2 = home_with_two_logs
    stop_log(dev2)
    issuer = home.issuing_ca()
    with home.sessionmaker() as session:
        before = row_counts(session)
    with home.sessionmaker() as session:
        with pytest.raises(TransparencyError) as failure:
            issue(session, request(), issuer=issuer, policy=home.policy, clock=home.clock, transparency=home.transparency())
        session.rollback()
    assert f"dev2 ({dev2.url}): cannot reach the log: connection refused" in failure.value.detail
    with home.sessionmaker() as session:
        assert row_counts(session) == before
