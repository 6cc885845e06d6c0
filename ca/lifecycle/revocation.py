"""Revocation plans: of one certificate, of a delegation (with everything under it), of numbers.

Admin commands are dry-run by default. Every front end — ``tnca revoke``,
``tnca delegation revoke``, the operator pages, ACME ``revokeCert`` — first asks for a
:class:`RevocationPlan`, which writes nothing, and then hands that plan to :func:`execute`. The
plan lists what will change:

- the **certificates** to revoke (issued, unexpired, not yet revoked), with serial, subject,
  scope, notAfter, delegation and issuer;
- the **delegations** to revoke (:func:`ca.records.delegations.plan_revoke` is the delegation part);
- the **STAR orders** to cancel (RFC 8739 §3.1.2): valid auto-renewal orders validated under a
  revoked delegation, or whose certificate is revoked — they would otherwise issue the next
  certificate for the same key and numbers;
- the **authority tokens** minted under a revoked delegation and not yet used: they stop
  validating (``ca.tokens.verification.check_minted_here`` refuses tokens of a revoked delegation);
- for revocation by number, the active **delegations that still grant** those numbers, which a
  revocation of certificates leaves in place.

A plan carries a SHA-256 ``digest`` of its content. :func:`execute` recomputes the plan as of the
moment it was made and refuses (``RevocationError(field="plan")``) when the digest differs:
something was issued, revoked or used since, and the operator must look again. Then, in one
transaction, it appends a ``revocation.execute`` audit event naming the operator and the plan,
revokes the delegations (``delegation.revoke`` events), the certificates (``certificate.revoke``,
one row each by :func:`ca.lifecycle.certificate_revocation.revoke_certificate`) and cancels the
STAR orders (``order.cancel``), and commits. Last, it signs a new CRL for every issuer whose
certificates it revoked (``ca.lifecycle.crl``); a CRL that cannot be signed does not undo the
revocation, it is reported and signed again by ``ca.lifecycle.crl.refresh_due``.

Reason codes are :mod:`ca.lifecycle.reasons`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from ca.clock import Clock, FixedClock
from ca.errors import AutoRenewalError, NotFoundError, RevocationError
from ca.lifecycle import crl, renewal
from ca.lifecycle.certificate_revocation import normalize_serial, revoke_certificate
from ca.lifecycle.reasons import OPERATOR_REASONS, CRLReason, reason_choices
from ca.numbers.tnauthlist import TNScope
from ca.records import audit, delegations, models_authority
from ca.records.models_acme import AuthorityToken, Order, UsedTokenJTI
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, CertificateScopeEntry, Delegation, DelegationScopeEntry, Issuer, Revocation

from ca.home import Home
from ca.records.statuses import CertificateStage

AUDIT_ACTION_EXECUTE = "revocation.execute"
MAX_COMMENT_CHARS = 1000


# --------------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------------

KIND_CERTIFICATE = "certificate"
KIND_DELEGATION = "delegation"
KIND_SCOPE = "scope"


@dataclasses.dataclass(frozen=True)
class RevocationRequest:
    """What was asked for; a plan is recomputed from it to check that it is still current."""

    kind: str  # "certificate" | "delegation" | "scope"
    target: str  # a serial, a delegation id, or a TN scope as its identifier value (base64url DER)
    reason: CRLReason | None
    comment: str | None = None

    def describe(self) -> str:
        if self.kind == KIND_CERTIFICATE:
            return f"certificate {self.target}"
        if self.kind == KIND_DELEGATION:
            return f"delegation {self.target}"
        return f"every certificate covering {TNScope.from_identifier_value(self.target).describe()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "reason_code": int(self.reason) if self.reason is not None else None,
            "reason": self.reason.asn1_name if self.reason is not None else None,
            "comment": self.comment,
        }


@dataclasses.dataclass(frozen=True)
class PlannedCertificate:
    serial: str
    subject: str
    scope: str  # TNScope.describe()
    not_after: dt.datetime
    delegation_id: str | None
    issuer: str  # issuers.name: whose CRL lists it
    kind: str  # "end-entity" | "delegate-ca"
    order_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "not_after": self.not_after.isoformat()}


@dataclasses.dataclass(frozen=True)
class PlannedOrder:
    """A STAR order (RFC 8739) to cancel."""

    id: str
    account_id: str
    scope: str
    status: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PlannedToken:
    """An authority token minted under a delegation being revoked, unused and unexpired."""

    jti: str
    delegation_id: str
    expires_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "expires_at": self.expires_at.isoformat()}


@dataclasses.dataclass(frozen=True)
class RevocationPlan:
    """What a revocation will change; computed without writing anything. See the module docstring."""

    request: RevocationRequest
    planned_at: dt.datetime
    certificates: tuple[PlannedCertificate, ...]
    delegations: tuple[delegations.RevocationPlan, ...]
    star_orders: tuple[PlannedOrder, ...]
    unused_tokens: tuple[PlannedToken, ...]
    # Revocation by number: active delegations that still grant some of the numbers.
    delegations_still_granting: tuple[str, ...]
    digest: str

    @property
    def reason(self) -> CRLReason | None:
        return self.request.reason

    @property
    def comment(self) -> str | None:
        return self.request.comment

    @property
    def changes_anything(self) -> bool:
        return bool(self.certificates or self.delegations or self.star_orders)

    @property
    def crl_issuers(self) -> tuple[str, ...]:
        """The issuers whose CRL gets a new entry (signed again after the plan is executed)."""
        return tuple(dict.fromkeys(c.issuer for c in self.certificates))

    def to_json(self) -> dict[str, Any]:
        return {**_content(self.request, self.certificates, self.delegations, self.star_orders, self.unused_tokens,
                           self.delegations_still_granting),
                "planned_at": self.planned_at.isoformat(), "digest": self.digest}

    def describe(self) -> str:
        """The plan for people, one indented item per line, under a heading naming
        ``request.describe()`` that the caller prints (``tnca revoke``: "would revoke …")."""
        reason = self.reason.asn1_name if self.reason is not None else "none (no reasonCode)"
        lines = [f"  reason {reason}" + (f", comment {self.comment!r}" if self.comment else "")]
        for d in self.delegations:
            lines.append(f"  delegation {d.delegation_id} ({d.delegate}: {d.scope}): status {d.status_before} -> "
                         f"{d.status_after}, reason {d.reason!r}")
            if d.valid_authorizations or d.open_orders:
                lines.append(f"  {d.valid_authorizations} ACME authorization(s) validated under it revoked, "
                             f"{d.open_orders} unfinished order(s) invalid (RFC 8555 §7.1.6)")
        if self.certificates:
            lines.append(f"  {len(self.certificates)} certificate(s) to revoke:")
            for c in self.certificates:
                under = f", delegation {c.delegation_id}" if c.delegation_id else ""
                lines.append(f"    {c.serial}  {c.subject}  {c.scope}  until {c.not_after.isoformat()}  "
                             f"({c.kind}, issuer {c.issuer}{under})")
        else:
            lines.append("  no unexpired certificate to revoke")
        if self.star_orders:
            lines.append(f"  {len(self.star_orders)} STAR order(s) to cancel (RFC 8739 §3.1.2):")
            lines.extend(f"    order {o.id}  account {o.account_id}  {o.scope}" for o in self.star_orders)
        if self.unused_tokens:
            lines.append(f"  {len(self.unused_tokens)} unused authority token(s) stop validating:")
            lines.extend(f"    jti {t.jti}  until {t.expires_at.isoformat()}" for t in self.unused_tokens)
        if self.delegations_still_granting:
            lines.append("  still granted by active delegation(s) " + ", ".join(self.delegations_still_granting)
                         + ": new certificates can be issued for these numbers until they are revoked or narrowed")
        if self.crl_issuers:
            lines.append("  CRLs signed again: " + ", ".join(self.crl_issuers))
        lines.append(f"  plan digest {self.digest}")
        return "\n".join(lines)


def _content(
    request: RevocationRequest,
    certificates: Sequence[PlannedCertificate],
    delegation_plans: Sequence[delegations.RevocationPlan],
    star_orders: Sequence[PlannedOrder],
    unused_tokens: Sequence[PlannedToken],
    still_granting: Sequence[str],
) -> dict[str, Any]:
    return {
        "request": request.to_json(),
        "certificates": [c.to_json() for c in certificates],
        "delegations": [d.to_json() for d in delegation_plans],
        "star_orders": [o.to_json() for o in star_orders],
        "unused_tokens": [t.to_json() for t in unused_tokens],
        "delegations_still_granting": list(still_granting),
    }


def _digest(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def plan_revoke_certificate(
    session: Session, serial: str, *, reason: CRLReason | None, clock: Clock, comment: str | None = None
) -> RevocationPlan:
    """Revoke one certificate (any issued one, expired or not). Writes nothing.

    Raises NotFoundError (field "serial") for an unknown serial, RevocationError when it is not
    an issued certificate or already revoked, or for a bad reason or comment.
    """
    request = RevocationRequest(KIND_CERTIFICATE, normalize_serial(serial), _checked_reason(reason), _checked_comment(comment))
    return _plan(session, request, now=clock.now())


def plan_revoke_delegation(
    session: Session, delegation_id: str, *, reason: CRLReason | None, clock: Clock, comment: str | None = None
) -> RevocationPlan:
    """Revoke a delegation and cascade: its unexpired certificates, its STAR orders, its unused
    tokens. The delegation's recorded reason is ``comment``, else the reason's name. Writes nothing.

    Raises NotFoundError (field "delegation") or RevocationError (already revoked, bad reason).
    """
    request = RevocationRequest(KIND_DELEGATION, delegation_id, _checked_reason(reason), _checked_comment(comment))
    return _plan(session, request, now=clock.now())


def plan_revoke_covering(
    session: Session, scope: TNScope, *, reason: CRLReason | None, clock: Clock, comment: str | None = None
) -> RevocationPlan:
    """Revoke every unexpired certificate whose TNAuthList shares a number (or an SPC) with
    ``scope`` — for one TN, exactly the certificates covering it. Writes nothing.

    Candidates come from the indexed ``certificate_scope_entries`` (span classes,
    :func:`ca.records.models_authority.scope_entry_overlaps`); :meth:`TNScope.overlaps` decides. As everywhere, an
    SPC is not known to cover any number (RFC 9060 §4.1), so a TN matches TN and range entries
    only and an SPC matches that SPC only.
    """
    if not scope.entries:
        raise RevocationError("an empty TN scope covers no certificate", field="scope")
    request = RevocationRequest(KIND_SCOPE, scope.normalized().to_identifier_value(), _checked_reason(reason),
                                _checked_comment(comment))
    return _plan(session, request, now=clock.now())


def _checked_reason(reason: CRLReason | None) -> CRLReason | None:
    if reason is None:
        return None
    if not isinstance(reason, CRLReason) or reason not in OPERATOR_REASONS:
        name = reason.asn1_name if isinstance(reason, CRLReason) else repr(reason)
        raise RevocationError(f"reason {name} is not accepted; use one of {reason_choices()}", field="reason")
    return reason


def _checked_comment(comment: str | None) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise RevocationError("the comment must be text", field="comment")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise RevocationError(f"comment is {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}", field="comment")
    return comment or None


def _plan(session: Session, request: RevocationRequest, *, now: dt.datetime) -> RevocationPlan:
    """The plan for ``request`` as the database stands, with ``now`` as the time it is made."""
    delegation_plans: list[delegations.RevocationPlan] = []
    unused_tokens: list[PlannedToken] = []
    still_granting: list[str] = []
    if request.kind == KIND_CERTIFICATE:
        rows = _one_certificate(session, request.target)
    elif request.kind == KIND_DELEGATION:
        delegation_plans.append(
            delegations.plan_revoke(session, request.target, reason=_delegation_reason_text(request), clock=FixedClock(now))
        )
        rows = list(session.scalars(_revocable(now).where(Certificate.delegation_id == request.target)))
        unused_tokens = _unused_tokens(session, request.target, now)
    elif request.kind == KIND_SCOPE:
        scope = TNScope.from_identifier_value(request.target)
        certificate_ids = sorted(_overlapping(session, CertificateScopeEntry, scope))
        rows = sorted(
            (
                row
                for chunk in _chunks(certificate_ids)
                for row in session.scalars(_revocable(now).where(Certificate.id.in_(chunk)))
                if TNScope.from_der(row.scope_der, strict=False).overlaps(scope)
            ),
            key=lambda row: row.id,
        )
        delegation_ids = sorted(_overlapping(session, DelegationScopeEntry, scope))
        still_granting = [
            d.id
            for d in sorted(
                (d for chunk in _chunks(delegation_ids)
                 for d in session.scalars(select(Delegation).where(Delegation.id.in_(chunk),
                                                                   Delegation.status == delegations.ACTIVE))),
                key=lambda d: (d.created_at, d.id),
            )
            # Also one that starts later: it will grant the numbers then.
            if (d.not_after is None or now < d.not_after) and TNScope.from_der(d.scope_der, strict=False).overlaps(scope)
        ]
    else:
        raise RevocationError(f"unknown revocation kind {request.kind!r}", field="kind")

    issuer_names = {issuer_id: name for issuer_id, name in session.execute(select(Issuer.id, Issuer.name))}
    certificates = tuple(
        PlannedCertificate(
            serial=row.serial,
            subject=row.subject,
            scope=TNScope.from_der(row.scope_der, strict=False).describe(),
            not_after=row.not_after,
            delegation_id=row.delegation_id,
            issuer=issuer_names.get(row.issuer_id, str(row.issuer_id)),
            kind=row.kind,
            order_id=row.order_id,
        )
        for row in rows
    )
    orders = _star_orders(session, [d.delegation_id for d in delegation_plans], [c.order_id for c in certificates])
    star_orders = tuple(
        PlannedOrder(id=o.id, account_id=o.account_id, scope=TNScope.from_der(o.scope_der, strict=False).describe(),
                     status=o.status)
        for o in orders
    )
    content = _content(request, certificates, delegation_plans, star_orders, unused_tokens, still_granting)
    return RevocationPlan(
        request=request,
        planned_at=now,
        certificates=certificates,
        delegations=tuple(delegation_plans),
        star_orders=star_orders,
        unused_tokens=tuple(unused_tokens),
        delegations_still_granting=tuple(still_granting),
        digest=_digest(content),
    )


def _delegation_reason_text(request: RevocationRequest) -> str:
    if request.comment:
        return request.comment
    return request.reason.asn1_name if request.reason is not None else "revoked by the operator"


def _one_certificate(session: Session, serial: str) -> list[Certificate]:
    row = session.scalars(select(Certificate).where(Certificate.serial == serial)).one_or_none()
    if row is None:
        raise NotFoundError(f"no certificate with serial {serial}", field="serial")
    if row.stage != "issued":
        raise RevocationError(f"certificate {serial} is a {row.stage}, not an issued certificate", field="serial")
    revoked_at = session.scalar(select(Revocation.revoked_at).where(Revocation.certificate_id == row.id))
    if revoked_at is not None:
        raise RevocationError(f"certificate {serial} was already revoked at {revoked_at.isoformat()}", field="certificate")
    return [row]


def _revocable(now: dt.datetime) -> Any:
    """Issued, unexpired, unrevoked certificates, oldest first."""
    return (
        select(Certificate)
        .where(
            Certificate.stage == CertificateStage.ISSUED,
            Certificate.not_after > now,
            ~exists(select(Revocation.id).where(Revocation.certificate_id == Certificate.id)),
        )
        .order_by(Certificate.id)
    )


# Index rows of the requested scope per candidate statement. Each row is up to sixteen range
# conditions (one per span class, models_authority.scope_entry_overlaps); all of a 600-number scope
# in one statement made SQLite refuse it ("Expression tree is too large") after 24 s of planning.
OVERLAP_ROWS_PER_STATEMENT = 32
# Ids per "IN (...)" when the candidates are loaded: far below SQLite's 32,766 bound parameters.
IDS_PER_STATEMENT = 500


def _overlapping(session: Session, entry: Any, scope: TNScope) -> set[Any]:
    """Owner ids (certificate_id / delegation_id) of scope entries sharing a number or SPC with
    ``scope``: a superset filter, exact per entry, that the callers confirm with overlaps().
    Statements of a bounded size, however many entries the scope has."""
    owner = entry.certificate_id if entry is CertificateScopeEntry else entry.delegation_id
    rows = scope.normalized().index_rows()
    found: set[Any] = set()
    for start in range(0, len(rows), OVERLAP_ROWS_PER_STATEMENT):
        conditions = []
        for row in rows[start:start + OVERLAP_ROWS_PER_STATEMENT]:
            if row["spc"] is not None:
                conditions.append(entry.spc == row["spc"])
            elif row["literal"] is not None:
                conditions.append(entry.literal == row["literal"])
            else:
                conditions.append(models_authority.scope_entry_overlaps(entry, row["width"], row["lo"], row["hi"]))
        found.update(session.scalars(select(owner).where(or_(*conditions)).distinct()))
    return found


def _chunks(ids: Sequence[Any]) -> list[Sequence[Any]]:
    return [ids[i:i + IDS_PER_STATEMENT] for i in range(0, len(ids), IDS_PER_STATEMENT)]


def _unused_tokens(session: Session, delegation_id: str, now: dt.datetime) -> list[PlannedToken]:
    rows = session.execute(
        select(AuthorityToken.jti, AuthorityToken.expires_at)
        .where(
            AuthorityToken.delegation_id == delegation_id,
            AuthorityToken.expires_at > now,
            ~exists(select(UsedTokenJTI.id).where(UsedTokenJTI.jti == AuthorityToken.jti)),
        )
        .order_by(AuthorityToken.expires_at, AuthorityToken.jti)
    ).all()
    return [PlannedToken(jti=jti, delegation_id=delegation_id, expires_at=expires) for jti, expires in rows]


def _star_orders(session: Session, delegation_ids: Sequence[str], order_ids: Sequence[str | None]) -> list[Order]:
    """Valid STAR orders validated under one of ``delegation_ids`` or owning one of ``order_ids``.

    Only a valid order issues again. A pending, ready or processing STAR order under a revoked
    delegation cannot get its first certificate (issuance and the tkauth-01 check refuse a
    revoked delegation), and the renewal worker cancels an order whose delegation it finds
    revoked.
    """
    found: dict[str, Order] = {}
    for delegation_id in delegation_ids:
        for order in renewal.star_orders_under(session, delegation_id):
            found.setdefault(order.id, order)
    wanted = sorted({order_id for order_id in order_ids if order_id is not None} - set(found))
    if wanted:
        for order in session.scalars(
            select(Order).where(Order.id.in_(wanted), Order.status == "valid", Order.auto_renewal.is_not(None))
        ):
            found.setdefault(order.id, order)
    return sorted((o for o in found.values() if o.auto_renewal), key=lambda o: (o.created_at, o.id))


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RevocationResult:
    plan: RevocationPlan
    revoked: tuple[str, ...]  # serials
    delegations: tuple[str, ...]
    canceled_orders: tuple[str, ...]
    audit_seq: int | None  # the revocation.execute event (None when the plan changed nothing)
    crls: tuple[crl.CRLOutcome, ...]

    @property
    def crls_signed(self) -> bool:
        return crl.outcomes_ok(self.crls)

    def to_json(self) -> dict[str, Any]:
        return {
            "plan_digest": self.plan.digest,
            "revoked": list(self.revoked),
            "delegations": list(self.delegations),
            "canceled_orders": list(self.canceled_orders),
            "audit_seq": self.audit_seq,
            "crls": [
                {"issuer": o.issuer, "number": o.crl.number if o.crl else None, "entries": o.crl.entries if o.crl else None,
                 "error": o.error}
                for o in self.crls
            ],
        }

    def describe(self) -> str:
        lines = [
            f"revoked {len(self.revoked)} certificate(s) and {len(self.delegations)} delegation(s), "
            f"canceled {len(self.canceled_orders)} STAR order(s)"
        ]
        lines.extend(f"  {outcome.describe()}" for outcome in self.crls)
        return "\n".join(lines)


def execute(
    session: Session,
    plan: RevocationPlan,
    *,
    actor: str,
    clock: Clock,
    home: "Home",
    via: str = "operator",
) -> RevocationResult:
    """Apply ``plan`` in one transaction, commit, then sign the affected CRLs (each committed).

    ``via`` is the revocation source of a single-certificate plan ("operator", "acme"); a
    delegation plan records "delegation", a plan by number "number". Refuses with
    RevocationError (nothing written) when the plan is no longer what the database says: the
    ``field`` is "plan" for a changed plan, else that of the refusal (e.g. "delegation" when
    it was revoked meanwhile). A plan that changes nothing is a no-op.
    """
    if not plan.changes_anything:
        return RevocationResult(plan, (), (), (), None, ())
    try:
        # Hold the delegations being revoked (PostgreSQL row locks) while the plan is checked and
        # applied, so two operators cannot both revoke one; populate_existing re-reads them.
        for delegation_plan in plan.delegations:
            session.scalars(
                select(Delegation).where(Delegation.id == delegation_plan.delegation_id)
                .with_for_update().execution_options(populate_existing=True)
            ).one_or_none()
        current = _plan(session, plan.request, now=plan.planned_at)
        if current.digest != plan.digest:
            raise RevocationError(f"the plan changed since it was made ({_changes(plan, current)}); plan again",
                                  field="plan")
        event, canceled = _apply(session, plan, actor=actor, clock=clock, via=via)
    except BaseException:
        session.rollback()  # all or nothing, whatever failed
        raise
    session.commit()

    outcomes = crl.regenerate(session, home, plan.crl_issuers, clock=clock, trigger=crl.TRIGGER_REVOCATION, actor=actor)
    return RevocationResult(
        plan=plan,
        revoked=tuple(c.serial for c in plan.certificates),
        delegations=tuple(d.delegation_id for d in plan.delegations),
        canceled_orders=tuple(canceled),
        audit_seq=event.seq,
        crls=tuple(outcomes),
    )


def _apply(session: Session, plan: RevocationPlan, *, actor: str, clock: Clock, via: str) -> tuple[AuditEvent, list[str]]:
    """The writes of :func:`execute`, in the caller's transaction: (audit event, canceled order ids)."""
    source = {KIND_CERTIFICATE: via, KIND_DELEGATION: "delegation", KIND_SCOPE: "number"}[plan.request.kind]
    event = audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_EXECUTE,
        subject_type="revocation",
        subject_id=plan.digest[:64],
        details={"plan": plan.to_json(), "via": via},
        clock=clock,
    )
    for delegation_plan in plan.delegations:
        delegations.execute_revoke(session, delegation_plan, clock=clock, actor=actor)
    rows = {
        row.serial: row
        for row in session.scalars(select(Certificate).where(Certificate.serial.in_([c.serial for c in plan.certificates])))
    }
    for planned in plan.certificates:
        revoke_certificate(session, rows[planned.serial], plan.reason, actor=actor, source=source, clock=clock,
                           comment=plan.comment)
    canceled = []
    why = f"{plan.request.describe()} was revoked" + (f": {plan.comment}" if plan.comment else "")
    # The order's client learns why from its error (an autoRenewalCanceled problem).
    by = renewal.CANCELED_BY_OPERATOR if via == "operator" else renewal.CANCELED_BY_AUTHORITY
    for planned_order in plan.star_orders:
        order = session.get(Order, planned_order.id)
        try:
            renewal.cancel(session, order, actor=actor, by=by, clock=clock, reason=why)
        except AutoRenewalError:
            continue  # canceled meanwhile (by its client or the worker): the outcome is the same
        canceled.append(planned_order.id)
    return event, canceled


def _changes(old: RevocationPlan, new: RevocationPlan) -> str:
    """What differs between two plans, for the refusal's detail."""
    parts = []
    for label, before, after in (
        ("certificates", {c.serial for c in old.certificates}, {c.serial for c in new.certificates}),
        ("STAR orders", {o.id for o in old.star_orders}, {o.id for o in new.star_orders}),
        ("unused tokens", {t.jti for t in old.unused_tokens}, {t.jti for t in new.unused_tokens}),
        ("delegations still granting", set(old.delegations_still_granting), set(new.delegations_still_granting)),
    ):
        if after - before:
            parts.append(f"{len(after - before)} more {label}")
        if before - after:
            parts.append(f"{len(before - after)} {label} fewer")
    return ", ".join(parts) or "the delegation or a certificate changed"
