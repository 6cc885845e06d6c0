"""``tnca verify passport``: a PASSporT from a call record judged as of a time (RFC 8224, RFC 8225,
RFC 8588; claim constraints RFC 8226 §8 / RFC 9118 §4; validity RFC 5280 §4.1.2.5).

PASSporTs are signed by ``secsipidx`` (an outside STIR/SHAKEN implementation) with the key of a
certificate issued over ACME (certbot's client, real HTTP). The certificate is found from ``x5u``:
from the records when it names this authority's repository (which answers 410 once the
certificate is revoked), fetched with the x5u fetcher when it names any other host.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.auditing import passport
from ca.numbers.claims import ClaimConstraints
from ca.numbers.tnauthlist import TNScope
from ca.tokens.x5u import FetchPolicy, X5UFetcher
from protocol.support import (  # noqa: F401  (fixtures)
    DELEGATED_SCOPE,
    TN_SCOPE,
    Subscriber,
    app,
    authority,
    home,
    new_key,
    port,
    server,
    sign_compact,
)
from tests.admin.support import PageClient, create_people, element, field_error, text_of
from tests.lifecycle.lifecycle_support import FileServer, Secsipidx, issue
from tnca.cli import cli

pytestmark = pytest.mark.e2e

ORIG, DEST = "12025550100", "13035550100"
# The delegation pins the SHAKEN attestation level (RFC 8588 §4 "attest") to "A".
ATTEST_A = ClaimConstraints(permitted_values=(("attest", ("A",)),))


def tnca(home, *args: str):  # noqa: F811
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)


def sign(tool: Secsipidx, key_path: Path, x5u: str, *, orig: str = ORIG, attest: str = "A",
         iat: int | None = None) -> str:
    """An Identity header value signed by ``secsipidx -sign-full`` (RFC 8224 §4.1, RFC 8588); with
    ``iat``, a bare compact PASSporT from ``secsipidx -sign`` with that header and payload."""
    if iat is None:
        args = ["-sign-full", "-orig-tn", orig, "-dest-tn", DEST, "-attest", attest, "-x5u", x5u]
    else:
        header = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u}
        payload = {"attest": attest, "dest": {"tn": [DEST]}, "iat": iat, "orig": {"tn": orig}, "origid": "test"}
        args = ["-sign", "-header", json.dumps(header), "-payload", json.dumps(payload)]
    result = subprocess.run([tool.tool, *args, "-k", str(key_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def verify(home, tmp_path: Path, identity: str, *extra: str):  # noqa: F811
    path = tmp_path / "identity.txt"
    path.write_text(identity)
    result = tnca(home, "verify", "passport", str(path), "--json", *extra)
    return result.exit_code, (json.loads(result.stdout) if result.exit_code in (0, 1) else result.output)


def failed(answer: dict) -> set[str]:
    return {check["name"] for check in answer["checks"] if not check["ok"]}


@pytest.fixture
def secsipidx():
    tool = Secsipidx()
    yield tool
    tool.close()


def test_passport_verifies_at_its_iat_and_each_fault_fails_with_its_own_reason(
    server, authority, home, tmp_path, secsipidx  # noqa: F811
):
    """RFC 8224 §6.2 / RFC 8225 §5, judged as of iat: the good PASSporT passes every step; outside
    the TNAuthList, against the claim constraints, signed by another key and after expiry each
    fail naming the step; after revocation it still verifies at iat and fails --at now."""
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate(DELEGATED_SCOPE, constraints=ATTEST_A)
    issued = issue(subscriber, authority, delegation_id, TN_SCOPE)
    key_path, _, _ = issued.write(tmp_path, "delegate")
    x5u = f"{home.base_url}/cert-repo/{issued.serial}.pem"

    good = sign(secsipidx, key_path, x5u)
    code, answer = verify(home, tmp_path, good)
    assert code == 0, answer
    assert answer["valid"] is True and answer["reasons"] == []
    assert answer["certificate"] == {"serial": issued.serial, "source": "records"}
    assert [c["name"] for c in answer["checks"]] == list(passport.CHECK_NAMES)
    iat = passport.parse(good).claims["iat"]
    assert answer["at"] == dt.datetime.fromtimestamp(iat, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    # A number outside the certificate's TNAuthList (RFC 8226 §9).
    code, answer = verify(home, tmp_path, sign(secsipidx, key_path, x5u, orig="12025550101"))
    assert (code, answer["valid"], failed(answer)) == (1, False, {"tnauthlist"})
    assert "orig 12025550101 is outside the certificate's TNAuthList" in answer["reasons"][0]

    # attest "B" where the certificate permits only "A" (RFC 8226 §8 permittedValues).
    code, answer = verify(home, tmp_path, sign(secsipidx, key_path, x5u, attest="B"))
    assert (code, failed(answer)) == (1, {"claim-constraints"})
    assert "claim 'attest' value 'B' is not one of the permitted values 'A'" in answer["reasons"][0]

    # Signed by another key, naming the same certificate (RFC 8225 §8).
    other_key = tmp_path / "other.key"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(other_key)],
                   check=True, capture_output=True)
    code, answer = verify(home, tmp_path, sign(secsipidx, other_key, x5u))
    assert (code, failed(answer)) == (1, {"signature"})
    assert "signed by another key" in answer["reasons"][0]

    # Signed after the certificate expired (RFC 5280 §4.1.2.5), judged at its iat.
    late = int(issued.certificate.not_valid_after_utc.timestamp()) + 60
    code, answer = verify(home, tmp_path, sign(secsipidx, key_path, x5u, iat=late))
    assert (code, failed(answer)) == (1, {"validity"})
    assert answer["reasons"][0].startswith("validity: expired at")

    # Revoked: the repository forgets the chain (410), the records do not.
    revoked = tnca(home, "revoke", "--serial", issued.serial, "--reason", "keyCompromise", "--execute")
    assert revoked.exit_code == 0, revoked.output
    code, answer = verify(home, tmp_path, good)
    assert (code, answer["valid"]) == (0, True), answer["reasons"]
    assert "revoked later" in next(c["detail"] for c in answer["checks"] if c["name"] == "revocation")
    code, answer = verify(home, tmp_path, good, "--at", "now")
    assert (code, failed(answer)) == (1, {"revocation"})
    assert "revoked at" in answer["reasons"][0] and "keyCompromise" in answer["reasons"][0]

    # Plain text output names the failing step too.
    path = tmp_path / "identity.txt"
    text = tnca(home, "verify", "passport", str(path), "--at", "now")
    assert text.exit_code == 1 and "FAIL revocation" in text.stdout


@pytest.mark.parametrize(("content", "fragment"), [
    ("", "the input is empty"),
    ("not a passport", "not a PASSporT"),
    ("eyJhbGciOiJFUzI1NiJ9..c2ln;info=<https://x.example/c.pem>", "compact form of RFC 8225 §7"),
])
def test_unreadable_input_exits_2_naming_the_problem(home, tmp_path, content, fragment):  # noqa: F811
    path = tmp_path / "bad.txt"
    path.write_text(content)
    result = tnca(home, "verify", "passport", str(path))
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert tnca(home, "verify", "passport", str(tmp_path / "missing.txt")).exit_code == 2
    assert tnca(home, "verify", "passport", str(path), "--at", "yesterday").exit_code == 2


def test_certificate_named_by_another_host_is_fetched_from_x5u(server, authority, home, session_factory, tmp_path,
                                                               secsipidx):  # noqa: F811
    """RFC 8224 §6.2.1: the verifier dereferences x5u; here a loopback file server (the x5u
    fetcher with allow_http_loopback, as the dev stack's [x5u] has it)."""
    subscriber = Subscriber(server)
    subscriber.register()
    issued = issue(subscriber, authority, authority.delegate(DELEGATED_SCOPE), TN_SCOPE)
    published = tmp_path / "x5u"
    published.mkdir()
    key_path, _, _ = issued.write(published, "delegate")
    (published / "chain.pem").write_text(issued.chain_pem)
    files = FileServer(published)
    try:
        identity = sign(secsipidx, key_path, f"{files.url}/chain.pem")
        fetcher = X5UFetcher(FetchPolicy(allow_http_loopback=True, allow_private_addresses=True), clock=home.clock)
        with session_factory() as session:
            verdict = passport.verify(identity, at=None, finder=passport.finder_of_home(home, session, fetcher),
                                      trust=passport.trust_of_home(home), session=session)
            assert verdict.valid, verdict.reasons
            assert verdict.found_in == "x5u" and fetcher.requests_made == 1
            missing = sign(secsipidx, key_path, f"{files.url}/nothing.pem")
            verdict = passport.verify(missing, at=None, finder=passport.finder_of_home(home, session, fetcher),
                                      trust=passport.trust_of_home(home), session=session)
            assert not verdict.valid and [c.name for c in verdict.checks if not c.ok] == ["certificate"]
    finally:
        files.close()


def test_the_api_and_the_auditor_page_give_the_same_verdict_as_the_cli(server, authority, home, app, tmp_path,
                                                                       secsipidx):  # noqa: F811
    """GET /api/v1/passports/verification answers what `tnca verify passport --json` prints; the
    auditor page takes the PASSporT pasted or uploaded and shows each step."""
    subscriber = Subscriber(server)
    subscriber.register()
    issued = issue(subscriber, authority, authority.delegate(DELEGATED_SCOPE), TN_SCOPE)
    key_path, _, _ = issued.write(tmp_path, "delegate")
    identity = sign(secsipidx, key_path, f"{home.base_url}/cert-repo/{issued.serial}.pem", orig="12025550101")
    _, printed = verify(home, tmp_path, identity)

    people = create_people(home)
    auditor = PageClient(app, people["auditor"])
    answer = auditor.get("/api/v1/passports/verification", query_string={"passport": identity})
    assert answer.status_code == 200 and answer.json == printed
    assert answer.json["reasons"][0].startswith("tnauthlist: orig 12025550101 is outside")
    garbage = auditor.get("/api/v1/passports/verification", query_string={"passport": "not a passport"})
    assert garbage.status_code == 200 and garbage.json["valid"] is False
    assert [c["name"] for c in garbage.json["checks"]] == ["passport"]
    missing = auditor.get("/api/v1/passports/verification")
    assert missing.status_code == 400 and missing.json["parameter"] == "passport"
    assert PageClient(app).get("/api/v1/passports/verification", query_string={"passport": identity}).status_code == 401

    pasted = auditor.post("/admin/passport", {"passport": identity, "at": ""})
    assert pasted.status_code == 200
    verdict = element(text_of(pasted), "passport-verdict")
    assert "Not valid" in verdict and "tnauthlist" in verdict and "FAILED" in verdict
    uploaded = auditor.client.post("/admin/passport", content_type="multipart/form-data", data={
        "csrf_token": auditor.csrf_token(), "at": "",
        "upload": (io.BytesIO(identity.encode()), "identity.txt")})
    assert uploaded.status_code == 200 and element(text_of(uploaded), "passport-verdict") == verdict
    refused = auditor.post("/admin/passport", {"passport": "", "at": "yesterday"})
    assert refused.status_code == 400 and field_error(text_of(refused), "at")


def _foreign_pki(crl_url: str):
    """Another authority: a root and a delegate certificate for ORIG with a CRL distribution point."""
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other STI Root")])
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name).public_key(root_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other delegate")]))
            .issuer_name(root_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(TNScope.parse(tns=[ORIG]).to_extension(), critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
            .sign(root_key, hashes.SHA256()))
    return root, root_key, leaf, leaf_key


def _crl(root, root_key, revoked: list[tuple[int, dt.datetime]]) -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(root.subject).last_update(now)
               .next_update(now + dt.timedelta(days=1)))
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(root_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_a_certificate_of_another_authority_is_checked_against_its_crl(home, session_factory, tmp_path):  # noqa: F811
    """RFC 5280 §4.2.1.13 / §5: the CRL at the certificate's distribution point, signed by its
    issuer; an entry dated after the time judged at does not count against the call."""
    published = tmp_path / "other"
    published.mkdir()
    files = FileServer(published)
    try:
        root, root_key, leaf, leaf_key = _foreign_pki(f"{files.url}/other.crl")
        (published / "delegate.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        iat = int(dt.datetime.now(dt.timezone.utc).timestamp())
        token = sign_compact({"alg": "ES256", "typ": "passport", "ppt": "shaken", "x5u": f"{files.url}/delegate.pem"},
                             {"attest": "A", "dest": {"tn": [DEST]}, "iat": iat, "orig": {"tn": ORIG}}, leaf_key)
        fetcher = X5UFetcher(FetchPolicy(allow_http_loopback=True, allow_private_addresses=True), clock=home.clock)

        def revocation(at=None, *, crl=True):
            trust = passport.Trust(roots=(root,), fetch_crl=functools.partial(passport.fetch_crl_http, timeout=5)
                                   if crl else None)
            with session_factory() as session:
                verdict = passport.verify(token, at=at, finder=passport.finder_of_home(home, session, fetcher),
                                          trust=trust, session=session)
            return verdict, next(c for c in verdict.checks if c.name == "revocation")

        (published / "other.crl").write_bytes(_crl(root, root_key, []))
        verdict, check = revocation()
        assert verdict.valid and check.detail.startswith("not on the CRL of"), verdict.reasons
        verdict, check = revocation(crl=False)
        assert not check.ok and "is unknown here" in check.detail

        later = dt.datetime.fromtimestamp(iat, dt.timezone.utc) + dt.timedelta(minutes=1)
        (published / "other.crl").write_bytes(_crl(root, root_key, [(leaf.serial_number, later)]))
        verdict, check = revocation()
        assert verdict.valid and "revoked later" in check.detail
        verdict, check = revocation(later + dt.timedelta(seconds=1))
        assert not verdict.valid and check.detail.startswith("revoked at") and [c.name for c in verdict.checks
                                                                                 if not c.ok] == ["revocation"]
        # A CRL signed by someone else is not believed.
        (published / "other.crl").write_bytes(_crl(root, ec.generate_private_key(ec.SECP256R1()), []))
        verdict, check = revocation()
        assert not check.ok and "is not signed by the certificate's issuer" in check.detail
    finally:
        files.close()
