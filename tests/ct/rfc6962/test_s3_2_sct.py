"""RFC 6962 §3.2-§3.3 SCTs on the authority's side (ca/issuing/transparency.py): the Appendix A.4 vector
from the standards digest, the TLS codec, and the two OCTET STRING layers of the embedded list.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca.errors import TransparencyError
from ca.issuing.transparency import (
    SCT,
    LogClient,
    issuer_key_hash,
    parse_sct_list,
    precert_signature_input,
    sct_list_extension,
    verify_embedded_scts,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


@pytest.fixture(scope="module")
def a4():
    key = serialization.load_pem_public_key((VECTORS / "a4-log-key.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((VECTORS / "a4-ca.pem").read_bytes())
    ee = x509.load_pem_x509_certificate((VECTORS / "a4-ee-with-sct.pem").read_bytes())
    return LogClient("a4", "http://a4.invalid", key), ca, ee


def test_s3_2_log_id_is_sha256_of_the_log_spki(a4):
    """RFC 6962 §3.2: "LogID ... is the SHA-256 hash of the log's public key" (A.4: 882275…e474)."""
    log, _, _ = a4
    assert log.log_id.hex() == "882275124ec8fd7c7fe0dd9673def7c5ac3b26435611e884bca83f97fa50e474"
    assert log.log_id_b64 == "iCJ1Ek7I/Xx/4N2Wc973xaw7JkNWEeiEvKg/l/pQ5HQ="


def test_s3_2_appendix_a4_embedded_sct_verifies(a4):
    """RFC 6962 §3.2: the SCT signs the precert entry: issuer key hash + TBS without the SCT list."""
    log, ca, ee = a4
    assert issuer_key_hash(ca).hex() == "6cbd8c703dc679dd0c696d8431e5de25c7c3465c24ba14c0da045ca9c75e735f"
    [sct] = verify_embedded_scts(ee, ca, [log])
    assert (sct.timestamp, sct.hash_algorithm, sct.signature_algorithm, sct.extensions) == (1704067200000, 4, 3, b"")
    signed = precert_signature_input(sct, issuer_key_hash(ca), ee.tbs_precertificate_bytes)
    assert len(ee.tbs_precertificate_bytes) == 344 and len(signed) == 393
    assert signed[:48].hex() == "00000000018cc251f40000016cbd8c703dc679dd0c696d8431e5de25c7c3465c24ba14c0da045ca9c75e735f00015830"


def test_s3_2_sct_over_another_issuer_key_hash_is_refused(a4):
    """A.4 negative check: "replacing issuer_key_hash with 32 zero bytes makes verification fail"."""
    log, _, ee = a4
    [sct] = parse_sct_list(ee.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")).value.public_bytes())
    with pytest.raises(TransparencyError, match="does not verify over the precertificate entry"):
        log.verify_sct(sct, issuer_key_hash=b"\x00" * 32, tbs_certificate=ee.tbs_precertificate_bytes)


def test_s3_2_sct_from_an_unknown_log_does_not_count(a4):
    """An SCT can only be checked with its log's key: unknown logs do not count toward the policy."""
    _, ca, ee = a4
    other = LogClient("other", "http://other.invalid", ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(TransparencyError, match="0 verified SCT.*SCTs from unknown logs: iCJ1Ek7I"):
        verify_embedded_scts(ee, ca, [other])


def test_s3_2_sct_with_a_wrong_log_key_configured_is_an_error(a4):
    """The same log ID with a different key cannot happen; a known log whose SCT does not verify is refused."""
    log, ca, ee = a4
    [sct] = parse_sct_list(ee.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")).value.public_bytes())
    tampered = SCT(log_id=sct.log_id, timestamp=sct.timestamp + 1, extensions=b"", hash_algorithm=4,
                   signature_algorithm=3, signature=sct.signature)
    with pytest.raises(TransparencyError, match="SCT signature does not verify"):
        log.verify_sct(tampered, issuer_key_hash=issuer_key_hash(ca), tbs_certificate=ee.tbs_precertificate_bytes)


def test_s3_2_sct_tls_round_trip_and_field_layout():
    """RFC 6962 §3.2: version(1) ‖ log_id(32) ‖ timestamp(8) ‖ extensions<2> ‖ hash(1) sig(1) signature<2>."""
    sct = SCT(log_id=bytes(range(32)), timestamp=0x0102030405060708, extensions=b"\xaa", hash_algorithm=4,
              signature_algorithm=3, signature=b"\x30\x00")
    tls = sct.serialize()
    assert tls == b"\x00" + bytes(range(32)) + bytes.fromhex("0102030405060708") + b"\x00\x01\xaa" + b"\x04\x03\x00\x02\x30\x00"
    assert SCT.from_tls(tls) == sct


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01" + b"\x00" * 46, "SCT version 1 is not v1"),
        (b"\x00" + b"\x00" * 40, "truncated"),
        (SCT(bytes(32), 1, b"", 4, 3, b"\x30\x00").serialize() + b"\x00", "1 trailing bytes"),
    ],
)
def test_s3_2_malformed_tls_sct_is_refused(data, message):
    with pytest.raises(TransparencyError, match=message):
        SCT.from_tls(data)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not a JSON object"),
        ({"sct_version": 1}, "'sct_version' is 1, expected 0"),
        ({"sct_version": True}, "'sct_version' is True"),
        ({"sct_version": 0, "timestamp": "1"}, "'timestamp' is '1'"),
        ({"sct_version": 0, "timestamp": -1}, "'timestamp' is -1"),
        ({"sct_version": 0, "timestamp": 1, "id": "%%"}, "'id' is not valid base64"),
        ({"sct_version": 0, "timestamp": 1, "id": base64.b64encode(b"x" * 31).decode()}, "'id' is 31 bytes"),
        ({"sct_version": 0, "timestamp": 1, "id": base64.b64encode(b"x" * 32).decode(), "extensions": "", "signature": "BAM="},
         "truncated"),
    ],
)
def test_s4_1_malformed_add_pre_chain_response_is_refused(body, message):
    """RFC 6962 §4.1 response fields: sct_version 0, id 32 bytes, timestamp ms, base64 fields."""
    with pytest.raises(TransparencyError, match=message):
        SCT.from_json(body)


def test_s3_3_sct_list_has_two_octet_string_layers():
    """RFC 6962 §3.3: the TLS list is "encoded as an ASN.1 OCTET STRING and inserted into the
    extnValue", which is itself an OCTET STRING (core-standards.md §8.4 pitfall)."""
    scts = [SCT(bytes([n]) * 32, n, b"", 4, 3, b"\x30\x06\x02\x01\x01\x02\x01\x01") for n in (1, 2)]
    extension = sct_list_extension(scts)
    assert extension.oid.dotted_string == "1.3.6.1.4.1.11129.2.4.2"
    inner = extension.value
    serialized = b"".join(struct.pack(">H", len(s.serialize())) + s.serialize() for s in scts)
    tls_list = struct.pack(">H", len(serialized)) + serialized
    assert inner == b"\x04" + bytes([len(tls_list)]) + tls_list  # the inner OCTET STRING
    assert parse_sct_list(inner) == scts


class _SerializedSCT:
    """Stands for an SCT whose TLS encoding is ``tls`` (any bytes: only the list framing is tested)."""

    def __init__(self, tls: bytes) -> None:
        self.tls = tls

    def serialize(self) -> bytes:
        return self.tls


def test_s3_3_sct_list_extension_value_has_two_length_layers():
    """RFC 6962 §3.3: OCTET STRING { uint16 list length, (uint16 SCT length, SCT)* }."""
    value = sct_list_extension([_SerializedSCT(b"\xaa" * 3), _SerializedSCT(b"\xbb" * 2)]).value
    assert value.hex() == "040b" + "0009" + "0003aaaaaa" + "0002bbbb"
    with pytest.raises(TransparencyError):
        sct_list_extension([])


def test_s3_3_embedded_list_parses_with_cryptography(a4):
    """cryptography reads the extension we build as PrecertificateSignedCertificateTimestamps."""
    _, ca, ee = a4
    original = ee.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    scts = parse_sct_list(original.public_bytes())
    assert sct_list_extension(scts).value == original.public_bytes()


def test_s3_3_empty_sct_list_is_refused():
    """RFC 6962 §3.3: sct_list<1..2^16-1>: at least one SCT."""
    with pytest.raises(TransparencyError, match="at least one SCT"):
        sct_list_extension([])
    with pytest.raises(TransparencyError, match="not a DER OCTET STRING"):
        parse_sct_list(b"\x30\x00")


def test_s3_2_log_client_refuses_non_ct_key_types():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(TransparencyError, match="ECDSA or RSA"):
        LogClient("x", "http://x.invalid", ed25519.Ed25519PrivateKey.generate().public_key())


def test_s3_2_issuer_key_hash_is_sha256_of_the_issuer_spki(a4):
    _, ca, _ = a4
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert issuer_key_hash(ca) == hashlib.sha256(spki).digest()
