"""Domain-bound delegate certificates (draft-wendt-stir-tn-domain-binding-00; VESPER -07+):
one ``dns`` identifier beside the TNAuthList one, proven with http-01 or dns-01 (RFC 8555 §8.3,
§8.4) in the same order, against a real DNS server (dnslib) and a real HTTP server on loopback.

certbot's ``acme`` client computes the key authorizations (an implementation independent of
ours), the live server validates, a CT log (``tnca ctlog serve``) is required for issuance. The
two validations are one condition: when the domain fails, the order is invalid, nothing is
issued and the log holds nothing; when both pass, the certificate carries exactly one dNSName,
passes every lint of its profile (ca/issuing/profiles.py) and pkilint's RFC 5280 lints.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from acme import challenges, messages
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from ca.home import Home
from ca.issuing import profiles
from ca.issuing.transparency import verify_embedded_scts
from ca.records import vetting
from ca.records.models_authority import Certificate, Delegation
from identity.domain_support import Content, Zone, dns_server, http_server
from protocol.support import TN_SCOPE, new_key, table_counts
from tests.ct.ct_helpers import start_log, stop_log
from tests.e2e.devhome import require_tool, run_tool
from tnca.acme_client import ReplacingNewOrder, TKAuth01, TKAuth01Response, tnauthlist_identifier
from tnca.cli import cli

DOMAIN = "exampleretail.test"
LEI = "5493001KJTIIGC8Y1R12"
DEADLINE_SECONDS = 2


@pytest.fixture
def zone() -> Zone:
    zone = Zone()
    zone.add(DOMAIN, "A", "127.0.0.1")
    return zone


@pytest.fixture
def content() -> Content:
    return Content()


@pytest.fixture
def stack(tmp_path, session_factory, database_url, port, zone, content):
    """A home whose [domains] point at the loopback DNS and HTTP servers, requiring one SCT from a
    running log that accepts the home's root."""
    with dns_server(zone) as dns_port, http_server(content) as http_port:
        path = tmp_path / "home"
        result = CliRunner().invoke(cli, ["--home", str(path), "init", "--base-url", f"http://127.0.0.1:{port}",
                                          "--database-url", database_url], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        log = start_log(tmp_path / "logs", "dev1", path / "certs" / "root.pem")
        try:
            policy = (path / "policy.toml").read_text()
            policy = policy.replace("\nlogs = []\n", f'\nlogs = [{{ name = "dev1", url = "{log.url}", '
                                                     f'public_key = "{log.public_key_file}" }}]\n')
            (path / "policy.toml").write_text(policy.replace("\nrequired_scts = 0\n", "\nrequired_scts = 1\n"))
            with (path / "tnca.toml").open("a") as config:
                config.write(f'\n[domains]\nresolver = "127.0.0.1:{dns_port}"\nhttp_port = {http_port}\n'
                             f'deadline = "{DEADLINE_SECONDS}s"\nallow_private_addresses = true\n')
            home = Home(path)
            yield SimpleNamespace(home=home, log=log, http_port=http_port)
            home.close()
        finally:
            stop_log(log)


@pytest.fixture
def home(stack) -> Home:
    return stack.home


def tree_size(log) -> int:
    return log.get("get-sth").json()["tree_size"]


def vesper_delegation(authority, home, session_factory) -> str:
    delegation_id = authority.delegate()
    with session_factory() as session:
        session.get(Delegation, delegation_id).profile = "vesper"
        session.commit()
    evidence = ["sha256:" + "ab" * 32 + ",https://records.example/kyb/4711.pdf"]
    with session_factory() as session:
        vetting.record_vetting(session, delegation_id, legal_name="Example Retail LLC", country="US", lei=LEI,
                               assurance="high", vetted_by="KYB desk", vetted_at=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
                               evidence=evidence, clock=home.clock, actor="test:operator")
        vetting.add_right_to_use(session, delegation_id, scope=TN_SCOPE, source="number assignment record",
                                 verified_by="numbering desk", verified_at=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
                                 evidence=evidence, clock=home.clock, actor="test:operator")
        session.commit()
    return delegation_id


def mixed_order(subscriber, domain: str = DOMAIN) -> messages.OrderResource:
    """newOrder with the TNAuthList identifier and one dns identifier (certbot's ClientV2 knows only dns)."""
    if subscriber.account is None:
        subscriber.register(terms_of_service_agreed=True)
    order = ReplacingNewOrder(identifiers=(tnauthlist_identifier(TN_SCOPE.to_identifier_value()),
                                           messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=domain)))
    response = subscriber.acme._post(subscriber.directory["newOrder"], order)
    body = messages.Order.from_json(response.json())
    authorizations = [subscriber.acme._authzr_from_response(subscriber.acme._post_as_get(url), uri=url)
                      for url in body.authorizations]
    return messages.OrderResource(body=body, uri=response.headers["Location"], authorizations=authorizations)


def authz_of(orderr, identifier_type: str):
    (authzr,) = [a for a in orderr.authorizations if a.body.identifier.typ.name == identifier_type]
    return authzr


def answer_token(subscriber, authority, orderr, delegation_id: str) -> None:
    authzr = authz_of(orderr, "TNAuthList")
    (challb,) = [c for c in authzr.body.challenges if isinstance(c.chall, TKAuth01)]
    subscriber.acme.answer_challenge(challb, TKAuth01Response(
        tkauth=authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE)))


def answer_domain(subscriber, orderr, kind, zone: Zone, content: Content, *, publish=True, body=None, status=200,
                  delay=0.0) -> messages.ChallengeBody:
    """Publish the key authorization (http-01) or its digest (dns-01) as certbot computes it, then answer."""
    authzr = authz_of(orderr, "dns")
    (challb,) = [c for c in authzr.body.challenges if isinstance(c.chall, kind)]
    response, validation = challb.chall.response_and_validation(subscriber.jwk)
    if publish and kind is challenges.HTTP01:
        content.paths[challb.chall.path] = (status, validation.encode() if body is None else body, delay)
    elif publish:
        zone.add(f"_acme-challenge.{DOMAIN}", "TXT", validation if body is None else body.decode())
    subscriber.acme.answer_challenge(challb, response)
    return challb


def csr_pem(key, *, domain: str | None = DOMAIN) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if domain is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _pkilint(tool: str, *files: Path) -> list[dict]:
    result = run_tool([require_tool(tool), "lint", "-s", "NOTICE", "-f", "JSON", *map(str, files)])
    findings = json.loads(result.stdout)["results"]
    assert result.returncode == (1 if findings else 0), result.stderr
    return findings


@pytest.mark.parametrize("kind", [challenges.DNS01, challenges.HTTP01], ids=["dns-01", "http-01"])
def test_vesper_certificate_with_a_domain_passes_every_profile_rule(
        kind, subscriber, authority, server, stack, zone, content, session_factory, tmp_path):
    """tn-domain-binding: TNAuthList token and domain validated in one order; the certificate has
    O = the vetted name, exactly one dNSName, the TNAuthList, an embedded SCT; lint and pkilint pass."""
    home = stack.home
    delegation_id = vesper_delegation(authority, home, session_factory)
    orderr = mixed_order(subscriber)
    answer_token(subscriber, authority, orderr, delegation_id)
    assert subscriber.poll(orderr).status == messages.STATUS_PENDING  # the domain is still to prove
    answer_domain(subscriber, orderr, kind, zone, content)
    assert subscriber.poll(orderr).status == messages.STATUS_READY
    key = new_key()
    chain = subscriber.finalize(orderr, csr_pem(key)).fullchain_pem
    leaf = x509.load_pem_x509_certificates(chain.encode())[0]

    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Retail LLC")])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [x509.DNSName(DOMAIN)] and not san.critical
    issuer = home.issuing_ca()
    assert len(verify_embedded_scts(leaf, issuer.certificate, [stack.log.client()])) == 1  # RFC 6962 §3.3
    with session_factory() as session:
        record = session.scalars(select(Certificate).where(Certificate.stage == "issued")).one()
        precertificate = x509.load_der_x509_certificate(record.precertificate_der)
    context = profiles.IssuerContext(certificate=issuer.certificate, scope=issuer.scope, crl_url=issuer.crl_url,
                                     crl_issuer=home.policy.certificates.crl_issuer,
                                     policy_oids=home.policy.certificates.policy_oids)
    profile = profiles.Profile.for_name(profiles.END_ENTITY, home.policy)
    assert profiles.lint(profile, leaf, context, form=profiles.CERTIFICATE_WITH_SCTS, precertificate=precertificate) == []
    assert _wait_tree(stack.log, 1)  # the precertificate reached the log (merge delay)
    leaf_path, issuing_path = tmp_path / "leaf.pem", tmp_path / "issuing.pem"
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    issuing_path.write_bytes(issuer.certificate.public_bytes(serialization.Encoding.PEM))
    assert _pkilint("lint_pkix_cert", leaf_path) == []
    assert _pkilint("lint_pkix_signer_signee_cert_chain", issuing_path, leaf_path) == []
    if kind is challenges.HTTP01:
        # RFC 8555 §8.3: the request names the domain (and the non-default port) in Host.
        assert content.requests[-1][0] == f"{DOMAIN}:{stack.http_port}"


def _wait_tree(log, size: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if tree_size(log) >= size:
            return True
        time.sleep(0.1)
    return False


FAILURES = [  # (challenge, publish, body, problem); each a separate order in one stack
    (challenges.HTTP01, True, b"not the key authorization", "incorrectResponse"),
    (challenges.HTTP01, False, None, "unauthorized"),  # nothing published: 404
    (challenges.HTTP01, True, b"x" * 20000, "incorrectResponse"),  # larger than max_response_bytes
    (challenges.DNS01, False, None, "dns"),  # no TXT record
    (challenges.DNS01, True, b"bm90IHRoZSBkaWdlc3Q", "incorrectResponse"),
]


def test_a_domain_failing_its_challenge_leaves_no_certificate_and_no_log_entry(
        subscriber, authority, stack, zone, content, session_factory):
    """tn-domain-binding: either validation failing means nothing issued and no log contacted.
    Cases: http-01 wrong body, 404, a huge body; dns-01 no TXT record, a wrong one."""
    delegation_id = vesper_delegation(authority, stack.home, session_factory)
    for kind, publish, body, problem in FAILURES:
        zone.records.pop((f"_acme-challenge.{DOMAIN}", "TXT"), None)
        orderr = mixed_order(subscriber)
        answer_token(subscriber, authority, orderr, delegation_id)
        answer_domain(subscriber, orderr, kind, zone, content, publish=publish, body=body)
        authzr = subscriber.acme.poll(authz_of(orderr, "dns"))[0]
        (failed,) = [c for c in authzr.body.challenges if isinstance(c.chall, kind)]
        assert failed.status == messages.STATUS_INVALID, (kind, body)
        assert failed.error.typ == f"urn:ietf:params:acme:error:{problem}", (kind, body, failed.error)
        assert subscriber.poll(orderr).status == messages.STATUS_INVALID
        with pytest.raises(messages.Error) as caught:
            subscriber.finalize(orderr, csr_pem(new_key()))
        assert caught.value.typ == "urn:ietf:params:acme:error:orderNotReady"
        assert table_counts(session_factory)["certificates"] == 0
    time.sleep(0.5)  # longer than the log's merge delay: a submission would show by now
    assert tree_size(stack.log) == 0


def test_a_slow_http01_server_fails_within_the_one_deadline(subscriber, authority, stack, zone, content, session_factory):
    delegation_id = authority.delegate()
    orderr = mixed_order(subscriber)
    answer_token(subscriber, authority, orderr, delegation_id)
    started = time.monotonic()
    answer_domain(subscriber, orderr, challenges.HTTP01, zone, content, delay=DEADLINE_SECONDS + 3)
    assert time.monotonic() - started < DEADLINE_SECONDS + 2.5
    assert subscriber.poll(orderr).status == messages.STATUS_INVALID
    assert table_counts(session_factory)["certificates"] == 0


HOSTILE = [
    ("*.exampleretail.test", "wildcard"),
    ("127.0.0.1", "IP address"),
    ("exämple.test", "not ASCII"),
    ("xn--zz-zzz.test", "IDNA2008"),
    ("ab--cd.test", "hyphens in positions 3 and 4"),
    ("localhost", "single label"),
    ("exampleretail.test.", "ends with a dot"),
    ("a" * 64 + ".test", "labels are 1-63"),
    (("a" * 60 + ".") * 5 + "test", "octets"),
    ("under_score.test", "labels are 1-63"),
]


def test_hostile_dns_identifiers_are_rejected_naming_the_identifier(subscriber, stack, session_factory):
    """RFC 8555 §7.1.4 / RFC 5891: wildcards, IP addresses, U-labels, bad A-labels, overlong names."""
    subscriber.register(terms_of_service_agreed=True)
    before = table_counts(session_factory)
    for domain, fragment in HOSTILE:
        with pytest.raises(messages.Error) as caught:
            mixed_order(subscriber, domain)
        assert caught.value.typ == "urn:ietf:params:acme:error:rejectedIdentifier", caught.value
        (sub,) = caught.value.subproblems
        assert fragment in sub.detail and sub.identifier.value == domain, (domain, sub.detail)
    assert table_counts(session_factory) == before


def test_two_dns_identifiers_or_a_dns_identifier_alone_are_rejected(subscriber, stack):
    subscriber.register(terms_of_service_agreed=True)
    for identifiers in ((messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=DOMAIN),),
                        (tnauthlist_identifier(TN_SCOPE.to_identifier_value()),
                         messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=DOMAIN),
                         messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="other.test"))):
        with pytest.raises(messages.Error) as caught:
            subscriber.acme._post(subscriber.directory["newOrder"], ReplacingNewOrder(identifiers=identifiers))
        assert caught.value.typ == "urn:ietf:params:acme:error:rejectedIdentifier", caught.value


def test_a_csr_naming_another_domain_is_refused(subscriber, authority, stack, zone, content, session_factory):
    """RFC 8555 §7.4: the CSR asks for exactly the order's identifiers."""
    delegation_id = authority.delegate()
    orderr = mixed_order(subscriber)
    answer_token(subscriber, authority, orderr, delegation_id)
    answer_domain(subscriber, orderr, challenges.DNS01, zone, content)
    with pytest.raises(messages.Error) as caught:
        subscriber.finalize(orderr, csr_pem(new_key(), domain="bank.test"))
    assert caught.value.typ == "urn:ietf:params:acme:error:badCSR" and "bank.test" in caught.value.detail
    assert table_counts(session_factory)["certificates"] == 0
    # Without a SAN the certificate still carries the proven domain (the order says what is issued).
    leaf = x509.load_pem_x509_certificates(subscriber.finalize(orderr, csr_pem(new_key(), domain=None))
                                           .fullchain_pem.encode())[0]
    assert list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [x509.DNSName(DOMAIN)]
