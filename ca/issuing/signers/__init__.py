"""Key backends behind one interface.

A :class:`Signer` is what the authority signs certificates, CRLs and authority tokens with. It
exposes its public key, the hash it signs with, and ``sign(data)`` returning the signature in the
form X.509 carries it (DER ``Ecdsa-Sig-Value`` for ECDSA, RFC 5480 §2.2). Nothing else: the private
key is never handed out, so a file key and an HSM key are interchangeable
(``ca.x509util.assemble_certificate`` does the rest).

Backends are chosen by URI:

- ``file:keys/issuing.key`` — a PEM PKCS#8 file, relative to the home (or absolute); dev only.
- ``pkcs11:token=…;object=…?…`` — an RFC 7512 URI naming a key in an HSM (:mod:`ca.issuing.signers.pkcs11`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ca.errors import SignerError
from ca.issuing.signers.file import FileSigner
from ca.issuing.signers.pkcs11 import PKCS11Signer


@runtime_checkable
class Signer(Protocol):
    public_key: PublicKeyTypes
    # None for algorithms that hash internally (Ed25519); X.509 builders take it as is.
    hash_algorithm: hashes.HashAlgorithm | None

    def sign(self, data: bytes) -> bytes:
        """The signature over ``data`` as an X.509 signatureValue carries it (DER ECDSA)."""
        ...


def load_signer(uri: str, *, home: Path) -> Signer:
    """The signer a URI names; ``file:`` paths are relative to ``home``.

    Raises :class:`SignerError` naming the URI when the key cannot be loaded.
    """
    scheme, sep, _rest = uri.partition(":")
    if not sep:
        raise SignerError(f"signer URI {uri!r} has no scheme (expected 'file:' or 'pkcs11:')", field="signer")
    if scheme == "file":
        return FileSigner.from_uri(uri, home=home)
    if scheme == "pkcs11":
        return PKCS11Signer(uri)
    raise SignerError(f"unknown signer URI scheme {scheme!r} (expected 'file:' or 'pkcs11:')", field="signer")
