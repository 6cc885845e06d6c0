"""Account-key fingerprints: the RFC 7638 thumbprint, and ``atc.fingerprint`` (RFC 9448 §5.4).

An authority token is bound to one ACME account key by ``atc.fingerprint``, "constructed as
defined in RFC 8555 Section 8.1 corresponding to the computation of the 'Thumbprint' step using
the ACME account key" (RFC 9448 §5.4), rendered ``"SHA256 "`` + colon-separated hex pairs. The
same RFC 7638 thumbprint, base64url-encoded, is what ``accounts.jwk_thumbprint`` stores
(``acme_server/acme/keys.py``). :func:`jwk_thumbprint` is the one computation of it for both.

It stands apart from verification and minting because both need it (one checks a presented
fingerprint, the other normalises the one an operator types) and because it is what ties the
token world to the ACME account world.

Some token authorities hash the DER SubjectPublicKeyInfo instead (:func:`spki_fingerprint`); that
form is accepted only with the compatibility switch ``fingerprint_spki_sha256``
(:class:`ca.tokens.trust_config.TokenCompat`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

import josepy as jose
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ca.encoding import b64url_decode
from ca.errors import TokenError
from ca.tokens.jws import excerpt, json_type

FINGERPRINT_ALGORITHM = "SHA256"
_FINGERPRINT = re.compile(r"^SHA256 ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})$")
# RFC 7638 §3.2: the required members of each key type, the only ones a thumbprint covers.
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> bytes:
    """The RFC 7638 SHA-256 thumbprint of a public JWK: 32 bytes.

    RFC 7638 §3: the required members only, as JSON with no whitespace and the members sorted by
    name, hashed with SHA-256. The members must already be in their RFC 7518 §6 encodings (EC
    coordinates at full length, RSA integers without leading zeros, as RFC 8555 §8.1 with
    erratum 7565 asks): ``acme_server.acme.keys`` checks them on the way in, josepy writes them
    that way.
    """
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    return hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")).digest()


def account_fingerprint(jwk: jose.JWK | Mapping[str, Any] | str) -> str:
    """``"SHA256 AB:CD:…"``: the RFC 7638 SHA-256 thumbprint of the account key, in hex.

    RFC 9448 §5.4: the fingerprint is "constructed as defined in RFC 8555 Section 8.1
    corresponding to the computation of the 'Thumbprint' step using the ACME account key".
    """
    return render_fingerprint(jwk_thumbprint(_public_key(jwk).members))


def spki_fingerprint(jwk: jose.JWK | Mapping[str, Any] | str) -> str:
    """``"SHA256 AB:CD:…"`` over the DER SubjectPublicKeyInfo: the non-RFC form some TAs use."""
    return render_fingerprint(_spki_sha256(_public_key(jwk)))


def parse_fingerprint(value: str) -> bytes:
    """The 32 digest bytes of ``"SHA256 AB:CD:…"`` (hex in either case). Raises TokenError."""
    if not isinstance(value, str):
        raise TokenError(
            f"token 'atc.fingerprint' must be a string, got {json_type(value)}", claim="atc.fingerprint"
        )
    match = _FINGERPRINT.match(value)
    if match is None:
        raise TokenError(
            "token 'atc.fingerprint' must be 'SHA256 ' followed by 32 colon-separated hex bytes "
            f"(RFC 9448 §5.4), got {excerpt(value)}",
            claim="atc.fingerprint",
        )
    return bytes.fromhex(match.group(1).replace(":", ""))


def render_fingerprint(digest: bytes) -> str:
    """``"SHA256 AB:CD:…"``: upper-case hex pairs, as RFC 9448 §5.4's example writes them."""
    return f"{FINGERPRINT_ALGORITHM} " + ":".join(f"{b:02X}" for b in digest)


def check_account_fingerprint(value: Any, account_jwk: Any, *, accept_spki: bool) -> None:
    """RFC 9448 §6 step 8: ``atc.fingerprint`` is the requesting account key's. Raises TokenError.

    ``accept_spki`` (the compatibility switch ``fingerprint_spki_sha256``) also accepts SHA-256
    over the key's DER SubjectPublicKeyInfo; without it that form gets its own detail naming the
    switch. Digests are compared in constant time.
    """
    presented = parse_fingerprint(value)
    key = _public_key(account_jwk)
    thumbprint = jwk_thumbprint(key.members)
    if hmac.compare_digest(presented, thumbprint):
        return
    if hmac.compare_digest(presented, _spki_sha256(key)):
        if accept_spki:
            return
        raise TokenError(
            "token 'atc.fingerprint' is SHA-256 of the account key's SubjectPublicKeyInfo, not its "
            "RFC 8555 §8.1 thumbprint as RFC 9448 §5.4 requires; enable the compatibility switch "
            "fingerprint_spki_sha256 to accept this form",
            claim="atc.fingerprint",
        )
    raise TokenError(
        "token 'atc.fingerprint' is for another account key (RFC 9448 §6 step 8): expected "
        f"{render_fingerprint(thumbprint)}, got {render_fingerprint(presented)}",
        claim="atc.fingerprint",
    )


def certificate_issuer_id(certificate: x509.Certificate) -> str:
    """SHA-256 hex of a certificate's SubjectPublicKeyInfo: ``used_token_jtis.issuer``."""
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclasses.dataclass(frozen=True)
class _PublicKey:
    """An account key as fingerprints need it: its public JWK members and its public key."""

    members: Mapping[str, Any]
    key: Any  # a cryptography public key (or josepy's wrapper of one)


def _public_key(jwk: jose.JWK | Mapping[str, Any] | str) -> _PublicKey:
    if isinstance(jwk, jose.JWK):
        public = jwk.public_key()
        return _PublicKey(public.to_json(), public.key)
    try:
        obj = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
        if obj.get("kty") == "OKP":
            return _ed25519_public_key(obj)
        public = jose.JWK.from_json(obj).public_key()
        return _PublicKey(public.to_json(), public.key)
    except (ValueError, TypeError, KeyError, jose.errors.Error) as exc:
        raise TokenError(f"account key is not a usable public JWK ({type(exc).__name__})", claim="atc.fingerprint") from exc


def _ed25519_public_key(obj: Mapping[str, Any]) -> _PublicKey:
    # josepy cannot parse RFC 8037 OKP keys, and ACME accounts may use one (RFC 8555 §6.2:
    # servers SHOULD support EdDSA).
    x = obj.get("x")
    if obj.get("crv") != "Ed25519" or not isinstance(x, str):
        raise ValueError("not an Ed25519 OKP JWK")
    # A malformed x raises EncodingError, a ValueError like the rest of this function's refusals.
    key = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(x, field="x"))
    return _PublicKey({"crv": "Ed25519", "kty": "OKP", "x": x}, key)


def _spki_sha256(public: _PublicKey) -> bytes:
    key = public.key
    key = key.public_key() if hasattr(key, "private_bytes") else key
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()
