"""The subject rules of ca/issuing/subjects.py, one per profile (docs/identity.md)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ca.clock import FixedClock
from ca.errors import CSRError, DelegationError, PolicyError
from ca.issuing import subjects
from ca.issuing.subjects import SubjectRecord, subject_for
from ca.numbers.tnauthlist import TNScope
from ca.records import delegations

ISSUING = x509.Name.from_rfc4514_string("CN=tnca development SHAKEN issuing CA,O=tnca development,C=US")
ROOT = x509.Name.from_rfc4514_string("CN=tnca development SHAKEN ROOT,O=tnca development,C=US")
ISSUERS = (ISSUING, ROOT)
RECORD = SubjectRecord(source="delegation d1", delegate="Example Enterprise")
VETTED = SubjectRecord(source="delegation d2", delegate="Retail", legal_name="Example Retail LLC", country="US")


def name(text: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(text)


def test_delegate_rule_subject_is_the_delegate_name_and_the_vetted_identity():
    assert subject_for("delegate", RECORD, name(""), issuer_names=ISSUERS) == name("CN=Example Enterprise")
    assert subject_for("delegate", VETTED, name("O=Example Retail LLC"), issuer_names=ISSUERS) == \
        name("CN=Retail,O=Example Retail LLC,C=US")


@pytest.mark.parametrize("csr_subject, field", [
    ("O=Totally Not Vetted Bank", "csr.subject.O"),
    ("CN=Example Enterprise,OU=Payments", "csr.subject.OU"),
    ("C=GB", "csr.subject.C"),
    ("CN=Example Enterprise,2.5.4.5=1", "csr.subject.serialNumber"),
])
def test_delegate_rule_refuses_names_the_record_does_not_support(csr_subject, field):
    with pytest.raises(CSRError) as caught:
        subject_for("delegate", RECORD, name(csr_subject), issuer_names=ISSUERS)
    assert caught.value.field == field


def test_vesper_rule_is_the_vetted_organisation_and_never_a_cn():
    """draft-wendt-stir-tn-domain-binding-00: "Subject: O=Example Retail LLC"; the domain goes in
    the SAN, not in the Subject CN."""
    assert subject_for("vesper", VETTED, name(""), issuer_names=ISSUERS) == name("O=Example Retail LLC,C=US")
    with pytest.raises(CSRError) as caught:
        subject_for("vesper", VETTED, name("CN=exampleretail.com"), issuer_names=ISSUERS)
    assert caught.value.field == "csr.subject.CN" and "subjectAltName" in caught.value.detail
    with pytest.raises(DelegationError) as unvetted:
        subject_for("vesper", RECORD, name(""), issuer_names=ISSUERS)
    assert unvetted.value.field == "vetting"


def test_a_subject_equal_to_the_issuers_name_is_refused():
    """A vetting record naming the authority itself must not yield a certificate named as its issuer."""
    impostor = SubjectRecord(source="delegation d3", delegate="tnca development SHAKEN issuing CA",
                             legal_name="tnca development", country="US")
    with pytest.raises(PolicyError) as caught:
        subject_for("delegate", impostor, name(""), issuer_names=ISSUERS)
    assert caught.value.field == "subject" and "issuing CA" in caught.value.detail


def test_csr_subject_shape_bidi_controls_duplicates_and_counts():
    for text, fragment in (("CN=a\u202eb", "U+202E"), ("CN=a\u2067b", "U+2067"), ("CN=a\x07b", "U+0007"),
                           ("CN=a\u200bb", "U+200B")):
        with pytest.raises(CSRError) as caught:
            subject_for("delegate", RECORD, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text[3:])]),
                        issuer_names=ISSUERS)
        assert fragment in caught.value.detail
    with pytest.raises(CSRError) as caught:
        subject_for("delegate", RECORD, name("CN=Example Enterprise,CN=Example Enterprise"), issuer_names=ISSUERS)
    assert "more than once" in caught.value.detail
    many = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(i)) for i in range(17)])
    with pytest.raises(CSRError):
        subject_for("delegate", RECORD, many, issuer_names=ISSUERS)


def test_unknown_rule_is_refused_and_a_registered_rule_is_used():
    with pytest.raises(PolicyError):
        subject_for("no-such", RECORD, name(""), issuer_names=ISSUERS)
    echoed = name("CN=Example Enterprise")
    subjects.register("test-echo", lambda record, csr: csr)
    try:
        assert subject_for("test-echo", RECORD, echoed, issuer_names=ISSUERS) == echoed
        with pytest.raises(PolicyError):  # the checks after a rule still apply
            subject_for("test-echo", RECORD, ISSUING, issuer_names=ISSUERS)
    finally:
        subjects._RULES.pop("test-echo")


@pytest.mark.parametrize("delegate", ["Example \u202eknaB", "Example\nBank", " Example", "Ex\u200dample"])
def test_delegation_names_with_control_or_bidi_characters_are_refused(session, delegate):
    scope = TNScope.parse(tns=["12025550100"])
    with pytest.raises(Exception) as caught:
        delegations.create(session, delegate=delegate, scope=scope, issuer_scope=scope,
                           max_lifetime=dt.timedelta(hours=1), clock=FixedClock(dt.datetime.now(dt.timezone.utc)),
                           actor="test")
    assert getattr(caught.value, "field", None) == "delegate"
