"""The audit key of a home: the key that signs checkpoints of the audit chain (ca/records/audit.py).

It is a key of its own rather than the issuing CA's, so that the issuing CA's key signs nothing
but certificates and CRLs (a signature over arbitrary JSON from a CA key could be mistaken for,
or crafted into, something else). Its certificate is issued by the root with the signing-only
profile the token authority also uses (digitalSignature, critical; no TNAuthList; below the
root, RFC 5280 §4.2.1.3), so an auditor who trusts the root trusts the checkpoints, and nobody
who rewrites the database can sign new ones.

``tnca.toml``::

    [audit]
    signer = "file:keys/audit.key"        # or a pkcs11: URI of a key already in the HSM
    certificate = "certs/audit.pem"

Both are optional; these are the defaults. :func:`ensure_checkpoint_signer` creates the key (for
a ``file:`` signer) and the certificate on first use; that needs the root's signer.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from ca.records.audit_checkpoints import CheckpointSigner
from ca.records.audit_notes import NoteKey, origin_for
from ca.clock import Clock
from ca.config import ROOT_ISSUER
from ca.home import Home
from ca.errors import NotFoundError, SignerError
from ca.issuing.issuance import certify_authority_key
from ca.issuing.profiles import TOKEN_AUTHORITY
from ca.issuing.signers import Signer
from ca.issuing.signers.file import generate_file_key
from ca.x509util import to_pem

COMMON_NAME = "tnca audit checkpoints"
# The signing-only profile of the authority's own keys (see the module docstring).
PROFILE = TOKEN_AUTHORITY


def settings(home: Home) -> tuple[str, Path]:
    """(signer URI, certificate path) of the home's audit key, from ``[audit]`` or the defaults."""
    return home.config.audit.signer, home.config.audit.certificate


def load_checkpoint_signer(home: Home) -> CheckpointSigner:
    """The home's audit key and certificate; NotFoundError when there is no certificate yet."""
    signer_uri, certificate_path = settings(home)
    try:
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    except FileNotFoundError:
        raise NotFoundError(f"the home has no audit key certificate {certificate_path}; "
                            f"'tnca audit checkpoint' creates one", field="audit_key") from None
    except ValueError as error:
        raise NotFoundError(f"{certificate_path} is not a PEM certificate: {error}", field="audit_key") from None
    signer = home.signer(signer_uri)
    if not _same_key(signer, certificate):
        raise SignerError(f"the audit key {signer_uri} does not match the certificate {certificate_path}",
                          field="signer")
    return CheckpointSigner(signer=signer, certificate=certificate)


def create_checkpoint_signer(home: Home, *, clock: Clock) -> CheckpointSigner:
    """Generate (``file:``) or load (``pkcs11:``) the audit key and certify it with the root.

    Refuses when the certificate exists already. Needs the root's signer.
    """
    signer_uri, certificate_path = settings(home)
    if certificate_path.exists():
        raise SignerError(f"{certificate_path} exists already; refusing to replace the audit key certificate",
                          field="audit_key")
    signer = _audit_signer(home, signer_uri)
    root = home.load_issuer(ROOT_ISSUER)
    policy = home.policy
    certificate = certify_authority_key(
        PROFILE,
        subject=_subject(root.certificate),
        public_key=signer.public_key,
        signer=root.signer,
        issuer_certificate=root.certificate,
        issuer_scope=None,
        scope=None,
        crl_url=policy.certificates.crl_url(base_url=home.base_url, issuer=ROOT_ISSUER),
        policy=policy,
        clock=clock,
    )
    certificate_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(certificate_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(to_pem(certificate))
    return CheckpointSigner(signer=signer, certificate=certificate)


def ensure_checkpoint_signer(home: Home, *, clock: Clock) -> tuple[CheckpointSigner, bool]:
    """(signer, created): the home's audit key, created on first use."""
    _, certificate_path = settings(home)
    if certificate_path.exists():
        return load_checkpoint_signer(home), False
    return create_checkpoint_signer(home, clock=clock), True


def _audit_signer(home: Home, signer_uri: str) -> Signer:
    if signer_uri.startswith("file:"):
        path = Path(signer_uri[len("file:"):])
        path = path if path.is_absolute() else home.path / path
        if not path.exists():
            return generate_file_key(path, home.policy.keys.authority)
    return home.signer(signer_uri)


def _subject(root: x509.Certificate) -> x509.Name:
    """The root's subject with the common name replaced: the same organisation, another purpose."""
    common_name = x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)
    attributes = [common_name if a.oid == NameOID.COMMON_NAME else a for a in root.subject]
    return x509.Name(attributes if common_name in attributes else [*attributes, common_name])


def _same_key(signer: Signer, certificate: x509.Certificate) -> bool:
    return signer.public_key == certificate.public_key()


def note_key(home: Home, *, create: bool = True) -> NoteKey:
    """The Ed25519 key of the published checkpoint notes (``[audit] note_signer``), named by the
    trail's origin (``host[:port]/audit``); a ``file:`` key is generated on first use (it needs no
    certificate: auditors pin its verifier key, ``tnca audit note-key``)."""
    uri = home.config.audit.note_signer
    if uri.startswith("file:"):
        path = Path(uri[len("file:"):])
        path = path if path.is_absolute() else home.path / path
        if not path.exists():
            if not create:
                raise NotFoundError(f"the home has no checkpoint note key {path}", field="note_key")
            generate_file_key(path, "ed25519")
    signer = home.signer(uri)
    try:
        return NoteKey(name=origin_for(home.base_url), signer=signer)
    except ValueError as error:
        raise SignerError(f"[audit] note_signer {uri}: {error}", field="note_signer") from None
