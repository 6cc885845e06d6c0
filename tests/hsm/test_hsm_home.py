"""An authority whose root, issuing CA and token-authority keys live on a SoftHSM2 token."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from cryptography import x509
from sqlalchemy import select

from acme_server import create_app
from ca.home import Home
from ca.records import models_authority
from tests.e2e.devhome import DevHome, require_tool, run_tool, split_pem_chain
from tnca.cli import cli


@pytest.fixture
def hsm_home(tmp_path, session_factory, database_url, softhsm_token):
    token_uri = softhsm_token.replace(";object={label}", "")
    work = tmp_path / "work"
    work.mkdir()
    dev = DevHome(path=tmp_path / "home", database_url=database_url, work=work)
    # Labels are unique per token and the token lives for the whole session: a per-test token
    # label would need a new token, so each test home uses its own label prefix via a new token.
    result = CliRunner().invoke(cli, ["--home", str(dev.path), "init", "--pkcs11-token", token_uri],
                                env=dev.env(), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    yield dev
    dev.close()


def test_hsm_backed_home_issues_a_certificate_openssl_accepts(hsm_home: DevHome):
    """No CA key file exists; the issuing CA signs through PKCS#11 and the chain verifies."""
    assert not (hsm_home.path / "keys").exists() or not any((hsm_home.path / "keys").iterdir())
    with hsm_home.sessionmaker() as session:
        uris = {row.name: row.signer_uri for row in session.scalars(select(models_authority.Issuer))}
    assert all(uri.startswith("pkcs11:") for uri in uris.values()), uris

    _files, chain = hsm_home.issue("--tn", "12025550123")
    leaf, issuing = split_pem_chain(chain, hsm_home.work)
    result = run_tool([require_tool("openssl"), "verify", "-CAfile", str(hsm_home.root_pem),
                       "-untrusted", str(issuing), str(leaf)])
    assert result.returncode == 0, result.stdout + result.stderr
    certificate = x509.load_pem_x509_certificate(leaf.read_bytes())
    assert certificate.issuer == x509.load_pem_x509_certificate(hsm_home.issuing_pem.read_bytes()).subject


def test_second_init_on_the_same_token_is_refused_and_leaves_nothing(tmp_path, hsm_home, softhsm_token):
    """Key labels are unique per token: a second home cannot silently share or shadow the keys."""
    token_uri = softhsm_token.replace(";object={label}", "")
    other = tmp_path / "other-home"
    result = CliRunner().invoke(cli, ["--home", str(other), "init", "--pkcs11-token", token_uri],
                                env={"TNCA_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"})
    assert result.exit_code == 1
    assert "already has an object labelled 'root'" in result.output
    assert not other.exists()


def test_pkcs11_token_uri_naming_an_object_is_bad_input(tmp_path):
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "init", "--pkcs11-token",
                                      "pkcs11:token=x;object=root"])
    assert result.exit_code == 2
    assert "--pkcs11-token" in result.output


def test_readyz_signs_a_probe_with_the_hsm_keys(hsm_home: DevHome, monkeypatch):
    """/readyz's signing-key checks go through PKCS#11: the issuing CA's and the token
    authority's keys on the token sign, and their certificates verify the signatures."""
    monkeypatch.setenv("TNCA_DATABASE_URL", hsm_home.database_url)
    response = create_app(Home(hsm_home.path)).test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    checks = response.get_json()["checks"]
    assert checks["issuing_key"]["ok"] and checks["token_authority_key"]["ok"]
