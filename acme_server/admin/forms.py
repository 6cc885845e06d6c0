"""The forms of the operator and admin pages (Flask-WTF: each carries its CSRF token).

Validation here is only about shape (required, length); the rules (scope inside the issuing
CA's, lifetimes, token TTL, password strength, …) belong to ``ca`` and come back as typed
errors that the views put next to the field they name. That keeps one source of truth for every
rule, shared with the CLI.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ca.records import users
from ca.records.delegations import DELEGATE_PROFILE, MAX_DELEGATE_CHARS, PROFILES
from ca.lifecycle.revocation import MAX_COMMENT_CHARS
from ca.lifecycle.reasons import CRLReason, OPERATOR_REASONS, WITHDRAWN, parse_reason

# RFC 5280 §5.3.1 reasons an operator may give (ca.lifecycle.reasons.OPERATOR_REASONS: no suspension),
# by their ASN.1 names, which is also what the CRL and the audit trail say.
_REASON_LABELS = {
    CRLReason.UNSPECIFIED: "unspecified: no reason code in the CRL",
    CRLReason.KEY_COMPROMISE: "keyCompromise: the delegate's private key is exposed",
    CRLReason.CA_COMPROMISE: "cACompromise: a CA key is exposed",
    CRLReason.AFFILIATION_CHANGED: "affiliationChanged: the delegate's name or relationship changed",
    CRLReason.SUPERSEDED: "superseded: replaced by another certificate",
    CRLReason.CESSATION_OF_OPERATION: "cessationOfOperation: no longer needed",
    CRLReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn: the right to the numbers was withdrawn",
}
try:
    from wtforms.fields.choices import SelectChoice
except ImportError:  # WTForms < 3.3 takes (value, label) pairs, which 3.3 deprecates
    SelectChoice = tuple  # type: ignore[misc,assignment]


def _choice(value: str, label: str) -> object:
    return SelectChoice(value, label) if SelectChoice is not tuple else (value, label)


CRL_REASON_CHOICES = [_choice(reason.asn1_name, _REASON_LABELS.get(reason, reason.asn1_name)) for reason in OPERATOR_REASONS]


def crl_reason(name: str) -> CRLReason | None:
    """The CRLReason of a choice above; None for unspecified (no reasonCode, RFC 5280 §5.3.1)."""
    reason = parse_reason(name)
    return None if reason == CRLReason.UNSPECIFIED else reason


class ScopeFields:
    """The three parts of a TN scope, one entry per line, as the CLI's --tn/--range/--spc."""

    tns = TextAreaField("Telephone numbers", validators=[Optional(), Length(max=20000)],
                        description="One per line, digits only, e.g. 12025550100.")
    ranges = TextAreaField("Number ranges", validators=[Optional(), Length(max=20000)],
                           description="One per line as START:COUNT, e.g. 12025550000:100.")
    spcs = TextAreaField("Service provider codes", validators=[Optional(), Length(max=2000)],
                         description="One per line, e.g. 1234.")


class ConstraintFields:
    """JWTClaimConstraints (RFC 8226 §8) / EnhancedJWTClaimConstraints (RFC 9118)."""

    must_include = StringField("Claims that must be present", validators=[Optional(), Length(max=2000)],
                               description="Comma-separated PASSporT claim names, e.g. rcd, crn.")
    permitted_values = TextAreaField("Permitted values", validators=[Optional(), Length(max=20000)],
                                     description="One claim=value per line; repeat a claim for several values.")
    must_exclude = StringField("Claims that must be absent", validators=[Optional(), Length(max=2000)],
                               description="Comma-separated; needs the RFC 9118 extension (set automatically).")
    enhanced = BooleanField("Use the RFC 9118 extension (EnhancedJWTClaimConstraints)")


class DelegationForm(FlaskForm, ScopeFields, ConstraintFields):
    delegate = StringField("Delegate", validators=[DataRequired(), Length(max=MAX_DELEGATE_CHARS)],
                           description="Who receives the numbers: the enterprise's name as it appears in audits.")
    ca = BooleanField("May sub-delegate (delegate CA certificates, RFC 9060)")
    profile = SelectField("Certificate profile", choices=list(PROFILES), default=DELEGATE_PROFILE,
                          description="vesper: certificates only after vetting and right-to-use evidence are recorded "
                                      "(docs/identity.md).")
    max_lifetime = StringField("Longest certificate lifetime", validators=[Optional(), Length(max=32)],
                               description="e.g. 24h or 1h30m. Empty: the policy's maximum.")
    not_after = StringField("Ends", validators=[Optional(), Length(max=64)],
                            description="A date (2026-12-31, midnight UTC) or an RFC 3339 time. Empty: no end.")


class DelegationEditForm(FlaskForm, ConstraintFields):
    delegate = StringField("Delegate", validators=[DataRequired(), Length(max=MAX_DELEGATE_CHARS)])
    max_lifetime = StringField("Longest certificate lifetime", validators=[DataRequired(), Length(max=32)],
                               description="e.g. 24h or 1h30m.")
    not_after = StringField("Ends", validators=[Optional(), Length(max=64)],
                            description="A date (2026-12-31, midnight UTC) or an RFC 3339 time. Empty: no end.")


class EvidenceFields:
    evidence = TextAreaField("Evidence", validators=[DataRequired(), Length(max=20000)],
                             description="One per line: sha256:<hex>,<uri> — the document's SHA-256 and where it is "
                                         "kept (https:// or urn:). The document itself is never stored here.")


class VettingForm(FlaskForm, EvidenceFields):
    legal_name = StringField("Vetted legal name", validators=[DataRequired(), Length(max=255)],
                             description="As registered; it becomes the certificates' O.")
    country = StringField("Country", validators=[Optional(), Length(max=2)],
                          description="ISO 3166-1 alpha-2, e.g. US (the certificates' C).")
    lei = StringField("LEI", validators=[Optional(), Length(max=20)],
                      description="Legal Entity Identifier (ISO 17442), where one exists.")
    assurance = SelectField("Level of assurance", choices=["low", "substantial", "high"], default="substantial")
    vetted_by = StringField("Vetted by", validators=[DataRequired(), Length(max=255)])
    vetted_at = StringField("Vetted at", validators=[DataRequired(), Length(max=64)],
                            description="A date (2026-12-31) or an RFC 3339 time.")


class RightToUseForm(FlaskForm, ScopeFields, EvidenceFields):
    source = StringField("Source", validators=[DataRequired(), Length(max=128)],
                         description="What the evidence is, e.g. number assignment record, letter of authorization.")
    verified_by = StringField("Checked by", validators=[DataRequired(), Length(max=255)])
    verified_at = StringField("Checked at", validators=[DataRequired(), Length(max=64)],
                              description="A date (2026-12-31) or an RFC 3339 time.")


class TokenForm(FlaskForm, ScopeFields):
    fingerprint = StringField(
        "Account key fingerprint", validators=[DataRequired(), Length(max=200)],
        description="The delegate's ACME account key: SHA256 followed by 32 colon-separated bytes "
                    "(RFC 9448 §5.4), e.g. SHA256 AB:CD:…",
    )
    ttl = StringField("Token lifetime", validators=[Optional(), Length(max=32)],
                      description="e.g. 1h or 10m. Empty: the policy's maximum.")
    ca = BooleanField("Allow a delegate CA certificate (the token's ca claim)")


class RevokeDelegationForm(FlaskForm):
    comment = TextAreaField("Why", validators=[DataRequired(), Length(max=MAX_COMMENT_CHARS)],
                           description="Recorded in the audit trail with your name.")
    crl_reason = SelectField("Reason code for its certificates", choices=CRL_REASON_CHOICES,
                             default=WITHDRAWN.asn1_name,
                             description="RFC 5280 §5.3.1, as the CRL will state it.")
    plan_digest = HiddenField()


class RevokeCertificateForm(FlaskForm):
    crl_reason = SelectField("Reason code", choices=CRL_REASON_CHOICES, default=CRLReason.UNSPECIFIED.asn1_name,
                             description="RFC 5280 §5.3.1, as the CRL will state it.")
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=MAX_COMMENT_CHARS)],
                            description="Recorded in the audit trail with your name.")
    plan_digest = HiddenField()


class RevokeNumberForm(FlaskForm, ScopeFields):
    crl_reason = SelectField("Reason code", choices=CRL_REASON_CHOICES, default=WITHDRAWN.asn1_name,
                             description="RFC 5280 §5.3.1, as the CRL will state it.")
    comment = TextAreaField("Why", validators=[DataRequired(), Length(max=MAX_COMMENT_CHARS)],
                            description="Recorded in the audit trail with your name.")
    plan_digest = HiddenField()


class AddPersonForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=64)],
                       description="Lower-case letters, digits, '.', '_', '@', '-'; what audit events show.")
    role = SelectField("Role", choices=list(users.ROLES), default=users.AUDITOR)
    password = PasswordField("Password", validators=[Optional(), Length(max=users.MAX_PASSWORD_CHARS)],
                             description=f"At least {users.MIN_PASSWORD_CHARS} characters. "
                                         "Empty: one is generated and shown once.")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=list(users.ROLES))


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class ExternalAccountKeyForm(FlaskForm):
    """``tnca eab create`` on a page: a delegate name or a delegation id, and an optional expiry."""

    delegate = StringField("Delegate", validators=[Optional(), Length(max=MAX_DELEGATE_CHARS)],
                           description="The delegate the ACME account will act for (its delegations only).")
    delegation = StringField("Or delegation id", validators=[Optional(), Length(max=64)],
                             description="Instead of a name: the delegation whose delegate it is.")
    expires = StringField("Unused after", validators=[Optional(), Length(max=64)],
                          description="A date (2026-12-31) or an RFC 3339 time; empty: never.")

class PassportForm(FlaskForm):
    """Paste a PASSporT / Identity header value, or upload a file holding one (``tnca verify passport``)."""

    passport = TextAreaField("PASSporT or SIP Identity header", validators=[Optional(), Length(max=32 * 1024)],
                             description="From a call record or a complaint: eyJ… or the whole Identity header value.")
    upload = FileField("…or a file holding it")
    at = StringField("As of", validators=[Optional(), Length(max=64)],
                     description="An RFC 3339 time or a date. Empty: the PASSporT's iat, when the call was placed.")
