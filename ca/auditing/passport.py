"""Was this PASSporT valid when the call was placed? A verification as of a time.

Input is what an auditor finds in a call record or a complaint: a PASSporT in JWS compact
serialization (RFC 8225 §7, the full form with its payload) or the value of a SIP ``Identity``
header field that carries one (RFC 8224 §4.1: ``token;info=<URL>;alg=ES256;ppt=shaken``,
optionally still prefixed with ``Identity:``). The compact form of RFC 8225 §7 (an empty payload
rebuilt from the SIP message) cannot be judged without that message and is refused as unreadable.

The steps, each reported as a :class:`Check` (so a person sees every problem at once):

1. ``passport`` — the header says ``typ: passport`` and ``alg: ES256`` (RFC 8225 §4.1, §8),
   names its certificate in ``x5u`` (RFC 8225 §4.3), and the payload has ``iat`` and an ``orig``
   telephone number (RFC 8225 §5.2); an Identity header's ``info`` names the same URL (RFC 8224
   §4.1) and its ``ppt``, when present, the header's ``ppt``.
2. ``certificate`` — found from ``x5u``: when it names this authority's repository
   (``{base_url}/cert-repo/<serial>.pem``) from the records, which keep it after revocation or
   expiry (the repository then answers 410); otherwise fetched with ``ca.tokens.x5u.X5UFetcher``
   and its one deadline.
3. ``signature`` — the JWS signature verifies with the certificate's key (RFC 8225 §8, RFC 7518
   §3.4: R‖S of P-256).
4. ``chain`` — the certificate chains to one of the configured roots, every certificate of the
   path valid at the time asked about (RFC 5280 §6.1.3).
5. ``tnauthlist`` — the certificate's TNAuthList covers ``orig`` (RFC 8226 §9, RFC 8224 §8.3
   canonical form: visual separators and a leading ``+`` dropped). An SPC entry never covers a
   number here (RFC 9060 §4.1).
6. ``claim-constraints`` — the PASSporT satisfies the certificate's JWTClaimConstraints or
   EnhancedJWTClaimConstraints (``ca.numbers.claims.evaluate``; RFC 8226 §8, RFC 9118 §4).
7. ``validity`` — notBefore ≤ time ≤ notAfter (RFC 5280 §4.1.2.5).
8. ``revocation`` — not revoked as of the time: from the records for a certificate issued here
   (a revocation recorded after the time does not count against it). For a certificate issued
   elsewhere, from the CRL at its distribution point (RFC 5280 §4.2.1.13), fetched only once the
   certificate chains to a configured root and checked against its issuer's signature; an entry
   whose revocationDate is after the time does not count. Without a readable CRL the status is
   unknown and the check fails saying so.
9. ``scts`` — the embedded SCTs verify against the configured logs, as many from distinct logs
   as the policy requires (RFC 6962 §3.3); with no logs configured, nothing is required.

The time is ``at`` when given, else the PASSporT's ``iat``: "was it valid when the call was
placed". ``iat`` freshness against a SIP ``Date`` (RFC 8224 §6.2.1 step 4) is a real-time check
and is not made here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ca.config import CERT_REPO_PATH
from ca.encoding import rfc3339
from ca.errors import ClaimConstraintsError, ScopeError, TNCAError, TokenError, TransparencyError
from ca.lifecycle.reasons import CRLReason
from ca.issuing.transparency import LogClient, verify_embedded_scts
from ca.numbers import claims
from ca.numbers.tnauthlist import TNScope
from ca.records.audit import utc_timestamp
from ca.records.models_authority import Certificate, Issuer
from ca.tokens.jws import parse_compact_jws
from ca.home import Home
from ca.tokens.x5u import X5UError, X5UFetcher
from ca.x509util import fingerprint_sha256, serial_hex

# RFC 8225 §8 / RFC 8588: PASSporTs are signed with ES256.
PASSPORT_ALGORITHM = "ES256"
_P256_COORDINATE_BYTES = 32  # RFC 7518 §3.4
# A path longer than this is not a STIR chain (root, issuing CA, delegate CA, delegate).
MAX_CHAIN_DEPTH = 6
_IDENTITY_PREFIX = re.compile(r"^\s*identity\s*:\s*", re.IGNORECASE)
_VISUAL_SEPARATORS = re.compile(r"[-.() ]")
# The last path segment of a repository URL: the certificate's serial in lowercase hex.
_REPOSITORY_SERIAL = re.compile(r"([0-9a-f]{1,64})\.pem")

CHECK_NAMES = ("passport", "certificate", "signature", "chain", "tnauthlist", "claim-constraints", "validity",
               "revocation", "scts")


class PassportInputError(TNCAError):
    """The input is not a PASSporT or an Identity header value that can be read at all."""


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclasses.dataclass(frozen=True)
class ParsedPassport:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    parameters: dict[str, str]  # the Identity header's parameters (RFC 8224 §4.1), lowercased names

    @property
    def x5u(self) -> str | None:
        value = self.header.get("x5u")
        return value if isinstance(value, str) else None

    @property
    def iat(self) -> dt.datetime | None:
        value = self.claims.get("iat")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**40:
            return dt.datetime.fromtimestamp(value, dt.timezone.utc)
        return None

    @property
    def orig_tn(self) -> str | None:
        orig = self.claims.get("orig")
        if isinstance(orig, dict) and isinstance(orig.get("tn"), str):
            return canonical_tn(orig["tn"])
        return None


@dataclasses.dataclass(frozen=True)
class Verdict:
    valid: bool
    at: dt.datetime | None
    serial: str | None
    checks: tuple[Check, ...]
    found_in: str | None = None  # "records" | "x5u"

    @classmethod
    def unreadable(cls, error: PassportInputError) -> Verdict:
        """The verdict on input that is not a PASSporT (the API answers with it; the CLI exits 2)."""
        return cls(valid=False, at=None, serial=None, checks=(Check("passport", False, error.detail),))

    @property
    def reasons(self) -> list[str]:
        return [f"{check.name}: {check.detail}" for check in self.checks if not check.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "at": rfc3339(self.at) if self.at is not None else None,
            "certificate": {"serial": self.serial, "source": self.found_in},
            "checks": [check.to_json() for check in self.checks],
            "reasons": self.reasons,
        }


def canonical_tn(value: str) -> str:
    """RFC 8224 §8.3: a telephone number without visual separators and without the leading ``+``."""
    return _VISUAL_SEPARATORS.sub("", value.strip()).removeprefix("+")


def parse(text: str) -> ParsedPassport:
    """A PASSporT or an Identity header value; PassportInputError when it cannot be read."""
    if not isinstance(text, str) or not text.strip():
        raise PassportInputError("no PASSporT: the input is empty")
    value = _IDENTITY_PREFIX.sub("", text.strip())
    token, _, rest = value.partition(";")
    parameters: dict[str, str] = {}
    for part in rest.split(";") if rest else ():
        name, _, raw = part.strip().partition("=")
        if name:
            parameters[name.strip().lower()] = raw.strip().removeprefix("<").removesuffix(">").strip('"')
    token = token.strip()
    parts = token.split(".")
    if len(parts) == 3 and parts[1] == "":
        raise PassportInputError(
            "this is the compact form of RFC 8225 §7 (no payload): the claims must be rebuilt from the SIP "
            "request, which is not part of the input; give the full form")
    try:
        header, payload, signing_input, signature = parse_compact_jws(token)
    except TokenError as error:
        raise PassportInputError("not a PASSporT: " + error.detail.replace("token", "JWS", 1)) from None
    return ParsedPassport(header, payload, signing_input, signature, parameters)


# -- finding the certificate ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Found:
    chain: tuple[x509.Certificate, ...]  # the certificate first, then what x5u / the records gave with it
    source: str  # "records" | "x5u"


class CertificateFinder:
    """``x5u`` → the chain: from the records when it names this authority's repository, else fetched."""

    def __init__(self, session: Session, *, repository_url: str, fetch: Callable[[str], tuple[x509.Certificate, ...]]):
        self.session = session
        self.repository_url = repository_url.rstrip("/") + "/"
        self.fetch = fetch

    def find(self, x5u: str) -> Found:
        """Raises TNCAError naming why nothing was found."""
        if x5u.startswith(self.repository_url):
            match = _REPOSITORY_SERIAL.fullmatch(x5u[len(self.repository_url):])
            if match is None:
                raise TNCAError(f"x5u {x5u} is in this authority's repository but names no certificate "
                                f"(expected <serial>.pem)")
            row = self.session.scalars(
                select(Certificate).where(Certificate.serial == match.group(1))
                .options(selectinload(Certificate.issuer))).one_or_none()
            if row is None or row.der is None:
                raise TNCAError(f"x5u names certificate {match.group(1)} of this authority's repository, "
                                f"but no such certificate was issued here")
            return Found((x509.load_der_x509_certificate(row.der), *self._issuers(row.issuer)), "records")
        try:
            chain = self.fetch(x5u)
        except X5UError as error:
            raise TNCAError(error.detail) from None
        if not chain:
            raise TNCAError(f"x5u {x5u} holds no certificate")
        return Found(tuple(chain), "x5u")

    def _issuers(self, issuer: Issuer | None) -> list[x509.Certificate]:
        found = []
        while issuer is not None and len(found) < MAX_CHAIN_DEPTH:
            found.append(x509.load_der_x509_certificate(issuer.certificate_der))
            issuer = self.session.get(Issuer, issuer.parent_id) if issuer.parent_id is not None else None
        return found


# -- the checks -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Trust:
    """What a verification trusts: root certificates and the CT logs with how many SCTs to require."""

    roots: tuple[x509.Certificate, ...]
    logs: tuple[LogClient, ...] = ()
    required_scts: int = 0
    # CRL URL -> DER or PEM bytes, for certificates issued elsewhere (None: not fetched).
    fetch_crl: Callable[[str], bytes] | None = None


def verify(text: str, *, at: dt.datetime | None, finder: CertificateFinder, trust: Trust,
           session: Session) -> Verdict:
    """Every check of the module docstring; raises PassportInputError only for unreadable input."""
    passport = parse(text)
    checks: list[Check] = [_format_check(passport)]
    when = at if at is not None else passport.iat
    x5u = passport.x5u
    if x5u is None:
        checks.append(Check("certificate", False, "the PASSporT names no certificate (no x5u header, RFC 8225 §4.3)"))
        return _verdict(checks, when, None, None)
    try:
        found = finder.find(x5u)
    except TNCAError as error:
        checks.append(Check("certificate", False, error.detail))
        return _verdict(checks, when, None, None)
    leaf = found.chain[0]
    serial = serial_hex(leaf.serial_number)
    checks.append(Check("certificate", True, f"certificate {serial} ({leaf.subject.rfc4514_string()}) from "
                        + ("this authority's records" if found.source == "records" else x5u)))
    checks.append(_signature_check(passport, leaf))
    if when is None:
        checks.append(Check("validity", False, "no time to judge at: the PASSporT has no valid iat and no time was given"))
        return _verdict(checks, None, serial, found.source)
    path_or_check = _chain_check(found.chain, trust.roots, when)
    checks.append(path_or_check[0])
    checks.append(_tnauthlist_check(passport, leaf))
    checks.append(_constraints_check(passport, leaf))
    checks.append(_validity_check(leaf, when))
    checks.append(_revocation_check(session, leaf, when, issuer=path_or_check[1] if path_or_check[0].ok else None,
                                    fetch_crl=trust.fetch_crl))
    checks.append(_sct_check(leaf, path_or_check[1], trust))
    return _verdict(checks, when, serial, found.source)


def _verdict(checks: list[Check], when: dt.datetime | None, serial: str | None, source: str | None) -> Verdict:
    complete = {check.name for check in checks} == set(CHECK_NAMES)
    return Verdict(valid=complete and all(check.ok for check in checks), at=when, serial=serial,
                   checks=tuple(checks), found_in=source)


def _format_check(passport: ParsedPassport) -> Check:
    problems = []
    header = passport.header
    if header.get("typ") != "passport":
        problems.append(f"header typ is {header.get('typ')!r}, not 'passport' (RFC 8225 §4.1)")
    if header.get("alg") != PASSPORT_ALGORITHM:
        problems.append(f"header alg is {header.get('alg')!r}, not {PASSPORT_ALGORITHM} (RFC 8225 §8)")
    if passport.iat is None:
        problems.append("the payload has no valid iat (RFC 8225 §5.1.1)")
    if passport.orig_tn is None:
        problems.append("the payload has no orig telephone number (RFC 8225 §5.2.1)")
    info = passport.parameters.get("info")
    if info is not None and info != passport.x5u:
        problems.append(f"the Identity header's info {info!r} is not the x5u {passport.x5u!r} (RFC 8224 §4.1)")
    ppt = passport.parameters.get("ppt")
    if ppt is not None and ppt != header.get("ppt"):
        problems.append(f"the Identity header's ppt {ppt!r} is not the PASSporT's {header.get('ppt')!r} (RFC 8225 §8.1)")
    if problems:
        return Check("passport", False, "; ".join(problems))
    return Check("passport", True, f"a {header.get('ppt') or 'basic'} PASSporT from {passport.orig_tn}, "
                 f"signed at {rfc3339(passport.iat)}")  # type: ignore[arg-type]


def _signature_check(passport: ParsedPassport, leaf: x509.Certificate) -> Check:
    key = leaf.public_key()
    if passport.header.get("alg") != PASSPORT_ALGORITHM:
        return Check("signature", False, f"alg {passport.header.get('alg')!r} is not {PASSPORT_ALGORITHM}")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return Check("signature", False, "the certificate's key is not a P-256 key, which ES256 needs")
    size = _P256_COORDINATE_BYTES
    if len(passport.signature) != 2 * size:
        return Check("signature", False, f"the signature is {len(passport.signature)} bytes, not R||S of {2 * size}")
    r = int.from_bytes(passport.signature[:size], "big")
    s = int.from_bytes(passport.signature[size:], "big")
    try:
        key.verify(encode_dss_signature(r, s), passport.signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return Check("signature", False, "the signature does not verify with the certificate's key: "
                     "signed by another key")
    return Check("signature", True, "ES256 signature verifies with the certificate's key")


def _within(certificate: x509.Certificate, when: dt.datetime) -> bool:
    return certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc


def _name(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _chain_check(chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate],
                 when: dt.datetime) -> tuple[Check, x509.Certificate | None]:
    """(check, the certificate's issuer): a path from the certificate to a root, RFC 5280 §6.1
    signatures and CA flags, each certificate above the leaf valid at ``when``."""
    if not roots:
        return Check("chain", False, "no root certificates are configured"), None
    current, pool = chain[0], list(chain[1:])
    path: list[x509.Certificate] = []
    for _ in range(MAX_CHAIN_DEPTH):
        for root in roots:
            if _issued_by(current, root):
                issuer = path[0] if path else root
                late = [c for c in [*path, root] if not _within(c, when)]
                if late:
                    return Check("chain", False, f"{_name(late[0])} was not valid at {rfc3339(when)}"), issuer
                via = f" via {' → '.join(_name(c) for c in path)}" if path else ""
                return Check("chain", True, f"chains to the root {_name(root)}{via}"), issuer
        parent = next((c for c in pool if _issued_by(current, c)), None)
        if parent is None:
            return Check("chain", False, f"no path from {_name(current)} to a configured root "
                         f"({', '.join(_name(r) for r in roots)})"), (path[0] if path else None)
        pool.remove(parent)
        path.append(parent)
        current = parent
    return Check("chain", False, f"the chain is longer than {MAX_CHAIN_DEPTH} certificates"), None


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        constraints = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _tnauthlist_check(passport: ParsedPassport, leaf: x509.Certificate) -> Check:
    orig = passport.orig_tn
    try:
        scope = TNScope.from_certificate(leaf)
    except ScopeError as error:
        return Check("tnauthlist", False, f"the certificate's TNAuthList cannot be read: {error.detail}")
    if scope is None:
        return Check("tnauthlist", False, "the certificate has no TNAuthList (RFC 8226 §9)")
    if orig is None:
        return Check("tnauthlist", False, "the PASSporT has no orig telephone number to check")
    try:
        covered = scope.covers_number(orig)
    except ScopeError as error:
        return Check("tnauthlist", False, f"orig {orig!r} is not a telephone number: {error.detail}")
    if not covered:
        return Check("tnauthlist", False, f"orig {orig} is outside the certificate's TNAuthList ({scope.describe()})")
    return Check("tnauthlist", True, f"orig {orig} is inside the certificate's TNAuthList ({scope.describe()})")


def _constraints_check(passport: ParsedPassport, leaf: x509.Certificate) -> Check:
    try:
        constraints = claims.ClaimConstraints.from_certificate(leaf)
    except ClaimConstraintsError as error:
        return Check("claim-constraints", False, f"the certificate's claim constraints cannot be read: {error.detail}")
    violations = claims.evaluate(passport.claims, constraints)
    if violations:
        return Check("claim-constraints", False, "; ".join(violations))
    if constraints is None:
        return Check("claim-constraints", True, "the certificate pins no claims; the baseline claims are present")
    return Check("claim-constraints", True, f"the PASSporT satisfies {constraints.describe()}")


def _validity_check(leaf: x509.Certificate, when: dt.datetime) -> Check:
    window = f"{rfc3339(leaf.not_valid_before_utc)} – {rfc3339(leaf.not_valid_after_utc)}"
    if when < leaf.not_valid_before_utc:
        return Check("validity", False, f"not yet valid at {rfc3339(when)} (valid {window})")
    if when > leaf.not_valid_after_utc:
        return Check("validity", False, f"expired at {rfc3339(when)} (valid {window})")
    return Check("validity", True, f"valid at {rfc3339(when)} (valid {window})")


def _revocation_check(session: Session, leaf: x509.Certificate, when: dt.datetime, *,
                      issuer: x509.Certificate | None = None,
                      fetch_crl: Callable[[str], bytes] | None = None) -> Check:
    row = session.scalars(
        select(Certificate).where(Certificate.serial == serial_hex(leaf.serial_number),
                                  Certificate.fingerprint_sha256 == fingerprint_sha256(leaf.public_bytes(serialization.Encoding.DER)))
        .options(selectinload(Certificate.revocation))).one_or_none()
    if row is None:
        return _crl_check(leaf, when, issuer, fetch_crl)
    revocation = row.revocation
    if revocation is None:
        return Check("revocation", True, f"not revoked (records of this authority, as of {rfc3339(when)})")
    reason = (CRLReason(revocation.reason_code).asn1_name if revocation.reason_code is not None
              else "no reason code")
    # To the microsecond: a PASSporT's iat has whole seconds, a revocation a few hundred ms later
    # in the same second came after it.
    revoked_at, at = utc_timestamp(revocation.revoked_at), utc_timestamp(when)
    if revocation.revoked_at <= when:
        return Check("revocation", False, f"revoked at {revoked_at} ({reason}), not after {at}")
    return Check("revocation", True, f"not revoked at {at} (revoked later, at {revoked_at}, {reason})")


def _crl_check(leaf: x509.Certificate, when: dt.datetime, issuer: x509.Certificate | None,
               fetch_crl: Callable[[str], bytes] | None) -> Check:
    """A certificate issued elsewhere: its CRL (RFC 5280 §5), fetched only once the certificate
    chains to a trusted root (so nobody can make the verifier fetch a URL of their choosing),
    signed by its issuer; an entry whose revocationDate is after the time does not count."""
    at = utc_timestamp(when)
    unknown = f"not issued by this authority: its revocation status as of {at} is unknown here"
    if fetch_crl is None or issuer is None:
        return Check("revocation", False, unknown + ("" if fetch_crl is None else " (no trusted issuer to check a CRL with)"))
    try:
        points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return Check("revocation", False, unknown + " (the certificate names no CRL distribution point)")
    urls = [name.value for point in points for name in (point.full_name or ())
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(("http://", "https://"))]
    if not urls:
        return Check("revocation", False, unknown + " (no http(s) CRL distribution point)")
    try:
        raw = fetch_crl(urls[0])
        crl = (x509.load_pem_x509_crl(raw) if raw.lstrip().startswith(b"-----BEGIN")
               else x509.load_der_x509_crl(raw))
    except (TNCAError, ValueError) as error:
        detail = error.detail if isinstance(error, TNCAError) else f"not a CRL ({error})"
        return Check("revocation", False, f"{unknown}: the CRL at {urls[0]} could not be read: {detail}")
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        return Check("revocation", False, f"{unknown}: the CRL at {urls[0]} is not signed by the certificate's issuer")
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    issued = utc_timestamp(crl.last_update_utc)
    if entry is None:
        return Check("revocation", True, f"not on the CRL of {issued} ({urls[0]})")
    revoked_at = utc_timestamp(entry.revocation_date_utc)
    if entry.revocation_date_utc <= when:
        return Check("revocation", False, f"revoked at {revoked_at}, not after {at} (the CRL of {issued}, {urls[0]})")
    return Check("revocation", True, f"not revoked at {at} (revoked later, at {revoked_at}; the CRL of {issued})")


def fetch_crl_http(url: str, *, timeout: float, max_bytes: int = 1024 * 1024) -> bytes:
    """GET a CRL under one deadline (each socket wait, and the whole body between chunks)."""
    deadline = time.monotonic() + timeout
    body = bytearray()
    try:
        with requests.get(url, timeout=timeout, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                raise TNCAError(f"answered {response.status_code}")
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise TNCAError(f"larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise TNCAError(f"no complete answer within {timeout} s")
    except requests.RequestException as error:
        raise TNCAError(f"no answer ({type(error).__name__})") from None
    return bytes(body)


def _sct_check(leaf: x509.Certificate, issuer: x509.Certificate | None, trust: Trust) -> Check:
    if not trust.logs:
        return Check("scts", True, "no CT logs are configured: no SCT is required")
    if issuer is None:
        return Check("scts", False, "the issuer is unknown, so the precertificate the SCTs sign cannot be rebuilt")
    try:
        verified = verify_embedded_scts(leaf, issuer, trust.logs, required=max(trust.required_scts, 1))
    except TransparencyError as error:
        return Check("scts", False, error.detail)
    names = sorted(log.name for log in trust.logs if log.log_id in {sct.log_id for sct in verified})
    return Check("scts", True, f"{len(verified)} SCT(s) verified, from {', '.join(names)}")



# -- from a home ----------------------------------------------------------------------------------

def trust_of_home(home: Home, *, extra_roots: Sequence[x509.Certificate] = ()) -> Trust:
    """The home's root (and any extra roots), the policy's CT logs and its required SCT count."""
    ct = home.policy.ct
    timeout = home.fetch_policy.timeout_seconds
    return Trust(roots=(home.root_certificate(), *extra_roots),
                 logs=tuple(LogClient.from_policy(log) for log in ct.logs),
                 required_scts=ct.required_scts if ct.logs else 0,
                 fetch_crl=functools.partial(fetch_crl_http, timeout=timeout))


def finder_of_home(home: Home, session: Session, fetcher: X5UFetcher | None = None) -> CertificateFinder:
    """Records for ``{base_url}/cert-repo/…``, else the ``[x5u]`` fetcher (its limits, its deadline)."""
    fetcher = fetcher or X5UFetcher(home.fetch_policy, clock=home.clock)
    return CertificateFinder(session, repository_url=home.base_url + CERT_REPO_PATH, fetch=fetcher.fetch)
