"""The single issuance path: every front end (offline CLI, ACME finalize, STAR renewal) calls
:func:`issue`.

The pipeline, in the order :func:`issue` runs it (docs/architecture.md, "The issuance pipeline"):

1. **Request.** The kind is ``end-entity`` or ``delegate-ca``; claim constraints only on an
   end-entity certificate (RFC 8226 §8, RFC 9118 §3).
2. **Scope.** The requested scope is inside the delegation (if any), the delegation is active,
   current, allows a CA if one is asked for, and lies inside the issuing CA's TNAuthList; the
   request is inside the issuing CA too (RFC 9060 §4 "encompassing", §8: the CA MUST validate it).
   Errors name the part that is outside.
3. **CSR.** Signature valid, key type allowed by policy (RFC 8226 §4: ES256-capable, P-256), and
   nothing in it contradicts the request (its TNAuthList, if present, equals the request's; its
   basicConstraints agree with the kind; no extension the profile does not accept). The subject
   comes from the record, never from the CSR: the delegation's profile rule
   (``ca/issuing/subjects.py``) builds it from the delegation and its vetting record and refuses a
   CSR naming anything the record does not support (``CSRError`` naming the attribute).
4. **Validity.** notBefore = now − backdate (or the request's, if later); notAfter capped by the policy, the
   delegation's max lifetime and end, and the issuer's notAfter; never below the minimum.
5. **Build and lint.** The profile builds the TBS; a draft signed by a throwaway key is linted
   (``ca.issuing.profiles.lint``) before anything is recorded or sent to a log.
6. **Transparency** (when the policy requires SCTs): the precertificate (RFC 6962 §3.1: the TBS
   plus the critical poison extension) is linted as a precertificate, signed and recorded
   (``stage="precertificate"``) and ``precertificate_recorded`` is called — front ends pass their
   commit there — *before* any log sees it, so a crash leaves a record of what was planned The SCTs come back from the ``Transparency`` object and are
   embedded in the final TBS, identical otherwise (the lint compares the two).
7. **Sign and store.** The issuing CA's signer signs the final TBS; the certificate row, its
   ``certificate_scope_entries`` and its audit event are written in the caller's transaction.
   The caller commits.

Every signature of the real key goes through ``ca.issuing.profiles.sign``, which signs only what
``profiles.linted_draft`` returned: a draft linted in the form being signed (plain certificate,
precertificate, certificate with SCTs). A draft that fails lint is never signed by the real key.

Hot path: the issuer handle (certificate, scope, signer) is loaded once per process by
:meth:`ca.home.Home.issuing_ca`; :func:`issue` makes one query (the delegation) plus the
inserts, and parses nothing it was handed already parsed.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from ca.issuing import csr_checks, profiles, subjects
from ca.records import audit, vetting
from ca.numbers.claims import ClaimConstraints
from ca.clock import Clock
from ca.errors import CSRError, DelegationError, IssuanceError, PolicyError, ScopeError, TransparencyError
from ca.policy import Policy, format_duration
from ca.issuing.profiles import (
    CERTIFICATE,
    CERTIFICATE_WITH_SCTS,
    DELEGATE_CA,
    END_ENTITY,
    PRECERTIFICATE,
    CertificateContent,
    IssuerContext,
    Profile,
)
from ca.issuing.signers import Signer
from ca.issuing.transparency import sct_list_extension
from ca.records.models_authority import Certificate, CertificateScopeEntry, Delegation
from ca.numbers.tnauthlist import TNScope
from ca.records.statuses import CertificateStage, DelegationStatus
from ca.x509util import (
    fingerprint_sha256,
    pem_chain,
    random_serial,
    serial_hex,
    spki_sha256,
)

ISSUABLE_KINDS = (END_ENTITY, DELEGATE_CA)
AUDIT_ACTION_ISSUE = "certificate.issue"


@dataclass(frozen=True)
class IssuerHandle:
    """A CA this authority signs with, loaded once per process (``Home.issuing_ca()``)."""

    certificate: x509.Certificate
    signer: Signer
    scope: TNScope | None  # its TNAuthList; None for a root without one
    # The certificates served after an end-entity certificate, nearest first (the issuing CA and
    # any intermediates; never the root: relying parties have it as their trust anchor).
    chain: tuple[x509.Certificate, ...]
    issuer_id: int  # issuers.id
    name: str = "issuing"  # issuers.name; names its CRL
    crl_url: str | None = None  # CRL distribution point of the certificates it signs
    parent_name: str | None = None


@dataclass(frozen=True)
class IssuanceRequest:
    csr: x509.CertificateSigningRequest
    scope: TNScope
    kind: str = END_ENTITY  # "end-entity" | "delegate-ca"
    delegation_id: str | None = None
    # The claim constraints to write. None: the delegation's (if it has any). When both are set
    # they must be equal: a request can never widen what the delegation allows.
    constraints: ClaimConstraints | None = None
    lifetime: dt.timedelta | None = None  # capped by policy and delegation
    not_before: dt.datetime | None = None  # ACME newOrder notBefore (RFC 8555 §7.4), capped
    not_after: dt.datetime | None = None
    account_id: str | None = None
    order_id: str | None = None
    actor: str = "system"
    # A domain proven with http-01/dns-01 in the same order (ca/orders/domains.py): the
    # certificate carries it as its one dNSName (draft-wendt-stir-tn-domain-binding-00).
    domain: str | None = None


class EmbeddableSCT(Protocol):
    """An SCT as the transparency client returns it (RFC 6962 §3.2)."""

    log_id: bytes  # SHA-256 of the log's SubjectPublicKeyInfo
    timestamp: int  # milliseconds since the epoch
    log_url: str

    def serialize(self) -> bytes:
        """The TLS-encoded SignedCertificateTimestamp (one SerializedSCT of RFC 6962 §3.3)."""
        ...


class Transparency(Protocol):
    """Submits a precertificate to the policy's logs and returns the valid SCTs it got."""

    def submit(self, precertificate_der: bytes, issuer: IssuerHandle) -> Sequence[EmbeddableSCT]: ...


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # what follows the certificate in its PEM chain
    record_id: int  # certificates.id
    serial: str  # lowercase hex
    audit_seq: int
    scts: tuple[EmbeddableSCT, ...] = field(default=())

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem_chain(self) -> str:
        """``application/pem-certificate-chain`` (RFC 8555 §9.1, RFC 9060 §7): EE first."""
        return pem_chain((self.certificate, *self.chain))


@functools.lru_cache(maxsize=64)
def _profile(name: str, policy: Policy) -> Profile:
    return Profile.for_name(name, policy)


def _outside(container: TNScope, scope: TNScope) -> str:
    return container.difference_of(scope).describe()


def issue(
    session: Session,
    request: IssuanceRequest,
    *,
    issuer: IssuerHandle,
    policy: Policy,
    clock: Clock,
    transparency: Transparency | None = None,
    precertificate_recorded: Callable[[], None] | None = None,
) -> IssuedCertificate:
    """Steps 1-7 above. Raises a :class:`ca.errors.TNCAError` subclass naming the field at fault;
    on error nothing has been added to ``session`` except (with transparency) a recorded
    precertificate row.
    """
    now = clock.now()

    # 1. Request.
    if request.kind not in ISSUABLE_KINDS:
        raise IssuanceError(f"kind must be one of {', '.join(ISSUABLE_KINDS)}, got {request.kind!r}", field="kind")
    profile = _profile(request.kind, policy)
    if not request.scope.entries:
        raise ScopeError("the requested TN scope is empty", field="scope")
    if request.domain is not None and request.kind != END_ENTITY:
        # The domain itself was checked when the order was placed (ca/orders/domains.py).
        raise PolicyError("a domain goes on an end-entity certificate only (tn-domain-binding)", field="domain")

    # 2. Scope: request ⊆ delegation ⊆ issuing CA (RFC 9060 §4, §8).
    constraints = request.constraints
    max_lifetime = profile.max_lifetime
    latest_end = issuer.certificate.not_valid_after_utc
    delegation = None
    if request.delegation_id is not None:
        delegation = _active_delegation(session, request.delegation_id, now)
        delegated = TNScope.from_der(delegation.scope_der, strict=False)
        if not delegated.contains(request.scope):
            raise DelegationError(
                f"requested scope is outside delegation {delegation.id}: "
                f"{_outside(delegated, request.scope)} not delegated",
                field="scope",
            )
        if request.kind == DELEGATE_CA and not delegation.ca_allowed:
            raise DelegationError(
                f"delegation {delegation.id} does not allow a delegate CA certificate (RFC 9060 §8.1: "
                f"no sub-delegation)",
                field="kind",
            )
        if issuer.scope is not None and not issuer.scope.contains(delegated):
            raise ScopeError(
                f"delegation {delegation.id} reaches outside the issuing CA's TNAuthList: "
                f"{_outside(issuer.scope, delegated)}",
                field="delegation",
            )
        # A vesper delegation issues only with its vetting and right-to-use records (docs/identity.md).
        vetting.check_vesper_ready(delegation, request.scope)
        constraints = _delegation_constraints(delegation, constraints)
        max_lifetime = min(max_lifetime, dt.timedelta(seconds=delegation.max_lifetime_seconds))
        if delegation.not_after is not None:
            latest_end = min(latest_end, delegation.not_after)
    if issuer.scope is not None and not issuer.scope.contains(request.scope):
        raise ScopeError(
            f"requested scope is outside the issuing CA's TNAuthList: {_outside(issuer.scope, request.scope)}",
            field="scope",
        )
    if constraints is not None:
        if request.kind != END_ENTITY:
            raise PolicyError("claim constraints go on end-entity certificates only (RFC 8226 §8)", field="constraints")
        constraints.check_issuable()

    # 3. CSR: its key and extensions; the subject from the record (ca/issuing/subjects.py).
    public_key = csr_checks.checked_csr_key(
        request.csr, request.scope, request.domain, profile,
        csr_checks.ProfileSets(crl_url=issuer.crl_url, policy_oids=policy.certificates.policy_oids))
    subject = _subject(request, delegation, issuer, policy)

    # 4. Validity.
    not_before, not_after = _validity(request, now, max_lifetime, latest_end, policy)

    # 5. Build and lint.
    issuer_context = IssuerContext(
        certificate=issuer.certificate,
        scope=issuer.scope,
        crl_url=issuer.crl_url,
        crl_issuer=policy.certificates.crl_issuer,
        policy_oids=policy.certificates.policy_oids,
    )
    content = CertificateContent(
        subject=subject,
        public_key=public_key,
        serial=random_serial(),
        not_before=not_before,
        not_after=not_after,
        scope=request.scope,
        constraints=constraints,
        domain=request.domain,
    )
    builder = profiles.build(profile, content, issuer_context)
    # Linted before anything is recorded or sent to a log; with CT, the precertificate and the
    # certificate with SCTs are linted again in their own forms before the real key signs them.
    linted = profiles.linted_draft(profile, builder, issuer_context, issuer.signer, form=CERTIFICATE)

    record = Certificate(
        serial=serial_hex(content.serial),
        issuer_id=issuer.issuer_id,
        delegation_id=request.delegation_id,
        account_id=request.account_id,
        order_id=request.order_id,
        kind=request.kind,
        scope_der=request.scope.to_der(),
        subject=subject.rfc4514_string(),
        spki_sha256=spki_sha256(public_key),
        not_before=not_before,
        not_after=not_after,
        created_at=now,
    )
    record.scope_entries = [CertificateScopeEntry(**row) for row in request.scope.index_rows()]

    # 6. Transparency.
    scts: tuple[EmbeddableSCT, ...] = ()
    if transparency is not None and policy.ct.required_scts > 0:
        poisoned = builder.add_extension(x509.PrecertPoison(), critical=True)  # RFC 6962 §3.1
        linted_precertificate = profiles.linted_draft(
            profile, poisoned, issuer_context, issuer.signer, form=PRECERTIFICATE
        )
        precertificate, scts = _precertify(
            session, record, linted_precertificate, issuer, policy, transparency, precertificate_recorded
        )
        with_scts = builder.add_extension(sct_list_extension(scts), critical=False)
        try:
            linted = profiles.linted_draft(profile, with_scts, issuer_context, issuer.signer,
                                           form=CERTIFICATE_WITH_SCTS, precertificate=precertificate)
        except IssuanceError as error:
            # As for a failed submission: the precertificate may be in the logs, so its row is
            # marked failed rather than removed (precertificate_recorded may have committed it).
            _record_failure(session, record, error.detail)
            raise

    # 7. Sign and store: the real key signs exactly the TBS that passed lint.
    certificate = profiles.sign(linted)
    der = certificate.public_bytes(serialization.Encoding.DER)
    record.stage = CertificateStage.ISSUED
    record.der = der
    record.fingerprint_sha256 = fingerprint_sha256(der)
    record.scts = [
        {"log_id": sct.log_id.hex(), "timestamp": sct.timestamp, "log_url": sct.log_url} for sct in scts
    ] or None
    session.add(record)
    session.flush()
    event = audit.append(
        session,
        actor=request.actor,
        action=AUDIT_ACTION_ISSUE,
        subject_type="certificate",
        subject_id=record.serial,
        details={
            "kind": request.kind,
            "issuer": issuer.name,
            "subject": record.subject,
            "scope": request.scope.describe(),
            "scope_der": request.scope.to_identifier_value(),
            "domain": request.domain,
            "constraints": constraints.to_json() if constraints is not None else None,
            "not_before": not_before.isoformat(),
            "not_after": not_after.isoformat(),
            "delegation_id": request.delegation_id,
            # Who vouched for the holder (docs/identity.md): the vetting and right-to-use records.
            **(_identity_details(delegation) if delegation is not None else {}),
            "account_id": request.account_id,
            "order_id": request.order_id,
            "fingerprint_sha256": record.fingerprint_sha256,
            "scts": len(scts),
        },
        clock=clock,
    )
    return IssuedCertificate(
        certificate=certificate,
        chain=issuer.chain,
        record_id=record.id,
        serial=record.serial,
        audit_seq=event.seq,
        scts=scts,
    )


def _identity_details(delegation: Delegation) -> dict[str, object]:
    vetted = delegation.vetting
    return {
        "profile": delegation.profile,
        "vetting": None if vetted is None else {
            "legal_name": vetted.legal_name, "country": vetted.country, "lei": vetted.lei,
            "assurance": vetted.assurance, "vetted_by": vetted.vetted_by, "vetted_at": vetted.vetted_at.isoformat(),
            "evidence_sha256": [item["sha256"] for item in vetted.evidence],
        },
        "right_to_use": [record.id for record in delegation.right_to_use],
    }


# One statement: the vetting and right-to-use records come with the row (LEFT OUTER JOINs), since
# the subject and the audit event need them (docs/identity.md). Built once: every issuance asks.
_DELEGATION_WITH_IDENTITY = (
    select(Delegation)
    .options(joinedload(Delegation.vetting), joinedload(Delegation.right_to_use))
    .where(Delegation.id == bindparam("delegation_id"))
)


def _active_delegation(session: Session, delegation_id: str, now: dt.datetime) -> Delegation:
    delegation = session.execute(_DELEGATION_WITH_IDENTITY, {"delegation_id": delegation_id}).unique().scalar_one_or_none()
    if delegation is None:
        raise DelegationError(f"delegation {delegation_id} does not exist", field="delegation")
    if delegation.status != DelegationStatus.ACTIVE:
        raise DelegationError(f"delegation {delegation_id} is {delegation.status}", field="delegation")
    if now < delegation.not_before:
        raise DelegationError(
            f"delegation {delegation_id} is not valid before {delegation.not_before.isoformat()}", field="delegation"
        )
    if delegation.not_after is not None and now >= delegation.not_after:
        raise DelegationError(
            f"delegation {delegation_id} expired at {delegation.not_after.isoformat()}", field="delegation"
        )
    return delegation


def _delegation_constraints(delegation: Delegation, requested: ClaimConstraints | None) -> ClaimConstraints | None:
    if delegation.constraints_der is None:
        return requested
    granted = ClaimConstraints.from_der(delegation.constraints_der, delegation.constraints_kind or "jwt", strict=False)
    if requested is not None and requested != granted:
        raise PolicyError(
            f"claim constraints differ from those of delegation {delegation.id}; a certificate carries "
            f"exactly the delegation's constraints ({granted.describe()})",
            field="constraints",
        )
    return granted


def subject_record(delegation: Delegation | None, policy: Policy) -> subjects.SubjectRecord:
    """What the records say about the holder: the delegation (its name, its vetting record) or,
    without one, the policy's fallback subject."""
    if delegation is None:
        return subjects.SubjectRecord(source="the policy's fallback_subject (no delegation)",
                                      fallback=policy.certificates.fallback_subject)
    vetted = delegation.vetting
    return subjects.SubjectRecord(source=f"delegation {delegation.id}", delegate=delegation.delegate,
                                  legal_name=vetted.legal_name if vetted is not None else None,
                                  country=vetted.country if vetted is not None else None)


def _subject(request: IssuanceRequest, delegation: Delegation | None, issuer: IssuerHandle, policy: Policy) -> x509.Name:
    """The certificate's subject. Under the SHAKEN profile (``[certificates] profile = "shaken"``)
    an end-entity subject follows :func:`ca.issuing.profiles.shaken_subject` (the CSR's, checked
    against the certified SPC, as deployed SHAKEN clients require); otherwise the delegation's
    profile rule builds it from the record (ca/issuing/subjects.py)."""
    issuer_names = (issuer.certificate.subject, issuer.certificate.issuer)
    if policy.certificates.profile == profiles.SHAKEN and request.kind == END_ENTITY:
        # The echoed subject gets the same shape checks as one built from the record: no control
        # or bidi characters, no issuer's name, a bounded number of attributes.
        subjects.check_csr_subject_shape(request.csr.subject)
        subject = profiles.shaken_subject(request.csr.subject, request.scope)
        problem = subjects.subject_problem(subject, issuer_names)
        if problem is not None:
            raise CSRError(f"CSR subject: {problem}", field="csr.subject")
        return subject
    rule = delegation.profile if delegation is not None else subjects.DELEGATE
    return subjects.subject_for(rule, subject_record(delegation, policy), request.csr.subject, issuer_names=issuer_names)


def _validity(
    request: IssuanceRequest,
    now: dt.datetime,
    max_lifetime: dt.timedelta,
    latest_end: dt.datetime,
    policy: Policy,
) -> tuple[dt.datetime, dt.datetime]:
    minimum = policy.lifetimes.minimum
    earliest_start = now - policy.lifetimes.backdate
    if request.lifetime is not None and request.lifetime < minimum:
        raise PolicyError(
            f"lifetime {format_duration(request.lifetime)} is below the policy minimum of {format_duration(minimum)}",
            field="lifetime",
        )
    # A requested notBefore (RFC 8555 §7.4) is honoured from now on; one in the past (an order
    # finalized some time after it was placed) starts at the backdating allowance instead:
    # certificates are never backdated further than that.
    not_before = earliest_start
    if request.not_before is not None and request.not_before > earliest_start:
        not_before = request.not_before
    lifetime = min(request.lifetime or max_lifetime, max_lifetime)
    not_after = min(not_before + lifetime, latest_end)
    if request.not_after is not None:
        not_after = min(not_after, request.not_after)
    # X.509 times have whole seconds (RFC 5280 §4.1.2.5.1/.2); round here so the stored row and
    # the certificate agree.
    not_before = not_before.replace(microsecond=0)
    not_after = not_after.replace(microsecond=0)
    if not_after - not_before < minimum:
        raise PolicyError(
            f"the certificate would be valid for {format_duration(max(not_after - not_before, dt.timedelta(0)))} "
            f"(until {not_after.isoformat()}), below the policy minimum of {format_duration(minimum)}",
            field="notAfter",
        )
    return not_before, not_after


def _precertify(
    session: Session,
    record: Certificate,
    linted: profiles.LintedDraft,
    issuer: IssuerHandle,
    policy: Policy,
    transparency: Transparency,
    precertificate_recorded: Callable[[], None] | None,
) -> tuple[x509.Certificate, tuple[EmbeddableSCT, ...]]:
    """RFC 6962 §3.1: sign the linted precertificate, record it, then collect SCTs for it."""
    precertificate = profiles.sign(linted)
    record.stage = CertificateStage.PRECERTIFICATE
    record.precertificate_der = precertificate.public_bytes(serialization.Encoding.DER)
    session.add(record)
    session.flush()
    if precertificate_recorded is not None:
        precertificate_recorded()
    try:
        scts = tuple(transparency.submit(record.precertificate_der, issuer))
        distinct_logs = {sct.log_id for sct in scts}
        if len(distinct_logs) < policy.ct.required_scts:
            raise TransparencyError(
                f"got SCTs from {len(distinct_logs)} distinct log(s); the policy requires {policy.ct.required_scts}",
                field="scts",
            )
    except TransparencyError as error:
        # Fail closed, and keep the record: the precertificate may already be in a log, so the
        # row stays (stage "failed") for auditors; a caller may commit it with the refusal
        # (tnca cert issue does).
        _record_failure(session, record, error.detail)
        raise
    return precertificate, scts


def _record_failure(session: Session, record: Certificate, detail: str) -> None:
    record.stage = CertificateStage.FAILED
    record.error = detail
    session.flush()


def certify_authority_key(
    profile_name: str,
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signer: Signer,
    issuer_certificate: x509.Certificate | None,
    issuer_scope: TNScope | None,
    scope: TNScope | None,
    crl_url: str | None,
    policy: Policy,
    clock: Clock,
) -> x509.Certificate:
    """Certify one of the authority's own keys (root, issuing CA, token authority): build, lint,
    sign. ``issuer_certificate`` None makes the certificate self-signed (the root). The caller
    records the result (``tnca init``).
    """
    profile = Profile.for_name(profile_name, policy)
    now = clock.now().replace(microsecond=0)
    not_before = now - policy.lifetimes.backdate
    not_after = not_before + profile.max_lifetime
    if issuer_certificate is not None:
        not_after = min(not_after, issuer_certificate.not_valid_after_utc)
    issuer_context = IssuerContext(
        certificate=issuer_certificate,
        scope=issuer_scope,
        crl_url=crl_url,
        crl_issuer=policy.certificates.crl_issuer,
        policy_oids=policy.certificates.policy_oids,
    )
    content = CertificateContent(subject, public_key, random_serial(), not_before, not_after, scope=scope)
    builder = profiles.build(profile, content, issuer_context)
    return profiles.sign(profiles.linted_draft(profile, builder, issuer_context, signer))
