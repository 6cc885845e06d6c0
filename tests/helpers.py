"""Helpers shared by test modules (import as ``from tests.helpers import …``).

They live here rather than in a conftest.py: several directories have a conftest, and
``from conftest import …`` resolves to whichever of them was imported last.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from ca.records import store
from ca.x509util import DER_SEQUENCE, assemble_certificate, assemble_signed, der_tlv, draft_certificate


# Linux hands out ports for bind(port 0) and for outgoing connections from this range.
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# CI runs the suite on SQLite and on PostgreSQL at the same time: each run takes its ports from
# its own block ("INDEX/COUNT", e.g. "1/2"), so one run cannot hand out a port the other has
# probed but not bound yet (``_handed_out`` is per process).
PORT_BLOCK_ENV = "TNCA_TEST_PORT_BLOCK"


def _port_range() -> tuple[int, int]:
    """[start, stop) of the ports this run may hand out: its block of the 20000 below the
    ephemeral range, less the last one so that ``port + 1`` stays in it too (free_port_pair)."""
    low = _ephemeral_low()
    start, stop = max(1024, low - 20000), low - 1
    index, count = 0, 1
    block = os.environ.get(PORT_BLOCK_ENV, "")
    if block:
        try:
            index, count = (int(part) for part in block.split("/"))
        except ValueError:
            raise RuntimeError(f"{PORT_BLOCK_ENV}={block!r} is not INDEX/COUNT, e.g. 0/2") from None
        if not 0 <= index < count:
            raise RuntimeError(f"{PORT_BLOCK_ENV}={block!r}: INDEX must be below COUNT")
    size = (stop - start) // count
    return start + index * size, start + (index + 1) * size - 1


def free_port() -> int:
    """A free loopback TCP port below the ephemeral range, never the same one twice per run.

    A port the OS picked for bind(port 0) is free again once the probe closes, and the next
    bind(port 0) (a CT log test server) or outgoing connection may get it before the caller
    binds it: CI failed with "Address already in use" that way. Ports below the ephemeral
    range are handed to nobody else. ``port + 1`` is below the range too (free_port_pair).
    Runs side by side take disjoint blocks of that range (``TNCA_TEST_PORT_BLOCK``).
    """
    start, stop = _port_range()
    choose = random.SystemRandom()
    for _ in range(500):
        candidate = choose.randrange(start, stop)
        if candidate in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        _handed_out.add(candidate)
        return candidate
    raise RuntimeError("no free loopback port below the ephemeral range")


def row_counts(session: Session) -> dict[str, int]:
    """Row count of every table: negative tests assert it is unchanged."""
    counts = {}
    for table in store.METADATA.sorted_tables:
        counts[table.name] = session.execute(text(f"SELECT COUNT(*) FROM {table.name}")).scalar_one()
    return counts


def mutated_der(der: bytes, data: st.DataObject) -> bytes:
    """``der`` with one byte flipped, cut short, extended or spliced (hypothesis draws which):
    the malformed inputs a parser of certificates and CSRs meets."""
    choice = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
    if choice == "flip":
        position = data.draw(st.integers(0, len(der) - 1))
        return der[:position] + bytes([der[position] ^ data.draw(st.integers(1, 255))]) + der[position + 1:]
    if choice == "truncate":
        return der[:data.draw(st.integers(0, len(der) - 1))]
    if choice == "extend":
        return der + data.draw(st.binary(min_size=1, max_size=8))
    position = data.draw(st.integers(0, len(der)))
    return der[:position] + data.draw(st.binary(max_size=16)) + der[position:]


# A Name attribute typed BIT STRING is only valid for x500UniqueIdentifier (2.5.4.45);
# cryptography parses names lazily and raises TypeError, not ValueError, for any other OID.
_UNIQUE_IDENTIFIER_OID = bytes.fromhex("060355042d")
_COMMON_NAME_OID = bytes.fromhex("0603550403")  # 2.5.4.3: the same length, so lengths hold


def csr_with_bit_string_common_name(key: ec.EllipticCurvePrivateKey | None = None) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """(DER CSR, key): a correctly self-signed CSR whose subject has a commonName typed BIT
    STRING. It loads, its signature verifies, and reading its subject raises TypeError."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "Example Enterprise"),
        x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x00A", _type=_ASN1Type.BitString),
    ])
    template = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    info = template.tbs_certrequest_bytes
    assert info.count(_UNIQUE_IDENTIFIER_OID) == 1
    info = info.replace(_UNIQUE_IDENTIFIER_OID, _COMMON_NAME_OID)
    ecdsa_with_sha256 = der_tlv(DER_SEQUENCE, der_tlv(0x06, bytes.fromhex("2a8648ce3d040302")))  # 0x06: OID
    return assemble_signed(info, ecdsa_with_sha256, key.sign(info, ec.ECDSA(hashes.SHA256()))), key


def certificate_with_bit_string_common_name() -> bytes:
    """A self-signed certificate DER whose subject and issuer have a commonName typed BIT
    STRING (the signature no longer verifies; parsers must refuse it before that matters)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x00A", _type=_ASN1Type.BitString)])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER).replace(_UNIQUE_IDENTIFIER_OID, _COMMON_NAME_OID)


def sign_unlinted(builder: x509.CertificateBuilder, signer) -> x509.Certificate:
    """Draft with a throwaway key, then have ``signer`` sign the TBS, with no lint.

    For tests of the signers and of assembly only: the authority itself signs certificates
    through ``ca.issuing.profiles.sign``, which signs nothing that has not passed lint.
    """
    return assemble_certificate(draft_certificate(builder, signer).tbs_certificate_bytes, signer)


def expire_token_authority(home) -> x509.Certificate:  # type: ignore[no-untyped-def]
    """Replace the home's token authority certificate by one for the same key that expired
    yesterday (fault injection: the operator forgot to renew it). Self-signed: the home pins its
    own token authority certificate as a trust anchor. The home's cached handle is dropped."""
    from cryptography.hazmat.primitives import hashes, serialization

    current = home.token_authority()
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(current.certificate.subject)
        .issuer_name(current.certificate.subject)
        .public_key(current.certificate.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
    )
    for extension in current.certificate.extensions:
        if extension.oid != x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            builder = builder.add_extension(extension.value, extension.critical)
    expired = builder.sign(current.signer._private_key, hashes.SHA256())  # a file key (tnca init)
    home.config.token_authority.certificate.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    home._token_authority = None
    return expired
