"""JWS compact serialization as authority tokens use it (RFC 7515, algorithms of RFC 7518 §3).

Both sides of an authority token need the same small JOSE layer: :mod:`ca.tokens.verification`
parses a token strictly (unpadded base64url, UTF-8 JSON objects with unique member names) and
checks its signature against the token authority key; :mod:`ca.tokens.minting` signs one with
ES256. They share it here so that what this authority writes is exactly what it reads.

josepy is not used for tokens: its JWS parser accepts an unprotected ``header`` and merges it into
what it verifies, and it cannot be told to refuse duplicate member names. Errors are
:class:`~ca.errors.TokenError` whose ``claim`` names the part at fault, with a detail that never
echoes the token (:func:`excerpt`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ca.encoding import EncodingError, b64url_decode, b64url_encode
from ca.errors import SignerError, TokenError
from ca.x509util import rsa_exponent_refusal

# Tokens longer than this are refused before any parsing (a chain in x5c is a few KiB).
MAX_TOKEN_CHARS = 32 * 1024
_ES256_COORDINATE_BYTES = 32  # RFC 7518 §3.4: P-256 coordinates are 32 octets


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
MIN_RSA_BITS = 2048


def parse_compact_jws(token: Any) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """``(protected header, payload, signing input, signature)`` of a compact JWS. Raises TokenError."""
    if not isinstance(token, str):
        raise TokenError(f"token must be a JWS compact serialization string, got {json_type(token)}", claim="token")
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
    try:
        if part:
            return b64url_decode(part, field=name)
    except EncodingError:
        pass
    raise TokenError(f"token {name} is not unpadded base64url (RFC 7515 §2)", claim="token")


def _json_object(raw: bytes, name: str, *, claim: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_members)
    except _DuplicateMember as exc:
        # RFC 7515 §4 / RFC 7519 §4: names must be unique; rejecting (rather than keeping the
        # last) leaves no room for two parsers to read two different tokens out of one.
        raise TokenError(f"token {name} repeats the member {excerpt(exc.name)}", claim=claim) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenError(f"token {name} is not UTF-8 JSON ({type(exc).__name__})", claim=claim) from exc
    if not isinstance(value, dict):
        raise TokenError(f"token {name} must be a JSON object, got {json_type(value)}", claim=claim)
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


def check_signature(cert: x509.Certificate, alg: str, signing_input: bytes, signature: bytes) -> None:
    """Verify an ``alg`` signature with ``cert``'s key (RFC 9448 §6 step 4). Raises TokenError."""
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
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
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


def sign_es256(header: dict[str, Any], payload: dict[str, Any], signer: Any) -> str:
    """The compact JWS of ``payload`` under ``header``, signed ES256 by ``signer`` (a ca signer)."""
    key = signer.public_key
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignerError("the token authority key must be ECDSA P-256 to sign ES256 authority tokens")
    hash_algorithm = getattr(signer, "hash_algorithm", None)
    if hash_algorithm is not None and not isinstance(hash_algorithm, hashes.SHA256):
        raise SignerError(f"the token authority signer hashes with {hash_algorithm.name}; ES256 needs sha256")
    signing_input = b64url_encode(canonical_json(header)) + "." + b64url_encode(canonical_json(payload))
    der = signer.sign(signing_input.encode("ascii"))
    # The signer returns a DER ECDSA-Sig-Value (as X.509 wants); JWS wants R || S (RFC 7518 §3.4).
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_ES256_COORDINATE_BYTES, "big") + s.to_bytes(_ES256_COORDINATE_BYTES, "big")
    return signing_input + "." + b64url_encode(raw)


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode("utf-8")


def json_type(value: Any) -> str:
    """How an error detail names a JSON value's type: "a number", "an empty string", "null", …"""
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


def excerpt(value: Any, limit: int = 40) -> str:
    """A value for an error detail: quoted, truncated, never a whole token."""
    if not isinstance(value, str):
        return json_type(value)
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)
