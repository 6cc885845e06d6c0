"""A signer whose private key lives in an HSM, reached over PKCS#11 (SoftHSM2 in tests).

Keys are named by an RFC 7512 PKCS#11 URI::

    pkcs11:token=tnca;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/tnca/pin

Path attributes used: ``token`` (the token label) and ``object`` (the key label). Query attributes
used: ``module-path`` (the PKCS#11 library; default ``TNCA_PKCS11_MODULE`` or SoftHSM2's),
``pin-value`` (for tests and development only) or ``pin-source`` (``file:`` path or ``env:`` name;
what production uses). Unknown attributes are refused rather than ignored, so a typo cannot
silently select another key.

Only EC P-256 keys are supported: STIR certificates need ES256-capable keys (RFC 8226 §4) and this
authority signs certificates, CRLs and authority tokens with ECDSA-SHA256. The HSM computes
``CKM_ECDSA`` over a SHA-256 digest computed here; the raw ``r || s`` it returns is converted to
the DER ``Ecdsa-Sig-Value`` that X.509 signatures carry (RFC 5480 §2.2 / RFC 3279 §2.2.3).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ca.errors import SignerError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "TNCA_PKCS11_MODULE"
P256_COORDINATE_BYTES = 32

_PATH_ATTRIBUTES = {"token", "object"}
_QUERY_ATTRIBUTES = {"module-path", "pin-value", "pin-source"}


@dataclass(frozen=True)
class PKCS11URI:
    """The parts of an RFC 7512 URI this signer understands."""

    token: str
    object: str
    module_path: str
    pin: str | None

    @classmethod
    def parse(cls, uri: str) -> "PKCS11URI":
        if not uri.startswith("pkcs11:"):
            raise SignerError(f"not a PKCS#11 URI (expected 'pkcs11:…', got {uri[:16]!r})", field="signer")
        body = uri[len("pkcs11:"):]
        path, _, query = body.partition("?")
        attrs: dict[str, str] = {}
        for part in filter(None, path.split(";")):
            name, sep, value = part.partition("=")
            if not sep or name not in _PATH_ATTRIBUTES:
                raise SignerError(f"unsupported PKCS#11 URI path attribute {name!r}", field="signer")
            attrs[name] = urllib.parse.unquote(value)
        params: dict[str, str] = {}
        for part in filter(None, query.split("&")):
            name, sep, value = part.partition("=")
            if not sep or name not in _QUERY_ATTRIBUTES:
                raise SignerError(f"unsupported PKCS#11 URI query attribute {name!r}", field="signer")
            params[name] = urllib.parse.unquote(value)
        missing = _PATH_ATTRIBUTES - attrs.keys()
        if missing:
            raise SignerError(f"PKCS#11 URI lacks {', '.join(sorted(missing))}", field="signer")
        return cls(
            token=attrs["token"],
            object=attrs["object"],
            module_path=params.get("module-path") or os.environ.get(MODULE_ENV, DEFAULT_MODULE),
            pin=_read_pin(params),
        )


def _read_pin(params: dict[str, str]) -> str | None:
    if "pin-value" in params:
        return params["pin-value"]
    source = params.get("pin-source")
    if source is None:
        return None
    if source.startswith("env:"):
        value = os.environ.get(source[4:])
        if value is None:
            raise SignerError(f"PIN environment variable {source[4:]} is not set", field="signer")
        return value
    if source.startswith("file:"):
        try:
            return Path(source[5:]).read_text().strip()
        except OSError as exc:
            raise SignerError(f"cannot read PIN file {source[5:]}: {exc.strerror}", field="signer") from None
    raise SignerError("pin-source must be 'file:PATH' or 'env:NAME'", field="signer")


class PKCS11Signer:
    """ECDSA P-256 signing with a key that never leaves the token.

    The PKCS#11 session is opened lazily in the process that signs: gunicorn forks its workers
    after the app is configured, and a session must not be shared across a fork. Signing is
    serialized per process because a PKCS#11 session handles one operation at a time.
    """

    hash_algorithm = hashes.SHA256()

    def __init__(self, uri: str) -> None:
        self.uri = PKCS11URI.parse(uri)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._session = None
        self._private_key = None
        self.public_key = self._with_session(lambda: self._public_key)

    def sign(self, data: bytes) -> bytes:
        """DER ``Ecdsa-Sig-Value`` over SHA-256(data), as an X.509 signatureValue carries it."""
        digest = hashes.Hash(hashes.SHA256())
        digest.update(data)
        raw = self._with_session(lambda: self._private_key.sign(digest.finalize(), mechanism=_mechanism()))
        if len(raw) != 2 * P256_COORDINATE_BYTES:
            raise SignerError(f"HSM returned a {len(raw)}-byte ECDSA signature; expected 64 (r || s)")
        r = int.from_bytes(raw[:P256_COORDINATE_BYTES], "big")
        s = int.from_bytes(raw[P256_COORDINATE_BYTES:], "big")
        return encode_dss_signature(r, s)

    # -- session handling ------------------------------------------------------------------------

    def _with_session(self, operation):
        import pkcs11

        with self._lock:
            if self._pid != os.getpid():
                self._open()
            try:
                return operation()
            except pkcs11.PKCS11Error as exc:
                raise SignerError(f"PKCS#11 operation failed on token {self.uri.token!r}: {type(exc).__name__}") from exc

    def _open(self) -> None:
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass

        try:
            lib = pkcs11.lib(self.uri.module_path)
            token = lib.get_token(token_label=self.uri.token)
            session = _open_session(token, self.uri.pin)
            private_key = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=self.uri.object
            )
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=self.uri.object)
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
            raise SignerError(
                f"cannot open PKCS#11 key {self.uri.object!r} on token {self.uri.token!r}: {type(exc).__name__} {exc}"
            ) from exc
        self._public_key = _ec_public_key(public[Attribute.EC_POINT])
        self._session = session
        self._private_key = private_key
        self._pid = os.getpid()


def _open_session(token, pin: str | None, *, rw: bool = False):
    """Open a session, logged in as the user.

    PKCS#11 login state belongs to the application, not the session (PKCS#11 v2.40 §5.6): once
    one session in this process has logged in, every new session on that token is logged in
    already and C_Login answers CKR_USER_ALREADY_LOGGED_IN.
    """
    from pkcs11.exceptions import UserAlreadyLoggedIn

    try:
        return token.open(user_pin=pin, rw=rw)
    except UserAlreadyLoggedIn:
        return token.open(rw=rw)


def _mechanism():
    from pkcs11 import Mechanism

    return Mechanism.ECDSA


def _ec_public_key(ec_point: bytes) -> ec.EllipticCurvePublicKey:
    """CKA_EC_POINT is a DER OCTET STRING wrapping the uncompressed point (PKCS#11 v2.40 §2.3.3)."""
    point = ec_point
    if point[:1] == b"\x04" and len(point) >= 2 and point[1] == len(point) - 2:
        point = point[2:]  # strip the OCTET STRING header
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise SignerError("HSM key is not an EC P-256 key") from exc


def generate_p256_key(uri: str) -> ec.EllipticCurvePublicKey:
    """Create an EC P-256 key pair on the token named by ``uri`` and return its public key.

    The private key is sensitive and non-extractable: it can sign, and nothing else.
    """
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    parsed = PKCS11URI.parse(uri)
    try:
        lib = pkcs11.lib(parsed.module_path)
        token = lib.get_token(token_label=parsed.token)
        with _open_session(token, parsed.pin, rw=True) as session:
            # Labels name keys in our URIs; a second key with the same label would make every
            # later lookup ambiguous.
            if list(session.get_objects({Attribute.LABEL: parsed.object})):
                raise SignerError(f"token {parsed.token!r} already has an object labelled {parsed.object!r}")
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
            )
            public, _private = params.generate_keypair(
                store=True,
                label=parsed.object,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
            return _ec_public_key(public[Attribute.EC_POINT])
    except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
        raise SignerError(f"cannot create key {parsed.object!r} on token {parsed.token!r}: {type(exc).__name__} {exc}") from exc
