"""Authority tokens: minting (our token authority) and validation (the ``tkauth-01`` challenge).

An authority token (RFC 9447 §4, profiled for TNAuthList by RFC 9448 §5) is a JWT signed by a
token authority, asserting a TN scope for one ACME account key::

    header  {"typ": "JWT", "alg": "ES256", "x5u": "https://…/token-authority.pem"}
    payload {"iss": …, "exp": …, "jti": …,
             "atc": {"tktype": "TNAuthList", "tkvalue": <base64url DER>, "ca": false,
                     "fingerprint": "SHA256 AB:CD:…"}}

:func:`verify` makes the checks of RFC 9448 §6, those that need no network (steps 5-8) before
the ``x5u`` fetch of step 2; every failure is a :class:`~ca.errors.TokenError` whose ``claim``
names the header parameter or claim at fault and whose detail says what was expected and what
arrived, without echoing the token. Step 9 (``ca``
against the CSR's basicConstraints) cannot run before the CSR exists: :class:`VerifiedToken`
carries ``ca`` so that finalize enforces it.

Single use: the caller records the ``jti`` with :func:`record_use` in the same transaction as the
challenge result; a unique constraint on ``used_token_jtis`` (issuer, jti) makes a second use
fail even across processes. RFC 9447 §3.3 would allow an account-bound token to be reused by the
same account until it expires; this authority chooses single use (DESIGN.md, "authority token").

Implementation choices recorded here (also in docs/rfc-support.md):

- ``atc.fingerprint`` is the RFC 8555 §8.1 "Thumbprint" (RFC 7638 JWK thumbprint, SHA-256) of the
  account key, rendered ``"SHA256 "`` + colon-separated hex pairs, because RFC 9448 §5.4 defines
  it that way. Some token authorities hash the DER SubjectPublicKeyInfo instead; that form is
  accepted only with :attr:`TokenCompat.fingerprint_spki_sha256`.
- The protected header "MUST comply with Request Authentication (RFC 8555 §6.2)" (RFC 9448 §5.3)
  is read as its applicable parts: an asymmetric allow-listed ``alg``, never ``none`` or a MAC,
  and a key located through ``x5u``/``x5c``. ``nonce``/``url``/``jwk``/``kid`` are not required
  because no token authority sends them (RFC 9448's own example has none).
- ``tkvalue`` is compared as DER bytes with the identifier; both base64url (RFC 9448 §5.4) and
  padded standard base64 (SHAKEN practice) are decoded.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import math
import re
import secrets
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import josepy as jose
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509 import verification
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.records import audit, store
from ca.clock import Clock
from ca.errors import DelegationError, PolicyError, ScopeError, SignerError, TokenError, UnavailableError
from ca.policy import TokenPolicy, format_duration
from ca.numbers.tnauthlist import TNScope, decode_identifier_value
from ca.x509util import MALFORMED_X509_ERRORS, rsa_exponent_refusal, with_names_decoded
from ca.tokens.x5u import X5UError

# RFC 7519 §4.1.7: "jti" must be unique; 128 random bits make a collision negligible.
JTI_BYTES = 16
# RFC 7519 §4.1.4 allows "some small leeway, usually no more than a few minutes, to account for
# clock skew". One minute, in both directions (exp in the past, nbf in the future).
CLOCK_SKEW_LEEWAY = dt.timedelta(seconds=60)
# RFC 8725 §3.1 / RFC 9448 §5.3: only asymmetric algorithms; ES256 is the STIR algorithm and the
# default. The policy (``[tokens] allowed_algorithms``) may widen it within SUPPORTED_ALGORITHMS.
ALLOWED_ALGORITHMS = frozenset({"ES256"})
# Tokens longer than this are refused before any parsing (a chain in x5c is a few KiB).
MAX_TOKEN_CHARS = 32 * 1024
# A token authority chain deeper than this is not a token authority chain.
MAX_CHAIN_DEPTH = 4
# Default ceiling for a minted token's lifetime when the policy does not say otherwise.
DEFAULT_MAX_TOKEN_TTL = dt.timedelta(hours=24)
# The longest jti the used_token_jtis / authority_tokens columns hold.
MAX_JTI_CHARS = 255

TKTYPE_TNAUTHLIST = "TNAuthList"
FINGERPRINT_ALGORITHM = "SHA256"
_ES256_COORDINATE_BYTES = 32  # RFC 7518 §3.4: P-256 coordinates are 32 octets
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_FINGERPRINT = re.compile(r"^SHA256 ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})$")


# ------------------------------------------------------------------------------------------
# Inputs and results
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TokenCompat:
    """The ``tnca.toml`` ``[compat]`` switches, for token validation and finalize. Every switch
    defaults to ``False``.

    ``fingerprint_spki_sha256``: also accept an ``atc.fingerprint`` that is SHA-256 over the
    DER SubjectPublicKeyInfo of the account key, as some token authorities compute it. RFC 9448
    §5.4 defines the fingerprint as the RFC 8555 §8.1 thumbprint (RFC 7638); both are 32 bytes
    bound to the same key, so accepting the other form does not widen who can use a token, but
    it is a divergence and is off unless a deployment's token authority needs it.

    ``csr_key_may_equal_account_key``: finalize accepts a CSR whose key is the account key, which
    RFC 8555 §11.1 forbids and deployed SHAKEN clients send (``ca.orders.finalize``).
    """

    fingerprint_spki_sha256: bool = False
    csr_key_may_equal_account_key: bool = False

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TokenCompat:
        """From ``tnca.toml`` ``[compat]``: every key a known switch, every value a boolean.

        Raises :class:`~ca.errors.PolicyError` naming ``[compat] key``.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in section.items():
            if key not in known:
                raise PolicyError(f"unknown compatibility switch [compat] {key}; known: {', '.join(sorted(known))}",
                                  field=f"[compat] {key}")
            if not isinstance(value, bool):
                raise PolicyError(f"[compat] {key} must be true or false, got {value!r}", field=f"[compat] {key}")
        return cls(**section)


@dataclasses.dataclass(frozen=True)
class TokenTrust:
    """Which token authorities are trusted, and the limits applied to their tokens.

    ``anchors``: certificates a token's signing certificate must chain to (a pinned token
    authority certificate is its own anchor). ``local_authority``: this authority's own token
    authority certificate, if it runs one; tokens it signed must be ones :func:`mint` recorded.
    """

    anchors: tuple[x509.Certificate, ...]
    max_lifetime: dt.timedelta = DEFAULT_MAX_TOKEN_TTL
    local_authority: x509.Certificate | None = None
    algorithms: frozenset[str] = ALLOWED_ALGORITHMS
    compat: TokenCompat = TokenCompat()

    def __post_init__(self) -> None:
        anchors = tuple(self.anchors)
        if self.local_authority is not None and all(
            a.public_bytes(serialization.Encoding.DER) != self.local_authority.public_bytes(serialization.Encoding.DER)
            for a in anchors
        ):
            anchors = anchors + (self.local_authority,)
        if not anchors:
            # sigstore's rule for AllOf([]): an empty trust list is a misconfiguration, not
            # "trust nothing quietly".
            raise ValueError("TokenTrust needs at least one trusted token authority certificate")
        unknown = set(self.algorithms) - set(SUPPORTED_ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported token algorithms {sorted(unknown)}; supported: {sorted(SUPPORTED_ALGORITHMS)}")
        if not self.algorithms:
            raise ValueError("TokenTrust needs at least one allowed token algorithm")
        object.__setattr__(self, "anchors", anchors)
        object.__setattr__(self, "algorithms", frozenset(self.algorithms))


def trust_from_policy(
    policy: TokenPolicy, *, local_authority: x509.Certificate | None, compat: TokenCompat = TokenCompat()
) -> TokenTrust:
    """A :class:`TokenTrust` from the policy's ``[tokens]`` section.

    The home's own token authority certificate is always trusted (and marked local); each file
    in ``trusted_authorities`` may hold several PEM certificates. An unreadable file is a
    PolicyError naming ``[tokens] trusted_authorities``.
    """
    anchors: list[x509.Certificate] = []
    for path in policy.trusted_authorities:
        try:
            anchors.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise PolicyError(
                f"policy key [tokens] trusted_authorities: cannot read certificates from {path} "
                f"({getattr(exc, 'strerror', None) or exc})",
                field="[tokens] trusted_authorities",
            ) from exc
    return TokenTrust(
        anchors=tuple(anchors),
        max_lifetime=policy.max_lifetime,
        local_authority=local_authority,
        algorithms=frozenset(policy.allowed_algorithms),
        compat=compat,
    )


class Fetcher(Protocol):
    def fetch(self, url: str) -> Sequence[x509.Certificate]: ...


class TokenAuthority(Protocol):
    """What :func:`mint` needs of ``home.token_authority()``."""

    certificate: x509.Certificate
    x5u: str

    @property
    def signer(self) -> Any: ...


@dataclasses.dataclass(frozen=True)
class VerifiedToken:
    """What a valid authority token asserted, as the challenge handler and finalize need it."""

    jti: str
    expires: dt.datetime
    ca: bool  # RFC 9448 §6 step 9: enforced against the CSR at finalize
    scope: TNScope
    issuer: str  # SHA-256 hex of the signing certificate's SubjectPublicKeyInfo
    certificate: x509.Certificate  # the token authority certificate that signed it
    x5u: str | None  # None when the chain came in x5c
    local: bool  # signed by this authority's own token authority


@dataclasses.dataclass(frozen=True)
class MintedToken:
    token: str
    jti: str
    expires: dt.datetime
    delegation_id: str
    scope: TNScope
    ca: bool
    fingerprint: str


# ------------------------------------------------------------------------------------------
# Fingerprints (RFC 9448 §5.4, RFC 8555 §8.1, RFC 7638)
# ------------------------------------------------------------------------------------------


def account_fingerprint(jwk: jose.JWK | Mapping[str, Any] | str) -> str:
    """``"SHA256 AB:CD:…"``: the RFC 7638 SHA-256 thumbprint of the account key, in hex.

    RFC 9448 §5.4: the fingerprint is "constructed as defined in RFC 8555 Section 8.1
    corresponding to the computation of the 'Thumbprint' step using the ACME account key".
    josepy encodes EC coordinates at their full length and RSA integers without leading zeros,
    which is what RFC 8555 §8.1 (with erratum 7565) asks of the thumbprint input.
    """
    return _render_fingerprint(_jwk_thumbprint(_as_jwk(jwk)))


def spki_fingerprint(jwk: jose.JWK | Mapping[str, Any] | str) -> str:
    """``"SHA256 AB:CD:…"`` over the DER SubjectPublicKeyInfo: the non-RFC form some TAs use."""
    return _render_fingerprint(_spki_sha256(_as_jwk(jwk)))


def parse_fingerprint(value: str) -> bytes:
    """The 32 digest bytes of ``"SHA256 AB:CD:…"`` (hex in either case). Raises TokenError."""
    if not isinstance(value, str):
        raise TokenError(
            f"token 'atc.fingerprint' must be a string, got {_json_type(value)}", claim="atc.fingerprint"
        )
    match = _FINGERPRINT.match(value)
    if match is None:
        raise TokenError(
            "token 'atc.fingerprint' must be 'SHA256 ' followed by 32 colon-separated hex bytes "
            f"(RFC 9448 §5.4), got {_excerpt(value)}",
            claim="atc.fingerprint",
        )
    return bytes.fromhex(match.group(1).replace(":", ""))


def _render_fingerprint(digest: bytes) -> str:
    return f"{FINGERPRINT_ALGORITHM} " + ":".join(f"{b:02X}" for b in digest)


class _Ed25519PublicJWK:
    """An RFC 8037 OKP Ed25519 public JWK, which josepy cannot parse; ACME accounts may use one
    (RFC 8555 §6.2: servers SHOULD support EdDSA). Offers what fingerprints need: ``key``,
    ``public_key()`` and the RFC 7638 ``thumbprint`` over the required members crv, kty, x."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        x = obj.get("x")
        if obj.get("crv") != "Ed25519" or not isinstance(x, str) or not _BASE64URL.match(x):
            raise ValueError("not an Ed25519 OKP JWK")
        self.key = ed25519.Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
        self._members = {"crv": "Ed25519", "kty": "OKP", "x": x}

    def public_key(self) -> "_Ed25519PublicJWK":
        return self

    def thumbprint(self, hash_function: type[hashes.HashAlgorithm] = hashes.SHA256) -> bytes:
        digest = hashes.Hash(hash_function())
        digest.update(json.dumps(self._members, separators=(",", ":"), sort_keys=True).encode())
        return digest.finalize()


def _as_jwk(jwk: jose.JWK | Mapping[str, Any] | str) -> jose.JWK:
    if isinstance(jwk, jose.JWK):
        return jwk.public_key()
    try:
        obj = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
        if obj.get("kty") == "OKP":
            return _Ed25519PublicJWK(obj)  # type: ignore[return-value]
        return jose.JWK.from_json(obj).public_key()
    except (ValueError, TypeError, KeyError, jose.errors.Error) as exc:
        raise TokenError(f"account key is not a usable public JWK ({type(exc).__name__})", claim="atc.fingerprint") from exc


def _jwk_thumbprint(jwk: jose.JWK) -> bytes:
    return jwk.thumbprint(hash_function=hashes.SHA256)


def _spki_sha256(jwk: jose.JWK) -> bytes:
    key = jwk.key
    public = key.public_key() if hasattr(key, "private_bytes") else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def certificate_issuer_id(certificate: x509.Certificate) -> str:
    """SHA-256 hex of a certificate's SubjectPublicKeyInfo: ``used_token_jtis.issuer``."""
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


# ------------------------------------------------------------------------------------------
# Validation (RFC 9448 §6)
# ------------------------------------------------------------------------------------------


def verify(
    token: str,
    *,
    identifier_scope: TNScope,
    account_jwk: jose.JWK | Mapping[str, Any] | str,
    trust: TokenTrust,
    clock: Clock,
    fetcher: Fetcher,
    session: Session | None = None,
) -> VerifiedToken:
    """Validate an authority token for ``identifier_scope`` presented by ``account_jwk``.

    Makes the checks of RFC 9448 §6 (after the JWS itself is parsed), in the order 1, 5-8, 2-4:
    steps 5-8 need no network, so a token that fails them never causes an ``x5u`` fetch (which
    runs before the signature can be checked). A token is accepted only if every step passes, so
    the order changes which error a token with several faults gets, never whether it passes.

    1. ``atc`` is a JSON object with the mandatory keys; ``exp`` and ``jti`` are present.
    2. ``x5u``, when present, is an https URL whose certificate chains to a trusted token authority.
    3. ``x5c``, when present, holds a chain to a trusted token authority.
    4. The signature verifies with that certificate's key.
    5. ``atc.tktype`` is ``"TNAuthList"``.
    6. ``atc.tkvalue`` is the same DER TNAuthList as the identifier.
    7. The remaining claims: ``exp`` not passed, not further away than the policy allows; ``nbf``.
    8. ``atc.fingerprint`` is the requesting account key's.
    9. (``atc.ca`` against the CSR: at finalize, from :attr:`VerifiedToken.ca`.)

    With ``session``, a token signed by this authority's own token authority is also checked
    against what :func:`mint` recorded (it must exist; its delegation must not be revoked).
    :func:`record_use` repeats that check in any case. Raises :class:`TokenError`, or
    :class:`~ca.errors.UnavailableError` when the ``x5u`` chain could not be fetched for a
    reason that may pass (fetcher busy, no complete answer in time): that says nothing about the
    token, which may be presented again.
    """
    header, payload, signing_input, signature = _parse_compact_jws(token)
    alg = _check_header(header, trust)
    atc = _check_mandatory_claims(payload)  # step 1
    now = clock.now()
    # Steps 5-8 need no network, so they run before step 2 may fetch x5u: a token that would
    # fail them costs no fetch. They read claims that are not authenticated yet, so they only
    # refuse; nothing is recorded or trusted until the signature has verified (step 4).
    _check_tktype(atc)  # step 5
    scope = _check_tkvalue(atc, identifier_scope)  # step 6
    expires = _check_time_claims(payload, trust, now)  # step 7
    _check_fingerprint(atc, account_jwk, trust.compat)  # step 8
    ca = _check_ca_flag(atc)
    chain, x5u = _signing_chain(header, fetcher)  # steps 2 and 3
    signer_cert = _check_trusted(chain, trust, now, claim="x5u" if x5u is not None else "x5c")
    _check_signature(signer_cert, alg, signing_input, signature)  # step 4
    issuer = certificate_issuer_id(signer_cert)
    verified = VerifiedToken(
        jti=payload["jti"],
        expires=expires,
        ca=ca,
        scope=scope,
        issuer=issuer,
        certificate=signer_cert,
        x5u=x5u,
        local=trust.local_authority is not None and issuer == certificate_issuer_id(trust.local_authority),
    )
    if session is not None:
        check_minted_here(session, verified)
    return verified


def _parse_compact_jws(token: Any) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    if not isinstance(token, str):
        raise TokenError(f"token must be a JWS compact serialization string, got {_json_type(token)}", claim="token")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError(f"token is {len(token)} characters; the limit is {MAX_TOKEN_CHARS}", claim="token")
    parts = token.split(".")
    if len(parts) != 3:
        # RFC 7515 §7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
        raise TokenError(
            f"token must be a JWS compact serialization of 3 dot-separated parts (RFC 7515 §7.1), got {len(parts)}",
            claim="token",
        )
    names = ("protected header", "payload", "signature")
    decoded = [_b64url_decode(part, names[i]) for i, part in enumerate(parts)]
    header = _json_object(decoded[0], "protected header", claim="header")
    payload = _json_object(decoded[1], "payload", claim="payload")
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    return header, payload, signing_input, decoded[2]


def _b64url_decode(part: str, name: str) -> bytes:
    # RFC 7515 §2: base64url without padding; anything else is refused rather than guessed at.
    if not part or not _BASE64URL.match(part) or len(part) % 4 == 1:
        raise TokenError(f"token {name} is not unpadded base64url (RFC 7515 §2)", claim="token")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _json_object(raw: bytes, name: str, *, claim: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_members)
    except _DuplicateMember as exc:
        # RFC 7515 §4 / RFC 7519 §4: names must be unique; rejecting (rather than keeping the
        # last) leaves no room for two parsers to read two different tokens out of one.
        raise TokenError(f"token {name} repeats the member {_excerpt(exc.name)}", claim=claim) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenError(f"token {name} is not UTF-8 JSON ({type(exc).__name__})", claim=claim) from exc
    if not isinstance(value, dict):
        raise TokenError(f"token {name} must be a JSON object, got {_json_type(value)}", claim=claim)
    return value


class _DuplicateMember(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateMember(key)
        result[key] = value
    return result


def _check_header(header: dict[str, Any], trust: TokenTrust) -> str:
    alg = header.get("alg")
    if alg not in trust.algorithms:
        # RFC 8725 §3.1 and §3.2: "none" and MACs are never acceptable for a token whose key is
        # located through a certificate; the allowlist keeps anything unexpected out as well.
        raise TokenError(
            f"token header 'alg' must be one of {sorted(trust.algorithms)}, got {_excerpt(alg)}", claim="alg"
        )
    if "crit" in header:
        # RFC 7515 §4.1.11: a recipient that does not understand a listed extension MUST reject.
        raise TokenError("token header 'crit' names extensions this server does not support", claim="crit")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        # RFC 8725 §3.11: explicit typing keeps other JWT kinds from being accepted as this one.
        raise TokenError(f"token header 'typ' must be 'JWT' when present, got {_excerpt(typ)}", claim="typ")
    if ("x5u" in header) == ("x5c" in header):
        raise TokenError(
            "token header must carry exactly one of 'x5u' or 'x5c' to locate the token authority "
            f"certificate (RFC 9448 §6), got {'both' if 'x5u' in header else 'neither'}",
            claim="x5u",
        )
    return alg


def _check_mandatory_claims(payload: dict[str, Any]) -> dict[str, Any]:
    # RFC 9448 §5.3: the payload MUST include "exp", "jti" and "atc".
    for claim in ("atc", "exp", "jti"):
        if claim not in payload:
            raise TokenError(f"token is missing the mandatory claim '{claim}' (RFC 9448 §5.3)", claim=claim)
    atc = payload["atc"]
    if not isinstance(atc, dict):
        raise TokenError(f"token 'atc' must be a JSON object (RFC 9448 §6 step 1), got {_json_type(atc)}", claim="atc")
    for key in ("tktype", "tkvalue", "fingerprint"):
        if key not in atc:
            raise TokenError(f"token 'atc' is missing the mandatory key '{key}' (RFC 9448 §6 step 1)", claim=f"atc.{key}")
        if not isinstance(atc[key], str):
            raise TokenError(f"token 'atc.{key}' must be a string, got {_json_type(atc[key])}", claim=f"atc.{key}")
    if "iss" in payload and not isinstance(payload["iss"], str):
        # RFC 7519 §4.1.1: "iss" is a StringOrURI; it is optional in RFC 9448 §5.3.
        raise TokenError(f"token 'iss' must be a string, got {_json_type(payload['iss'])}", claim="iss")
    jti = payload["jti"]
    if not isinstance(jti, str) or not jti:
        raise TokenError(f"token 'jti' must be a non-empty string (RFC 7519 §4.1.7), got {_json_type(jti)}", claim="jti")
    if len(jti) > MAX_JTI_CHARS:
        raise TokenError(f"token 'jti' is {len(jti)} characters; the limit is {MAX_JTI_CHARS}", claim="jti")
    return atc


def _signing_chain(header: dict[str, Any], fetcher: Fetcher) -> tuple[tuple[x509.Certificate, ...], str | None]:
    if "x5u" in header:
        url = header["x5u"]
        if not isinstance(url, str):
            raise TokenError(f"token header 'x5u' must be a URL string, got {_json_type(url)}", claim="x5u")
        try:
            chain = tuple(fetcher.fetch(url))
        except X5UError as exc:
            if exc.retry_after is not None:
                # Not a judgement on the token: the same token may pass once the fetcher has
                # room or the host answers, so this is not a TokenError.
                raise UnavailableError(
                    f"token header 'x5u': {exc.detail}", field="x5u", retry_after=max(1, math.ceil(exc.retry_after))
                ) from exc
            raise TokenError(f"token header 'x5u': {exc.detail}", claim="x5u") from exc
        if not chain:
            raise TokenError("token header 'x5u' resource holds no certificate", claim="x5u")
        return chain, url
    x5c = header["x5c"]
    # RFC 7515 §4.1.6: a JSON array of base64 (not base64url) DER certificates, signer first.
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise TokenError("token header 'x5c' must be a non-empty array of base64 DER certificates", claim="x5c")
    if len(x5c) > MAX_CHAIN_DEPTH + 1:
        raise TokenError(f"token header 'x5c' holds {len(x5c)} certificates; the limit is {MAX_CHAIN_DEPTH + 1}", claim="x5c")
    chain = []
    for index, encoded in enumerate(x5c):
        try:
            chain.append(with_names_decoded(x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))))
        except (binascii.Error, *MALFORMED_X509_ERRORS) as exc:
            raise TokenError(f"token header 'x5c[{index}]' is not a base64 DER certificate (RFC 7515 §4.1.6)", claim="x5c") from exc
    return tuple(chain), None


def _check_trusted(
    chain: tuple[x509.Certificate, ...], trust: TokenTrust, now: dt.datetime, *, claim: str
) -> x509.Certificate:
    """The signing certificate, once it chains to a trusted token authority at ``now``.

    Path building and validation (signatures, validity periods, basicConstraints and keyUsage of
    every CA on the path) are cryptography's RFC 5280 verifier; a pinned token authority
    certificate is its own trust anchor. The end-entity extension policy is permissive because a
    token authority certificate is not a web server or client certificate (no SAN or EKU is
    required); its keyUsage, when present, must allow digitalSignature.
    """
    leaf, intermediates = chain[0], list(chain[1:])
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trust.anchors)))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except verification.VerificationError as exc:
        raise TokenError(
            f"token signer certificate '{leaf.subject.rfc4514_string()}' does not chain to a trusted "
            f"token authority (RFC 9448 §6 steps 2-3): {exc}",
            claim=claim,
        ) from exc
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise TokenError(
            f"token signer certificate '{leaf.subject.rfc4514_string()}' keyUsage does not allow digitalSignature",
            claim=claim,
        )
    return leaf


@dataclasses.dataclass(frozen=True)
class _Algorithm:
    """One RFC 7518 §3 signature algorithm: how to check its key and verify its signature."""

    hash: type[hashes.HashAlgorithm] | None
    family: str  # "ecdsa" | "rsa-pkcs1" | "rsa-pss" | "eddsa"
    curve: type[ec.EllipticCurve] | None = None
    coordinate_bytes: int = 0


# RFC 7518 §3.1 (and RFC 8037 §3.1 for EdDSA). "none" and the HS* MACs are deliberately absent.
SUPPORTED_ALGORITHMS: dict[str, _Algorithm] = {
    "ES256": _Algorithm(hashes.SHA256, "ecdsa", ec.SECP256R1, 32),
    "ES384": _Algorithm(hashes.SHA384, "ecdsa", ec.SECP384R1, 48),
    "ES512": _Algorithm(hashes.SHA512, "ecdsa", ec.SECP521R1, 66),
    "RS256": _Algorithm(hashes.SHA256, "rsa-pkcs1"),
    "RS384": _Algorithm(hashes.SHA384, "rsa-pkcs1"),
    "RS512": _Algorithm(hashes.SHA512, "rsa-pkcs1"),
    "PS256": _Algorithm(hashes.SHA256, "rsa-pss"),
    "PS384": _Algorithm(hashes.SHA384, "rsa-pss"),
    "PS512": _Algorithm(hashes.SHA512, "rsa-pss"),
    "EdDSA": _Algorithm(None, "eddsa"),
}
# RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these algorithms."
_MIN_RSA_BITS = 2048


def _check_signature(cert: x509.Certificate, alg: str, signing_input: bytes, signature: bytes) -> None:
    spec = SUPPORTED_ALGORITHMS[alg]
    key = cert.public_key()
    wrong_key = TokenError(
        f"token 'alg' {alg} does not fit the token authority key ({_describe_key(key)})", claim="alg"
    )
    bad = TokenError(
        "token signature does not verify with the token authority key (RFC 9448 §6 step 4)", claim="signature"
    )
    try:
        if spec.family == "ecdsa":
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, spec.curve):
                raise wrong_key
            # RFC 7518 §3.4: the JWS signature is R || S, each the curve's coordinate length.
            if len(signature) != 2 * spec.coordinate_bytes:
                raise TokenError(
                    f"token {alg} signature must be {2 * spec.coordinate_bytes} bytes R||S (RFC 7518 §3.4), "
                    f"got {len(signature)}",
                    claim="signature",
                )
            r = int.from_bytes(signature[: spec.coordinate_bytes], "big")
            s = int.from_bytes(signature[spec.coordinate_bytes :], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(spec.hash()))
        elif spec.family in ("rsa-pkcs1", "rsa-pss"):
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size < _MIN_RSA_BITS:
                raise wrong_key
            refusal = rsa_exponent_refusal(key.public_numbers().e)
            if refusal is not None:  # before verifying: a huge exponent is what makes that costly
                raise TokenError(f"token authority key: {refusal}", claim="alg")
            if spec.family == "rsa-pkcs1":
                pad: padding.AsymmetricPadding = padding.PKCS1v15()
            else:
                # RFC 7518 §3.5: MGF1 with the same hash; salt as long as the hash output.
                pad = padding.PSS(mgf=padding.MGF1(spec.hash()), salt_length=spec.hash.digest_size)
            key.verify(signature, signing_input, pad, spec.hash())
        else:
            if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
                raise wrong_key
            key.verify(signature, signing_input)
    except InvalidSignature as exc:
        raise bad from exc


def _describe_key(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")


def _check_tktype(atc: dict[str, Any]) -> None:
    if atc["tktype"] != TKTYPE_TNAUTHLIST:
        raise TokenError(
            f"token 'atc.tktype' must be '{TKTYPE_TNAUTHLIST}' (RFC 9448 §6 step 5), got {_excerpt(atc['tktype'])}",
            claim="atc.tktype",
        )


def _check_tkvalue(atc: dict[str, Any], identifier_scope: TNScope) -> TNScope:
    try:
        # Base64url (RFC 9448 §5.4) or padded standard base64 (SHAKEN practice); DER compared.
        der = decode_identifier_value(atc["tkvalue"])
    except ScopeError as exc:
        raise TokenError(f"token 'atc.tkvalue' is not a base64url TNAuthList: {exc.detail}", claim="atc.tkvalue") from exc
    expected = identifier_scope.to_der()
    if der == expected:
        return identifier_scope
    try:
        described = TNScope.from_der(der).describe()
    except ScopeError:
        described = "bytes that are not a DER TNAuthList"
    raise TokenError(
        "token 'atc.tkvalue' is for another TNAuthList than the identifier (RFC 9448 §6 step 6): "
        f"expected {identifier_scope.describe()}, got {described}",
        claim="atc.tkvalue",
    )


def _check_time_claims(payload: dict[str, Any], trust: TokenTrust, now: dt.datetime) -> dt.datetime:
    expires = _numeric_date(payload["exp"], "exp")
    if expires + CLOCK_SKEW_LEEWAY <= now:
        raise TokenError(
            f"token 'exp' {expires.isoformat()} has passed (now {now.isoformat()}, leeway "
            f"{int(CLOCK_SKEW_LEEWAY.total_seconds())} s)",
            claim="exp",
        )
    latest = now + trust.max_lifetime + CLOCK_SKEW_LEEWAY
    if expires > latest:
        raise TokenError(
            f"token 'exp' {expires.isoformat()} is too far in the future: this authority accepts tokens "
            f"valid for at most {format_duration(trust.max_lifetime)} (until {latest.isoformat()})",
            claim="exp",
        )
    if "iat" in payload:
        # policies/default.toml: the lifetime is counted from iat to exp when the token says iat.
        issued = _numeric_date(payload["iat"], "iat")
        if issued > now + CLOCK_SKEW_LEEWAY:
            raise TokenError(f"token 'iat' {issued.isoformat()} is in the future (now {now.isoformat()})", claim="iat")
        if expires - issued > trust.max_lifetime:
            raise TokenError(
                f"token lifetime from 'iat' to 'exp' is {format_duration(expires - issued)}; this authority "
                f"accepts at most {format_duration(trust.max_lifetime)}",
                claim="exp",
            )
    if "nbf" in payload:
        not_before = _numeric_date(payload["nbf"], "nbf")
        if not_before > now + CLOCK_SKEW_LEEWAY:
            raise TokenError(f"token 'nbf' {not_before.isoformat()} is in the future (now {now.isoformat()})", claim="nbf")
    return expires


def _numeric_date(value: Any, claim: str) -> dt.datetime:
    # RFC 7519 §2: NumericDate is a JSON number of seconds since the epoch; bool is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"token '{claim}' must be a NumericDate (RFC 7519 §2), got {_json_type(value)}", claim=claim)
    try:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise TokenError(f"token '{claim}' {value!r} is out of range", claim=claim) from exc


def _check_fingerprint(atc: dict[str, Any], account_jwk: Any, compat: TokenCompat) -> None:
    presented = parse_fingerprint(atc["fingerprint"])
    jwk = _as_jwk(account_jwk)
    thumbprint = _jwk_thumbprint(jwk)
    if hmac.compare_digest(presented, thumbprint):
        return
    spki_digest = _spki_sha256(jwk)
    if hmac.compare_digest(presented, spki_digest):
        if compat.fingerprint_spki_sha256:
            return
        raise TokenError(
            "token 'atc.fingerprint' is SHA-256 of the account key's SubjectPublicKeyInfo, not its "
            "RFC 8555 §8.1 thumbprint as RFC 9448 §5.4 requires; enable the compatibility switch "
            "fingerprint_spki_sha256 to accept this form",
            claim="atc.fingerprint",
        )
    raise TokenError(
        "token 'atc.fingerprint' is for another account key (RFC 9448 §6 step 8): expected "
        f"{_render_fingerprint(thumbprint)}, got {_render_fingerprint(presented)}",
        claim="atc.fingerprint",
    )


def _check_ca_flag(atc: dict[str, Any]) -> bool:
    # RFC 9447 §4 / RFC 9448 §5.4: "ca" is optional and false when absent.
    ca = atc.get("ca", False)
    if not isinstance(ca, bool):
        raise TokenError(f"token 'atc.ca' must be a boolean, got {_json_type(ca)}", claim="atc.ca")
    return ca


# ------------------------------------------------------------------------------------------
# Single use and revocation
# ------------------------------------------------------------------------------------------


def check_minted_here(session: Session, verified: VerifiedToken) -> store.AuthorityToken | None:
    """For a token of our own token authority: the minted row, refusing unknown or revoked ones.

    A token our key signed but :func:`mint` never recorded means the key signed outside this
    authority; a token minted under a delegation that has since been revoked no longer carries
    the delegation's authority. Tokens of external token authorities return ``None``.
    """
    if not verified.local:
        return None
    minted = session.get(store.AuthorityToken, verified.jti)
    if minted is None:
        raise TokenError(
            f"token 'jti' {_excerpt(verified.jti)} is signed by this authority's token authority but "
            "was never minted by it",
            claim="jti",
        )
    delegation = session.get(store.Delegation, minted.delegation_id)
    if delegation is None or delegation.status != "active":
        raise TokenError(
            f"token 'jti' {_excerpt(verified.jti)} was minted under delegation {minted.delegation_id}, "
            "which has been revoked",
            claim="jti",
        )
    return minted


def record_use(session: Session, verified: VerifiedToken, account_id: str, challenge_id: str) -> str | None:
    """Record the token's ``jti`` as used, in the caller's transaction; returns the delegation id.

    The unique constraint on ``used_token_jtis`` (issuer, jti) is what makes tokens single use,
    also between processes racing on the same token; a violation becomes
    ``TokenError(claim="jti")``. The insert runs in a savepoint so the caller's transaction stays
    usable for recording the challenge as invalid. For tokens this authority minted, returns the
    delegation they were minted under (pass it to ``ca.records.delegations.find_covering``); else None.
    """
    minted = check_minted_here(session, verified)
    row = store.UsedTokenJTI(
        issuer=verified.issuer,
        jti=verified.jti,
        account_id=account_id,
        challenge_id=challenge_id,
        expires_at=verified.expires,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise TokenError(f"token already used: 'jti' {_excerpt(verified.jti)} was presented before", claim="jti") from exc
    return minted.delegation_id if minted is not None else None


# ------------------------------------------------------------------------------------------
# Minting (our token authority)
# ------------------------------------------------------------------------------------------


def mint(
    session: Session,
    *,
    delegation: store.Delegation,
    fingerprint: str,
    scope: TNScope,
    ca: bool,
    ttl: dt.timedelta,
    authority: TokenAuthority,
    clock: Clock,
    actor: str,
    max_ttl: dt.timedelta = DEFAULT_MAX_TOKEN_TTL,
    issuer_url: str | None = None,
) -> MintedToken:
    """Mint an authority token for ``scope`` under ``delegation``, bound to one account key.

    Refuses (nothing written): a delegation that is not active now (DelegationError); a scope not
    inside the delegation's (ScopeError); ``ca`` when the delegation does not allow
    sub-delegation, a ``ttl`` that is not positive, exceeds ``max_ttl`` (the policy's maximum) or
    outlives the delegation (PolicyError); a malformed fingerprint (TokenError).

    Writes the ``authority_tokens`` row and a ``token.mint`` audit event in the caller's
    transaction. ``iss`` is ``issuer_url``, or the origin of the token authority's ``x5u``.
    """
    now = clock.now()
    fingerprint = _render_fingerprint(_parse_fingerprint_input(fingerprint))
    _check_delegation_active(delegation, now)
    delegation_scope = TNScope.from_der(delegation.scope_der)
    if not delegation_scope.contains(scope):
        raise ScopeError(
            f"scope {scope.describe()} is not inside delegation {delegation.id} ({delegation_scope.describe()})",
            field="scope",
        )
    if ca and not delegation.ca_allowed:
        raise PolicyError(f"delegation {delegation.id} does not allow sub-delegation, so 'ca' cannot be set", field="ca")
    if ttl <= dt.timedelta(0):
        raise PolicyError(f"token ttl must be positive, got {format_duration(ttl)}", field="ttl")
    if ttl > max_ttl:
        raise PolicyError(f"token ttl {format_duration(ttl)} exceeds the policy maximum {format_duration(max_ttl)}", field="ttl")
    expires = (now + ttl).replace(microsecond=0)
    if delegation.not_after is not None and expires > delegation.not_after:
        raise PolicyError(
            f"token would expire at {expires.isoformat()}, after delegation {delegation.id} ends at "
            f"{delegation.not_after.isoformat()}",
            field="ttl",
        )

    jti = secrets.token_urlsafe(JTI_BYTES)
    header = {"typ": "JWT", "alg": "ES256", "x5u": authority.x5u}
    payload = {
        "iss": issuer_url or _origin(authority.x5u),
        "exp": int(expires.timestamp()),
        "jti": jti,
        "atc": {
            "tktype": TKTYPE_TNAUTHLIST,
            "tkvalue": scope.to_identifier_value(),
            "ca": bool(ca),
            "fingerprint": fingerprint,
        },
    }
    token = _sign_es256(header, payload, authority.signer)

    session.add(
        store.AuthorityToken(
            jti=jti,
            delegation_id=delegation.id,
            fingerprint=fingerprint,
            scope_der=scope.to_der(),
            ca=bool(ca),
            expires_at=expires,
            created_by=actor,
            created_at=now,
        )
    )
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="token.mint",
        subject_type="authority_token",
        subject_id=jti,
        details={
            "delegation_id": delegation.id,
            "scope": scope.describe(),
            "tkvalue": scope.to_identifier_value(),
            "ca": bool(ca),
            "fingerprint": fingerprint,
            "expires": expires.isoformat(),
        },
        clock=clock,
    )
    return MintedToken(
        token=token,
        jti=jti,
        expires=expires,
        delegation_id=delegation.id,
        scope=scope,
        ca=bool(ca),
        fingerprint=fingerprint,
    )


def _parse_fingerprint_input(value: str) -> bytes:
    try:
        return parse_fingerprint(value.strip() if isinstance(value, str) else value)
    except TokenError as exc:
        raise TokenError(exc.detail.replace("token 'atc.fingerprint'", "fingerprint"), claim="fingerprint") from exc


def _check_delegation_active(delegation: store.Delegation, now: dt.datetime) -> None:
    if delegation.status != "active":
        raise DelegationError(f"delegation {delegation.id} is {delegation.status}", field="delegation")
    if delegation.not_before > now:
        raise DelegationError(
            f"delegation {delegation.id} is not valid before {delegation.not_before.isoformat()}", field="delegation"
        )
    if delegation.not_after is not None and delegation.not_after <= now:
        raise DelegationError(f"delegation {delegation.id} ended at {delegation.not_after.isoformat()}", field="delegation")


def _sign_es256(header: dict[str, Any], payload: dict[str, Any], signer: Any) -> str:
    key = signer.public_key
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignerError("the token authority key must be ECDSA P-256 to sign ES256 authority tokens")
    hash_algorithm = getattr(signer, "hash_algorithm", None)
    if hash_algorithm is not None and not isinstance(hash_algorithm, hashes.SHA256):
        raise SignerError(f"the token authority signer hashes with {hash_algorithm.name}; ES256 needs sha256")
    signing_input = _b64url(_canonical_json(header)) + "." + _b64url(_canonical_json(payload))
    der = signer.sign(signing_input.encode("ascii"))
    # The signer returns a DER ECDSA-Sig-Value (as X.509 wants); JWS wants R || S (RFC 7518 §3.4).
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_ES256_COORDINATE_BYTES, "big") + s.to_bytes(_ES256_COORDINATE_BYTES, "big")
    return signing_input + "." + _b64url(raw)


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode("utf-8")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _excerpt(value: Any, limit: int = 40) -> str:
    """A value for an error detail: quoted, truncated, never a whole token."""
    if not isinstance(value, str):
        return _json_type(value)
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)
