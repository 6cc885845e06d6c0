"""Finalize under the SHAKEN certificate profile (``[certificates] profile = "shaken"``, docs/shaken.md).

RFC 8555 §7.4: a CSR the profile refuses is ``badCSR`` and the order stays ``ready``; what the
profile accepts is issued with the CSR's subject byte for byte (ca.issuing.profiles.shaken_subject).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from acme_server import create_app
from protocol.support import (
    SPC_SCOPE,
    TN_SCOPE,
    RawClient,
    assert_problem,
    b64url,
    new_key,
    raw_ready_order,
    table_counts,
    with_policy,
)


def shaken_csr(cn: str, scope=SPC_SCOPE, extra=(), organization: str = "Example Telecom") -> tuple[str, x509.Name]:
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                         x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "TX"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "VoIP"),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn), *extra])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(scope.to_extension(), critical=False).sign(new_key(), hashes.SHA256()))
    return b64url(csr.public_bytes(serialization.Encoding.DER)), subject


def test_shaken_profile_issues_the_csr_subject_and_refuses_what_the_rule_does_not_allow(home, authority, session_factory):
    shaken = with_policy(home, "certificates", profile="shaken")
    client = create_app(shaken).test_client()
    raw = RawClient(client, home.base_url)
    raw.register()
    delegation = authority.delegate(SPC_SCOPE)
    order = raw_ready_order(raw, authority, SPC_SCOPE, delegation_id=delegation)
    finalize = order.body["finalize"]
    for csr, fragment in (
        (shaken_csr("SHAKEN 709J")[0], "names SPC '709J', but the order certifies SPC '1234'"),
        (shaken_csr("SHAKEN 1234", extra=[x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@example.com")])[0],
         "does not echo the subject attribute"),
        (shaken_csr("Example")[0], "must be 'SHAKEN <SPC>'"),
        # The echoed subject is held to the shape rules of every subject (ca/issuing/subjects.py):
        # a right-to-left override would make the certificate page show spoofed text.
        (shaken_csr("SHAKEN 1234", organization="Example \u202eknaB")[0], "U+202E"),
    ):
        before = table_counts(session_factory)
        assert_problem(raw.post(finalize, {"csr": csr}), "badCSR", 400, fragment)
        assert table_counts(session_factory) == before
        assert raw.post(order.url, None).get_json()["status"] == "ready"
    csr, subject = shaken_csr("SHAKEN 1234 gen-1")
    body = raw.post(finalize, {"csr": csr}).get_json()
    assert body["status"] == "valid", body
    chain = raw.post(body["certificate"], None).get_data()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    assert leaf.subject.public_bytes() == subject.public_bytes()


def test_shaken_profile_certifies_one_spc_only(home, authority, session_factory):
    """ATIS-1000080 §6.4.1: a SHAKEN certificate carries exactly one SPC, no numbers."""
    client = create_app(with_policy(home, "certificates", profile="shaken")).test_client()
    raw = RawClient(client, home.base_url)
    raw.register()
    order = raw_ready_order(raw, authority, TN_SCOPE)
    before = table_counts(session_factory)
    assert_problem(raw.post(order.body["finalize"], {"csr": shaken_csr("SHAKEN 1234", scope=TN_SCOPE)[0]}),
                   "badCSR", 400, "exactly one SPC")
    assert table_counts(session_factory) == before
