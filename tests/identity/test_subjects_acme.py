"""Subjects come from the record, never from the CSR (docs/identity.md, ca/issuing/subjects.py).

Over ACME with certbot's ``acme`` client against the live server (real HTTP on loopback): a CSR
naming another organisation, carrying a right-to-left override, 200 OUs, or an extension the
profile does not take is refused with ``badCSR`` naming the attribute, nothing is signed (no
certificate row, no audit event) and the order stays ``ready`` for a better CSR (RFC 8555 §7.4).
"""

from __future__ import annotations

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from protocol.support import DELEGATE, TN_SCOPE, new_key, table_counts


def _csr(name: x509.Name, *extensions: x509.ExtensionType) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(new_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _ready(subscriber, authority):
    if getattr(subscriber, "account", None) is None:
        subscriber.register(terms_of_service_agreed=True)
    delegation_id = authority.delegate()
    orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
    return orderr


def _refused(subscriber, orderr, csr_pem: bytes, session_factory, fragment: str) -> messages.Error:
    before = table_counts(session_factory)
    with pytest.raises(messages.Error) as caught:
        subscriber.finalize(orderr, csr_pem)
    assert caught.value.typ == "urn:ietf:params:acme:error:badCSR", caught.value
    assert fragment in caught.value.detail, caught.value.detail
    # Nothing signed, nothing recorded; the order waits for a better CSR (RFC 8555 §7.4).
    assert table_counts(session_factory) == before
    assert subscriber.poll(orderr).status == messages.STATUS_READY
    return caught.value


def test_csr_naming_another_organisation_is_refused_never_signed(subscriber, authority, session_factory):
    """The issue's report: ``O=Totally Not Vetted Bank`` under a delegation to "Example
    Enterprise" was signed as asked. The record names no organisation, so O is refused."""
    orderr = _ready(subscriber, authority)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Totally Not Vetted Bank"),
                      x509.NameAttribute(NameOID.COMMON_NAME, DELEGATE)])
    error = _refused(subscriber, orderr, _csr(name), session_factory, "O='Totally Not Vetted Bank'")
    assert "does not support" in error.detail


def test_csr_common_name_other_than_the_delegate_is_refused(subscriber, authority, session_factory):
    orderr = _ready(subscriber, authority)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Bank")])
    _refused(subscriber, orderr, _csr(name), session_factory, f"says CN='{DELEGATE}'")


def test_csr_with_a_right_to_left_override_is_refused(subscriber, authority, session_factory):
    """A CN carrying U+202E rendered as spoofed text on the certificate page."""
    orderr = _ready(subscriber, authority)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example \u202eknaB")])
    _refused(subscriber, orderr, _csr(name), session_factory, "U+202E")


def test_csr_with_two_hundred_organisational_units_is_refused(subscriber, authority, session_factory):
    orderr = _ready(subscriber, authority)
    name = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"u{i}")])
                      for i in range(200)])
    _refused(subscriber, orderr, _csr(name), session_factory, "200 attributes")


def test_csr_subject_alt_name_is_refused_not_dropped(subscriber, authority, session_factory):
    """A SAN used to be dropped in silence; without a dns identifier in the order it is refused."""
    orderr = _ready(subscriber, authority)
    san = x509.SubjectAlternativeName([x509.DNSName("bank.example")])
    _refused(subscriber, orderr, _csr(x509.Name([]), san), session_factory, "subjectAltName")


def test_csr_extension_the_profile_does_not_take_is_refused(subscriber, authority, session_factory):
    orderr = _ready(subscriber, authority)
    eku = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    _refused(subscriber, orderr, _csr(x509.Name([]), eku), session_factory, "extendedKeyUsage")


def test_certificate_subject_is_the_record_whatever_the_csr_may_repeat(subscriber, authority):
    """An empty CSR subject and one repeating the record both give the record's name."""
    for name in (x509.Name([]), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DELEGATE)])):
        orderr = _ready(subscriber, authority)
        finished = subscriber.finalize(orderr, _csr(name))
        leaf = x509.load_pem_x509_certificates(finished.fullchain_pem.encode())[0]
        assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DELEGATE)])
