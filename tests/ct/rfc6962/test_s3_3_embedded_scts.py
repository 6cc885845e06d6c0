"""RFC 6962 §3.1-§3.3 end to end: a precertificate from a throwaway CA goes to two running logs
(ca.issuing.transparency.submit_precertificate), the SCTs are embedded in the final certificate, and
cryptography's own SCT API (plus openssl's parser) verifies them; after the merge delay each log
serves the precertificate and an inclusion proof under a signed tree head.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import struct
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.certificate_transparency import LogEntryType
from cryptography.x509.oid import ExtensionOID

from ca.issuing.transparency import submit_precertificate, verify_embedded_scts
from ct_helpers import DelegateCertificate, log_key, make_delegate, verify_sth, wait_for_tree_size
from ctlog import merkle


def cryptography_verifies_sct(sct, final: x509.Certificate, issuer: x509.Certificate, key: ec.EllipticCurvePublicKey) -> None:
    """Verify with cryptography's SCT objects: the signed struct rebuilt from their fields."""
    assert sct.entry_type == LogEntryType.PRE_CERTIFICATE
    issuer_spki = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    tbs = final.tbs_precertificate_bytes
    timestamp = int(sct.timestamp.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
    signed = (struct.pack(">BBQH", sct.version.value, 0, timestamp, 1) + hashlib.sha256(issuer_spki).digest()
              + len(tbs).to_bytes(3, "big") + tbs + struct.pack(">H", len(sct.extension_bytes)) + sct.extension_bytes)
    key.verify(sct.signature, signed, ec.ECDSA(sct.signature_hash_algorithm))


def test_s3_3_scts_from_two_logs_embedded_in_the_final_certificate_verify(two_logs, pki, tmp_path):
    """RFC 6962 §3.3: "the final certificate ... MUST include the SCTs ... in an X.509v3
    extension"; each SCT verifies over the final certificate's TBS minus that extension."""
    dev1, dev2 = two_logs
    delegate = make_delegate(pki.issuing)
    scts = submit_precertificate([dev1.client(), dev2.client()], delegate.precert_der, [pki.issuing.der],
                                 deadline_per_log=10, required=2)
    assert [sct.log_id.hex() for sct in scts] == [dev1.log_id_hex, dev2.log_id_hex]
    final = delegate.final(scts)

    # The final TBS minus the SCT list is the precertificate's TBS minus the poison (RFC 6962 §3.2).
    extension = final.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
    assert extension.critical is False
    keys = {bytes.fromhex(log.log_id_hex): log_key(log) for log in (dev1, dev2)}
    assert {sct.log_id for sct in extension.value} == set(keys)
    for sct in extension.value:
        cryptography_verifies_sct(sct, final, pki.issuing.certificate, keys[sct.log_id])
    assert len(verify_embedded_scts(final, pki.issuing.certificate, [dev1.client(), dev2.client()], required=2)) == 2

    # openssl parses the double OCTET STRING and shows both SCTs.
    pem = tmp_path / "final.pem"
    pem.write_bytes(final.public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-text"], check=True, capture_output=True, text=True).stdout
    assert text.count("Signed Certificate Timestamp:") == 2 and "CT Precertificate SCTs" in text

    # After the merge delay, each log holds the precertificate under a signed tree head.
    for log, sct in zip((dev1, dev2), scts):
        sth = wait_for_tree_size(log, 1)
        verify_sth(log_key(log), sth)
        [entry] = log.get("get-entries", start=0, end=0).json()["entries"]
        extra = base64.b64decode(entry["extra_data"])
        assert extra[3:3 + int.from_bytes(extra[:3], "big")] == delegate.precert_der
        leaf = base64.b64decode(entry["leaf_input"])
        assert struct.unpack(">Q", leaf[2:10]) == (sct.timestamp,)
        leaf_hash = merkle.leaf_hash(leaf)
        proof = log.get("get-proof-by-hash", hash=base64.b64encode(leaf_hash).decode(), tree_size=sth["tree_size"]).json()
        merkle.verify_inclusion(leaf_hash, proof["leaf_index"], sth["tree_size"],
                                [base64.b64decode(h) for h in proof["audit_path"]],
                                base64.b64decode(sth["sha256_root_hash"]))


def test_s3_1_precertificate_signing_certificate_yields_scts_for_the_final_issuer(log_factory, pki):
    """RFC 6962 §3.1-§3.2: a precertificate signed by a Precertificate Signing Certificate (EKU
    1.3.6.1.4.1.11129.2.4.4) gets an SCT over the TBS as the *final* issuer signs it: issuer and
    authority key identifier rewritten, issuer key hash of the final issuer."""
    log = log_factory("psc")
    signing = pki.issuing.issue_ca("Test STI-CA precertificate signing", precert_signing=True)
    delegate = make_delegate(pki.issuing)  # the final certificate: issuer and AKI of the issuing CA
    # The same TBS, issued (and identified by AKI) by the Precertificate Signing Certificate.
    builder = x509.CertificateBuilder(
        issuer_name=signing.certificate.subject,
        subject_name=delegate.precertificate.subject,
        public_key=delegate.precertificate.public_key(),
        serial_number=delegate.precertificate.serial_number,
        not_valid_before=delegate.precertificate.not_valid_before_utc,
        not_valid_after=delegate.precertificate.not_valid_after_utc,
    )
    for extension in delegate.precertificate.extensions:
        if extension.oid == ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            value = x509.AuthorityKeyIdentifier.from_issuer_public_key(signing.key.public_key())
        else:
            value = extension.value
        builder = builder.add_extension(value, critical=extension.critical)
    precert = builder.sign(signing.key, hashes.SHA256())
    client = log.client()
    sct = client.add_pre_chain([precert.public_bytes(serialization.Encoding.DER), signing.der, pki.issuing.der], timeout=10)
    final = DelegateCertificate(builder=delegate.builder, precertificate=precert, issuer=pki.issuing).final([sct])
    [verified] = verify_embedded_scts(final, pki.issuing.certificate, [client])
    assert verified == sct
    cryptography_verifies_sct(next(iter(final.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps).value)), final, pki.issuing.certificate, log_key(log))
