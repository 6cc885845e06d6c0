"""Signers (ca/issuing/signers/) and the assembly of signed X.509 objects (ca/x509util.py).

The assembly path is what lets an HSM key sign: cryptography builds the TBS with a throwaway
key, the Signer signs the TBS bytes, x509util puts the DER together. For the deterministic
algorithms (RSA PKCS#1 v1.5, Ed25519) the assembled certificate must be byte-identical to the one
cryptography signs itself with the real key: that pins the DER assembly exactly.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from ca.errors import SignerError
from ca.issuing.signers import Signer, load_signer
from ca.issuing.signers.file import FileSigner, generate_file_key
from ca.numbers.tnauthlist import TNScope
from ca.x509util import (
    assemble_certificate,
    assemble_crl,
    der_length,
    der_read_tlv,
    draft_certificate,
    key_type_name,
    random_serial,
    tbs_certificate_signature_algorithm,
)
from tests.helpers import sign_unlinted

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer test")])


def sign_certificate(builder: x509.CertificateBuilder, signer) -> x509.Certificate:
    """Build with a throwaway key, then have ``signer`` sign the TBS (no lint; issuance lints)."""
    return assemble_certificate(draft_certificate(builder, signer).tbs_certificate_bytes, signer)


def builder_for(public_key, *, extensions=()) -> x509.CertificateBuilder:
    builder = (x509.CertificateBuilder().subject_name(NAME).issuer_name(NAME).public_key(public_key)
               .serial_number(0x0123456789ABCDEF).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder


# ----------------------------------------------------------------------------------------------
# File keys
# ----------------------------------------------------------------------------------------------


def test_generated_key_file_is_pkcs8_pem_with_mode_0600(tmp_path):
    path = tmp_path / "keys" / "issuing.key"
    signer = generate_file_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert isinstance(signer, Signer)
    assert key_type_name(signer.public_key) == "ec-p256"


def test_key_file_mode_is_0600_even_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "k.key"
        generate_file_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generating_over_an_existing_key_file_is_refused_and_leaves_it_unchanged(tmp_path):
    path = tmp_path / "root.key"
    generate_file_key(path)
    before = path.read_bytes()
    with pytest.raises(SignerError, match="already exists; refusing to overwrite it"):
        generate_file_key(path)
    assert path.read_bytes() == before


def test_unknown_key_type_is_refused(tmp_path):
    with pytest.raises(SignerError, match="cannot generate key type 'dsa-1024'") as caught:
        generate_file_key(tmp_path / "k.key", "dsa-1024")
    assert caught.value.field == "key_type"
    assert not (tmp_path / "k.key").exists()


def test_file_uri_is_relative_to_the_home_or_absolute(tmp_path):
    created = generate_file_key(tmp_path / "keys" / "issuing.key")
    relative = load_signer("file:keys/issuing.key", home=tmp_path)
    absolute = load_signer(f"file:{tmp_path / 'keys' / 'issuing.key'}", home=tmp_path / "elsewhere")
    assert relative.public_key == created.public_key == absolute.public_key


@pytest.mark.parametrize(
    "uri, message",
    [
        ("keys/issuing.key", "has no scheme"),
        ("vault:issuing", "unknown signer URI scheme 'vault'"),
        ("file:keys/absent.key", "cannot read key file"),
        ("file:not-a-key.pem", "is not an unencrypted PEM private key"),
    ],
)
def test_signer_uri_problems_are_signer_errors_naming_the_cause(tmp_path, uri, message):
    (tmp_path / "not-a-key.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(SignerError, match=message) as caught:
        load_signer(uri, home=tmp_path)
    assert caught.value.field == "signer"


def test_encrypted_key_files_are_refused_rather_than_prompting(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "enc.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(SignerError, match="not an unencrypted PEM private key"):
        load_signer("file:enc.key", home=tmp_path)


def test_pkcs11_uris_go_to_the_pkcs11_backend(tmp_path):
    """The URI scheme picks the backend; a PKCS#11 URI problem surfaces as that backend's error."""
    with pytest.raises(SignerError, match="unsupported PKCS#11 URI path attribute 'slot'"):
        load_signer("pkcs11:token=t;object=o;slot=1", home=tmp_path)


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_type", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"],
)
def test_assembled_certificate_parses_and_verifies_with_each_key_type(tmp_path, key_type):
    signer = generate_file_key(tmp_path / "k.key", key_type)
    cert = sign_unlinted(builder_for(signer.public_key), signer)
    cert.verify_directly_issued_by(cert)
    assert key_type_name(cert.public_key()) == key_type
    pem = tmp_path / "c.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    at = str(int(NOW.timestamp()) + 60)
    result = subprocess.run(["openssl", "verify", "-attime", at, "-CAfile", pem, pem], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "key, hash_algorithm",
    [(rsa.generate_private_key(public_exponent=65537, key_size=2048), hashes.SHA256()),
     (ed25519.Ed25519PrivateKey.generate(), None)],
    ids=["rsa-pkcs1v15", "ed25519"],
)
def test_assembly_is_byte_identical_to_cryptographys_own_signing_for_deterministic_algorithms(key, hash_algorithm):
    builder = builder_for(key.public_key())
    expected = builder.sign(key, hash_algorithm)
    assembled = assemble_certificate(draft_certificate(builder, FileSigner(key)).tbs_certificate_bytes, FileSigner(key))
    assert assembled.public_bytes(serialization.Encoding.DER) == expected.public_bytes(serialization.Encoding.DER)


def test_ecdsa_assembly_keeps_the_tbs_and_algorithm_of_the_draft():
    key = ec.generate_private_key(ec.SECP256R1())
    draft = draft_certificate(builder_for(key.public_key()), FileSigner(key))
    cert = assemble_certificate(draft.tbs_certificate_bytes, FileSigner(key))
    assert cert.tbs_certificate_bytes == draft.tbs_certificate_bytes
    assert cert.signature_algorithm_oid == draft.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256


def test_long_form_der_lengths_assemble_correctly():
    """A TBS over 64 KiB (thousands of TNAuthList entries) needs a 3-octet DER length."""
    key = ed25519.Ed25519PrivateKey.generate()
    scope = TNScope.parse(tns=[f"1202555{n:04d}" for n in range(0, 10000, 2)])
    builder = builder_for(key.public_key(), extensions=[scope.to_extension()])
    cert = sign_unlinted(builder, FileSigner(key))
    assert len(cert.tbs_certificate_bytes) > 65536
    assert cert.public_bytes(serialization.Encoding.DER) == builder.sign(key, None).public_bytes(serialization.Encoding.DER)
    assert TNScope.from_certificate(cert) == scope


@pytest.mark.parametrize("length, encoded", [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"),
                                             (65536, "83010000")])
def test_der_length_uses_the_minimal_form(length, encoded):
    """X.690 §8.1.3 / §10.1: short form below 128, else the fewest length octets."""
    assert der_length(length).hex() == encoded
    tag, start, parsed = der_read_tlv(bytes([0x04]) + der_length(length) + b"\x00" * length)
    assert (tag, parsed) == (0x04, length)


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x80\x00\x00", b"\x30\x85\x01\x00\x00\x00\x00", b"\x30\x05\x00"])
def test_malformed_der_headers_are_refused(data):
    with pytest.raises(ValueError):
        der_read_tlv(data)


def test_a_signer_whose_key_does_not_match_its_public_key_is_caught_before_use():
    """A misconfigured HSM object (or the wrong key file) must never yield a stored certificate."""

    class MismatchedSigner:
        def __init__(self) -> None:
            self._real = FileSigner(ec.generate_private_key(ec.SECP256R1()))
            self.public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
            self.hash_algorithm = hashes.SHA256()

        def sign(self, data: bytes) -> bytes:
            return self._real.sign(data)

    signer = MismatchedSigner()
    with pytest.raises(SignerError, match="does not verify with its public key"):
        sign_unlinted(builder_for(signer.public_key), signer)


def test_tbs_signature_algorithm_is_read_from_the_tbs():
    key = ec.generate_private_key(ec.SECP384R1())
    signer = FileSigner(key)
    draft = draft_certificate(builder_for(key.public_key()), signer)
    algorithm = tbs_certificate_signature_algorithm(draft.tbs_certificate_bytes)
    assert algorithm.hex() == "300a06082a8648ce3d040303"  # ecdsa-with-SHA384 (RFC 5758 §3.2)


def test_crl_assembly_verifies_with_openssl(tmp_path):
    """The same assembly serves CRLs (RFC 5280 §5.1), for the revocation service."""
    signer = generate_file_key(tmp_path / "ca.key")
    ca = sign_unlinted(builder_for(signer.public_key).add_extension(
        x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True), signer)
    revoked = x509.RevokedCertificateBuilder().serial_number(42).revocation_date(NOW).build()
    crl_builder = (x509.CertificateRevocationListBuilder().issuer_name(NAME).last_update(NOW)
                   .next_update(NOW + dt.timedelta(days=1)).add_revoked_certificate(revoked)
                   .add_extension(x509.CRLNumber(1), critical=False))
    draft = crl_builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    crl = assemble_crl(draft.tbs_certlist_bytes, signer)
    assert crl.is_signature_valid(signer.public_key)
    assert crl.get_revoked_certificate_by_serial_number(42) is not None
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(["openssl", "crl", "-in", tmp_path / "crl.pem", "-CAfile", tmp_path / "ca.pem", "-noout"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "verify OK" in result.stderr + result.stdout, result.stderr


def test_random_serials_are_positive_and_fit_20_octets():
    """RFC 5280 §4.1.2.2."""
    serials = {random_serial() for _ in range(256)}
    assert len(serials) == 256
    assert all(0 < s < 2**128 for s in serials)
    assert max(s.bit_length() for s in serials) > 120
