"""Certificate profiles: what each kind of certificate this authority signs must look like.

Five profiles, one per role:

============== ===== ======================== ========================= ==================
profile        cA    keyUsage (critical)      TNAuthList (non-critical) claim constraints
============== ===== ======================== ========================= ==================
root           TRUE  keyCertSign, cRLSign     absent                    absent
issuing-ca     TRUE  keyCertSign, cRLSign     the operator's scope      absent
delegate-ca    TRUE  keyCertSign, cRLSign     the delegated scope       absent
end-entity     FALSE digitalSignature         the delegated scope       optional (one kind)
token-authority FALSE digitalSignature        absent                    absent
============== ===== ======================== ========================= ==================

Every certificate gets a critical basicConstraints and keyUsage (RFC 5280 §4.2.1.9, §4.2.1.3;
the SHAKEN certificate profile marks these two, and only these, critical), a
SubjectKeyIdentifier (RFC 5280 §4.2.1.2, method 1: SHA-1 of the public key) and an
AuthorityKeyIdentifier whose keyIdentifier is the issuer's SKI (RFC 9060 §7: "the AKI of
certificate n MUST equal the SKI of certificate n+1"). Below the root, the certificate
policies and the CRL distribution point come from the policy (``[certificates]``).

:func:`build` turns a :class:`CertificateContent` into a ``CertificateBuilder``; :func:`lint`
checks a drafted certificate (signed by a throwaway key) against its profile *before* the real
key signs, and names every rule broken with its citation. :func:`sign` is the only way a real key
signs a certificate, and it signs only a :class:`LintedDraft` (what :func:`linted_draft` returns
for a clean draft), in each of the three forms a TBS takes (:data:`FORMS`: the plain certificate,
the RFC 6962 precertificate, the certificate with its SCTs).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ca.errors import CSRError, IssuanceError, ScopeError, TransparencyError
from ca.policy import Policy, format_duration
from ca.issuing.signers import Signer
from ca.issuing.subjects import subject_problem
from ca.issuing.transparency import PRECERT_POISON_OID, SCT_LIST_OID, tbs_without_poison
from ca.numbers.claims import ClaimConstraints
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tn_entries import SPC
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST
from ca.x509util import (
    MALFORMED_X509_ERRORS,
    assemble_certificate,
    draft_certificate,
    key_type_name,
    subject_key_identifier,
)

ROOT = "root"
ISSUING_CA = "issuing-ca"
DELEGATE_CA = "delegate-ca"
END_ENTITY = "end-entity"
TOKEN_AUTHORITY = "token-authority"

# RFC 8226 §8 and RFC 9118 §3: the two claim-constraint extensions (never both in one certificate).
OID_JWT_CLAIM_CONSTRAINTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.27")
OID_ENHANCED_JWT_CLAIM_CONSTRAINTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.33")
CLAIM_CONSTRAINT_OIDS = (OID_JWT_CLAIM_CONSTRAINTS, OID_ENHANCED_JWT_CLAIM_CONSTRAINTS)

# The forms in which a TBS reaches the real key. Each is linted for what it must and must not carry:
CERTIFICATE = "certificate"  # no CT: neither the poison nor an SCT list
PRECERTIFICATE = "precertificate"  # RFC 6962 §3.1: the critical poison, no SCT list
CERTIFICATE_WITH_SCTS = "certificate-with-scts"  # RFC 6962 §3.3: an SCT list, no poison
FORMS = (CERTIFICATE, PRECERTIFICATE, CERTIFICATE_WITH_SCTS)

# RFC 5280 §4.1.2.2: serial numbers are at most 20 octets.
MAX_SERIAL_OCTETS = 20

_CA_KEY_USAGE = dict(key_cert_sign=True, crl_sign=True)
_SIGNING_KEY_USAGE = dict(digital_signature=True)


def _key_usage(**bits: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: bits.get(name, False) for name in names})


@dataclass(frozen=True)
class Profile:
    name: str
    ca: bool
    path_length: int | None
    key_usage: x509.KeyUsage
    # "required" or "forbidden": STIR certificates carry their scope by value (RFC 8226 §9).
    tn_auth_list: str
    claim_constraints_allowed: bool
    max_lifetime: dt.timedelta
    min_lifetime: dt.timedelta
    allowed_key_types: tuple[str, ...] | None  # None: any key type the signer can certify
    below_root: bool  # gets certificate policies, a CRL distribution point and an issuer

    @classmethod
    def for_name(cls, name: str, policy: Policy) -> "Profile":
        lifetimes, keys = policy.lifetimes, policy.keys
        floor = lifetimes.minimum
        if name == ROOT:
            return cls(ROOT, True, None, _key_usage(**_CA_KEY_USAGE), "forbidden", False,
                       lifetimes.root, floor, None, below_root=False)
        if name == ISSUING_CA:
            return cls(ISSUING_CA, True, None, _key_usage(**_CA_KEY_USAGE), "required", False,
                       lifetimes.issuing_ca, floor, None, below_root=True)
        if name == DELEGATE_CA:
            return cls(DELEGATE_CA, True, policy.certificates.delegate_ca_path_length,
                       _key_usage(**_CA_KEY_USAGE), "required", False,
                       lifetimes.delegate_ca, floor, keys.delegate_ca, below_root=True)
        if name == END_ENTITY:
            return cls(END_ENTITY, False, None, _key_usage(**_SIGNING_KEY_USAGE), "required", True,
                       lifetimes.end_entity, floor, keys.end_entity, below_root=True)
        if name == TOKEN_AUTHORITY:
            return cls(TOKEN_AUTHORITY, False, None, _key_usage(**_SIGNING_KEY_USAGE), "forbidden", False,
                       lifetimes.token_authority, floor, None, below_root=True)
        raise IssuanceError(f"unknown certificate profile {name!r}", field="kind")


@dataclass(frozen=True)
class CertificateContent:
    """What varies between two certificates of one profile."""

    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    scope: TNScope | None = None
    constraints: ClaimConstraints | None = None
    domain: str | None = None  # the one dNSName of a domain-bound end-entity certificate


@dataclass(frozen=True)
class IssuerContext:
    """The issuing side of a certificate: its certificate and scope, and the policy's extras."""

    certificate: x509.Certificate | None  # None: self-signed (the root)
    scope: TNScope | None
    crl_url: str | None
    crl_issuer: x509.Name | None
    policy_oids: tuple[x509.ObjectIdentifier, ...]


def build(profile: Profile, content: CertificateContent, issuer: IssuerContext) -> x509.CertificateBuilder:
    """The certificate ``content`` describes under ``profile``, ready to be drafted and linted."""
    ski = x509.SubjectKeyIdentifier.from_public_key(content.public_key)
    if issuer.certificate is None:
        issuer_name = content.subject
        aki = x509.AuthorityKeyIdentifier(ski.digest, None, None)
    else:
        issuer_name = issuer.certificate.subject
        issuer_ski = subject_key_identifier(issuer.certificate)
        if issuer_ski is not None:
            aki = x509.AuthorityKeyIdentifier(issuer_ski, None, None)
        else:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.certificate.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(content.subject)
        .issuer_name(issuer_name)
        .public_key(content.public_key)
        .serial_number(content.serial)
        .not_valid_before(content.not_before)
        .not_valid_after(content.not_after)
        .add_extension(x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length if profile.ca else None),
                       critical=True)
        .add_extension(profile.key_usage, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    if profile.below_root and issuer.policy_oids:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(oid, None) for oid in issuer.policy_oids]), critical=False
        )
    if profile.below_root and issuer.crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(issuer.crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=[x509.DirectoryName(issuer.crl_issuer)] if issuer.crl_issuer else None,
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if profile.tn_auth_list == "required":
        if content.scope is None or not content.scope.entries:
            raise IssuanceError(f"a {profile.name} certificate needs a TN scope (RFC 8226 §9)", field="scope")
        # RFC 8226 §9: TNAuthList is non-critical.
        builder = builder.add_extension(content.scope.to_extension(), critical=False)
    if content.constraints is not None:
        if not profile.claim_constraints_allowed:
            raise IssuanceError(
                f"claim constraints are only for end-entity certificates, not {profile.name} (RFC 8226 §8)",
                field="constraints",
            )
        # RFC 8226 §8 / RFC 9118 §3: non-critical; the object picks exactly one of the two OIDs.
        builder = builder.add_extension(
            x509.UnrecognizedExtension(content.constraints.oid, content.constraints.to_der()), critical=False
        )
    if content.domain is not None:
        if profile.name != END_ENTITY:
            raise IssuanceError(f"a domain goes on end-entity certificates only, not {profile.name}", field="domain")
        # draft-wendt-stir-tn-domain-binding-00: exactly one dNSName; RFC 5280 §4.2.1.6: non-critical
        # when the subject is not empty.
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(content.domain)]), critical=False)
    return builder


def lint(
    profile: Profile,
    draft: x509.Certificate,
    issuer: IssuerContext,
    *,
    form: str = CERTIFICATE,
    precertificate: x509.Certificate | None = None,
) -> list[str]:
    """Every way ``draft`` breaks ``profile`` (empty when it conforms), each with its citation.

    ``draft`` is the certificate signed by a throwaway key: its TBS is what the real key would
    sign. These checks are deliberately independent of :func:`build` (they read the drafted DER,
    not the inputs), so a bug in one is caught by the other. ``form`` (one of :data:`FORMS`) says
    which CT extensions the TBS must and must not carry; a :data:`CERTIFICATE_WITH_SCTS` is also
    compared with its signed ``precertificate``.
    """
    if form not in FORMS:
        raise IssuanceError(f"unknown certificate form {form!r} (known: {', '.join(FORMS)})", field="form")
    findings: list[str] = []
    try:
        extensions = {ext.oid: ext for ext in draft.extensions}
    except MALFORMED_X509_ERRORS as exc:
        # An extension cryptography decodes (an SCT list made from a log's bad SCT, say) that
        # does not decode is a finding like any other, not an exception out of issuance.
        return [f"extensions do not decode: {exc} (RFC 5280 §4.2)"]

    def extension(cls: Any) -> x509.Extension | None:
        return extensions.get(cls.oid)

    # RFC 5280 §4.1.2.1 and §4.1.2.2.
    if draft.version != x509.Version.v3:
        findings.append("version is not v3 (RFC 5280 §4.1.2.1)")
    serial = draft.serial_number
    if serial <= 0 or (serial.bit_length() + 8) // 8 > MAX_SERIAL_OCTETS:
        findings.append("serial number is not a positive integer of at most 20 octets (RFC 5280 §4.1.2.2)")
    if not len(draft.subject):
        findings.append("subject is empty (RFC 5280 §4.1.2.6: a STIR certificate has no SAN to replace it)")
    elif issuer.certificate is not None:
        # Not its issuer's name, no control or bidi character, a sane size (ca/issuing/subjects.py).
        problem = subject_problem(draft.subject, (issuer.certificate.subject, issuer.certificate.issuer))
        if problem is not None:
            findings.append(problem)

    basic = extension(x509.BasicConstraints)
    if basic is None or not basic.critical:
        findings.append("basicConstraints missing or not critical (RFC 5280 §4.2.1.9)")
    elif basic.value.ca != profile.ca:
        findings.append(f"basicConstraints cA is {basic.value.ca}, profile {profile.name} needs {profile.ca}")
    elif basic.value.path_length != (profile.path_length if profile.ca else None):
        findings.append(f"basicConstraints pathLenConstraint is {basic.value.path_length}, expected {profile.path_length}")

    usage = extension(x509.KeyUsage)
    if usage is None or not usage.critical:
        findings.append("keyUsage missing or not critical (RFC 5280 §4.2.1.3)")
    elif usage.value != profile.key_usage:
        findings.append(f"keyUsage differs from the {profile.name} profile (RFC 5280 §4.2.1.3)")

    ski = extension(x509.SubjectKeyIdentifier)
    if ski is None or ski.critical:
        findings.append("subjectKeyIdentifier missing or critical (RFC 5280 §4.2.1.2)")
    aki = extension(x509.AuthorityKeyIdentifier)
    if aki is None or aki.critical:
        findings.append("authorityKeyIdentifier missing or critical (RFC 5280 §4.2.1.1, RFC 9060 §7)")
    elif issuer.certificate is not None:
        expected = subject_key_identifier(issuer.certificate)
        if expected is not None and aki.value.key_identifier != expected:
            findings.append("authorityKeyIdentifier does not equal the issuer's subjectKeyIdentifier (RFC 9060 §7)")
        if draft.issuer != issuer.certificate.subject:
            findings.append("issuer name does not equal the issuer certificate's subject (RFC 5280 §4.1.2.4)")

    # Validity: RFC 5280 §4.1.2.5 and the policy's caps.
    not_before, not_after = draft.not_valid_before_utc, draft.not_valid_after_utc
    lifetime = not_after - not_before
    if lifetime <= dt.timedelta(0):
        findings.append("notAfter is not after notBefore (RFC 5280 §4.1.2.5)")
    if lifetime > profile.max_lifetime:
        findings.append(f"validity {format_duration(lifetime)} exceeds the {profile.name} maximum of "
                        f"{format_duration(profile.max_lifetime)} (policy [lifetimes])")
    if lifetime < profile.min_lifetime:
        findings.append(f"validity {format_duration(lifetime)} is below the minimum of "
                        f"{format_duration(profile.min_lifetime)} (policy [lifetimes] minimum)")
    if issuer.certificate is not None and not_after > issuer.certificate.not_valid_after_utc:
        findings.append("notAfter is later than the issuer's notAfter")

    if profile.allowed_key_types is not None:
        key_type = key_type_name(draft.public_key())
        if key_type not in profile.allowed_key_types:
            findings.append(
                f"subject key {key_type} is not allowed for {profile.name} (policy [keys]: "
                f"{', '.join(profile.allowed_key_types)}; RFC 8226 §4 needs ES256-capable keys)"
            )

    # RFC 8226 §9: the TNAuthList is non-critical; it must be inside the issuer's (RFC 9060 §4).
    tn_ext = extensions.get(OID_TN_AUTH_LIST)
    if profile.tn_auth_list == "required":
        if tn_ext is None:
            findings.append(f"TNAuthList missing from a {profile.name} certificate (RFC 8226 §9)")
        else:
            if tn_ext.critical:
                findings.append("TNAuthList is critical (RFC 8226 §9: non-critical)")
            try:
                scope = TNScope.from_der(tn_ext.value.value)
            except ScopeError as error:
                findings.append(f"TNAuthList does not decode: {error.detail}")
            else:
                if issuer.scope is not None and not issuer.scope.contains(scope):
                    outside = issuer.scope.difference_of(scope)
                    findings.append(f"TNAuthList is not inside the issuer's scope: {outside.describe()} (RFC 9060 §4)")
    elif tn_ext is not None:
        findings.append(f"a {profile.name} certificate carries no TNAuthList")

    claim_exts = [extensions[oid] for oid in CLAIM_CONSTRAINT_OIDS if oid in extensions]
    if claim_exts and not profile.claim_constraints_allowed:
        findings.append("claim constraints on a CA certificate (RFC 8226 §8, RFC 9118 §3: end-entity only)")
    if len(claim_exts) > 1:
        findings.append("both JWTClaimConstraints and EnhancedJWTClaimConstraints present (RFC 9118 §6)")
    if any(ext.critical for ext in claim_exts):
        findings.append("claim constraints extension is critical (RFC 8226 §8: non-critical)")

    san = extensions.get(x509.SubjectAlternativeName.oid)
    if san is not None:
        names = list(san.value)
        if profile.name != END_ENTITY:
            findings.append(f"a {profile.name} certificate carries a subjectAltName (domains go on end-entity certificates)")
        if len(names) != 1 or not isinstance(names[0], x509.DNSName):
            findings.append("subjectAltName must be exactly one dNSName (draft-wendt-stir-tn-domain-binding-00)")
        if san.critical and len(draft.subject):
            findings.append("subjectAltName is critical although the subject is not empty (RFC 5280 §4.2.1.6)")

    findings.extend(_lint_transparency(draft, extensions, form, precertificate))

    # Only basicConstraints and keyUsage are critical (the SHAKEN profile; see the module docstring); the poison of a
    # precertificate is critical by definition and is checked above.
    allowed_critical = (x509.BasicConstraints.oid, x509.KeyUsage.oid, PRECERT_POISON_OID)
    critical_others = [ext.oid.dotted_string for ext in extensions.values()
                       if ext.critical and ext.oid not in allowed_critical]
    if critical_others:
        findings.append(f"unexpected critical extension(s) {', '.join(critical_others)}")
    return findings


def _lint_transparency(
    draft: x509.Certificate,
    extensions: dict[x509.ObjectIdentifier, x509.Extension],
    form: str,
    precertificate: x509.Certificate | None,
) -> list[str]:
    """The CT extensions ``form`` requires and forbids (RFC 6962 §3.1, §3.3)."""
    findings: list[str] = []
    poison = extensions.get(PRECERT_POISON_OID)
    if form == PRECERTIFICATE:
        if poison is None or not poison.critical:
            findings.append("precertificate poison missing or not critical (RFC 6962 §3.1)")
    elif poison is not None:
        # RFC 6962 §3.1: the poison makes a certificate unusable; only a precertificate has it.
        findings.append(f"a {form} carries the precertificate poison (RFC 6962 §3.1)")
    scts = extensions.get(SCT_LIST_OID)
    if form == CERTIFICATE_WITH_SCTS:
        if scts is None:
            findings.append("SCT list missing from a certificate-with-scts (RFC 6962 §3.3)")
        else:
            if scts.critical:
                findings.append("SCT list is critical (RFC 6962 §3.3: relying parties without CT support must accept it)")
            if not len(scts.value):
                findings.append("SCT list is empty (RFC 6962 §3.3: sct_list<1..2^16-1>)")
        # RFC 6962 §3.1-§3.3: the SCTs sign the precertificate's TBS without the poison, so the
        # certificate's TBS without its SCT list must be exactly that, or the SCTs do not verify.
        if precertificate is None:
            findings.append("a certificate-with-scts is linted against its precertificate (RFC 6962 §3.3)")
        elif scts is not None:
            try:
                signed_by_logs = tbs_without_poison(precertificate)
            except TransparencyError as error:
                findings.append(f"the precertificate cannot be read back: {error.detail}")
            else:
                if draft.tbs_precertificate_bytes != signed_by_logs:
                    findings.append(
                        "TBS differs from the precertificate's beyond the poison and the SCT list (RFC 6962 §3.3)"
                    )
    elif scts is not None:
        findings.append(f"a {form} carries an SCT list (RFC 6962 §3.3: only the certificate after its precertificate)")
    return findings


def check(
    profile: Profile,
    draft: x509.Certificate,
    issuer: IssuerContext,
    *,
    form: str = CERTIFICATE,
    precertificate: x509.Certificate | None = None,
) -> None:
    """Raise :class:`IssuanceError` listing every lint finding; the real key must not sign then."""
    findings = lint(profile, draft, issuer, form=form, precertificate=precertificate)
    if findings:
        raise IssuanceError(f"{profile.name} {form} failed lint: " + "; ".join(findings), field="certificate")


@dataclass(frozen=True)
class LintedDraft:
    """A draft that passed :func:`lint` as ``form``: the only thing :func:`sign` signs."""

    certificate: x509.Certificate  # signed by a throwaway key of the signer's type
    form: str
    signer: Signer  # the real key that may sign its TBS


def linted_draft(
    profile: Profile,
    builder: x509.CertificateBuilder,
    issuer: IssuerContext,
    signer: Signer,
    *,
    form: str = CERTIFICATE,
    precertificate: x509.Certificate | None = None,
) -> LintedDraft:
    """Draft ``builder`` with a throwaway key of ``signer``'s type and lint it as ``form``; raise
    :class:`IssuanceError` (and sign nothing) when it breaks a rule."""
    draft = draft_certificate(builder, signer)
    check(profile, draft, issuer, form=form, precertificate=precertificate)
    return LintedDraft(draft, form, signer)


def sign(linted: LintedDraft) -> x509.Certificate:
    """Have the real key sign exactly the TBS that passed lint: nothing unlinted reaches the real key.

    The one place this authority's keys sign certificates: whatever form a certificate takes
    (:data:`FORMS`), it reaches the real key only through :func:`linted_draft`.
    """
    return assemble_certificate(linted.certificate.tbs_certificate_bytes, linted.signer)


# --------------------------------------------------------------------------------------------
# The SHAKEN end-entity subject rule (policy [certificates] profile = "shaken")
# --------------------------------------------------------------------------------------------
#
# A written rule of the SHAKEN certificate profile, kept apart from the rest of this module so it
# can be read (and reconciled with how other profiles name their subjects) on its own. Deployed
# SHAKEN clients (docs/shaken.md) accept a certificate only if its subject is byte-equal to their
# CSR's, so under this profile the subject *is* the CSR's, RDN for RDN, but only after every
# attribute has been checked against the rule: nothing the rule does not name is echoed.

SHAKEN = "shaken"
# ATIS-1000080 §6.4.1 (subject: C, O, CN; names must identify the service provider) and the
# subject the SHAKEN clients send: C, ST, L, O, OU, CN. These, and only these, may be echoed.
SHAKEN_SUBJECT_ATTRIBUTES = {
    x509.NameOID.COUNTRY_NAME: "C",
    x509.NameOID.STATE_OR_PROVINCE_NAME: "ST",
    x509.NameOID.LOCALITY_NAME: "L",
    x509.NameOID.ORGANIZATION_NAME: "O",
    x509.NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    x509.NameOID.COMMON_NAME: "CN",
}
SHAKEN_REQUIRED_ATTRIBUTES = ("C", "O", "CN")
# ATIS-1000080 §6.4.1: CN is "SHAKEN", one space, the SPC of the TNAuthList; clients append one
# more word (a generation id), which the rule allows.
_SHAKEN_CN = re.compile(r"SHAKEN ([A-Z0-9]+)(?: [\x21-\x7e]{1,40})?")
_COUNTRY = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2
MAX_SHAKEN_ATTRIBUTE_CHARS = 64  # RFC 5280 Appendix A upper bounds (ub-common-name 64)


def shaken_subject(csr_subject: x509.Name, scope: TNScope) -> x509.Name:
    """The subject of a SHAKEN end-entity certificate: the CSR's, once it follows the rule.

    The rule (ATIS-1000080 §6.4.1 as docs/shaken.md states it): single-valued RDNs of C, ST, L, O,
    OU and CN only, each at most once except OU; C, O and CN present; C two upper-case letters;
    CN ``"SHAKEN <SPC>"`` optionally followed by one word; and the certified TNAuthList is exactly
    one SPC, the one CN names (so CN's SPC is inside the delegation the order was authorized by,
    which :func:`ca.issuing.issuance.issue` checks for the scope). Raises :class:`CSRError`
    naming the first attribute that breaks it; the order stays ready for a better CSR.
    """
    entries = scope.entries
    if len(entries) != 1 or not isinstance(entries[0], SPC):
        raise CSRError(
            f"the SHAKEN profile certifies exactly one SPC (ATIS-1000080 §6.4.1), and this order's TNAuthList is "
            f"{scope.describe()}", field="scope")
    spc = entries[0].code
    seen: dict[str, int] = {}
    for rdn in csr_subject.rdns:
        if len(rdn) != 1:
            raise CSRError("the SHAKEN profile takes single-valued RDNs only; the CSR subject has a multi-valued one",
                           field="csr.subject")
        attribute = next(iter(rdn))
        short = SHAKEN_SUBJECT_ATTRIBUTES.get(attribute.oid)
        if short is None:
            raise CSRError(
                f"the SHAKEN profile does not echo the subject attribute {attribute.oid.dotted_string} "
                f"(allowed: {', '.join(SHAKEN_SUBJECT_ATTRIBUTES.values())})", field="csr.subject")
        value = attribute.value
        if not isinstance(value, str) or not value or len(value) > MAX_SHAKEN_ATTRIBUTE_CHARS:
            raise CSRError(f"subject {short} must be 1 to {MAX_SHAKEN_ATTRIBUTE_CHARS} characters", field="csr.subject")
        seen[short] = seen.get(short, 0) + 1
        if short != "OU" and seen[short] > 1:
            raise CSRError(f"the CSR subject has {short} more than once", field="csr.subject")
        if short == "C" and not _COUNTRY.fullmatch(value):
            raise CSRError(f"subject C must be an ISO 3166-1 alpha-2 code, got {value[:8]!r}", field="csr.subject")
        if short == "CN":
            match = _SHAKEN_CN.fullmatch(value)
            if match is None:
                raise CSRError(f"subject CN must be 'SHAKEN <SPC>' (ATIS-1000080 §6.4.1), got {value[:64]!r}",
                               field="csr.subject")
            if match.group(1) != spc:
                raise CSRError(f"subject CN names SPC {match.group(1)!r}, but the order certifies SPC {spc!r}",
                               field="csr.subject")
    missing = [name for name in SHAKEN_REQUIRED_ATTRIBUTES if name not in seen]
    if missing:
        raise CSRError(f"the SHAKEN profile needs subject {', '.join(missing)} (ATIS-1000080 §6.4.1)", field="csr.subject")
    return csr_subject
