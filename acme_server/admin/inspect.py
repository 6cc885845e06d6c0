"""What the certificate page shows about one certificate, checked rather than merely decoded.

- **TNAuthList** (RFC 8226 §9) and **claim constraints** (RFC 8226 §8, RFC 9118) as read from the
  certificate itself, not from the database row, so the page shows what relying parties see.
- **SCTs** (RFC 6962 §3.3): each embedded SCT is matched to a configured log by its log ID and
  its signature verified over the precertificate entry rebuilt from the certificate
  (``ca.issuing.transparency``). An SCT from a log that is not configured cannot be checked and says so.
- **Chain**: the certificate, its issuer and the issuer's parents up to the root, each signature
  checked against the next certificate's key (``verify_directly_issued_by``); the root against
  itself. Nothing here decides trust: that is the relying party's trust anchor.

Nothing here touches Flask; the view passes in the rows and the logs.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ca.numbers.claims import ClaimConstraints
from ca.errors import ClaimConstraintsError, ScopeError, TransparencyError
from ca.records.models_authority import Certificate, Issuer
from ca.numbers.tn_entries import SPC, TN, TNRange
from ca.numbers.tnauthlist import TNScope
from ca.issuing.transparency import SCT_LIST_OID, LogClient, issuer_key_hash, parse_sct_list

# Extensions a STIR certificate carries, named for people (RFC 8226, RFC 9118, RFC 5280, RFC 6962).
EXTENSION_NAMES = {
    "1.3.6.1.5.5.7.1.26": "TNAuthList (RFC 8226 §9)",
    "1.3.6.1.5.5.7.1.27": "JWTClaimConstraints (RFC 8226 §8)",
    "1.3.6.1.5.5.7.1.33": "EnhancedJWTClaimConstraints (RFC 9118)",
    "1.3.6.1.4.1.11129.2.4.2": "Embedded SCT list (RFC 6962 §3.3)",
    "1.3.6.1.4.1.11129.2.4.3": "Precertificate poison (RFC 6962 §3.1)",
    "2.5.29.14": "Subject key identifier",
    "2.5.29.15": "Key usage",
    "2.5.29.19": "Basic constraints",
    "2.5.29.31": "CRL distribution points",
    "2.5.29.32": "Certificate policies",
    "2.5.29.35": "Authority key identifier",
    "2.5.29.37": "Extended key usage",
}

SIGNATURE_ALGORITHMS = {
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.3.101.112": "Ed25519",
}


@dataclasses.dataclass(frozen=True)
class ScopeEntryView:
    kind: str  # "TN" | "range" | "SPC"
    value: str
    numbers: int | None  # how many numbers it names; None for an SPC (RFC 9060 §4.1)
    last: str | None  # the last number of a range


@dataclasses.dataclass(frozen=True)
class SCTView:
    log_name: str | None
    log_url: str | None
    log_id: str  # base64, as CT log lists spell it
    timestamp: dt.datetime
    status: str  # "verified" | "invalid" | "unknown-log"
    detail: str


@dataclasses.dataclass(frozen=True)
class ChainLink:
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    key: str
    sha256: str
    is_ca: bool
    signature_ok: bool | None  # None: the signer is not known here
    signature_detail: str
    pem: str


@dataclasses.dataclass(frozen=True)
class ExtensionView:
    oid: str
    name: str
    critical: bool


@dataclasses.dataclass(frozen=True)
class CertificateInspection:
    scope_entries: tuple[ScopeEntryView, ...]
    scope_error: str | None
    constraints: ClaimConstraints | None
    constraints_error: str | None
    scts: tuple[SCTView, ...]
    sct_error: str | None  # the SCT list itself could not be read
    chain: tuple[ChainLink, ...]
    extensions: tuple[ExtensionView, ...]
    key: str
    signature_algorithm: str
    crl_urls: tuple[str, ...]
    policies: tuple[str, ...]

    @property
    def verified_sct_logs(self) -> int:
        return len({sct.log_id for sct in self.scts if sct.status == "verified"})

    @property
    def chain_ok(self) -> bool:
        return bool(self.chain) and all(link.signature_ok for link in self.chain)


def inspect(record: Certificate, issuers: Sequence[Issuer], logs: Sequence[LogClient]) -> CertificateInspection | None:
    """Decode and check an issued certificate (None when the row holds no certificate yet).

    ``issuers`` is the certificate's issuer followed by its parents up to the root (the
    ``issuers`` rows); ``logs`` are the configured CT logs whose SCTs can be checked.
    """
    if record.der is None:
        return None
    certificate = x509.load_der_x509_certificate(record.der)
    issuer_certificates = [x509.load_der_x509_certificate(row.certificate_der) for row in issuers]
    scope_entries, scope_error = _scope(certificate)
    constraints, constraints_error = _constraints(certificate)
    scts, sct_error = _scts(record, certificate, issuer_certificates[0] if issuer_certificates else None, logs)
    return CertificateInspection(
        scope_entries=scope_entries,
        scope_error=scope_error,
        constraints=constraints,
        constraints_error=constraints_error,
        scts=scts,
        sct_error=sct_error,
        chain=tuple(_chain([certificate, *issuer_certificates])),
        extensions=tuple(
            ExtensionView(ext.oid.dotted_string, EXTENSION_NAMES.get(ext.oid.dotted_string, ext.oid.dotted_string), ext.critical)
            for ext in certificate.extensions
        ),
        key=describe_key(certificate.public_key()),
        signature_algorithm=SIGNATURE_ALGORITHMS.get(certificate.signature_algorithm_oid.dotted_string,
                                                     certificate.signature_algorithm_oid.dotted_string),
        crl_urls=_crl_urls(certificate),
        policies=_policies(certificate),
    )


def describe_key(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ECDSA P-256", "secp384r1": "ECDSA P-384", "secp521r1": "ECDSA P-521"}.get(
            key.curve.name, f"ECDSA {key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def scope_entry_views(scope: TNScope) -> tuple[ScopeEntryView, ...]:
    views = []
    for entry in scope.entries:
        if isinstance(entry, TN):
            views.append(ScopeEntryView("TN", entry.number, 1, None))
        elif isinstance(entry, TNRange):
            last = str(int(entry.start) + entry.count - 1).zfill(len(entry.start))
            views.append(ScopeEntryView("range", f"{entry.start} + {entry.count}", entry.count, last))
        elif isinstance(entry, SPC):
            views.append(ScopeEntryView("SPC", entry.code, None, None))
    return tuple(views)


def _scope(certificate: x509.Certificate) -> tuple[tuple[ScopeEntryView, ...], str | None]:
    try:
        scope = TNScope.from_certificate(certificate, strict=False)
    except ScopeError as error:
        return (), error.detail
    if scope is None:
        return (), "the certificate carries no TNAuthList extension (1.3.6.1.5.5.7.1.26)"
    return scope_entry_views(scope), None


def _constraints(certificate: x509.Certificate) -> tuple[ClaimConstraints | None, str | None]:
    try:
        return ClaimConstraints.from_certificate(certificate), None
    except ClaimConstraintsError as error:
        return None, error.detail


def _scts(record: Certificate, certificate: x509.Certificate, issuer: x509.Certificate | None,
          logs: Sequence[LogClient]) -> tuple[tuple[SCTView, ...], str | None]:
    try:
        extension = certificate.extensions.get_extension_for_oid(SCT_LIST_OID)
    except x509.ExtensionNotFound:
        return (), None
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else value.public_bytes()
    try:
        scts = parse_sct_list(raw)
    except TransparencyError as error:
        return (), error.detail
    by_id = {log.log_id: log for log in logs}
    # The issuance record names the URL each SCT came from, also for a log since removed from
    # the policy.
    recorded_urls = {entry.get("log_id"): entry.get("log_url") for entry in (record.scts or []) if isinstance(entry, dict)}
    views = []
    for sct in scts:
        log_id = base64.b64encode(sct.log_id).decode("ascii")
        timestamp = dt.datetime.fromtimestamp(sct.timestamp / 1000, tz=dt.timezone.utc)
        log = by_id.get(sct.log_id)
        if log is None:
            views.append(SCTView(None, recorded_urls.get(log_id), log_id, timestamp, "unknown-log",
                                 "this log is not configured in the policy, so its signature cannot be checked here"))
            continue
        if issuer is None:
            views.append(SCTView(log.name, log.url, log_id, timestamp, "invalid", "the issuing CA is unknown"))
            continue
        try:
            log.verify_sct(sct, issuer_key_hash=issuer_key_hash(issuer), tbs_certificate=certificate.tbs_precertificate_bytes)
        except TransparencyError as error:
            views.append(SCTView(log.name, log.url, log_id, timestamp, "invalid", error.detail))
            continue
        views.append(SCTView(log.name, log.url, log_id, timestamp, "verified",
                             "signature verified over the precertificate entry (RFC 6962 §3.2)"))
    return tuple(views), None


def _chain(certificates: Sequence[x509.Certificate]) -> list[ChainLink]:
    links = []
    for index, certificate in enumerate(certificates):
        if index + 1 < len(certificates):
            signer = certificates[index + 1]
        elif certificate.issuer == certificate.subject:
            signer = certificate  # a self-signed root
        else:
            signer = None
        ok, detail = _signed_by(certificate, signer)
        links.append(ChainLink(
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            serial=format(certificate.serial_number, "x"),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            key=describe_key(certificate.public_key()),
            sha256=hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest(),
            is_ca=_is_ca(certificate),
            signature_ok=ok,
            signature_detail=detail,
            pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        ))
    return links


def _signed_by(certificate: x509.Certificate, signer: x509.Certificate | None) -> tuple[bool | None, str]:
    if signer is None:
        return None, "its issuer is not known to this authority"
    try:
        certificate.verify_directly_issued_by(signer)
    except InvalidSignature:
        return False, f"the signature does not verify with the key of {signer.subject.rfc4514_string()}"
    except (ValueError, TypeError) as error:
        return False, f"not issued by {signer.subject.rfc4514_string()}: {error}"
    if signer is certificate:
        return True, "self-signed (a trust anchor)"
    return True, f"signed by {signer.subject.rfc4514_string()}"


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _crl_urls(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(
        name.value for point in points for name in (point.full_name or []) if isinstance(name, x509.UniformResourceIdentifier)
    )


def _policies(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(policy.policy_identifier.dotted_string for policy in policies)


def issuer_rows(session: Any, issuer_id: int) -> list[Issuer]:
    """The issuer of a certificate followed by its parents, up to the root."""
    rows: list[Issuer] = []
    row = session.get(Issuer, issuer_id)
    while row is not None and len(rows) < 8:  # a chain longer than this is a loop in the data
        rows.append(row)
        row = session.get(Issuer, row.parent_id) if row.parent_id is not None else None
    return rows
