"""The certificate page's checks (``acme_server.admin.inspect``): SCTs verified against the logs
configured (RFC 6962 §3.2 signature over the precertificate entry rebuilt from the certificate,
§3.3 embedding), and the chain verified link by link.

The certificates here are made by hand so that each failure can be made on purpose: an SCT
signed over another TBSCertificate, an SCT from a log that is not configured, a certificate
presented with the wrong issuer.
"""

from __future__ import annotations

import base64
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acme_server.admin.inspect import inspect
from ca.numbers.claims import ClaimConstraints
from ca.records.models_authority import Certificate, Issuer
from ca.numbers.tnauthlist import TNScope
from ca.issuing.transparency import (
    HASH_ALGORITHM_SHA256,
    SCT,
    SIGNATURE_ALGORITHM_ECDSA,
    LogClient,
    issuer_key_hash,
    precert_signature_input,
    sct_list_extension,
)

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
SCOPE = TNScope.parse(tns=["12025550123"], ranges=["12025550200:100"], spcs=["1234"])
CONSTRAINTS = ClaimConstraints(must_include=("rcd",), must_exclude=("rph",))


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ca_certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))


ROOT_KEY, ISSUING_KEY, LOG_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
ROOT = ca_certificate("Test Root", ROOT_KEY, "Test Root", ROOT_KEY)
ISSUING = ca_certificate("Test Issuing CA", ISSUING_KEY, "Test Root", ROOT_KEY)
LOG = LogClient("test-log", "http://log.test", LOG_KEY.public_key())


LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def leaf_builder(serial: int) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(name("Example Enterprise")).issuer_name(ISSUING.subject)
            .public_key(LEAF_KEY.public_key()).serial_number(serial)
            .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(hours=24))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(SCOPE.to_extension(), critical=False)
            .add_extension(CONSTRAINTS.to_extension(), critical=False))


def signed_sct(tbs: bytes, key: ec.EllipticCurvePrivateKey = LOG_KEY) -> SCT:
    """An SCT as a log signs it (RFC 6962 §3.2) over the precertificate entry of ``tbs``."""
    unsigned = SCT(log_id=LogClient("x", "http://x", key.public_key()).log_id, timestamp=int(NOW.timestamp() * 1000),
                   extensions=b"", hash_algorithm=HASH_ALGORITHM_SHA256, signature_algorithm=SIGNATURE_ALGORITHM_ECDSA,
                   signature=b"")
    signature = key.sign(precert_signature_input(unsigned, issuer_key_hash(ISSUING), tbs), ec.ECDSA(hashes.SHA256()))
    return SCT(**{**unsigned.__dict__, "signature": signature})


def certificate_with(scts_for: str = "self") -> Certificate:
    """A final certificate embedding one SCT, signed over its own precertificate entry ("self")
    or over another certificate's ("other")."""
    serial = x509.random_serial_number()
    precertificate_tbs = leaf_builder(serial).sign(ISSUING_KEY, hashes.SHA256()).tbs_certificate_bytes
    if scts_for == "other":
        precertificate_tbs = leaf_builder(serial + 1).sign(ISSUING_KEY, hashes.SHA256()).tbs_certificate_bytes
    sct = signed_sct(precertificate_tbs)
    final = leaf_builder(serial).add_extension(sct_list_extension([sct]), critical=False).sign(ISSUING_KEY, hashes.SHA256())
    log_id = base64.b64encode(sct.log_id).decode()
    return Certificate(serial=format(serial, "x"), der=final.public_bytes(serialization.Encoding.DER),
                       scts=[{"log_id": log_id, "timestamp": sct.timestamp, "log_url": "http://log.test"}])


ISSUERS = [Issuer(name="issuing", certificate_der=ISSUING.public_bytes(serialization.Encoding.DER)),
           Issuer(name="root", certificate_der=ROOT.public_bytes(serialization.Encoding.DER))]


def test_an_sct_from_a_configured_log_is_verified_over_the_precertificate_entry():
    inspection = inspect(certificate_with("self"), ISSUERS, [LOG])
    (sct,) = inspection.scts
    assert (sct.status, sct.log_name, sct.log_url) == ("verified", "test-log", "http://log.test")
    assert sct.timestamp == NOW
    assert inspection.verified_sct_logs == 1


def test_an_sct_signed_over_another_certificate_is_invalid():
    (sct,) = inspect(certificate_with("other"), ISSUERS, [LOG]).scts
    assert sct.status == "invalid"
    assert sct.detail == "SCT signature does not verify over the precertificate entry"


def test_an_sct_from_a_log_not_configured_cannot_be_checked_and_says_so():
    (sct,) = inspect(certificate_with("self"), ISSUERS, []).scts
    assert (sct.status, sct.log_name, sct.log_url) == ("unknown-log", None, "http://log.test")
    assert "not configured" in sct.detail


def test_the_decoded_tnauthlist_and_claim_constraints_are_read_from_the_certificate():
    inspection = inspect(certificate_with("self"), ISSUERS, [LOG])
    assert [(e.kind, e.value, e.numbers, e.last) for e in inspection.scope_entries] == [
        ("TN", "12025550123", 1, None), ("range", "12025550200 + 100", 100, "12025550299"), ("SPC", "1234", None, None)]
    assert inspection.constraints == CONSTRAINTS
    assert inspection.key == "ECDSA P-256" and inspection.signature_algorithm == "ecdsa-with-SHA256"
    assert "TNAuthList (RFC 8226 §9)" in [e.name for e in inspection.extensions]
    assert "EnhancedJWTClaimConstraints (RFC 9118)" in [e.name for e in inspection.extensions]


def test_every_link_of_the_chain_is_verified_up_to_the_self_signed_root():
    inspection = inspect(certificate_with("self"), ISSUERS, [LOG])
    assert [link.subject for link in inspection.chain] == ["CN=Example Enterprise", "CN=Test Issuing CA", "CN=Test Root"]
    assert [link.signature_ok for link in inspection.chain] == [True, True, True]
    assert inspection.chain[2].signature_detail == "self-signed (a trust anchor)"
    assert inspection.chain_ok


def test_a_certificate_shown_with_the_wrong_issuer_fails_the_chain():
    other_key = ec.generate_private_key(ec.SECP256R1())
    impostor = ca_certificate("Test Issuing CA", other_key, "Test Root", ROOT_KEY)  # same name, another key
    issuers = [Issuer(name="issuing", certificate_der=impostor.public_bytes(serialization.Encoding.DER)), ISSUERS[1]]
    inspection = inspect(certificate_with("self"), issuers, [LOG])
    assert inspection.chain[0].signature_ok is False
    assert "does not verify with the key of CN=Test Issuing CA" in inspection.chain[0].signature_detail
    assert not inspection.chain_ok
    # The SCTs are checked against the issuer's key hash too (RFC 6962 §3.2), so they fail as well.
    assert inspection.scts[0].status == "invalid"


def test_a_chain_without_its_root_is_not_reported_as_verified():
    inspection = inspect(certificate_with("self"), ISSUERS[:1], [LOG])
    assert inspection.chain[-1].signature_ok is None
    assert inspection.chain[-1].signature_detail == "its issuer is not known to this authority"
    assert not inspection.chain_ok


def test_a_row_without_a_final_certificate_has_nothing_to_inspect():
    assert inspect(Certificate(serial="1", der=None), ISSUERS, [LOG]) is None
