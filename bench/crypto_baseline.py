"""The crypto-only cost of one issuance: what no implementation of this flow can avoid.

Per issuance the server side must, at the least:

- verify 7 ES256 JWS signatures (one per ACME request of the flow, bench/client.py's steps),
- verify the authority token's ES256 signature and the CSR's self-signature,
- sign the precertificate, have each of the two logs sign an SCT (ECDSA), verify both SCTs,
- sign the final certificate.

This measures those operations with ``cryptography`` (OpenSSL) in one thread of this process,
on keys of the issuing CA's type, building a certificate with the extensions a delegate
certificate carries (a TNAuthList of one number, key identifiers, basic constraints, key usage,
CRL distribution point, policies). The result, in CPU milliseconds per issuance, is the floor
the benchmark's server CPU per issuance is compared with.
"""

from __future__ import annotations

import datetime as dt
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

TNAUTHLIST_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.26")  # RFC 8226 §9
TNAUTHLIST_ONE_NUMBER = bytes.fromhex("3011a20f160d3132303235353530303030")  # placeholder DER, one TN
JWS_VERIFICATIONS = 7
SCT_SIGNATURES = 2


def _certificate(issuer_key: ec.EllipticCurvePrivateKey, issuer_name: x509.Name,
                 subject_key: ec.EllipticCurvePublicKey, serial: int) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Enterprise")]))
            .issuer_name(issuer_name)
            .public_key(subject_key)
            .serial_number(serial)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(hours=24))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://127.0.0.1/crl/issuing.crl")], None, None, None)]),
                critical=False)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                ObjectIdentifier("2.16.840.1.114569.1.1.1"), None)]), critical=False)
            .add_extension(x509.UnrecognizedExtension(TNAUTHLIST_OID, TNAUTHLIST_ONE_NUMBER), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def measure(iterations: int = 200, curve: ec.EllipticCurve | None = None) -> dict[str, float]:
    """CPU milliseconds per issuance of the crypto alone, and the signatures per second of one core."""
    curve = curve or ec.SECP256R1()
    issuer_key = ec.generate_private_key(curve)
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")])
    log_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(SCT_SIGNATURES)]
    account_key = ec.generate_private_key(ec.SECP256R1())
    token_key = ec.generate_private_key(ec.SECP256R1())
    subject_key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Enterprise")]))
           .sign(subject_key, hashes.SHA256()))
    message = b"x" * 400  # a JWS signing input of a typical ACME request
    jws_signature = account_key.sign(message, ec.ECDSA(hashes.SHA256()))
    token_signature = token_key.sign(message, ec.ECDSA(hashes.SHA256()))

    def one(serial: int) -> None:
        for _ in range(JWS_VERIFICATIONS):
            account_key.public_key().verify(jws_signature, message, ec.ECDSA(hashes.SHA256()))
        token_key.public_key().verify(token_signature, message, ec.ECDSA(hashes.SHA256()))
        assert csr.is_signature_valid
        precertificate = _certificate(issuer_key, issuer_name, subject_key.public_key(), serial)
        tbs = precertificate.tbs_certificate_bytes
        for log_key in log_keys:
            sct = log_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
            log_key.public_key().verify(sct, tbs, ec.ECDSA(hashes.SHA256()))
        _certificate(issuer_key, issuer_name, subject_key.public_key(), serial + 1)

    for serial in range(10):  # warm-up
        one(2 * serial + 1)
    started = time.process_time()
    for serial in range(iterations):
        one(2 * serial + 1001)
    per_issuance = (time.process_time() - started) / iterations

    started = time.process_time()
    for serial in range(iterations):
        _certificate(issuer_key, issuer_name, subject_key.public_key(), serial + 5001)
    per_signature = (time.process_time() - started) / iterations
    return {
        "ms_per_issuance": round(per_issuance * 1000, 3),
        "issuances_per_core_s": round(1 / per_issuance, 1),
        "certificate_signatures_per_core_s": round(1 / per_signature, 1),
    }


if __name__ == "__main__":
    print(measure())
