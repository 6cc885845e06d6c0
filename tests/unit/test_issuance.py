"""The issuance pipeline (ca/issuing/issuance.py) against a real database and real keys.

Each negative test asserts the exact error class, that its detail names what is wrong, and that
nothing was written (row counts unchanged), in the style of python-tuf's "no changes" checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import event, select

from ca.records import audit
from ca.numbers.claims import ClaimConstraints
from ca.clock import FixedClock
from ca.errors import CSRError, DelegationError, IssuanceError, PolicyError, ScopeError, TransparencyError
from ca.issuing import profiles
from ca.issuing.issuance import IssuanceRequest, IssuerHandle, certify_authority_key, issue
from ca.policy import Policy
from ca.issuing.profiles import ISSUING_CA, ROOT
from ca.issuing.signers.file import FileSigner
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, CertificateScopeEntry, Delegation, Issuer
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST
from ca.x509util import spki_der
from ca.issuing.transparency import PRECERT_POISON_OID as PRECERTIFICATE_POISON_OID, SCT_LIST_OID as EMBEDDED_SCT_LIST_OID
from tests.helpers import row_counts


NOW = dt.datetime(2026, 6, 1, 9, 30, 0, tzinfo=dt.timezone.utc)
OPERATOR_SCOPE = TNScope.parse(ranges=["12025550000:10000"], spcs=["1234"])
ISSUING_CRL = "http://ca.test/crl/issuing.crl"


@pytest.fixture
def policy() -> Policy:
    return Policy.default()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def issuer(session, policy) -> IssuerHandle:
    """A root and an issuing CA (TNAuthList = OPERATOR_SCOPE), recorded as `tnca init` does."""
    made_at = FixedClock(NOW - dt.timedelta(days=30))
    root_signer = FileSigner(ec.generate_private_key(ec.SECP256R1()))
    issuing_signer = FileSigner(ec.generate_private_key(ec.SECP256R1()))
    root = certify_authority_key(
        ROOT, subject=policy.names.root, public_key=root_signer.public_key, signer=root_signer,
        issuer_certificate=None, issuer_scope=None, scope=None, crl_url=None, policy=policy, clock=made_at,
    )
    issuing = certify_authority_key(
        ISSUING_CA, subject=policy.names.issuing_ca, public_key=issuing_signer.public_key, signer=root_signer,
        issuer_certificate=root, issuer_scope=None, scope=OPERATOR_SCOPE, crl_url="http://ca.test/crl/root.crl",
        policy=policy, clock=made_at,
    )
    root_row = Issuer(name="root", certificate_der=root.public_bytes(serialization.Encoding.DER),
                      signer_uri="file:keys/root.key")
    session.add(root_row)
    session.flush()
    issuing_row = Issuer(name="issuing", certificate_der=issuing.public_bytes(serialization.Encoding.DER),
                         signer_uri="file:keys/issuing.key", scope_der=OPERATOR_SCOPE.to_der(), parent_id=root_row.id)
    session.add(issuing_row)
    session.commit()
    return IssuerHandle(certificate=issuing, signer=issuing_signer, scope=OPERATOR_SCOPE, chain=(issuing,),
                        issuer_id=issuing_row.id, name="issuing", crl_url=ISSUING_CRL)


def make_csr(key=None, *, subject: str = "", extensions=()):
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string(subject) if subject else x509.Name([]))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return key, builder.sign(key, hashes.SHA256())


def request(csr, scope="12025550100:100", **kwargs) -> IssuanceRequest:
    return IssuanceRequest(csr=csr, scope=TNScope.parse(ranges=[scope]) if isinstance(scope, str) else scope,
                           actor="test", **kwargs)


def add_delegation(session, *, scope="12025550000:1000", **kwargs) -> Delegation:
    values = dict(delegate="Example Enterprise", scope_der=TNScope.parse(ranges=[scope]).to_der(),
                  max_lifetime_seconds=24 * 3600, not_before=NOW - dt.timedelta(days=1), created_at=NOW,
                  updated_at=NOW)
    values.update(kwargs)
    delegation = Delegation(**values)
    session.add(delegation)
    session.commit()
    return delegation


def issue_now(session, req, issuer, policy, clock, **kwargs):
    return issue(session, req, issuer=issuer, policy=policy, clock=clock, **kwargs)


# ----------------------------------------------------------------------------------------------
# The happy path
# ----------------------------------------------------------------------------------------------


def test_end_entity_certificate_is_signed_by_the_issuing_ca_and_carries_exactly_the_requested_scope(
    session, issuer, policy, clock
):
    """RFC 9060 §4: a delegate certificate carries a TNAuthList encompassed by its parent's."""
    key, csr = make_csr()
    issued = issue_now(session, request(csr), issuer, policy, clock)
    session.commit()
    cert = issued.certificate
    cert.verify_directly_issued_by(issuer.certificate)
    assert TNScope.from_certificate(cert) == TNScope.parse(ranges=["12025550100:100"])
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject == policy.certificates.fallback_subject  # no delegation: no record names the holder
    assert issued.chain == (issuer.certificate,)
    assert issued.pem_chain.count("BEGIN CERTIFICATE") == 2
    assert issued.pem_chain.startswith(cert.public_bytes(serialization.Encoding.PEM).decode())


def test_end_entity_profile_critical_constraints_key_ids_crl_and_noncritical_tnauthlist(session, issuer, policy, clock):
    """RFC 5280 §4.2.1.3/§4.2.1.9 critical; RFC 9060 §7 AKI = issuer SKI; RFC 8226 §9 non-critical."""
    _, csr = make_csr()
    cert = issue_now(session, request(csr), issuer, policy, clock).certificate
    ext = cert.extensions
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    issuer_ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == issuer_ski
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    points = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [p.full_name[0].value for p in points] == [ISSUING_CRL]
    tn = ext.get_extension_for_oid(OID_TN_AUTH_LIST)
    assert tn.critical is False
    assert [e.critical for e in ext if e.critical] == [True, True]


def test_certificate_row_scope_index_rows_and_audit_event_are_written_in_the_callers_transaction(
    session, issuer, policy, clock
):
    _, csr = make_csr()
    scope = TNScope.parse(tns=["12025559999"], ranges=["12025550100:100"], spcs=["1234"])
    issued = issue_now(session, request(csr, scope), issuer, policy, clock)
    session.commit()
    row = session.get(Certificate, issued.record_id)
    assert row.serial == format(issued.certificate.serial_number, "x") == issued.serial
    assert row.stage == "issued" and row.kind == "end-entity"
    assert row.der == issued.der
    assert row.fingerprint_sha256 == hashlib.sha256(issued.der).hexdigest()
    assert row.spki_sha256 == hashlib.sha256(spki_der(issued.certificate.public_key())).hexdigest()
    assert (row.not_before, row.not_after) == (issued.certificate.not_valid_before_utc,
                                               issued.certificate.not_valid_after_utc)
    entries = session.scalars(select(CertificateScopeEntry).where(CertificateScopeEntry.certificate_id == row.id)).all()
    assert sorted(repr((e.width, e.lo, e.hi, e.spc, e.literal)) for e in entries) == sorted(
        repr((r["width"], r["lo"], r["hi"], r["spc"], r["literal"])) for r in scope.index_rows()
    )
    assert len(entries) == 3
    event_row = session.get(AuditEvent, issued.audit_seq)
    assert (event_row.action, event_row.subject_type, event_row.subject_id) == ("certificate.issue", "certificate", row.serial)
    assert event_row.details["fingerprint_sha256"] == row.fingerprint_sha256
    assert audit.verify(session) == 1


def test_nothing_remains_when_the_caller_rolls_back(session, issuer, policy, clock):
    before = row_counts(session)
    _, csr = make_csr()
    issue_now(session, request(csr), issuer, policy, clock)
    session.rollback()
    assert row_counts(session) == before


def test_serial_numbers_are_positive_random_and_at_most_20_octets(session, issuer, policy, clock):
    """RFC 5280 §4.1.2.2, and at least 64 bits from a CSPRNG (ca/x509util.py SERIAL_RANDOM_BITS)."""
    serials = set()
    for _ in range(8):
        _, csr = make_csr()
        serial = issue_now(session, request(csr), issuer, policy, clock).certificate.serial_number
        assert 0 < serial and (serial.bit_length() + 8) // 8 <= 20
        serials.add(serial)
    assert len(serials) == 8
    assert max(s.bit_length() for s in serials) > 64


def test_empty_csr_subject_gets_the_policy_fallback_subject(session, issuer, policy, clock):
    _, csr = make_csr(subject="")
    cert = issue_now(session, request(csr), issuer, policy, clock).certificate
    assert cert.subject == policy.certificates.fallback_subject


# ----------------------------------------------------------------------------------------------
# Validity
# ----------------------------------------------------------------------------------------------


def test_default_validity_is_the_policy_maximum_counted_from_a_backdated_not_before(session, issuer, policy, clock):
    _, csr = make_csr()
    cert = issue_now(session, request(csr), issuer, policy, clock).certificate
    assert cert.not_valid_before_utc == NOW - policy.lifetimes.backdate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == policy.lifetimes.end_entity == dt.timedelta(hours=24)


def test_requested_lifetime_above_the_policy_cap_is_capped(session, issuer, policy, clock):
    _, csr = make_csr()
    cert = issue_now(session, request(csr, lifetime=dt.timedelta(days=90)), issuer, policy, clock).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == policy.lifetimes.end_entity


def test_short_lifetimes_down_to_the_minimum_are_honoured(session, issuer, policy, clock):
    _, csr = make_csr()
    cert = issue_now(session, request(csr, lifetime=dt.timedelta(minutes=5)), issuer, policy, clock).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(minutes=5)


def test_lifetime_below_the_policy_minimum_is_a_policy_error_and_writes_nothing(session, issuer, policy, clock):
    before = row_counts(session)
    _, csr = make_csr()
    with pytest.raises(PolicyError) as caught:
        issue_now(session, request(csr, lifetime=dt.timedelta(minutes=4)), issuer, policy, clock)
    assert caught.value.field == "lifetime"
    assert "below the policy minimum of 5m" in caught.value.detail
    session.rollback()
    assert row_counts(session) == before


def test_not_after_never_passes_the_issuing_ca_not_after(session, issuer, policy):
    late = FixedClock(issuer.certificate.not_valid_after_utc - dt.timedelta(hours=2))
    _, csr = make_csr()
    cert = issue_now(session, request(csr), issuer, policy, late).certificate
    assert cert.not_valid_after_utc == issuer.certificate.not_valid_after_utc


def test_requested_not_before_in_the_past_starts_at_the_backdating_allowance(session, issuer, policy, clock):
    """RFC 8555 §7.4 notBefore is honoured, but never backdated beyond the policy's allowance."""
    _, csr = make_csr()
    cert = issue_now(session, request(csr, not_before=NOW - dt.timedelta(hours=1)), issuer, policy, clock).certificate
    assert cert.not_valid_before_utc == NOW - policy.lifetimes.backdate


def test_requested_future_not_before_is_honoured(session, issuer, policy, clock):
    _, csr = make_csr()
    start = NOW + dt.timedelta(hours=2)
    cert = issue_now(session, request(csr, not_before=start, lifetime=dt.timedelta(hours=1)), issuer, policy,
                     clock).certificate
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, start + dt.timedelta(hours=1))


def test_requested_not_after_before_the_minimum_lifetime_is_a_policy_error(session, issuer, policy, clock):
    _, csr = make_csr()
    with pytest.raises(PolicyError) as caught:
        issue_now(session, request(csr, not_after=NOW + dt.timedelta(minutes=2)), issuer, policy, clock)
    assert caught.value.field == "notAfter"
    assert "below the policy minimum of 5m" in caught.value.detail


def test_requested_not_after_shortens_the_certificate(session, issuer, policy, clock):
    _, csr = make_csr()
    cert = issue_now(session, request(csr, not_after=NOW + dt.timedelta(hours=2)), issuer, policy, clock).certificate
    assert cert.not_valid_after_utc == NOW + dt.timedelta(hours=2)


# ----------------------------------------------------------------------------------------------
# Scope and delegation (RFC 9060 §4, §8)
# ----------------------------------------------------------------------------------------------


def test_scope_outside_the_issuing_ca_is_a_scope_error_naming_the_outside_part(session, issuer, policy, clock):
    before = row_counts(session)
    _, csr = make_csr()
    scope = TNScope.parse(ranges=["12025559990:20"], spcs=["1234"])  # runs 10 numbers past the CA's range
    with pytest.raises(ScopeError) as caught:
        issue_now(session, request(csr, scope), issuer, policy, clock)
    assert caught.value.field == "scope"
    assert "outside the issuing CA's TNAuthList: range 12025560000+10" in caught.value.detail
    session.rollback()
    assert row_counts(session) == before


def test_issuance_under_an_active_delegation_inside_its_scope(session, issuer, policy, clock):
    delegation = add_delegation(session)
    _, csr = make_csr()
    issued = issue_now(session, request(csr, delegation_id=delegation.id), issuer, policy, clock)
    session.commit()
    assert session.get(Certificate, issued.record_id).delegation_id == delegation.id


@pytest.mark.parametrize(
    "overrides, requested, expected",
    [
        ({"status": "revoked"}, "12025550100:100", "is revoked"),
        ({"not_after": NOW - dt.timedelta(seconds=1)}, "12025550100:100", "expired at"),
        ({"not_before": NOW + dt.timedelta(hours=1)}, "12025550100:100", "is not valid before"),
        ({}, "12025550900:200", "range 12025551000+100 not delegated"),
    ],
    ids=["revoked", "expired", "not-yet-valid", "scope-outside-delegation"],
)
def test_delegation_that_does_not_cover_the_request_is_a_delegation_error(
    session, issuer, policy, clock, overrides, requested, expected
):
    delegation = add_delegation(session, **overrides)
    before = row_counts(session)
    _, csr = make_csr()
    with pytest.raises(DelegationError) as caught:
        issue_now(session, request(csr, requested, delegation_id=delegation.id), issuer, policy, clock)
    assert expected in caught.value.detail
    assert delegation.id in caught.value.detail
    session.rollback()
    assert row_counts(session) == before


def test_unknown_delegation_is_a_delegation_error(session, issuer, policy, clock):
    _, csr = make_csr()
    with pytest.raises(DelegationError, match="delegation nope does not exist"):
        issue_now(session, request(csr, delegation_id="nope"), issuer, policy, clock)


def test_delegation_reaching_outside_the_issuing_ca_is_a_scope_error(session, issuer, policy, clock):
    """request ⊆ delegation is not enough: the delegation itself must lie inside the issuing CA."""
    delegation = add_delegation(session, scope="12025559000:2000")
    _, csr = make_csr()
    with pytest.raises(ScopeError) as caught:
        issue_now(session, request(csr, "12025559000:10", delegation_id=delegation.id), issuer, policy, clock)
    assert caught.value.field == "delegation"
    assert "range 12025560000+1000" in caught.value.detail


def test_delegate_ca_needs_a_delegation_that_allows_sub_delegation(session, issuer, policy, clock):
    delegation = add_delegation(session, ca_allowed=False)
    _, csr = make_csr()
    with pytest.raises(DelegationError) as caught:
        issue_now(session, request(csr, delegation_id=delegation.id, kind="delegate-ca"), issuer, policy, clock)
    assert caught.value.field == "kind"


def test_delegation_caps_lifetime_and_end(session, issuer, policy, clock):
    delegation = add_delegation(session, max_lifetime_seconds=3600, not_after=NOW + dt.timedelta(minutes=30))
    _, csr = make_csr()
    cert = issue_now(session, request(csr, delegation_id=delegation.id), issuer, policy, clock).certificate
    assert cert.not_valid_after_utc == NOW + dt.timedelta(minutes=30)
    delegation.not_after = None
    session.commit()
    cert = issue_now(session, request(make_csr()[1], delegation_id=delegation.id), issuer, policy, clock).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=1)


# ----------------------------------------------------------------------------------------------
# Claim constraints (RFC 8226 §8, RFC 9118)
# ----------------------------------------------------------------------------------------------

CONSTRAINTS = ClaimConstraints(must_include=("rcd",), permitted_values=(("rcd", ("{\"nam\":\"Example\"}",)),))


def test_delegation_claim_constraints_are_written_non_critical_on_the_end_entity(session, issuer, policy, clock):
    delegation = add_delegation(session, constraints_der=CONSTRAINTS.to_der(), constraints_kind=CONSTRAINTS.kind)
    _, csr = make_csr()
    cert = issue_now(session, request(csr, delegation_id=delegation.id), issuer, policy, clock).certificate
    extension = cert.extensions.get_extension_for_oid(CONSTRAINTS.oid)
    assert extension.critical is False
    assert extension.value.value == CONSTRAINTS.to_der()


def test_request_cannot_widen_the_delegation_claim_constraints(session, issuer, policy, clock):
    delegation = add_delegation(session, constraints_der=CONSTRAINTS.to_der(), constraints_kind=CONSTRAINTS.kind)
    looser = ClaimConstraints(must_include=("rcd",))
    _, csr = make_csr()
    with pytest.raises(PolicyError) as caught:
        issue_now(session, request(csr, delegation_id=delegation.id, constraints=looser), issuer, policy, clock)
    assert caught.value.field == "constraints"


def test_enhanced_constraints_use_the_rfc9118_oid_and_never_both(session, issuer, policy, clock):
    enhanced = ClaimConstraints(must_exclude=("rcd",))
    _, csr = make_csr()
    cert = issue_now(session, request(csr, constraints=enhanced), issuer, policy, clock).certificate
    oids = {e.oid.dotted_string for e in cert.extensions}
    assert "1.3.6.1.5.5.7.1.33" in oids and "1.3.6.1.5.5.7.1.27" not in oids


def test_claim_constraints_on_a_delegate_ca_are_refused(session, issuer, policy, clock):
    """RFC 8226 §8: JWTClaimConstraints apply to end-entity certificates only."""
    delegation = add_delegation(session, ca_allowed=True)
    _, csr = make_csr()
    with pytest.raises(PolicyError) as caught:
        issue_now(session, request(csr, delegation_id=delegation.id, kind="delegate-ca", constraints=CONSTRAINTS),
                  issuer, policy, clock)
    assert caught.value.field == "constraints"


# ----------------------------------------------------------------------------------------------
# The CSR
# ----------------------------------------------------------------------------------------------


def _tampered(csr: x509.CertificateSigningRequest) -> x509.CertificateSigningRequest:
    """The CSR with one bit of its subject flipped, so its signature no longer matches."""
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    index = der.find(b"Example Enterprise")
    der[index] ^= 0x01
    return x509.load_der_x509_csr(bytes(der))


def test_csr_with_a_bad_signature_is_a_csr_error_and_writes_nothing(session, issuer, policy, clock):
    before = row_counts(session)
    _, csr = make_csr()
    with pytest.raises(CSRError) as caught:
        issue_now(session, request(_tampered(csr)), issuer, policy, clock)
    assert caught.value.field == "csr.signature"
    session.rollback()
    assert row_counts(session) == before


@pytest.mark.parametrize(
    "key_factory, key_type",
    [(lambda: ec.generate_private_key(ec.SECP384R1()), "ec-p384"),
     (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2048")],
    ids=["p384", "rsa2048"],
)
def test_end_entity_key_other_than_p256_is_a_policy_error(session, issuer, policy, clock, key_factory, key_type):
    """RFC 8226 §4: STIR certificates carry ES256-capable keys (policy [keys] end_entity)."""
    _, csr = make_csr(key_factory())
    with pytest.raises(PolicyError) as caught:
        issue_now(session, request(csr), issuer, policy, clock)
    assert caught.value.field == "csr.public_key"
    assert key_type in caught.value.detail


def test_csr_tnauthlist_differing_from_the_request_is_a_csr_error(session, issuer, policy, clock):
    other = TNScope.parse(tns=["12025550100"]).to_extension()
    _, csr = make_csr(extensions=[(other, False)])
    with pytest.raises(CSRError) as caught:
        issue_now(session, request(csr), issuer, policy, clock)
    assert caught.value.field == "csr.TNAuthList"


def test_csr_tnauthlist_equal_to_the_request_is_accepted(session, issuer, policy, clock):
    same = TNScope.parse(ranges=["12025550100:100"]).to_extension()
    _, csr = make_csr(extensions=[(same, False)])
    issue_now(session, request(csr), issuer, policy, clock)


def test_csr_asking_for_a_ca_on_an_end_entity_request_is_a_csr_error(session, issuer, policy, clock):
    _, csr = make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    with pytest.raises(CSRError) as caught:
        issue_now(session, request(csr), issuer, policy, clock)
    assert caught.value.field == "csr.basicConstraints"


# ----------------------------------------------------------------------------------------------
# Delegate CA certificates (RFC 9060 §4)
# ----------------------------------------------------------------------------------------------


def test_delegate_ca_certificate_is_a_path_length_zero_ca_with_the_delegated_scope(session, issuer, policy, clock):
    delegation = add_delegation(session, ca_allowed=True, max_lifetime_seconds=30 * 86400)
    _, csr = make_csr()
    cert = issue_now(session, request(csr, delegation_id=delegation.id, kind="delegate-ca"), issuer, policy,
                     clock).certificate
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert TNScope.from_certificate(cert) == TNScope.parse(ranges=["12025550100:100"])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30)


# ----------------------------------------------------------------------------------------------
# The hot path
# ----------------------------------------------------------------------------------------------


def test_issuance_makes_no_query_beyond_the_delegation_and_the_audit_head(session, issuer, policy, clock):
    """Issuer, scope and signer come from the handle; only the delegation (with its vetting and
    right-to-use records, one statement) and the audit head are read."""
    delegation = add_delegation(session)
    issue_now(session, request(make_csr()[1]), issuer, policy, clock)  # steady state: the audit head exists
    session.commit()
    _, csr = make_csr()
    req = request(csr, delegation_id=delegation.id)
    session.expunge_all()
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        issue_now(session, req, issuer, policy, clock)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1 and "FROM delegations" in selects[0], selects
    # The audit chain's head is locked and read in one UPDATE … RETURNING (ca/records/audit.py).
    head_reads = [s for s in statements if "audit_head" in s and "RETURNING" in s.upper()]
    assert len(head_reads) == 1, statements


# ----------------------------------------------------------------------------------------------
# The certificate-transparency seam (RFC 6962 §3)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SCT:
    log_id: bytes
    timestamp: int
    log_url: str
    signature: bytes

    def serialize(self) -> bytes:
        return (
            b"\x00"  # sct_version v1
            + self.log_id  # LogID key_id[32]
            + struct.pack(">Q", self.timestamp)  # timestamp (ms)
            + b"\x00\x00"  # CtExtensions length 0
            + b"\x04\x03"  # hash sha256(4), signature ecdsa(3)
            + struct.pack(">H", len(self.signature))
            + self.signature
        )


def _precert_signature_input(timestamp: int, issuer_key_hash: bytes, tbs: bytes) -> bytes:
    """RFC 6962 §3.2 digitally-signed input for a precert_entry SCT."""
    return (
        b"\x00\x00"  # sct_version v1, signature_type certificate_timestamp
        + struct.pack(">Q", timestamp)
        + b"\x00\x01"  # entry_type precert_entry
        + issuer_key_hash
        + len(tbs).to_bytes(3, "big")
        + tbs
        + b"\x00\x00"  # extensions length
    )


class SigningLog:
    """A minimal RFC 6962 log front: signs an SCT over the precertificate it is given.

    It answers in-process instead of over HTTP; the HTTP log (ctlog/) and its client
    (ca/issuing/transparency.py) are tested on their own. What this checks is the issuance side: the
    precertificate is recorded before submission and the SCTs end up embedded so that a
    verifier reconstructing the precertificate TBS from the final certificate can verify them.
    """

    def __init__(self, url: str, on_submit=None) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(spki_der(self.key.public_key())).digest()
        self.url = url
        self.on_submit = on_submit
        self.submitted: list[bytes] = []

    def sct_for(self, precertificate_der: bytes, issuer: IssuerHandle, timestamp: int) -> _SCT:
        if self.on_submit:
            self.on_submit()
        self.submitted.append(precertificate_der)
        precert = x509.load_der_x509_certificate(precertificate_der)
        poison = precert.extensions.get_extension_for_class(x509.PrecertPoison)
        assert poison.critical, "RFC 6962 §3.1: the poison extension is critical"
        issuer_key_hash = hashlib.sha256(spki_der(issuer.certificate.public_key())).digest()
        data = _precert_signature_input(timestamp, issuer_key_hash, _without_poison(precert.tbs_certificate_bytes))
        return _SCT(self.log_id, timestamp, self.url, self.key.sign(data, ec.ECDSA(hashes.SHA256())))


class Logs:
    def __init__(self, logs: list[SigningLog]) -> None:
        self.logs = logs

    def submit(self, precertificate_der: bytes, issuer: IssuerHandle):
        return [log.sct_for(precertificate_der, issuer, 1_780_000_000_000 + i) for i, log in enumerate(self.logs)]


def _without_poison(tbs_der: bytes) -> bytes:
    """RFC 6962 §3.2: the precertificate TBS a log signs is the TBS without the poison extension.

    Done with pyasn1's RFC 5280 module, independently of the code under test.
    """
    from pyasn1.codec.der import decoder, encoder
    from pyasn1_alt_modules import rfc5280

    tbs, rest = decoder.decode(tbs_der, asn1Spec=rfc5280.TBSCertificate())
    assert not rest
    kept = [ext for ext in tbs["extensions"] if str(ext["extnID"]) != "1.3.6.1.4.1.11129.2.4.3"]
    extensions = tbs["extensions"].clone()
    for ext in kept:
        extensions.append(ext)
    tbs["extensions"] = extensions
    return encoder.encode(tbs)


def _ct_policy(policy: Policy, required: int) -> Policy:
    import dataclasses

    return dataclasses.replace(policy, ct=dataclasses.replace(policy.ct, required_scts=required))


def test_embedded_scts_verify_over_the_precertificate_tbs_reconstructed_from_the_final_certificate(
    session, issuer, policy, clock
):
    """RFC 6962 §3.3: final TBS minus the SCT list equals the precertificate TBS minus the poison."""
    logs = [SigningLog("http://log-a.test"), SigningLog("http://log-b.test")]
    _, csr = make_csr()
    issued = issue_now(session, request(csr), issuer, _ct_policy(policy, 2), clock, transparency=Logs(logs))
    cert = issued.certificate
    scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert len(scts) == 2
    issuer_key_hash = hashlib.sha256(spki_der(issuer.certificate.public_key())).digest()
    for sct, log in zip(scts, logs):
        assert sct.log_id == log.log_id
        data = _precert_signature_input(int(sct.timestamp.replace(tzinfo=dt.timezone.utc).timestamp() * 1000),
                                        issuer_key_hash, cert.tbs_precertificate_bytes)
        log.key.public_key().verify(sct.signature, data, ec.ECDSA(hashes.SHA256()))
    precert = x509.load_der_x509_certificate(logs[0].submitted[0])
    assert precert.serial_number == cert.serial_number
    row = session.get(Certificate, issued.record_id)
    assert row.stage == "issued" and row.precertificate_der == logs[0].submitted[0]
    assert [s["log_url"] for s in row.scts] == ["http://log-a.test", "http://log-b.test"]


def test_precertificate_is_recorded_before_any_log_sees_it(session_factory, issuer, policy, clock):
    """The walk of one issuance (docs/architecture.md): the serial and the precertificate are committed before submission."""
    seen_at_submission: list[tuple[str, bytes]] = []

    with session_factory() as s:
        def look_from_another_connection():
            with session_factory() as other:
                row = other.scalars(select(Certificate)).one()
                seen_at_submission.append((row.stage, row.precertificate_der))

        logs = Logs([SigningLog("http://log-a.test", on_submit=look_from_another_connection)])
        _, csr = make_csr()
        issued = issue(s, request(csr), issuer=issuer, policy=_ct_policy(policy, 1), clock=clock,
                       transparency=logs, precertificate_recorded=s.commit)
        s.commit()
    assert seen_at_submission == [("precertificate", logs.logs[0].submitted[0])]
    with session_factory() as s:
        assert s.get(Certificate, issued.record_id).stage == "issued"


def test_too_few_scts_is_a_transparency_error_and_no_certificate_is_signed(session, issuer, policy, clock):
    logs = Logs([SigningLog("http://log-a.test")])
    _, csr = make_csr()
    with pytest.raises(TransparencyError) as caught:
        issue_now(session, request(csr), issuer, _ct_policy(policy, 2), clock, transparency=logs)
    assert "the policy requires 2" in caught.value.detail
    row = session.scalars(select(Certificate)).one()
    assert row.stage == "failed" and row.der is None


def test_no_precertificate_stage_when_the_policy_requires_no_scts(session, issuer, policy, clock):
    logs = Logs([SigningLog("http://log-a.test")])
    _, csr = make_csr()
    issued = issue_now(session, request(csr), issuer, policy, clock, transparency=logs)
    assert logs.logs[0].submitted == []
    assert session.get(Certificate, issued.record_id).precertificate_der is None


# ----------------------------------------------------------------------------------------------
# Lint before every signature of the real key (docs/architecture.md, the walk of one issuance; RFC 6962 §3.1, §3.3)
# ----------------------------------------------------------------------------------------------


class RecordingSigner(FileSigner):
    """The issuing CA's real file signer, keeping every TBS it signs in a shared journal."""

    def __init__(self, private_key, journal: list) -> None:
        super().__init__(private_key)
        self.journal = journal

    def sign(self, data: bytes) -> bytes:
        self.journal.append(("sign", None, data))
        return super().sign(data)


# Extra lint rules, each refusing one of the three forms by what its draft carries.
def _refuse_everything(draft):
    return "test rule: this authority signs nothing today"


def _refuse_the_poison(draft):
    if any(ext.oid == PRECERTIFICATE_POISON_OID for ext in draft.extensions):
        return "test rule: the precertificate poison is refused"
    return None


def _refuse_an_sct_list(draft):
    if any(ext.oid == EMBEDDED_SCT_LIST_OID for ext in draft.extensions):
        return "test rule: an embedded SCT list is refused"
    return None


@pytest.fixture
def journal(monkeypatch, issuer):
    """Every lint (form, draft TBS) and every real signature (TBS), in order; ``journal.rule``
    adds a finding of its own to the real lint."""

    class Journal(list):
        rule = None

    entries = Journal()
    real_lint = profiles.lint

    def lint(profile, draft, issuer_context, *, form=profiles.CERTIFICATE, precertificate=None):
        findings = real_lint(profile, draft, issuer_context, form=form, precertificate=precertificate)
        extra = entries.rule(draft) if entries.rule else None
        entries.append(("lint", form, draft.tbs_certificate_bytes))
        return findings + ([extra] if extra else [])

    monkeypatch.setattr(profiles, "lint", lint)
    return entries


def _recording_issuer(issuer: IssuerHandle, journal) -> IssuerHandle:
    import dataclasses

    return dataclasses.replace(issuer, signer=RecordingSigner(issuer.signer._private_key, journal))


def _signed(journal) -> list[bytes]:
    return [tbs for kind, _, tbs in journal if kind == "sign"]


@pytest.mark.parametrize("required_scts, forms", [
    (0, [profiles.CERTIFICATE]),
    (1, [profiles.PRECERTIFICATE, profiles.CERTIFICATE_WITH_SCTS]),
])
def test_every_signature_of_the_real_key_is_of_a_tbs_linted_just_before_in_its_form(
    session, issuer, policy, clock, journal, required_scts, forms
):
    """"Lint every certificate before the real key signs it" (docs/architecture.md) — the plain
    certificate, and with CT both the precertificate and the certificate with its SCTs."""
    signing_issuer = _recording_issuer(issuer, journal)
    _, csr = make_csr()
    issued = issue_now(session, request(csr), signing_issuer, _ct_policy(policy, required_scts), clock,
                       transparency=Logs([SigningLog("http://log-a.test")]))
    signed = _signed(journal)
    assert [form for kind, form, tbs in journal if kind == "lint" and tbs in signed] == forms
    for tbs in signed:
        position = journal.index(("sign", None, tbs))
        assert ("lint", forms[signed.index(tbs)], tbs) in journal[:position]
    assert signed[-1] == issued.certificate.tbs_certificate_bytes


def test_a_certificate_failing_lint_is_never_signed(session, issuer, policy, clock, journal):
    journal.rule = _refuse_everything
    before = row_counts(session)
    _, csr = make_csr()
    with pytest.raises(IssuanceError) as caught:
        issue_now(session, request(csr), _recording_issuer(issuer, journal), policy, clock)
    assert caught.value.detail.startswith("end-entity certificate failed lint: ")
    assert "test rule: this authority signs nothing today" in caught.value.detail
    assert _signed(journal) == []
    session.rollback()
    assert row_counts(session) == before


def test_a_precertificate_failing_lint_is_never_signed_recorded_or_logged(session, issuer, policy, clock, journal):
    """RFC 6962 §3.1: the precertificate is a signature of the real key like any other."""
    journal.rule = _refuse_the_poison
    logs = Logs([SigningLog("http://log-a.test")])
    before = row_counts(session)
    _, csr = make_csr()
    with pytest.raises(IssuanceError) as caught:
        issue_now(session, request(csr), _recording_issuer(issuer, journal), _ct_policy(policy, 1), clock,
                  transparency=logs)
    assert caught.value.detail.startswith("end-entity precertificate failed lint: ")
    assert "test rule: the precertificate poison is refused" in caught.value.detail
    assert _signed(journal) == []
    assert logs.logs[0].submitted == []
    session.rollback()
    assert row_counts(session) == before


def test_a_certificate_with_scts_failing_lint_is_never_signed(session, issuer, policy, clock, journal):
    """RFC 6962 §3.3: the final certificate embeds the SCTs, and only a linted one is signed; the
    precertificate (possibly in the logs by then) stays recorded as failed."""
    journal.rule = _refuse_an_sct_list
    logs = Logs([SigningLog("http://log-a.test")])
    _, csr = make_csr()
    with pytest.raises(IssuanceError) as caught:
        issue_now(session, request(csr), _recording_issuer(issuer, journal), _ct_policy(policy, 1), clock,
                  transparency=logs)
    assert caught.value.detail.startswith("end-entity certificate-with-scts failed lint: ")
    assert "test rule: an embedded SCT list is refused" in caught.value.detail
    precertificate = x509.load_der_x509_certificate(logs.logs[0].submitted[0])
    assert _signed(journal) == [precertificate.tbs_certificate_bytes]
    row = session.scalars(select(Certificate)).one()
    assert row.stage == "failed" and row.der is None
    assert row.precertificate_der == logs.logs[0].submitted[0]
    assert "test rule: an embedded SCT list is refused" in row.error


def _crl_point(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None, crl_issuer=None)])


def test_rfc8555_s7_4_a_csr_may_repeat_the_profiles_crl_distribution_point_but_not_ask_for_another(
        session, issuer, policy, clock):
    """Deployed SHAKEN clients put the STI-PA CRL in their CSR: the same point the profile sets is
    accepted (the certificate carries the profile's), any other is badCSR naming the extension."""
    _, same = make_csr(extensions=[(_crl_point(ISSUING_CRL), False)])
    issued = issue_now(session, request(same), issuer, policy, clock)
    points = issued.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [p.full_name[0].value for p in points] == [ISSUING_CRL]
    _, other = make_csr(extensions=[(_crl_point("http://elsewhere.test/crl"), False)])
    with pytest.raises(CSRError) as caught:
        issue_now(session, request(other), issuer, policy, clock)
    assert "2.5.29.31" in str(caught.value)
