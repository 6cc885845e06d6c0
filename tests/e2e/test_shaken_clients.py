"""Deployed SHAKEN clients obtain certificates from tnca unchanged (docs/shaken.md).

PeeringHub's ``shaken-cert-manager`` 1.0.3 and its engine ``stir-shaken-toolkit`` 1.0.2 (PyPI,
installed by the test extras of pyproject.toml) run as they ship, as subprocesses, against a
``tnca dev --profile shaken`` stack over loopback, with a login from ``tnca stipa credentials``:

- the manager's ``issue-initial``, ``status --json`` and ``force-renew --skip-confirm`` (its
  PeeringHub profile: empty payloads signed without the ".", an empty newAccount, padded
  standard base64 identifiers, the STI-PA fingerprint, the account key in the CSR);
- the toolkit's RFC-signing generic profile (its Python API, spec'd in docs/shaken.md);
- the clients' own validators accept what was issued (the manager validates every leaf before it
  activates it; the toolkit returns its validation error; ``validate-key-pair``), and so does
  pkilint's RFC 5280 linter.

On a default (RFC-strict) home the same clients are refused with problems that name the switch
to turn on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.devhome import running_dev_stack
from tests.protocol.support import app, free_port, home, port, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MANAGER = BIN / "shaken-cert-manager"
TOOLKIT = BIN / "stir-shaken-toolkit"
TIMEOUT = 60


def account_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The client's account key, made as the manager's instructions say (it will not make one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def manager_config(work: Path, base: str, creds: dict, crl: str) -> Path:
    """The flat YAML config of docs/shaken.md, mode 0600 as the manager demands."""
    (work / "state" / "account").mkdir(parents=True, exist_ok=True)
    (work / "state").chmod(0o700)
    (work / "state" / "account").chmod(0o700)
    account_key(work / "state" / "account" / "account.key")
    config = work / "scm.yaml"
    config.write_text(textwrap.dedent(f"""\
        enabled: true
        peeringhub_environment: staging
        server_id: lab1
        stipa_spc: "1234"
        stipa_user_id: {creds["userId"]}
        stipa_password: {creds["password"]}
        shaken_subject_state: TX
        shaken_subject_locality: Irving
        shaken_subject_organization: Example Telecom
        acme_kid: lab-kid
        acme_base_url_override: {base}/acme/directory
        stipa_base_url_override: {base}/stipa
        stipa_crl_url_override: {crl}
        acme_poll_interval_seconds: 1
        minimum_certificate_lifetime_days: 0
        state_dir: ./state
        """))
    config.chmod(0o600)
    return config


def run_manager(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MANAGER), "--config", "scm.yaml", *args], cwd=work, capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, "HOME": str(work)})


GENERIC_PROFILE = """\
import json, sys
from pathlib import Path
from acme_core import AcmeClient, AcmeKeyManager, AcmeProfile
from stir_shaken_acme import (ShakenCertificateManager, ShakenCertificatePolicy, ShakenSubject, StipaClient,
                              StipaSettings, StirShakenIssuer, TnAuthList)
base, crl, user, password, d = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5])
acme = AcmeClient(base + "/acme/directory", AcmeKeyManager(d / "account.key", "kid-1"), d / "account.json",
                  profile=AcmeProfile())
stipa = StipaClient(StipaSettings(base_url=base + "/stipa", user_id=user, password=password, sp_id="1234",
                                  expected_crl_url=crl))
policy = ShakenCertificatePolicy(subject=ShakenSubject("US", "TX", "Irving", "Example", "SHAKEN 1234"),
                                 tn_auth_list_der=TnAuthList("1234").der(), expected_crl_url=crl,
                                 minimum_certificate_lifetime_days=0)
result = StirShakenIssuer(acme, stipa, ShakenCertificateManager(policy), acme_poll_interval_seconds=1,
                          tn_auth_list_encoding="base64url").issue("1234")
(d / "leaf.pem").write_text(result.leaf_pem)
print(json.dumps({"validation_error": result.validation_error, "identifier": result.tn_auth_list_value}))
"""


def run_generic(work: Path, base: str, crl: str, creds: dict) -> subprocess.CompletedProcess[str]:
    work.mkdir(parents=True, exist_ok=True)
    account_key(work / "account.key")
    script = work / "generic.py"
    script.write_text(GENERIC_PROFILE)
    return subprocess.run([sys.executable, str(script), base, crl, creds.get("userId", "u"),
                           creds.get("password", "p"), str(work)], capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture
def shaken_stack(tmp_path, database_url):
    """``tnca dev --profile shaken`` (it runs ``tnca init --profile shaken``) on a loopback port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TNCA_DATABASE_URL": database_url, "TNCA_BASE_URL": base}
    tnca = [sys.executable, "-m", "tnca", "--home", str(tmp_path / "home")]
    with running_dev_stack([*tnca, "dev", "--profile", "shaken", "--workers", "1"], env=env, cwd=REPO) as banner:
        assert f"  STI-PA API:      {base}/stipa" in banner

        def cli(*args: str) -> dict:
            done = subprocess.run([*tnca, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        yield base, cli


def test_shaken_cert_manager_and_toolkit_obtain_certificates_unchanged(shaken_stack, tmp_path):
    base, cli = shaken_stack
    delegation = cli("delegation", "create", "--delegate", "Example Telecom", "--spc", "1234", "--json")["id"]
    creds = cli("stipa", "credentials", "--delegation", delegation, "--json")
    assert set(creds) == {"userId", "password", "sp_id", "crl"} and creds["sp_id"] == "1234"
    crl = creds["crl"]
    assert crl == f"{base}/stipa/download/v1/crl/issuing.crl"

    work = tmp_path / "manager"
    work.mkdir()
    manager_config(work, base, creds, crl)
    issued = run_manager(work, "issue-initial")
    assert issued.returncode == 0, issued.stdout + issued.stderr
    assert "Issue-initial command completed" in issued.stderr + issued.stdout
    assert not (work / "state" / "failed").exists() or not any((work / "state" / "failed").iterdir())

    status = run_manager(work, "status", "--json")
    report = json.loads(status.stdout)
    fields = report["fields"]
    # Nagios codes: a certificate with less than a day left is CRITICAL (2) to this client however
    # fresh (docs/shaken.md, short-lived certificates); everything it reports is what was issued.
    assert status.returncode == report["code"] in (0, 1, 2), status.stderr
    assert fields["last_attempt_result"] == "success" and fields["tn_auth_list_spc"] == "1234"
    assert fields["certificate_policy_oids"] == ["2.16.840.1.114569.1.1.3"]
    assert fields["crl_distribution_points"] == [crl]
    first_serial = fields["serial_number"]

    renewed = run_manager(work, "force-renew", "--skip-confirm")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    fields = json.loads(run_manager(work, "status", "--json").stdout)["fields"]
    assert fields["last_attempt_result"] == "success" and fields["serial_number"] != first_serial

    # What the client activated: its own key certified, its subject byte for byte.
    leaf = x509.load_pem_x509_certificate((work / "state" / "live" / "current" / "leaf.pem").read_bytes())
    key = serialization.load_pem_private_key((work / "state" / "account" / "account.key").read_bytes(), None)
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert re.fullmatch(r"CN=SHAKEN 1234 \S+,OU=VoIP,O=Example Telecom,L=Irving,ST=TX,C=US", leaf.subject.rfc4514_string())
    checked = subprocess.run([str(TOOLKIT), "validate-key-pair", "--key", "state/account/account.key",
                              "--certificate", "state/live/current/leaf.pem"], cwd=work, capture_output=True,
                             text=True, timeout=TIMEOUT, env={**os.environ, "HOME": str(work)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # And RFC 5280, by a linter that shares nothing with tnca or the clients.
    linted = subprocess.run([str(BIN / "lint_pkix_cert"), "lint", "-s", "NOTICE", "-f", "JSON",
                             "state/live/current/leaf.pem"], cwd=work, capture_output=True, text=True, timeout=TIMEOUT)
    assert json.loads(linted.stdout)["results"] == [], linted.stdout

    generic = run_generic(tmp_path / "generic", base, crl, creds)
    assert generic.returncode == 0, generic.stdout + generic.stderr
    outcome = json.loads(generic.stdout.strip().splitlines()[-1])
    assert outcome == {"validation_error": None, "identifier": "MAigBhYEMTIzNA"}


def test_on_a_default_home_the_clients_are_refused_naming_the_switch(server, tmp_path):
    """RFC-strict by default: the manager's newAccount (signed without the ".") and the toolkit's
    (an empty payload) are refused with problems naming the [compat] switch to turn on."""
    base = server.base_url
    work = tmp_path / "manager"
    work.mkdir()
    creds = {"userId": "u", "password": "p", "sp_id": "1234"}
    manager_config(work, base, creds, f"{base}/crl/issuing.crl")
    refused = run_manager(work, "issue-initial")
    assert refused.returncode != 0
    assert "[compat] empty_payload_signed_without_dot = true" in refused.stdout + refused.stderr

    generic = run_generic(tmp_path / "generic", base, f"{base}/crl/issuing.crl", creds)
    assert generic.returncode != 0
    assert "[compat] new_account_empty_payload = true" in generic.stdout + generic.stderr
