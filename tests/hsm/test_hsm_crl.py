"""CRLs signed through PKCS#11: a revocation on an HSM-backed home publishes a CRL the issuing
CA's key signed on the SoftHSM2 token, and openssl accepts it (``ca/lifecycle/crl.py`` via ``assemble_crl``)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from cryptography import x509

from tests.e2e.devhome import DevHome, require_tool, run_tool, split_pem_chain
from tnca.cli import cli


@pytest.fixture
def hsm_home(tmp_path, session_factory, database_url, softhsm_token):
    token_uri = softhsm_token.replace(";object={label}", "")
    work = tmp_path / "work"
    work.mkdir()
    dev = DevHome(path=tmp_path / "home", database_url=database_url, work=work)
    result = CliRunner().invoke(cli, ["--home", str(dev.path), "init", "--pkcs11-token", token_uri],
                                env=dev.env(), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    yield dev
    dev.close()


def test_revocation_on_an_hsm_home_publishes_a_crl_signed_on_the_token(hsm_home: DevHome):
    _files, chain = hsm_home.issue("--tn", "12025550123")
    leaf_path, _issuing = split_pem_chain(chain, hsm_home.work)
    serial = format(x509.load_pem_x509_certificate(leaf_path.read_bytes()).serial_number, "x")
    revoked = hsm_home.run("revoke", "--serial", serial, "--reason", "keyCompromise", "--execute")
    assert revoked.exit_code == 0, revoked.output
    assert "CRL 1 of issuing: 1 revoked certificate(s)" in revoked.stdout

    shown = hsm_home.run("crl", "show", "--pem")
    assert shown.exit_code == 0, shown.output
    crl_path = hsm_home.work / "issuing.crl.pem"
    crl_path.write_text(shown.stdout)
    issuing = x509.load_pem_x509_certificate(hsm_home.issuing_pem.read_bytes())
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert crl.is_signature_valid(issuing.public_key())
    assert [entry.serial_number for entry in crl] == [int(serial, 16)]
    openssl = require_tool("openssl")
    verified = run_tool([openssl, "crl", "-in", str(crl_path), "-CAfile", str(hsm_home.issuing_pem), "-verify", "-noout"])
    assert verified.returncode == 0, verified.stderr
    refused = run_tool([openssl, "verify", "-crl_check", "-CRLfile", str(crl_path), "-CAfile", str(hsm_home.root_pem),
                        "-untrusted", str(hsm_home.issuing_pem), str(leaf_path)])
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
