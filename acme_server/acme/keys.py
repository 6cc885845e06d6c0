"""Account keys: public JWKs (RFC 7517/7518/8037), their RFC 7638 thumbprints and JWS verification.

josepy parses EC and RSA keys but not the OKP keys of RFC 8037 that RFC 8555 §6.2 asks servers
to support (EdDSA), and its JWS parser merges unprotected headers into what it verifies (RFC
8555 §6.2 allows only the protected header). This module therefore holds the small, complete key
model the server needs: a public JWK is parsed into an :class:`AccountKey` with the
``cryptography`` public key, the canonical JSON stored in ``accounts.jwk`` and the RFC 7638
thumbprint stored in ``accounts.jwk_thumbprint``.

The JWS algorithms accepted (RFC 8555 §6.2: ES256 MUST, EdDSA SHOULD; never ``none`` or a MAC):

=========  ===========================  =====================================
``alg``    key                           signature format
=========  ===========================  =====================================
ES256      EC P-256                      raw r||s, 64 bytes (RFC 7518 §3.4)
ES384      EC P-384                      raw r||s, 96 bytes
RS256      RSA, at least 2048 bits       RSASSA-PKCS1-v1_5 / SHA-256
EdDSA      OKP Ed25519 (RFC 8037)        64 bytes
=========  ===========================  =====================================
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ca.encoding import EncodingError, b64url_decode, b64url_encode
from ca.tokens.fingerprints import jwk_thumbprint
from ca.x509util import rsa_exponent_refusal

# RFC 8555 §6.2 leaves key sizes to the server; 2048 bits is the floor every Web PKI CA uses.
MIN_RSA_BITS = 2048
# An upper bound so a client cannot make the server verify with an absurdly large modulus.
MAX_RSA_BITS = 8192

# The JWS "alg" values this server accepts, in the order the "algorithms" field lists them.
SUPPORTED_ALGORITHMS = ("ES256", "ES384", "RS256", "EdDSA")

_EC_CURVES: dict[str, tuple[ec.EllipticCurve, int, str]] = {
    # crv: (curve, coordinate length in bytes, the one JWS alg for it)
    "P-256": (ec.SECP256R1(), 32, "ES256"),
    "P-384": (ec.SECP384R1(), 48, "ES384"),
}

class JWKError(ValueError):
    """A JWK is malformed or of an unsupported type. ``unsupported`` is True for the latter."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


@dataclasses.dataclass(frozen=True)
class AccountKey:
    """A public JWK the server accepted, with everything derived from it computed once."""

    jwk: Mapping[str, str]  # the RFC 7638 required members only; private members never kept
    public_key: Any  # a cryptography public key
    thumbprint: str  # RFC 7638 SHA-256 thumbprint, base64url without padding

    @property
    def kty(self) -> str:
        return self.jwk["kty"]

    def to_json(self) -> str:
        """The canonical JSON text stored in ``accounts.jwk`` (RFC 7638 member order)."""
        return canonical_json(self.jwk)

    def spki_der(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def check_algorithm(self, alg: str) -> None:
        """Raise :class:`JWKError` unless ``alg`` is the algorithm this key signs with."""
        expected = self.algorithm
        if alg != expected:
            raise JWKError(f"JWS alg {alg!r} does not match the key; a {self.describe()} signs with {expected!r}")

    @property
    def algorithm(self) -> str:
        if self.kty == "EC":
            return _EC_CURVES[self.jwk["crv"]][2]
        if self.kty == "RSA":
            return "RS256"
        return "EdDSA"

    def describe(self) -> str:
        if self.kty == "RSA":
            return f"RSA {self.public_key.key_size}-bit key"
        return f"{self.kty} {self.jwk['crv']} key"

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is a valid ``alg`` signature over ``signing_input``."""
        self.check_algorithm(alg)
        try:
            if self.kty == "EC":
                size = _EC_CURVES[self.jwk["crv"]][1]
                # RFC 7518 §3.4: the signature is R and S as fixed-width octet strings.
                if len(signature) != 2 * size:
                    return False
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                hash_algorithm = hashes.SHA256() if size == 32 else hashes.SHA384()
                self.public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hash_algorithm))
            elif self.kty == "RSA":
                self.public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.public_key.verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True


def canonical_json(members: Mapping[str, Any]) -> str:
    # RFC 7638 §3.3: no whitespace, members sorted by their code points.
    return json.dumps(dict(members), separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def parse_jwk(obj: object) -> AccountKey:
    """Parse a public JWK (the JWS ``jwk`` header or a stored ``accounts.jwk``).

    Raises :class:`JWKError`; ``unsupported`` is set when the key is well formed but of a type
    or size this server does not accept (RFC 8555 ``badPublicKey``).
    """
    if not isinstance(obj, Mapping):
        raise JWKError("'jwk' must be a JSON object")
    if "d" in obj or "p" in obj or "k" in obj:
        # A private or symmetric key in a header is a client bug that leaks a secret.
        raise JWKError("'jwk' holds private or symmetric key material; send the public key only")
    kty = obj.get("kty")
    if not isinstance(kty, str):
        raise JWKError("'jwk' lacks a string 'kty'")
    try:
        if kty == "EC":
            return _parse_ec(obj)
        if kty == "RSA":
            return _parse_rsa(obj)
        if kty == "OKP":
            return _parse_okp(obj)
    except EncodingError as exc:
        raise JWKError(f"'jwk' {exc}") from exc
    raise JWKError(f"'jwk' key type {kty!r} is not supported; use EC P-256, EC P-384, RSA or OKP Ed25519", unsupported=True)


@functools.lru_cache(maxsize=4096)
def load_stored_jwk(text: str) -> AccountKey:
    """Parse the canonical JSON stored in ``accounts.jwk``.

    Every request signed with ``kid`` needs its account's key: each process keeps the recently
    used ones (an AccountKey is immutable and a function of the stored text alone; a keyChange
    stores new text, so it is never answered with the old key).
    """
    return parse_jwk(json.loads(text))


def _member(obj: Mapping[str, Any], name: str) -> bytes:
    if name not in obj:
        raise JWKError(f"'jwk' lacks the required member {name!r}")
    return b64url_decode(obj[name], field=f"jwk.{name}")


def _parse_ec(obj: Mapping[str, Any]) -> AccountKey:
    crv = obj.get("crv")
    if not isinstance(crv, str) or crv not in _EC_CURVES:
        raise JWKError(f"'jwk' curve {crv!r} is not supported; use P-256 or P-384", unsupported=True)
    curve, size, _alg = _EC_CURVES[crv]
    x, y = _member(obj, "x"), _member(obj, "y")
    # RFC 7518 §6.2.1.2: x and y are the full coordinate length, leading zeros included.
    if len(x) != size or len(y) != size:
        raise JWKError(f"'jwk' coordinates of a {crv} key must be {size} bytes each")
    try:
        public_key = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve).public_key()
    except ValueError as exc:
        raise JWKError(f"'jwk' is not a point on {crv}") from exc
    jwk = {"crv": crv, "kty": "EC", "x": b64url_encode(x), "y": b64url_encode(y)}
    return AccountKey(jwk=jwk, public_key=public_key, thumbprint=b64url_encode(jwk_thumbprint(jwk)))


def _parse_rsa(obj: Mapping[str, Any]) -> AccountKey:
    n, e = _member(obj, "n"), _member(obj, "e")
    # RFC 7518 §6.3.1: Base64urlUInt values use the minimum number of octets.
    if not n or not e or n[0] == 0 or e[0] == 0:
        raise JWKError("'jwk' RSA members 'n' and 'e' must be minimal-length unsigned integers (RFC 7518 §6.3.1)")
    modulus, exponent = int.from_bytes(n, "big"), int.from_bytes(e, "big")
    bits = modulus.bit_length()
    if bits < MIN_RSA_BITS or bits > MAX_RSA_BITS:
        raise JWKError(f"RSA key of {bits} bits is not accepted; use {MIN_RSA_BITS} to {MAX_RSA_BITS} bits", unsupported=True)
    refusal = rsa_exponent_refusal(exponent)
    if refusal is not None:
        raise JWKError(f"'jwk': {refusal}", unsupported=True)
    try:
        public_key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError as exc:
        raise JWKError(f"'jwk' is not a usable RSA public key ({exc})") from exc
    jwk = {"e": b64url_encode(e), "kty": "RSA", "n": b64url_encode(n)}
    return AccountKey(jwk=jwk, public_key=public_key, thumbprint=b64url_encode(jwk_thumbprint(jwk)))


def _parse_okp(obj: Mapping[str, Any]) -> AccountKey:
    crv = obj.get("crv")
    if crv != "Ed25519":
        raise JWKError(f"'jwk' OKP curve {crv!r} is not supported; use Ed25519 (RFC 8037)", unsupported=True)
    x = _member(obj, "x")
    if len(x) != 32:
        raise JWKError("'jwk' Ed25519 public key 'x' must be 32 bytes (RFC 8037 §2)")
    public_key = ed25519.Ed25519PublicKey.from_public_bytes(x)
    jwk = {"crv": crv, "kty": "OKP", "x": b64url_encode(x)}
    return AccountKey(jwk=jwk, public_key=public_key, thumbprint=b64url_encode(jwk_thumbprint(jwk)))
