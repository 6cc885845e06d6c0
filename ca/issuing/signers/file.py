"""A signer whose private key is a PEM PKCS#8 file: for development homes and tests.

The key file is created with mode 0600 in one ``open(O_CREAT | O_EXCL)`` so it is never readable
by others, not even for a moment, and an existing key is never overwritten. Production keys
belong in an HSM (:mod:`ca.issuing.signers.pkcs11`); this backend says so in its name, ``file:``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from ca.errors import SignerError

KEY_FILE_MODE = 0o600

# Key types this backend can generate, by their policy names (see ca.x509util.key_type_name).
_GENERATORS = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa-3072": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}
GENERATABLE_KEY_TYPES = tuple(_GENERATORS)


def _hash_for(key: PrivateKeyTypes) -> hashes.HashAlgorithm | None:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # RFC 5480 §4: the hash should match the curve's strength (P-256/SHA-256, P-384/SHA-384).
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    raise SignerError(f"unsupported key type {type(key).__name__} in key file", field="signer")


class FileSigner:
    """Signs with a private key loaded once from a PEM PKCS#8 file."""

    def __init__(self, private_key: PrivateKeyTypes, *, path: Path | None = None) -> None:
        self.hash_algorithm = _hash_for(private_key)
        self._private_key = private_key
        self.public_key: PublicKeyTypes = private_key.public_key()
        self.path = path

    @classmethod
    def from_uri(cls, uri: str, *, home: Path) -> "FileSigner":
        if not uri.startswith("file:"):
            raise SignerError(f"not a file signer URI (expected 'file:PATH', got {uri[:16]!r})", field="signer")
        path = Path(uri[len("file:"):])
        if not path.is_absolute():
            path = Path(home) / path
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> "FileSigner":
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SignerError(f"cannot read key file {path}: {exc.strerror}", field="signer") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SignerError(f"key file {path} is not an unencrypted PEM private key: {exc}", field="signer") from None
        return cls(key, path=path)

    def sign(self, data: bytes) -> bytes:
        key = self._private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(self.hash_algorithm))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), self.hash_algorithm)
        return key.sign(data)  # Ed25519

    def __repr__(self) -> str:
        return f"FileSigner({self.path})"


def generate_file_key(path: Path, key_type: str = "ec-p256") -> FileSigner:
    """Generate a key of ``key_type``, write it to ``path`` as PEM PKCS#8 with mode 0600.

    Refuses to overwrite an existing file (SignerError): replacing a CA key by accident would
    orphan every certificate it signed.
    """
    try:
        generator = _GENERATORS[key_type]
    except KeyError:
        raise SignerError(
            f"cannot generate key type {key_type!r} (choose from {', '.join(GENERATABLE_KEY_TYPES)})", field="key_type"
        ) from None
    key = generator()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        raise SignerError(f"key file {path} already exists; refusing to overwrite it", field="signer") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    # The umask can only remove bits; make the mode exact regardless.
    os.chmod(path, KEY_FILE_MODE)
    return FileSigner(key, path=path)
