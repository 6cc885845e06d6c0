"""Offline issuance end to end: ``tnca init`` → ``tnca cert issue`` → outside tools.

The certificates are checked by tools that share no code with tnca: openssl (chain building),
pyasn1-alt-modules' RFC 8226 module (TNAuthList decoding), secsipidx (PASSporT verification with
x5u chain checking, as a SHAKEN verification service does) and pkilint (RFC 5280 lints).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder
from pyasn1_alt_modules import rfc8226
from sqlalchemy import select

from ca.config import Settings
from ca.home import Home
from ca.policy import Policy
from ca.records import audit, models_audit, models_authority
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST
from tests.e2e.devhome import DevHome, require_tool, run_tool, secsipidx_service, split_pem_chain

pytestmark = pytest.mark.e2e


# ----------------------------------------------------------------------------------------------
# tnca init
# ----------------------------------------------------------------------------------------------


def test_init_creates_the_dev_pki_private_keys_issuers_and_an_audit_event(dev_home: DevHome):
    for name in ("root", "issuing", "token-authority"):
        key = dev_home.path / "keys" / f"{name}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, f"{key} must be readable by its owner only"
    root = x509.load_pem_x509_certificate(dev_home.root_pem.read_bytes())
    issuing = x509.load_pem_x509_certificate(dev_home.issuing_pem.read_bytes())
    token_authority = x509.load_pem_x509_certificate(dev_home.token_authority_pem.read_bytes())
    root.verify_directly_issued_by(root)
    issuing.verify_directly_issued_by(root)
    token_authority.verify_directly_issued_by(root)
    # The root carries no TNAuthList; the issuing CA carries the operator's (default dev) scope.
    assert TNScope.from_certificate(root) is None
    assert TNScope.from_certificate(issuing) == TNScope.parse(ranges=["12025550000:10000"], spcs=["1234"])
    assert TNScope.from_certificate(token_authority) is None
    usage = token_authority.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert token_authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    with dev_home.sessionmaker() as session:
        issuers = {row.name: row for row in session.scalars(select(models_authority.Issuer))}
        assert set(issuers) == {"root", "issuing"}
        assert issuers["issuing"].parent_id == issuers["root"].id
        assert issuers["issuing"].scope_der == TNScope.from_certificate(issuing).to_der()
        (event,) = session.scalars(select(models_audit.AuditEvent)).all()
        assert event.action == "authority.init"
        assert audit.verify(session) == 1
    config = (dev_home.path / "tnca.toml").read_text()
    assert 'base_url = "http://127.0.0.1:8080"' in config
    assert dev_home.database_url in config
    settings = Settings.load(dev_home.path / "tnca.toml")  # strict: what init writes must load
    assert settings.server.base_url == "http://127.0.0.1:8080"
    assert settings.database.url == dev_home.database_url
    assert settings.token_authority.signer == "file:keys/token-authority.key"
    assert (dev_home.path / "policy.toml").is_file()


def test_home_hands_out_the_issuing_ca_and_token_authority_the_other_parts_use(dev_home: DevHome):
    home = dev_home.home
    issuer = home.issuing_ca()
    assert issuer is home.issuing_ca(), "the handle is loaded once and cached"
    assert issuer.scope == TNScope.parse(ranges=["12025550000:10000"], spcs=["1234"])
    assert issuer.certificate.public_key() == issuer.signer.public_key
    assert issuer.chain == (issuer.certificate,)
    assert issuer.crl_url == "http://127.0.0.1:8080/crl/issuing.crl"
    token_authority = home.token_authority()
    assert token_authority.x5u == "http://127.0.0.1:8080/token-authority.pem"
    assert token_authority.certificate.public_key() == token_authority.signer.public_key
    assert home.base_url == "http://127.0.0.1:8080"
    assert home.policy.lifetimes.end_entity.total_seconds() == 24 * 3600


def test_init_with_an_operator_scope_and_base_url(tmp_path: Path, session_factory, database_url):
    home = DevHome(path=tmp_path / "h", database_url=database_url, work=tmp_path)
    result = home.run("init", "--tn", "12025550100", "--range", "13035550000:100", "--spc", "709J",
                      "--base-url", "https://ca.example.net/")
    assert result.exit_code == 0, result.stderr
    issuing = x509.load_pem_x509_certificate(home.issuing_pem.read_bytes())
    assert TNScope.from_certificate(issuing) == TNScope.parse(tns=["12025550100"], ranges=["13035550000:100"],
                                                              spcs=["709J"])
    points = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == "https://ca.example.net/crl/root.crl"
    assert home.home.token_authority().x5u == "https://ca.example.net/token-authority.pem"
    # What init prints is the x5u the minted tokens carry, not the default URL's.
    assert "(x5u https://ca.example.net/token-authority.pem)" in result.stdout, result.stdout
    home.close()


def test_init_refuses_to_overwrite_an_existing_home(dev_home: DevHome):
    before = dev_home.row_counts()
    root_before = dev_home.root_pem.read_bytes()
    result = dev_home.run_subprocess("init")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {dev_home.path / 'tnca.toml'} already exists; refusing to overwrite an existing home"]
    assert dev_home.root_pem.read_bytes() == root_before
    assert dev_home.row_counts() == before


def test_init_refuses_a_database_that_already_has_issuers_and_leaves_no_files(dev_home: DevHome, tmp_path: Path):
    other = DevHome(path=tmp_path / "second", database_url=dev_home.database_url, work=tmp_path)
    before = dev_home.row_counts()
    result = other.run("init")
    assert result.exit_code == 1
    assert "already has 2 issuer(s)" in result.stderr
    assert not other.path.exists(), "a failed init removes what it created"
    assert dev_home.row_counts() == before


# ----------------------------------------------------------------------------------------------
# tnca cert issue → openssl, pyasn1-alt-modules
# ----------------------------------------------------------------------------------------------


def test_issued_delegate_certificate_passes_openssl_verify_against_the_dev_root(dev_home: DevHome):
    openssl = require_tool("openssl")
    _, chain = dev_home.issue("--range", "12025550100:100", "--lifetime", "1h")
    leaf, issuing = split_pem_chain(chain, dev_home.work)
    assert issuing.read_bytes() == dev_home.issuing_pem.read_bytes(), "the chain is EE then the issuing CA, no root"
    result = run_tool([openssl, "verify", "-CAfile", str(dev_home.root_pem), "-untrusted", str(dev_home.issuing_pem),
                       str(leaf)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{leaf}: OK"


def test_openssl_rejects_the_certificate_under_another_root(dev_home: DevHome, tmp_path: Path, database_url):
    """The positive openssl check is meaningful: the same chain fails against a stranger's root."""
    openssl = require_tool("openssl")
    _, chain = dev_home.issue("--tn", "12025550123")
    leaf, _ = split_pem_chain(chain, dev_home.work)
    stranger = tmp_path / "stranger.pem"
    result = run_tool([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                       "-keyout", str(tmp_path / "stranger.key"), "-subj", "/CN=stranger root", "-days", "1",
                       "-out", str(stranger)])
    assert result.returncode == 0, result.stderr
    result = run_tool([openssl, "verify", "-CAfile", str(stranger), "-untrusted", str(dev_home.issuing_pem), str(leaf)])
    assert result.returncode != 0


def _rfc8226_entries(extension_value: bytes) -> list[tuple[str, object]]:
    decoded, rest = decoder.decode(extension_value, asn1Spec=rfc8226.TNAuthorizationList())
    assert rest == b""
    entries = []
    for entry in decoded:
        kind = entry.getName()
        value = entry.getComponent()
        if kind == "range":
            entries.append(("range", (str(value["start"]), int(value["count"]))))
        else:
            entries.append((kind, str(value)))
    return entries


def test_tnauthlist_decodes_with_pyasn1_alt_modules_rfc8226_to_exactly_the_requested_scope(dev_home: DevHome):
    """RFC 8226 §9 as compiled by an independent ASN.1 module (EXPLICIT tags A0/A1/A2)."""
    _, chain = dev_home.issue("--tn", "12025550100", "--range", "12025551000:500", "--spc", "1234")
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    extension = leaf.extensions.get_extension_for_oid(OID_TN_AUTH_LIST)
    assert extension.critical is False
    assert _rfc8226_entries(extension.value.value) == [
        ("one", "12025550100"),
        ("range", ("12025551000", 500)),
        ("spc", "1234"),
    ]


def test_claim_constraints_file_becomes_a_noncritical_extension_and_cert_show_decodes_it(dev_home: DevHome):
    constraints = dev_home.work / "constraints.json"
    constraints.write_text(json.dumps({"mustInclude": ["rcd"], "permittedValues": {"rcd": ['{"nam":"Example"}']}}))
    _, chain = dev_home.issue("--tn", "12025550100", "--constraints", str(constraints))
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    assert leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.27")).critical is False
    shown = dev_home.run("cert", "show", "--json", str(chain))
    assert shown.exit_code == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info[0]["tn_auth_list"]["entries"] == [{"tn": "12025550100"}]
    assert info[0]["claim_constraints"]["kind"] == "jwt"
    assert info[0]["claim_constraints"]["mustInclude"] == ["rcd"]
    assert info[0]["ca"] is False and info[1]["ca"] is True
    assert info[1]["tn_auth_list"]["describe"] == "range 12025550000+10000, SPC 1234"
    text = dev_home.run("cert", "show", str(chain)).stdout
    assert "TNAuthList:  TN 12025550100" in text
    assert "JWTClaimConstraints: " in text


def test_delegate_ca_certificate_and_an_end_entity_it_signs_pass_openssl(dev_home: DevHome):
    """RFC 9060 §4: a delegate CA (cA=TRUE, its TNAuthList inside the issuing CA's) can sign on."""
    openssl = require_tool("openssl")
    files, chain = dev_home.issue("--ca", "--range", "12025550100:100", name="delegate-ca")
    delegate_ca, _ = split_pem_chain(chain, dev_home.work)
    # The delegate signs an end-entity certificate with its own key, using openssl.
    ext = dev_home.work / "ee.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    ee = dev_home.make_csr("grandchild")
    leaf = dev_home.work / "grandchild.pem"
    result = run_tool([openssl, "x509", "-req", "-in", str(ee.csr_path), "-CA", str(delegate_ca), "-CAkey",
                       str(files.key_path), "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(leaf)])
    assert result.returncode == 0, result.stderr
    untrusted = dev_home.work / "untrusted.pem"
    untrusted.write_bytes(delegate_ca.read_bytes() + dev_home.issuing_pem.read_bytes())
    result = run_tool([openssl, "verify", "-CAfile", str(dev_home.root_pem), "-untrusted", str(untrusted), str(leaf)])
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------------------------
# secsipidx: a PASSporT signed with the delegate key, verified with x5u chain checking
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def x5u_server(dev_home: DevHome) -> Iterator[str]:
    """A loopback HTTP server publishing dev_home.work (where the PEM chains are written)."""
    handler = functools.partial(_QuietHandler, directory=str(dev_home.work))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".pem": "application/pem-certificate-chain"}

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


@pytest.fixture
def secsipidx_checker(dev_home: DevHome) -> Iterator:
    """Start a secsipidx verification service for given trust files; yields check(identity)->bool."""
    with contextlib.ExitStack() as services:
        yield lambda ca_file, ca_inter: services.enter_context(secsipidx_service(ca_file, ca_inter))


def _sign_passport(key_path: Path, x5u: str, orig: str, dest: str) -> str:
    result = run_tool([require_tool("secsipidx"), "-sign-full", "-orig-tn", orig, "-dest-tn", dest, "-attest", "A",
                       "-x5u", x5u, "-k", str(key_path)])
    assert result.returncode == 0, result.stdout + result.stderr
    identity = result.stdout.strip()
    assert identity.count(".") >= 2 and ";info=<" in identity
    return identity


def test_passport_signed_with_the_delegate_key_verifies_with_secsipidx_chain_checking(
    dev_home: DevHome, x5u_server: str, secsipidx_checker
):
    """RFC 9060 §7: the x5u serves the chain EE → issuing CA; the verifier builds it to the root."""
    files, chain = dev_home.issue("--range", "12025550100:100", "--lifetime", "30m")
    identity = _sign_passport(files.key_path, f"{x5u_server}/{chain.name}", "12025550150", "13035550100")
    check = secsipidx_checker(dev_home.root_pem, dev_home.issuing_pem)
    response = check(identity)
    assert response.status_code == 200, response.text
    assert response.text.strip() == "OK"


def test_secsipidx_refuses_the_same_passport_under_another_trust_anchor(
    dev_home: DevHome, x5u_server: str, secsipidx_checker, tmp_path: Path
):
    """Chain checking is really on: a root that did not sign the chain makes verification fail."""
    files, chain = dev_home.issue("--tn", "12025550150")
    identity = _sign_passport(files.key_path, f"{x5u_server}/{chain.name}", "12025550150", "13035550100")
    stranger = tmp_path / "stranger.pem"
    result = run_tool([require_tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", str(tmp_path / "s.key"), "-subj", "/CN=stranger", "-days", "1",
                       "-out", str(stranger)])
    assert result.returncode == 0
    response = secsipidx_checker(stranger, dev_home.issuing_pem)(identity)
    assert response.status_code != 200
    assert "FAILED" in response.text


# ----------------------------------------------------------------------------------------------
# pkilint
# ----------------------------------------------------------------------------------------------


def _pkilint(tool: str, *files: Path) -> list[dict]:
    result = run_tool([require_tool(tool), "lint", "-s", "NOTICE", "-f", "JSON", *map(str, files)])
    findings = json.loads(result.stdout)["results"]
    assert result.returncode == (1 if findings else 0), result.stderr
    return findings


def test_pkilint_finds_nothing_at_notice_or_above_in_root_issuing_token_authority_and_delegate_certificates(
    dev_home: DevHome,
):
    """RFC 5280 lints (pkilint's PKIX certificate linter) on every certificate the authority makes."""
    _, ee_chain = dev_home.issue("--range", "12025550100:100", name="ee")
    _, ca_chain = dev_home.issue("--ca", "--tn", "12025550200", name="dca")
    ee, _ = split_pem_chain(ee_chain, dev_home.work)
    dca, _ = split_pem_chain(ca_chain, dev_home.work)
    for certificate in (dev_home.root_pem, dev_home.issuing_pem, dev_home.token_authority_pem, ee, dca):
        assert _pkilint("lint_pkix_cert", certificate) == [], certificate.name
    for issuer, subject in ((dev_home.root_pem, dev_home.issuing_pem), (dev_home.root_pem, dev_home.token_authority_pem),
                            (dev_home.issuing_pem, ee), (dev_home.issuing_pem, dca)):
        assert _pkilint("lint_pkix_signer_signee_cert_chain", issuer, subject) == [], (issuer.name, subject.name)


# ----------------------------------------------------------------------------------------------
# CLI errors: exit 2, one line naming the field, nothing written
# ----------------------------------------------------------------------------------------------


def _bad_signature_csr(dev_home: DevHome) -> Path:
    """A well-formed CSR with one bit of its subject flipped: it parses, its signature fails."""
    files = dev_home.make_csr("tampered", subject="CN=Example Enterprise")
    der = bytearray(x509.load_pem_x509_csr(files.csr_path.read_bytes()).public_bytes(serialization.Encoding.DER))
    index = der.find(b"Example Enterprise")
    der[index] ^= 0x01
    path = dev_home.work / "tampered.der"
    path.write_bytes(bytes(der))
    return path


def _version_5_csr(dev_home: DevHome) -> Path:
    """A CSR whose version is 5 (PKCS#10 knows only 0): cryptography's InvalidVersion is not a
    ValueError, and once escaped as a traceback."""
    files = dev_home.make_csr("version5")
    der = bytearray(x509.load_pem_x509_csr(files.csr_path.read_bytes()).public_bytes(serialization.Encoding.DER))
    der[der.index(b"\x02\x01\x00") + 2] = 5
    path = dev_home.work / "version5.der"
    path.write_bytes(bytes(der))
    return path


@pytest.mark.parametrize(
    "case, expected_prefix",
    [
        ("scope-outside-issuing-ca", "Error: --tn/--range/--spc: requested scope is outside the issuing CA's TNAuthList: range 13035550000+100"),
        ("malformed-der-csr", "Error: --csr: "),
        ("bad-csr-signature", "Error: --csr: CSR signature does not verify"),
        ("csr-version-5", "Error: --csr: "),
        ("unparseable-tn", "Error: --tn: TN '+1 202 555 0100'"),
        ("unparseable-range", "Error: --range: "),
        ("lifetime-below-minimum", "Error: --lifetime: lifetime 1m is below the policy minimum of 5m"),
        ("malformed-der-certificate", "Error: FILE: "),
        ("unknown-delegation", "Error: --delegation: delegation nope does not exist"),
        ("constraints-on-delegate-ca", "Error: --constraints: claim constraints go on end-entity certificates only"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_naming_the_field_and_writes_nothing(
    dev_home: DevHome, case: str, expected_prefix: str
):
    good = dev_home.make_csr("good").csr_path
    garbage = dev_home.work / "garbage.der"
    garbage.write_bytes(b"\x30\x82\x01\x00" + b"\x00" * 40)
    constraints = dev_home.work / "constraints.json"
    constraints.write_text('{"mustInclude": ["rcd"]}')
    args = {
        "scope-outside-issuing-ca": ["cert", "issue", "--csr", str(good), "--range", "13035550000:100"],
        "malformed-der-csr": ["cert", "issue", "--csr", str(garbage), "--tn", "12025550100"],
        "bad-csr-signature": ["cert", "issue", "--csr", str(_bad_signature_csr(dev_home)), "--tn", "12025550100"],
        "csr-version-5": ["cert", "issue", "--csr", str(_version_5_csr(dev_home)), "--tn", "12025550100"],
        "unparseable-tn": ["cert", "issue", "--csr", str(good), "--tn", "+1 202 555 0100"],
        "unparseable-range": ["cert", "issue", "--csr", str(good), "--range", "12025550000-100"],
        "lifetime-below-minimum": ["cert", "issue", "--csr", str(good), "--tn", "12025550100", "--lifetime", "1m"],
        "malformed-der-certificate": ["cert", "show", str(garbage)],
        "unknown-delegation": ["cert", "issue", "--csr", str(good), "--tn", "12025550100", "--delegation", "nope"],
        "constraints-on-delegate-ca": ["cert", "issue", "--csr", str(good), "--tn", "12025550100", "--ca",
                                       "--constraints", str(constraints)],
    }[case]
    before = dev_home.row_counts()
    result = dev_home.run_subprocess(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected_prefix), lines[0]
    assert result.stdout == ""
    assert dev_home.row_counts() == before


def test_cli_issue_writes_one_certificate_and_one_audit_event(dev_home: DevHome):
    before = dev_home.row_counts()
    dev_home.issue("--spc", "1234")
    after = dev_home.row_counts()
    assert after["certificates"] == before["certificates"] + 1
    assert after["certificate_scope_entries"] == before["certificate_scope_entries"] + 1
    assert after["audit_events"] == before["audit_events"] + 1
    with dev_home.sessionmaker() as session:
        assert audit.verify(session) == 2


def test_init_profile_shaken_writes_the_shaken_policy_switches_and_api(tmp_path: Path, session_factory, database_url):
    """tnca init --profile shaken (docs/shaken.md): the SHAKEN profile and policy OID, CRL
    distribution points under /stipa, every [compat] switch and the STI-PA API on; the default
    profile stays RFC-strict."""
    home = DevHome(path=tmp_path / "h", database_url=database_url, work=tmp_path)
    result = home.run("init", "--profile", "shaken", "--base-url", "https://sti-ca.example.net")
    assert result.exit_code == 0, result.stderr
    assert "STI-PA token API at https://sti-ca.example.net/stipa" in result.stdout
    settled = Home(home.path)
    certificates = settled.policy.certificates
    assert certificates.profile == "shaken"
    assert [oid.dotted_string for oid in certificates.policy_oids] == ["2.16.840.1.114569.1.1.3"]
    assert settled.issuing_ca().crl_url == "https://sti-ca.example.net/stipa/download/v1/crl/issuing.crl"
    compat = settled.token_compat
    assert compat.fingerprint_spki_sha256 and compat.csr_key_may_equal_account_key
    assert compat.empty_payload_signed_without_dot and compat.new_account_empty_payload
    assert settled.config.stipa.enabled
    settled.close()
    home.close()
    # What a default init copies and writes: the RFC-strict profile, no switch, no STI-PA API.
    defaults = Settings.load(tmp_path / "none.toml")
    assert Policy.default().certificates.profile == "stir" and not defaults.stipa.enabled and not defaults.compat
