"""The PKCS#11 signer against a real SoftHSM2 token."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.errors import SignerError
from ca.issuing.signers.pkcs11 import PKCS11Signer, PKCS11URI, generate_p256_key


def test_signature_verifies_with_the_public_key_read_from_the_token(softhsm_token):
    uri = softhsm_token.format(label="sig-check")
    created = generate_p256_key(uri)
    signer = PKCS11Signer(uri)
    assert signer.public_key.public_numbers() == created.public_numbers()
    data = b"tbsCertificate bytes"
    # Raises InvalidSignature if the DER Ecdsa-Sig-Value is wrong.
    signer.public_key.verify(signer.sign(data), data, ec.ECDSA(hashes.SHA256()))


def test_hsm_signed_certificate_passes_openssl(softhsm_token, tmp_path):
    """A self-signed CA certificate whose signature the HSM made verifies with openssl."""
    from ca.x509util import assemble_certificate  # the same assembly path issuance uses

    uri = softhsm_token.format(label="root")
    generate_p256_key(uri)
    signer = PKCS11Signer(uri)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HSM test root")])
    now = dt.datetime.now(dt.timezone.utc)
    throwaway = ec.generate_private_key(ec.SECP256R1())
    tbs_holder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(throwaway, hashes.SHA256())
    )
    cert = assemble_certificate(tbs_holder.tbs_certificate_bytes, signer)
    cert.verify_directly_issued_by(cert)
    pem = tmp_path / "root.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(["openssl", "verify", "-CAfile", pem, pem], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "uri, field_text",
    [
        ("file:keys/x.key", "not a PKCS#11 URI"),
        ("pkcs11:token=t", "lacks object"),
        ("pkcs11:token=t;object=o;slot=1", "path attribute 'slot'"),
        ("pkcs11:token=t;object=o?pin=1", "query attribute 'pin'"),
        ("pkcs11:token=t;object=o?pin-source=http://x", "pin-source must be"),
    ],
)
def test_bad_uri_is_refused_with_a_reason(uri, field_text):
    with pytest.raises(SignerError, match=field_text):
        PKCS11URI.parse(uri)


def test_missing_key_is_a_signer_error_not_a_crash(softhsm_token):
    with pytest.raises(SignerError, match="cannot open PKCS#11 key 'absent'"):
        PKCS11Signer(softhsm_token.format(label="absent"))


def test_wrong_pin_is_a_signer_error(softhsm_token):
    uri = softhsm_token.format(label="pin-check").replace("pin-value=1234", "pin-value=0000")
    with pytest.raises(SignerError):
        PKCS11Signer(uri)
