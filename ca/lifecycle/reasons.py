"""Revocation reasons: RFC 5280 §5.3.1 CRLReason, the ones an operator may give, and parsing them.

Everything that names a reason uses this module: revocation plans and their execution, CRLs
(``ca/lifecycle/crl.py`` writes the reasonCode), ACME ``revokeCert`` (RFC 8555 §7.6 carries the
code), the operator forms and the auditor queries (``reason=key-compromise``). It stands apart
because it needs nothing else: a form or a query parser can use it without the database.

``None`` or unspecified(0) is stored as no reasonCode. certificateHold and removeFromCRL
(suspension) are not offered: revocation here is final. aACompromise concerns attribute
certificates, which this authority does not issue.
"""

from __future__ import annotations

import enum

from ca.errors import RevocationError


class CRLReason(enum.IntEnum):
    """RFC 5280 §5.3.1 CRLReason (value 7 is not used)."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10

    @property
    def asn1_name(self) -> str:
        """The name in RFC 5280's ASN.1 module: ``keyCompromise``, ``cACompromise``, …"""
        return _ASN1_NAMES[self]


_ASN1_NAMES = {
    CRLReason.UNSPECIFIED: "unspecified",
    CRLReason.KEY_COMPROMISE: "keyCompromise",
    CRLReason.CA_COMPROMISE: "cACompromise",
    CRLReason.AFFILIATION_CHANGED: "affiliationChanged",
    CRLReason.SUPERSEDED: "superseded",
    CRLReason.CESSATION_OF_OPERATION: "cessationOfOperation",
    CRLReason.CERTIFICATE_HOLD: "certificateHold",
    CRLReason.REMOVE_FROM_CRL: "removeFromCRL",
    CRLReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
    CRLReason.AA_COMPROMISE: "aACompromise",
}

# What an operator may give. Suspension (certificateHold, removeFromCRL) is not supported and
# aACompromise is for attribute certificates (RFC 5280 §5.3.1).
OPERATOR_REASONS = (
    CRLReason.UNSPECIFIED,
    CRLReason.KEY_COMPROMISE,
    CRLReason.CA_COMPROMISE,
    CRLReason.AFFILIATION_CHANGED,
    CRLReason.SUPERSEDED,
    CRLReason.CESSATION_OF_OPERATION,
    CRLReason.PRIVILEGE_WITHDRAWN,
)
# What revoking a delegation or numbers records unless told otherwise: the delegate's right to
# the numbers was withdrawn.
WITHDRAWN = CRLReason.PRIVILEGE_WITHDRAWN


def parse_reason(text: str) -> CRLReason:
    """An RFC 5280 reason by ASN.1 name (``keyCompromise``, any case) or number (``1``)."""
    value = text.strip()
    if value.isdigit():
        try:
            reason = CRLReason(int(value))
        except ValueError:
            reason = None
    else:
        reason = next((r for r, name in _ASN1_NAMES.items() if name.lower() == value.lower()), None)
    if reason is None:
        raise RevocationError(f"{text!r} is not an RFC 5280 §5.3.1 reason code; use one of {reason_choices()}",
                              field="reason")
    return reason


def reason_choices() -> str:
    """The reasons an operator may give, for an error detail: ``keyCompromise (1), …``."""
    return ", ".join(f"{r.asn1_name} ({int(r)})" for r in OPERATOR_REASONS)

