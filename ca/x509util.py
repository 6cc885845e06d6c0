"""X.509 plumbing shared by profiles, issuance, CRLs and tests: assembling signed objects, keys,
serial numbers and fingerprints.

Why certificates are assembled here rather than signed by ``cryptography``: a key that lives in
an HSM cannot be handed to ``CertificateBuilder.sign()``. So the builder signs with a *throwaway*
key of the same type (which fixes the signature AlgorithmIdentifier inside the TBS), the TBS is
linted, the real :class:`ca.issuing.signers.Signer` signs the TBS bytes, and the final DER is put together
here (RFC 5280 §4.1: ``Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
signatureValue }``; §5.1 is the same shape for CRLs). The result is parsed back and its signature
checked against the signer's public key before anyone sees it.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes

from ca.errors import SignerError

if TYPE_CHECKING:
    # An annotation only: this module is at the bottom of ca/ and assembles whatever a signer
    # returns; importing ca.issuing.signers at run time would put it above the key backends.
    from ca.issuing.signers import Signer

_Parsed = TypeVar("_Parsed", x509.Certificate, x509.CertificateSigningRequest)

# --------------------------------------------------------------------------------------------
# Minimal DER: just enough to wrap a TBS, an AlgorithmIdentifier and a BIT STRING.
# --------------------------------------------------------------------------------------------

# What cryptography raises for a malformed certificate or CSR, when loading it or when reading its
# lazily parsed parts (extensions, names, public key). Only some are ValueErrors: a version other
# than v1-v3 (InvalidVersion), a repeated extension (DuplicateExtension), an unknown
# GeneralName (UnsupportedGeneralNameType) and a Name attribute whose ASN.1 type does not fit
# its OID (TypeError: a BIT STRING other than x500UniqueIdentifier) escape ``except ValueError``
# and would become a 500. Catch them only around parsing, where a TypeError cannot be a bug.
MALFORMED_X509_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def with_names_decoded(value: _Parsed) -> _Parsed:
    """``value`` (a certificate or CSR) once its names are decoded.

    cryptography decodes names on first access; calling this right after loading, inside the
    caller's ``try … except MALFORMED_X509_ERRORS``, makes a malformed name fail there, as bad
    input, and not as a 500 wherever the subject is first read.
    """
    value.subject  # noqa: B018
    if isinstance(value, x509.Certificate):
        value.issuer  # noqa: B018
    return value

DER_SEQUENCE = 0x30
DER_BIT_STRING = 0x03
DER_OCTET_STRING = 0x04
DER_INTEGER = 0x02
DER_CONTEXT_0_CONSTRUCTED = 0xA0


def der_length(length: int) -> bytes:
    """X.690 §8.1.3: short form below 128, otherwise long form with the minimum number of octets."""
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """(tag, offset of the content, content length) of the element starting at ``offset``.

    Only low-tag-number, definite-length elements are accepted: that is all DER allows for the
    structures read here (X.690 §10.1).
    """
    try:
        tag = data[offset]
        first = data[offset + 1]
    except IndexError:
        raise ValueError("truncated DER element") from None
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag numbers are not expected here")
    if first < 0x80:
        if offset + 2 + first > len(data):
            raise ValueError("DER element runs past the end of its container")
        return tag, offset + 2, first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise ValueError("indefinite or oversized DER length")
    start = offset + 2 + count
    if start > len(data):
        raise ValueError("truncated DER length")
    length = int.from_bytes(data[offset + 2 : start], "big")
    if start + length > len(data):
        raise ValueError("DER element runs past the end of its container")
    return tag, start, length


def _sequence_children(der: bytes) -> list[bytes]:
    """The encoded children of the outermost SEQUENCE in ``der``."""
    tag, start, length = der_read_tlv(der)
    if tag != DER_SEQUENCE or start + length != len(der):
        raise ValueError("not a single DER SEQUENCE")
    children = []
    offset = start
    while offset < start + length:
        _tag, content_start, content_length = der_read_tlv(der, offset)
        end = content_start + content_length
        children.append(der[offset:end])
        offset = end
    return children


DER_OBJECT_IDENTIFIER = 0x06
DER_CONTEXT_3_CONSTRUCTED = 0xA3


def der_oid_content(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (X.690 §8.19): first two arcs joined, base 128."""
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def tbs_without_extension(tbs_der: bytes, oid: x509.ObjectIdentifier) -> bytes:
    """The DER TBSCertificate with the extension ``oid`` taken out, everything else byte for byte.

    RFC 5280 §4.1: ``extensions`` is the last field, ``[3] EXPLICIT SEQUENCE SIZE (1..MAX) OF
    Extension``, and each Extension starts with its ``extnID``; when the removed extension was
    the only one, the ``[3]`` field goes too. Walks the DER (what RFC 6962 §3.2's precert entry
    needs, without decoding the certificate into objects); raises ValueError when the DER does
    not have that shape or the extension is absent.
    """
    children = _sequence_children(tbs_der)
    if not children or children[-1][0] != DER_CONTEXT_3_CONSTRUCTED:
        raise ValueError("the TBSCertificate has no extensions")
    _tag, start, length = der_read_tlv(children[-1])
    if start + length != len(children[-1]):
        raise ValueError("trailing data after the extensions")
    wanted = der_oid_content(oid.dotted_string)
    kept, removed = [], 0
    for extension in _sequence_children(children[-1][start:]):
        _ext_tag, ext_start, _ext_length = der_read_tlv(extension)
        id_tag, id_start, id_length = der_read_tlv(extension, ext_start)
        if id_tag != DER_OBJECT_IDENTIFIER:
            raise ValueError("an extension does not start with its extnID")
        if extension[id_start:id_start + id_length] == wanted:
            removed += 1
        else:
            kept.append(extension)
    if removed != 1:
        raise ValueError(f"the TBSCertificate has {removed} extensions {oid.dotted_string}, expected one")
    fields = children[:-1]
    if kept:
        fields.append(der_tlv(DER_CONTEXT_3_CONSTRUCTED, der_tlv(DER_SEQUENCE, b"".join(kept))))
    return der_tlv(DER_SEQUENCE, b"".join(fields))


def tbs_certificate_signature_algorithm(tbs_der: bytes) -> bytes:
    """The DER ``signature`` AlgorithmIdentifier inside a TBSCertificate (RFC 5280 §4.1.2.3).

    RFC 5280 §4.1.1.2: the outer signatureAlgorithm "MUST contain the same algorithm identifier
    as the signature field in the sequence tbsCertificate", so it is copied from there.
    """
    children = _sequence_children(tbs_der)
    index = 2 if children and children[0][0] == DER_CONTEXT_0_CONSTRUCTED else 1  # [0] version
    return children[index]


def tbs_crl_signature_algorithm(tbs_der: bytes) -> bytes:
    """The DER ``signature`` AlgorithmIdentifier inside a TBSCertList (RFC 5280 §5.1.2.2)."""
    children = _sequence_children(tbs_der)
    index = 1 if children and children[0][0] == DER_INTEGER else 0  # optional untagged version
    return children[index]


def assemble_signed(tbs_der: bytes, signature_algorithm_der: bytes, signature: bytes) -> bytes:
    """``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`` (0 unused bits)."""
    bit_string = der_tlv(DER_BIT_STRING, b"\x00" + signature)
    return der_tlv(DER_SEQUENCE, tbs_der + signature_algorithm_der + bit_string)


def assemble_certificate(tbs_der: bytes, signer: "Signer") -> x509.Certificate:
    """Sign ``tbs_der`` with ``signer`` and return the parsed certificate, its signature checked."""
    der = assemble_signed(tbs_der, tbs_certificate_signature_algorithm(tbs_der), signer.sign(tbs_der))
    certificate = x509.load_der_x509_certificate(der)
    verify_signature(signer.public_key, certificate.signature, certificate.tbs_certificate_bytes,
                     certificate.signature_hash_algorithm)
    return certificate


def assemble_crl(tbs_der: bytes, signer: "Signer") -> x509.CertificateRevocationList:
    """Sign a TBSCertList with ``signer`` and return the parsed CRL, its signature checked."""
    der = assemble_signed(tbs_der, tbs_crl_signature_algorithm(tbs_der), signer.sign(tbs_der))
    crl = x509.load_der_x509_crl(der)
    verify_signature(signer.public_key, crl.signature, crl.tbs_certlist_bytes, crl.signature_hash_algorithm)
    return crl


def verify_signature(
    public_key: PublicKeyTypes, signature: bytes, data: bytes, hash_algorithm: hashes.HashAlgorithm | None
) -> None:
    """Raise :class:`SignerError` unless ``signature`` over ``data`` verifies with ``public_key``.

    Used on every assembled object: a signer that returns a wrong signature (a misconfigured HSM
    key, a key that does not match its certificate) is caught before anything is stored.
    """
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            assert hash_algorithm is not None
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            assert hash_algorithm is not None
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            public_key.verify(signature, data)
        else:
            raise SignerError(f"unsupported signer key type {type(public_key).__name__}", field="signer")
    except InvalidSignature:
        raise SignerError("the signer's signature does not verify with its public key", field="signer") from None


# --------------------------------------------------------------------------------------------
# Throwaway keys: they only fix the AlgorithmIdentifier in a TBS; their signatures are discarded.
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _throwaway_key(kind: str, size: int) -> CertificateIssuerPrivateKeyTypes:
    if kind == "ec":
        curve = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}[size]
        return ec.generate_private_key(curve)
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise SignerError(f"unsupported signer key type {kind}", field="signer")


def throwaway_key_like(public_key: PublicKeyTypes) -> CertificateIssuerPrivateKeyTypes:
    """A private key of the same type and size as ``public_key`` (cached per type and size)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _throwaway_key("ec", public_key.curve.key_size)
    if isinstance(public_key, rsa.RSAPublicKey):
        return _throwaway_key("rsa", public_key.key_size)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return _throwaway_key("ed25519", 0)
    if isinstance(public_key, ed448.Ed448PublicKey):
        return _throwaway_key("ed448", 0)
    raise SignerError(f"unsupported signer key type {type(public_key).__name__}", field="signer")


def draft_certificate(builder: x509.CertificateBuilder, signer: "Signer") -> x509.Certificate:
    """The certificate ``builder`` describes, signed by a throwaway key of the signer's type.

    Its TBS is exactly what the real signer will sign; the draft exists to be linted before
    the real key signs anything, and its signature is worthless.
    """
    return builder.sign(throwaway_key_like(signer.public_key), signer.hash_algorithm)


# --------------------------------------------------------------------------------------------
# Serial numbers, key names, fingerprints, PEM
# --------------------------------------------------------------------------------------------

# RFC 5280 §4.1.2.2: positive, at most 20 octets. Public PKI and SHAKEN certificate rules ask for
# at least 64 bits of CSPRNG output, so that serials cannot be predicted. 128 random bits encode
# in at most 17 octets (a leading zero octet keeps the INTEGER positive).
SERIAL_RANDOM_BITS = 128


def random_serial() -> int:
    """A positive serial number with SERIAL_RANDOM_BITS bits from the OS CSPRNG."""
    while True:
        serial = secrets.randbits(SERIAL_RANDOM_BITS)
        if serial > 0:
            return serial


def serial_hex(serial: int) -> str:
    """How serials are stored and shown: lowercase hex, no leading zeros."""
    return format(serial, "x")


def key_type_name(public_key: PublicKeyTypes) -> str:
    """The policy name of a public key's type: "ec-p256", "ec-p384", "rsa-2048", "ed25519", …"""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(
            public_key.curve.name, f"ec-{public_key.curve.name}"
        )
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448"
    return type(public_key).__name__


# The one RSA public exponent accepted (account, CSR and token-signing keys): every key a client
# or token authority makes has it, and a huge one makes each verification cost milliseconds.
RSA_PUBLIC_EXPONENT = 65537


def rsa_exponent_refusal(exponent: int) -> str | None:
    """Why an RSA public exponent is refused (a sentence), or None for 65537."""
    if exponent == RSA_PUBLIC_EXPONENT:
        return None
    shown = str(exponent) if exponent.bit_length() <= 64 else f"of {exponent.bit_length()} bits"
    return f"RSA public exponent {shown} is not accepted; only {RSA_PUBLIC_EXPONENT} is"


def spki_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(public_key: PublicKeyTypes) -> str:
    """SHA-256 hex of the DER SubjectPublicKeyInfo (finds certificates by key; CT issuer_key_hash)."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def fingerprint_sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def pem_chain(certificates: Iterable[x509.Certificate]) -> str:
    """``application/pem-certificate-chain`` (RFC 8555 §9.1): end-entity first, then its issuers."""
    return "".join(to_pem(c) for c in certificates)


def subject_key_identifier(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None
