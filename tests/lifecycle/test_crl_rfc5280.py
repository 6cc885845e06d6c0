"""CRLs (RFC 5280 §5, ``ca/lifecycle/crl.py``): what they hold, how they are numbered, served and refreshed.

Each CRL is decoded by pyasn1-alt-modules' RFC 5280 module (not the library that built it),
verified by ``openssl crl -verify`` and linted by pkilint's CRL linter.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from pyasn1.codec.der import decoder
from pyasn1_alt_modules import rfc5280
from sqlalchemy import select

from acme_server import create_app
from ca.lifecycle import certificate_revocation, crl
from ca.clock import FixedClock
from ca.home import Home
from ca.errors import PolicyError
from ca.policy import Policy
from ca.lifecycle.reasons import CRLReason
from ca.records.models_authority import CRL, Certificate, Issuer
from tests.e2e.devhome import DevHome, require_tool
from tests.lifecycle.lifecycle_support import crl_url, issue, openssl
from protocol.support import Subscriber, TN_SCOPE, app, authority, client, home, port, server  # noqa: F401

HOUR = dt.timedelta(hours=1)


def serial_of(chain: Path) -> str:
    return format(x509.load_pem_x509_certificates(chain.read_bytes())[0].serial_number, "x")


def revoke(dev_home: DevHome, serial: str, reason: CRLReason | None, clock) -> None:  # type: ignore[no-untyped-def]
    with dev_home.sessionmaker() as session:
        row = session.scalars(select(Certificate).where(Certificate.serial == serial)).one()
        certificate_revocation.revoke_certificate(session, row, reason, actor="test", source="operator", clock=clock)
        session.commit()


def sign(dev_home: DevHome, clock, name: str = "issuing") -> crl.GeneratedCRL:  # type: ignore[no-untyped-def]
    home = Home(dev_home.path)
    try:
        with home.sessionmaker() as session:
            handle = home.issuing_ca() if name == "issuing" else home.load_issuer(name)
            generated = crl.generate_crl(session, handle, clock=clock, policy=home.policy, trigger=crl.TRIGGER_OPERATOR)
            session.commit()
            return generated
    finally:
        home.close()


def test_s5_crl_fields_v2_issuer_times_number_aki_and_entries(dev_home):
    """RFC 5280 §5.1.2 fields and §5.2 / §5.3 extensions, read back by an independent decoder."""
    _, key_chain = dev_home.issue("--tn", "12025550100", name="compromised")
    _, plain_chain = dev_home.issue("--tn", "12025550101", name="plain")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    clock = FixedClock(now)
    revoke(dev_home, serial_of(key_chain), CRLReason.KEY_COMPROMISE, clock)
    revoke(dev_home, serial_of(plain_chain), None, clock)
    first = sign(dev_home, clock)
    second = sign(dev_home, FixedClock(now + dt.timedelta(seconds=5)))
    assert (first.number, second.number) == (1, 2)  # §5.2.3: monotonically increasing

    issuing = x509.load_pem_x509_certificate(dev_home.issuing_pem.read_bytes())
    decoded, rest = decoder.decode(second.der, asn1Spec=rfc5280.CertificateList())
    assert rest == b""
    tbs = decoded["tbsCertList"]
    assert int(tbs["version"]) == 1  # v2 (§5.1.2.1: required when extensions are present)
    assert tbs["signature"] == decoded["signatureAlgorithm"]  # §5.1.1.2
    issuing_tbs, _ = decoder.decode(issuing.tbs_certificate_bytes, asn1Spec=rfc5280.TBSCertificate())
    assert tbs["issuer"] == issuing_tbs["subject"]  # §5.1.2.3: the issuer's subject, as encoded there

    parsed = x509.load_der_x509_crl(second.der)
    assert parsed.is_signature_valid(issuing.public_key())
    assert parsed.last_update_utc == now + dt.timedelta(seconds=5)
    assert parsed.next_update_utc == now + dt.timedelta(seconds=5) + dt.timedelta(hours=24)  # [crl] next_update
    number = parsed.extensions.get_extension_for_class(x509.CRLNumber)
    assert (number.critical, number.value.crl_number) == (False, 2)
    aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert (aki.critical, aki.value.key_identifier) == (False, ski)  # §5.2.1

    entries = {format(entry.serial_number, "x"): entry for entry in parsed}
    compromised = entries[serial_of(key_chain)]
    assert compromised.revocation_date_utc == now
    reason = compromised.extensions.get_extension_for_class(x509.CRLReason)
    assert (reason.critical, reason.value.reason) == (False, x509.ReasonFlags.key_compromise)
    # §5.3.1: "the reason code extension SHOULD be absent instead of using unspecified (0)".
    assert len(entries[serial_of(plain_chain)].extensions) == 0

    with dev_home.sessionmaker() as session:
        rows = session.scalars(select(CRL).order_by(CRL.number)).all()
        assert [(r.number, r.entries, r.trigger) for r in rows] == [(1, 2, "operator"), (2, 2, "operator")]
        assert session.scalar(select(Issuer.crl_number).where(Issuer.name == "issuing")) == 2


def test_s3_3_an_expired_revoked_certificate_stays_listed_until_a_crl_after_its_expiry(dev_home):
    """RFC 5280 §3.3: an entry may go only after it "appears on one regularly scheduled CRL issued
    beyond the revoked certificate's validity period" — kept for [crl] next_update past notAfter."""
    _, chain = dev_home.issue("--tn", "12025550100", "--lifetime", "1h")
    not_after = x509.load_pem_x509_certificates(chain.read_bytes())[0].not_valid_after_utc
    revoke(dev_home, serial_of(chain), CRLReason.SUPERSEDED, FixedClock(not_after - HOUR / 2))
    assert sign(dev_home, FixedClock(not_after + 23 * HOUR)).entries == 1
    assert sign(dev_home, FixedClock(not_after + 25 * HOUR)).entries == 0


def test_openssl_verifies_and_pkilint_finds_nothing_in_the_issuing_crl_and_the_root_arl(dev_home, tmp_path):
    _, chain = dev_home.issue("--tn", "12025550100")
    revoke(dev_home, serial_of(chain), CRLReason.KEY_COMPROMISE, FixedClock(dt.datetime.now(dt.timezone.utc)))
    clock = FixedClock(dt.datetime.now(dt.timezone.utc))
    for name, signer_pem, kind in (("issuing", dev_home.issuing_pem, "CRL"), ("root", dev_home.root_pem, "ARL")):
        generated = sign(dev_home, clock, name)
        path = tmp_path / f"{name}.crl.pem"
        path.write_text(generated.pem)
        verified = openssl("crl", "-in", str(path), "-CAfile", str(signer_pem), "-verify", "-noout")
        assert verified.returncode == 0 and "verify OK" in verified.stdout + verified.stderr, verified.stderr
        for profile in ("PKIX", "BR"):
            linted = subprocess.run([require_tool("lint_crl"), "lint", "-t", kind, "-p", profile, "-s", "NOTICE",
                                     str(path)], capture_output=True, text=True, timeout=60)
            assert (linted.returncode, linted.stdout.strip()) == (0, ""), (name, profile, linted.stdout, linted.stderr)


def test_concurrent_signers_take_distinct_consecutive_crl_numbers(dev_home):
    """§5.2.3: the number comes from one row-locked UPDATE, so racing processes never share one."""
    numbers: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                numbers.append(sign(dev_home, FixedClock(dt.datetime.now(dt.timezone.utc))).number)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(numbers) == list(range(1, 13))


# ------------------------------------------------------------------------------------------
# refresh_due: the schedule the worker runs
# ------------------------------------------------------------------------------------------


def refresh(dev_home: DevHome, at: dt.datetime) -> list[crl.CRLOutcome]:
    home = Home(dev_home.path)
    try:
        with home.sessionmaker() as session:
            return crl.refresh_due(session, home, FixedClock(at))
    finally:
        home.close()


def test_refresh_due_signs_missing_stale_and_outdated_crls_only(dev_home):
    start = dt.datetime.now(dt.timezone.utc)
    outcomes = refresh(dev_home, start)
    assert [(o.issuer, o.why, o.error) for o in outcomes] == [("root", "no CRL yet", None), ("issuing", "no CRL yet", None)]
    assert refresh(dev_home, start + dt.timedelta(minutes=59)) == []
    # A revocation whose own CRL was never signed (the process stopped in between).
    _, chain = dev_home.issue("--tn", "12025550100")
    revoke(dev_home, serial_of(chain), None, FixedClock(start + dt.timedelta(minutes=59, seconds=30)))
    (outdated,) = refresh(dev_home, start + dt.timedelta(minutes=59, seconds=40))
    assert (outdated.issuer, outdated.crl.entries) == ("issuing", 1)
    assert outdated.why == "a revocation is newer than CRL 1"
    # [crl] refresh_interval (1h) after the root's first CRL, it is signed again.
    (stale,) = refresh(dev_home, start + HOUR)
    assert (stale.issuer, stale.crl.number) == ("root", 2)


def test_an_unavailable_signer_fails_its_crl_only_and_is_retried_once_back(dev_home):
    """An offline root (its key not on this host) must not stop the issuing CA's CRL."""
    key = dev_home.path / "keys" / "root.key"
    hidden = dev_home.path / "root.key.offline"
    shutil.move(key, hidden)
    start = dt.datetime.now(dt.timezone.utc)
    outcomes = {o.issuer: o for o in refresh(dev_home, start)}
    assert outcomes["issuing"].crl is not None and outcomes["issuing"].error is None
    assert outcomes["root"].crl is None and "cannot read key file" in outcomes["root"].error
    with dev_home.sessionmaker() as session:
        assert session.scalar(select(Issuer.crl_number).where(Issuer.name == "root")) == 0  # the number rolled back
    shutil.move(hidden, key)
    (retried,) = refresh(dev_home, start + dt.timedelta(seconds=1))
    assert (retried.issuer, retried.crl.number) == ("root", 1)


def test_tnca_crl_generate_reports_the_failed_issuer_and_exits_1(dev_home):
    shutil.move(dev_home.path / "keys" / "root.key", dev_home.path / "root.key.offline")
    result = dev_home.run_subprocess("crl", "generate")
    assert result.returncode == 1
    assert "CRL 1 of issuing: 0 revoked certificate(s)" in result.stdout
    assert "CRL of root NOT signed: cannot read key file" in result.stdout
    assert "not every CRL could be signed" in result.stderr


# ------------------------------------------------------------------------------------------
# Serving at the distribution point
# ------------------------------------------------------------------------------------------


def test_crl_is_served_at_the_distribution_point_as_pkix_crl_cached_at_most_until_next_update(dev_home):
    _, chain = dev_home.issue("--tn", "12025550100")
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    path = crl_url(leaf).removeprefix("http://127.0.0.1:8080")
    assert path == "/crl/issuing.crl"
    now = dt.datetime.now(dt.timezone.utc)
    generated = sign(dev_home, FixedClock(now))
    home = Home(dev_home.path)
    home.clock = FixedClock(now + dt.timedelta(minutes=1))
    web = create_app(home).test_client()
    response = web.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pkix-crl"
    assert response.data == generated.der
    assert response.headers["Cache-Control"] == "public, max-age=300"  # [crl] cache_max_age
    assert response.headers["ETag"] == '"issuing-1"'
    assert web.get(path, headers={"If-None-Match": '"issuing-1"'}).status_code == 304
    assert web.head(path).status_code == 200
    # Near nextUpdate the cache lifetime shrinks to what is left; past it, nothing.
    home.clock = FixedClock(generated.next_update - dt.timedelta(seconds=100))
    assert create_app(home).test_client().get(path).headers["Cache-Control"] == "public, max-age=100"
    home.clock = FixedClock(generated.next_update + dt.timedelta(seconds=1))
    assert create_app(home).test_client().get(path).headers["Cache-Control"] == "public, max-age=0"
    missing = web.get("/crl/nobody.crl")
    assert (missing.status_code, missing.get_data(as_text=True)) == (404, "no CRL for issuer 'nobody'\n")
    home.close()


def test_acme_revoke_cert_publishes_the_new_crl_at_once(server, authority, session_factory):  # noqa: F811
    """RFC 8555 §7.6 with certbot's client; the CRL at the distribution point lists it right after."""
    import requests

    subscriber = Subscriber(server)
    subscriber.register()
    issued = issue(subscriber, authority, authority.delegate(), TN_SCOPE)
    subscriber.acme.revoke(issued.certificate, int(CRLReason.KEY_COMPROMISE))
    response = requests.get(crl_url(issued.certificate), timeout=10)
    assert response.status_code == 200
    (entry,) = list(x509.load_der_x509_crl(response.content))
    assert entry.serial_number == issued.certificate.serial_number
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    with session_factory() as session:
        (row,) = session.scalars(select(CRL)).all()
        assert (row.trigger, row.entries) == ("revocation", 1)


# ------------------------------------------------------------------------------------------
# [crl] policy
# ------------------------------------------------------------------------------------------


def _policy_with(crl_section: str | None) -> Policy:
    text = Policy.default().source.read_text().split("[crl]")[0]
    if crl_section is not None:
        text += "[crl]\n" + crl_section
    import tomllib

    return Policy.from_mapping(tomllib.loads(text), base_dir=Path("/"))


def test_policy_without_a_crl_section_reads_the_defaults():
    policy = _policy_with(None)
    assert (policy.crl.next_update, policy.crl.refresh_interval, policy.crl.cache_max_age) == (
        24 * HOUR, HOUR, dt.timedelta(minutes=5))


@pytest.mark.parametrize(
    "section, field, fragment",
    [
        ('next_update = "1h"\nrefresh_interval = "1h"\n', "[crl] refresh_interval", "must be shorter than [crl] next_update (1h)"),
        ('next_update = "1h"\nrefresh_interval = "10m"\ncache_max_age = "2h"\n', "[crl] cache_max_age", "must not exceed [crl] next_update (1h)"),
        ('next_update = "30s"\n', "[crl] next_update", "below the minimum of 1m"),
        ('next_update = "soon"\n', "[crl] next_update", "expected a duration"),
        ('refresh = "1h"\n', "[crl] refresh", "unknown policy key [crl] refresh"),
    ],
)
def test_policy_crl_section_errors_name_the_key(section, field, fragment):
    with pytest.raises(PolicyError) as refused:
        _policy_with(section)
    assert refused.value.field == field
    assert fragment in refused.value.detail
