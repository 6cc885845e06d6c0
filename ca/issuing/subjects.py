"""Certificate subjects come from the authority's records, never from the request.

A CSR's subject is the delegate's *claim* about who it is; the certificate's subject is what the
authority *vouches for*. Each certificate profile has one written rule, a function of the record
(:class:`SubjectRecord`: the delegation and its vetting record) and the CSR's subject, that
returns the subject to certify or raises :class:`~ca.errors.CSRError` (ACME ``badCSR``) naming
the first CSR attribute the record does not support. Nothing is signed after a refusal.

The rules (``docs/identity.md`` keeps the same table for people):

========== ======================================================= ===========================
rule       certificate subject                                     CSR subject may carry
========== ======================================================= ===========================
delegate   ``CN=<delegate name>`` + ``O=<vetted legal name>`` and    nothing, or any of CN, O, C
           ``C=<vetted country>`` when a vetting record has them   equal to the record's value
           (RFC 8226 and RFC 9060 leave the subject to the CA).
           Without a delegation (offline ``tnca cert issue``): the
           policy's ``[certificates] fallback_subject``.
vesper     ``O=<vetted legal name>`` (+ ``C=<vetted country>``):    nothing, or O and C equal
           draft-wendt-stir-tn-domain-binding-00 "Certificate      to the record's; never CN
           Profile" puts the entity in O and the domain in the     (the domain goes in the
           SAN, "not in the Subject CN". Needs a vetting record.   SAN, exactly one dNSName)
========== ======================================================= ===========================

A deployment whose clients need their CSR subject echoed (SHAKEN tooling compares the subject
byte for byte) registers its own rule with :func:`register`: the rule receives the CSR subject
and may return it, after checking each attribute it echoes against the record. The checks every
rule gets for free, before the rule runs (:func:`check_csr_subject_shape`): at most
:data:`MAX_CSR_SUBJECT_ATTRIBUTES` attributes, no attribute type twice, no control or bidi
character (``ca.encoding.unsafe_text``). After the rule: the subject is not empty and is not the
issuer's own name (:func:`subject_for`). ``ca.issuing.profiles.lint`` checks the drafted
certificate's subject again, independently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from ca.encoding import unsafe_text
from ca.errors import CSRError, DelegationError, PolicyError

DELEGATE = "delegate"
VESPER = "vesper"

# No real subject needs more; "200 OUs" is an attack on whoever renders or parses the name.
MAX_CSR_SUBJECT_ATTRIBUTES = 16
# The certificate subject this authority writes has at most a handful (CN, O, C, serialNumber).
MAX_CERTIFICATE_SUBJECT_ATTRIBUTES = 8

_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
}


def attribute_name(oid: x509.ObjectIdentifier) -> str:
    """``O``, ``CN``… or the dotted OID of an attribute type without a short name."""
    return _SHORT_NAMES.get(oid, oid.dotted_string)


@dataclass(frozen=True)
class SubjectRecord:
    """What the authority's records say about the holder of a certificate.

    ``source`` names the record in refusals ("delegation 3f2a…"). ``delegate`` is the
    delegation's delegate name (None without a delegation: offline issuance by an operator, for
    which ``fallback`` is the policy's subject). ``legal_name`` and ``country`` come from the
    delegation's vetting record, when one exists (ca/records/vetting.py).
    """

    source: str
    delegate: str | None = None
    legal_name: str | None = None
    country: str | None = None
    fallback: x509.Name | None = None


# A rule: (record, CSR subject) -> the certificate's subject, or CSRError naming the attribute.
SubjectRule = Callable[[SubjectRecord, x509.Name], x509.Name]


def _attributes(name: x509.Name) -> list[x509.NameAttribute]:
    return [attribute for rdn in name.rdns for attribute in rdn]


def _value(attribute: x509.NameAttribute) -> str:
    value = attribute.value
    return value if isinstance(value, str) else value.hex()


def check_csr_subject_shape(csr_subject: x509.Name) -> None:
    """Refuse (CSRError) a CSR subject no rule should have to read: too many attributes, one
    attribute type twice, a control or bidi character."""
    attributes = _attributes(csr_subject)
    if len(attributes) > MAX_CSR_SUBJECT_ATTRIBUTES:
        raise CSRError(
            f"CSR subject has {len(attributes)} attributes; at most {MAX_CSR_SUBJECT_ATTRIBUTES} are read "
            f"(the certificate subject comes from the delegation's record)",
            field="csr.subject",
        )
    seen: set[x509.ObjectIdentifier] = set()
    for attribute in attributes:
        name = attribute_name(attribute.oid)
        if attribute.oid in seen:
            raise CSRError(f"CSR subject carries {name} more than once", field=f"csr.subject.{name}")
        seen.add(attribute.oid)
        reason = unsafe_text(_value(attribute))
        if reason is not None:
            raise CSRError(f"CSR subject {name}: {reason}", field=f"csr.subject.{name}")


def _supported_only(csr_subject: x509.Name, supported: x509.Name, record: SubjectRecord, rule: str,
                    *, never: dict[x509.ObjectIdentifier, str] | None = None) -> None:
    """Every CSR attribute must be one ``supported`` has, with the same value; ``never`` lists
    attribute types the rule refuses whatever their value, with the reason."""
    expected = {attribute.oid: _value(attribute) for attribute in _attributes(supported)}
    for attribute in _attributes(csr_subject):
        name = attribute_name(attribute.oid)
        if never and attribute.oid in never:
            raise CSRError(f"CSR subject {name} is not allowed by the {rule} profile: {never[attribute.oid]}",
                           field=f"csr.subject.{name}")
        if attribute.oid not in expected:
            raise CSRError(
                f"CSR subject asks for {name}={_value(attribute)!r}, which {record.source} does not support: the "
                f"{rule} profile certifies {supported.rfc4514_string() or 'an empty subject'} (leave the CSR subject "
                f"empty, or name only what the record says)",
                field=f"csr.subject.{name}",
            )
        if _value(attribute) != expected[attribute.oid]:
            raise CSRError(
                f"CSR subject asks for {name}={_value(attribute)!r}, but {record.source} says "
                f"{name}={expected[attribute.oid]!r}; the {rule} profile certifies only the record's name",
                field=f"csr.subject.{name}",
            )


def _record_name(*pairs: tuple[x509.ObjectIdentifier, str | None]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs if value])


def delegate_subject(record: SubjectRecord, csr_subject: x509.Name) -> x509.Name:
    """The ``delegate`` rule (module docstring): CN is the delegate's name, O and C the vetted ones."""
    if record.delegate is None:
        supported = record.fallback or x509.Name([])
    else:
        supported = _record_name((NameOID.COUNTRY_NAME, record.country),
                                 (NameOID.ORGANIZATION_NAME, record.legal_name),
                                 (NameOID.COMMON_NAME, record.delegate))
    _supported_only(csr_subject, supported, record, DELEGATE)
    return supported


def vesper_subject(record: SubjectRecord, csr_subject: x509.Name) -> x509.Name:
    """The ``vesper`` rule (module docstring): O is the vetted legal name; no CN."""
    if not record.legal_name:
        raise DelegationError(
            f"{record.source} has the vesper profile but no vetted legal name; record the vetting first "
            f"(tnca delegation vet)",
            field="vetting",
        )
    supported = _record_name((NameOID.COUNTRY_NAME, record.country), (NameOID.ORGANIZATION_NAME, record.legal_name))
    _supported_only(csr_subject, supported, record, VESPER, never={
        NameOID.COMMON_NAME: "the domain goes in the subjectAltName as one dNSName, not in the subject CN "
                             "(draft-wendt-stir-tn-domain-binding-00, Certificate Profile)",
    })
    return supported


_RULES: dict[str, SubjectRule] = {DELEGATE: delegate_subject, VESPER: vesper_subject}


def register(name: str, rule: SubjectRule) -> None:
    """Add a subject rule under ``name`` (a delegation's ``profile`` selects it), e.g. a SHAKEN
    rule that echoes the CSR subject after checking each attribute against the record."""
    _RULES[name] = rule


def rule_names() -> tuple[str, ...]:
    return tuple(_RULES)


def subject_for(rule: str, record: SubjectRecord, csr_subject: x509.Name, *, issuer_names: tuple[x509.Name, ...]) -> x509.Name:
    """The certificate subject under ``rule`` for ``record``; raises CSRError naming the CSR
    attribute at fault, or PolicyError when the record itself cannot make a subject."""
    if rule not in _RULES:
        raise PolicyError(f"unknown certificate profile {rule!r} (known: {', '.join(_RULES)})", field="profile")
    check_csr_subject_shape(csr_subject)
    subject = _RULES[rule](record, csr_subject)
    problem = subject_problem(subject, issuer_names)
    if problem is not None:
        raise PolicyError(f"{record.source}: {problem}", field="subject")
    return subject


def subject_problem(subject: x509.Name, issuer_names: tuple[x509.Name, ...]) -> str | None:
    """Why ``subject`` must not be a certificate subject this authority signs, or None.

    Shared by :func:`subject_for` (before building) and ``profiles.lint`` (on the drafted DER).
    """
    attributes = _attributes(subject)
    if not attributes:
        return "the certificate subject would be empty (RFC 5280 §4.1.2.6: a STIR certificate needs a subject)"
    if len(attributes) > MAX_CERTIFICATE_SUBJECT_ATTRIBUTES:
        return f"the subject has {len(attributes)} attributes; at most {MAX_CERTIFICATE_SUBJECT_ATTRIBUTES}"
    for attribute in attributes:
        reason = unsafe_text(_value(attribute))
        if reason is not None:
            return f"subject {attribute_name(attribute.oid)}: {reason}"
    if any(subject == name for name in issuer_names):
        return (f"the subject {subject.rfc4514_string()} is the name of an issuing CA of this authority "
                f"(RFC 5280 §4.1.2.6: a subscriber is never named as its issuer)")
    return None
