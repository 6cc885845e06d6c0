"""The TLS-encoded structures of RFC 6962 that a log signs and serves.

Encoding follows RFC 5246 §4 (presentation language) as RFC 6962 §3 uses it: integers are big
endian, ``opaque x<0..2^24-1>`` is a 3-byte length then the bytes, ``digitally-signed`` is
RFC 5246 §4.7. Every struct is packed field by field, one commented line per field.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

# RFC 6962 §3.2: enum { v1(0), (255) } Version;
VERSION_V1 = 0
# RFC 6962 §3.2: enum { certificate_timestamp(0), tree_hash(1), (255) } SignatureType;
SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0
SIGNATURE_TYPE_TREE_HASH = 1
# RFC 6962 §3.1: enum { x509_entry(0), precert_entry(1), (65535) } LogEntryType;
ENTRY_TYPE_X509 = 0
ENTRY_TYPE_PRECERT = 1
# RFC 6962 §3.4: enum { timestamped_entry(0), (255) } MerkleLeafType;
LEAF_TYPE_TIMESTAMPED_ENTRY = 0
# RFC 5246 §7.4.1.4.1: HashAlgorithm sha256(4), SignatureAlgorithm ecdsa(3); RFC 6962 §2.1.4
# allows only ECDSA P-256 or RSA with SHA-256 for log signatures.
HASH_ALGORITHM_SHA256 = 4
SIGNATURE_ALGORITHM_ECDSA = 3

UINT16_MAX = 2**16 - 1
UINT24_MAX = 2**24 - 1


def opaque16(data: bytes) -> bytes:
    """``opaque data<0..2^16-1>``: a 2-byte length, then the bytes."""
    if len(data) > UINT16_MAX:
        raise ValueError(f"{len(data)} bytes do not fit a 16-bit length")
    return struct.pack(">H", len(data)) + data


def opaque24(data: bytes) -> bytes:
    """``opaque data<0..2^24-1>``: a 3-byte length, then the bytes."""
    if len(data) > UINT24_MAX:
        raise ValueError(f"{len(data)} bytes do not fit a 24-bit length")
    return struct.pack(">I", len(data))[1:] + data


def x509_signed_entry(certificate_der: bytes) -> bytes:
    """``signed_entry`` for x509_entry: ``ASN.1Cert`` = opaque<1..2^24-1> (RFC 6962 §3.2)."""
    return opaque24(certificate_der)


def precert_signed_entry(issuer_key_hash: bytes, tbs_certificate: bytes) -> bytes:
    """``signed_entry`` for precert_entry: the ``PreCert`` struct (RFC 6962 §3.2)."""
    if len(issuer_key_hash) != 32:
        raise ValueError("issuer_key_hash must be 32 bytes")
    return b"".join((
        issuer_key_hash,          # opaque issuer_key_hash[32]: SHA-256 of the final issuer's SPKI
        opaque24(tbs_certificate),  # TBSCertificate tbs_certificate<1..2^24-1>, poison removed
    ))


def timestamped_entry(timestamp: int, entry_type: int, signed_entry: bytes, extensions: bytes = b"") -> bytes:
    """The ``TimestampedEntry`` struct of RFC 6962 §3.4."""
    return b"".join((
        struct.pack(">Q", timestamp),  # uint64 timestamp (milliseconds since the epoch)
        struct.pack(">H", entry_type),  # LogEntryType entry_type
        signed_entry,                   # select(entry_type): ASN.1Cert or PreCert
        opaque16(extensions),           # CtExtensions extensions<0..2^16-1>
    ))


def merkle_tree_leaf(timestamp: int, entry_type: int, signed_entry: bytes, extensions: bytes = b"") -> bytes:
    """The ``MerkleTreeLeaf`` struct of RFC 6962 §3.4: the leaf input that the tree hashes."""
    return b"".join((
        struct.pack(">B", VERSION_V1),                   # Version version = v1
        struct.pack(">B", LEAF_TYPE_TIMESTAMPED_ENTRY),  # MerkleLeafType leaf_type = timestamped_entry
        timestamped_entry(timestamp, entry_type, signed_entry, extensions),
    ))


def sct_signature_input(timestamp: int, entry_type: int, signed_entry: bytes, extensions: bytes = b"") -> bytes:
    """The data a log signs for an SCT: the ``digitally-signed struct`` of RFC 6962 §3.2."""
    return b"".join((
        struct.pack(">B", VERSION_V1),                            # Version sct_version = v1
        struct.pack(">B", SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP),  # SignatureType = certificate_timestamp
        struct.pack(">Q", timestamp),                             # uint64 timestamp
        struct.pack(">H", entry_type),                            # LogEntryType entry_type
        signed_entry,                                             # ASN.1Cert or PreCert
        opaque16(extensions),                                     # CtExtensions extensions
    ))


def tree_head_signature_input(timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
    """The ``TreeHeadSignature`` struct of RFC 6962 §3.5, which the log signs for an STH."""
    if len(root_hash) != 32:
        raise ValueError("sha256_root_hash must be 32 bytes")
    return b"".join((
        struct.pack(">B", VERSION_V1),                # Version version = v1
        struct.pack(">B", SIGNATURE_TYPE_TREE_HASH),  # SignatureType signature_type = tree_hash
        struct.pack(">Q", timestamp),                 # uint64 timestamp
        struct.pack(">Q", tree_size),                 # uint64 tree_size
        root_hash,                                    # opaque sha256_root_hash[32]
    ))


def digitally_signed(signature: bytes) -> bytes:
    """An ECDSA-with-SHA-256 ``digitally-signed`` element (RFC 5246 §4.7)."""
    return b"".join((
        struct.pack(">B", HASH_ALGORITHM_SHA256),      # HashAlgorithm hash = sha256
        struct.pack(">B", SIGNATURE_ALGORITHM_ECDSA),  # SignatureAlgorithm signature = ecdsa
        opaque16(signature),                           # opaque signature<0..2^16-1> (DER Ecdsa-Sig-Value)
    ))


def x509_extra_data(chain_ders: Sequence[bytes]) -> bytes:
    """``extra_data`` of an x509_entry: ``ASN.1Cert certificate_chain<0..2^24-1>`` (RFC 6962 §4.6)."""
    return opaque24(b"".join(opaque24(der) for der in chain_ders))


def precert_extra_data(precertificate_der: bytes, chain_ders: Sequence[bytes]) -> bytes:
    """``extra_data`` of a precert_entry: the whole ``PrecertChainEntry`` (RFC 6962 §3.1, §4.6)."""
    return b"".join((
        opaque24(precertificate_der),                           # ASN.1Cert pre_certificate
        opaque24(b"".join(opaque24(der) for der in chain_ders)),  # ASN.1Cert precertificate_chain<0..2^24-1>
    ))
