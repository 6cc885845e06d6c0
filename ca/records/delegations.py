"""Delegations: grants of a TN scope to a delegate, from which tokens and certificates follow.

A delegation records who (the delegate) may use which numbers (a TN scope inside the issuing
CA's own TNAuthList, RFC 9060 §4 "encompassing"), under which claim constraints (RFC 8226 §8 /
RFC 9118), for how long each certificate may live, whether the delegate may sub-delegate (a
delegate CA certificate, RFC 9060 §4; the ``ca`` flag of RFC 9447 §4), and until when.

Every change appends an audit event in the caller's transaction; the caller commits.

Lookup (:func:`find_covering`) narrows candidates with the indexed ``delegation_scope_entries``
rows and then decides with :meth:`TNScope.contains`, so the index only has to be a superset
filter, never the authority on containment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, event, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from ca.records import audit, models_base
from ca.records.models_acme import AuthorityToken, Authorization, Order
from ca.records.models_authority import Certificate, Delegation, DelegationScopeEntry
from ca.records.record_json import delegation_fields
from ca.numbers.claims import ClaimConstraints
from ca.clock import Clock
from ca.encoding import isoformat_or_none, unsafe_text
from ca.errors import DelegationError, NotFoundError, PolicyError, RevocationError, ScopeError
from ca.policy import format_duration
from ca.numbers.tnauthlist import TNScope
from ca.records.statuses import AuthorizationStatus, CertificateStage, DelegationStatus, OrderStatus

ACTIVE = DelegationStatus.ACTIVE
REVOKED = DelegationStatus.REVOKED
# The problem type an order withdrawn with its delegation reports (RFC 8555 §6.7).
ACME_UNAUTHORIZED = "urn:ietf:params:acme:error:unauthorized"
# The delegate name is shown to operators and auditors; it is not an identity proof.
MAX_DELEGATE_CHARS = 255
# RFC 8226 §4 certificates are meant to be short-lived; a floor stops nonsense like "0s".
MIN_CERTIFICATE_LIFETIME = dt.timedelta(minutes=5)
MAX_REASON_CHARS = 1000
# The certificate profiles a delegation may name (ca/issuing/subjects.py, docs/identity.md).
DELEGATE_PROFILE = "delegate"
VESPER_PROFILE = "vesper"
PROFILES = (DELEGATE_PROFILE, VESPER_PROFILE)


@dataclasses.dataclass(frozen=True)
class RevocationPlan:
    """What revoking the delegation itself would change; computed without writing anything.

    ``execute_revoke`` applies exactly this plan. It is the delegation part of the cascade in
    ``ca/lifecycle/revocation.py`` (:func:`ca.lifecycle.revocation.plan_revoke_delegation`), which also revokes the
    certificates counted here, cancels the delegation's STAR orders and lists its unused tokens;
    front ends call that, not this.
    """

    delegation_id: str
    delegate: str
    scope: str
    status_before: str
    status_after: str
    reason: str
    unexpired_tokens: int
    unexpired_certificates: int
    # What the delegate proved under it and has not used yet (RFC 8555 §7.1.6): valid
    # authorizations become "revoked", the pending and ready orders waiting on them "invalid".
    valid_authorizations: int = 0
    open_orders: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def create(
    session: Session,
    *,
    delegate: str,
    scope: TNScope,
    issuer_scope: TNScope,
    max_lifetime: dt.timedelta,
    clock: Clock,
    actor: str,
    ca: bool = False,
    constraints: ClaimConstraints | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    max_lifetime_ceiling: dt.timedelta | None = None,
    profile: str = DELEGATE_PROFILE,
) -> Delegation:
    """Record a new active delegation of ``scope`` to ``delegate``; returns the row (flushed).

    Refuses, writing nothing: a scope outside the issuing CA's scope (ScopeError, RFC 9060 §4:
    a delegate's TNAuthList must be encompassed by its parent's); an empty delegate name, a
    certificate lifetime below five minutes or above ``max_lifetime_ceiling`` (the policy's), a
    validity window that is empty or already over (PolicyError).
    """
    now = clock.now()
    _check_delegate_name(delegate)
    _check_profile(profile)
    if not issuer_scope.contains(scope):
        raise ScopeError(
            f"scope {scope.describe()} is not inside the issuing CA's scope ({issuer_scope.describe()}): "
            f"{issuer_scope.difference_of(scope).describe()} is outside it (RFC 9060 §4)",
            field="scope",
        )
    _check_max_lifetime(max_lifetime, max_lifetime_ceiling)
    starts = _aware(not_before, "not_before") if not_before is not None else now
    ends = _aware(not_after, "not_after") if not_after is not None else None
    if ends is not None and ends <= max(starts, now):
        raise PolicyError(
            f"not-after {ends.isoformat()} must be later than the start {max(starts, now).isoformat()}", field="not_after"
        )

    normalized = scope.normalized()
    delegation = Delegation(
        id=models_base.random_id(),
        delegate=delegate,
        scope_der=normalized.to_der(),
        ca_allowed=bool(ca),
        max_lifetime_seconds=int(max_lifetime.total_seconds()),
        constraints_der=constraints.to_der() if constraints is not None else None,
        constraints_kind=constraints.kind if constraints is not None else None,
        not_before=starts,
        not_after=ends,
        status=ACTIVE,
        profile=profile,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    delegation.scope_entries = [DelegationScopeEntry(**row) for row in normalized.index_rows()]
    session.add(delegation)
    session.flush()
    _audit(
        session,
        actor=actor,
        action="delegation.create",
        delegation=delegation,
        details={"after": delegation_fields(delegation)},
        clock=clock,
    )
    return delegation


class _Unchanged:
    """The value of an :func:`update` argument that was not given (None has a meaning there)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()
# What update() may change. The TN scope and the right to sub-delegate are what was granted: a
# different grant is a new delegation (and revoking the old one), never an edit.
EDITABLE_FIELDS = ("delegate", "max_lifetime_seconds", "not_after", "constraints")


def update(
    session: Session,
    delegation_id: str,
    *,
    clock: Clock,
    actor: str,
    delegate: str | _Unchanged = UNCHANGED,
    max_lifetime: dt.timedelta | _Unchanged = UNCHANGED,
    not_after: dt.datetime | None | _Unchanged = UNCHANGED,
    constraints: ClaimConstraints | None | _Unchanged = UNCHANGED,
    max_lifetime_ceiling: dt.timedelta | None = None,
) -> Delegation:
    """Change the delegate name, the max certificate lifetime, the end (None: no end) or the claim
    constraints (None: none) of a delegation in force; returns the row (flushed).

    The scope and the ``ca`` flag cannot change (:data:`EDITABLE_FIELDS`). Certificates already
    issued keep what they were issued with; the change applies to later tokens and issuance.
    Appends ``delegation.update`` with ``before``/``after`` and the names of the changed fields.

    Refuses, writing nothing: a delegation that is revoked or has ended (PolicyError
    field="delegation": a new grant is a new delegation); the rules of :func:`create` for each
    new value (PolicyError naming the field); a change that changes nothing (PolicyError
    field="delegation").
    """
    delegation = get(session, delegation_id)
    now = clock.now()
    if delegation.status != ACTIVE:
        raise PolicyError(f"delegation {delegation.id} is {delegation.status}; it cannot change", field="delegation")
    if delegation.not_after is not None and delegation.not_after <= now:
        raise PolicyError(
            f"delegation {delegation.id} ended at {delegation.not_after.isoformat()}; create a new delegation instead",
            field="delegation",
        )
    changes: dict[str, Any] = {}
    if not isinstance(delegate, _Unchanged):
        _check_delegate_name(delegate)
        if delegate != delegation.delegate:
            changes["delegate"] = delegate
    if not isinstance(max_lifetime, _Unchanged):
        _check_max_lifetime(max_lifetime, max_lifetime_ceiling)
        if int(max_lifetime.total_seconds()) != delegation.max_lifetime_seconds:
            changes["max_lifetime_seconds"] = int(max_lifetime.total_seconds())
    if not isinstance(not_after, _Unchanged):
        ends = _aware(not_after, "not_after") if not_after is not None else None
        if ends is not None and ends <= max(delegation.not_before, now):
            raise PolicyError(
                f"not-after {ends.isoformat()} must be later than {max(delegation.not_before, now).isoformat()}",
                field="not_after",
            )
        if ends != delegation.not_after:
            changes["not_after"] = ends
    if not isinstance(constraints, _Unchanged):
        der = constraints.to_der() if constraints is not None else None
        kind = constraints.kind if constraints is not None else None
        if (der, kind) != (delegation.constraints_der, delegation.constraints_kind):
            changes["constraints"] = (der, kind)
    if not changes:
        raise PolicyError(f"nothing to change: delegation {delegation.id} already has these values", field="delegation")

    before = delegation_fields(delegation)
    for name, value in changes.items():
        if name == "constraints":
            delegation.constraints_der, delegation.constraints_kind = value
        else:
            setattr(delegation, name, value)
    delegation.updated_at = now
    session.flush()
    _audit(
        session,
        actor=actor,
        action="delegation.update",
        delegation=delegation,
        details={"before": before, "after": delegation_fields(delegation), "changed": sorted(changes)},
        clock=clock,
    )
    return delegation


def _check_delegate_name(delegate: object) -> None:
    """The delegate name becomes the subject CN of its certificates (ca/issuing/subjects.py) and
    is shown on every page: non-empty, bounded, no control or bidi character."""
    if not isinstance(delegate, str) or not delegate.strip():
        raise PolicyError("delegate name must not be empty", field="delegate")
    if len(delegate) > MAX_DELEGATE_CHARS:
        raise PolicyError(f"delegate name is {len(delegate)} characters; the limit is {MAX_DELEGATE_CHARS}", field="delegate")
    if delegate != delegate.strip():
        raise PolicyError("delegate name must not begin or end with white space", field="delegate")
    reason = unsafe_text(delegate)
    if reason is not None:
        raise PolicyError(f"delegate name: {reason}", field="delegate")


def _check_profile(profile: object) -> None:
    if profile not in PROFILES:
        raise PolicyError(f"profile must be one of {', '.join(PROFILES)} (got {profile!r})", field="profile")


def _check_max_lifetime(max_lifetime: dt.timedelta, ceiling: dt.timedelta | None) -> None:
    """A delegation's max certificate lifetime: at least the floor, at most the policy's ceiling."""
    if max_lifetime < MIN_CERTIFICATE_LIFETIME:
        raise PolicyError(
            f"max certificate lifetime {format_duration(max_lifetime)} is below the minimum {format_duration(MIN_CERTIFICATE_LIFETIME)}",
            field="max_lifetime",
        )
    if ceiling is not None and max_lifetime > ceiling:
        raise PolicyError(
            f"max certificate lifetime {format_duration(max_lifetime)} exceeds the policy's {format_duration(ceiling)}",
            field="max_lifetime",
        )


def get(session: Session, delegation_id: str) -> Delegation:
    delegation = session.get(Delegation, delegation_id) if isinstance(delegation_id, str) else None
    if delegation is None:
        raise NotFoundError(f"no delegation with id {delegation_id!r}", field="delegation")
    return delegation


def list_delegations(session: Session, *, status: str | None = None, delegate: str | None = None) -> list[Delegation]:
    """Delegations, oldest first; optionally only one status or one delegate."""
    query = select(Delegation).order_by(Delegation.created_at, Delegation.id)
    if status is not None:
        query = query.where(Delegation.status == status)
    if delegate is not None:
        query = query.where(Delegation.delegate == delegate)
    return list(session.scalars(query))


def constraints_of(delegation: Delegation) -> ClaimConstraints | None:
    """The claim constraints the delegation grants its certificates, or None when it has none."""
    if delegation.constraints_der is None:
        return None
    return ClaimConstraints.from_der(delegation.constraints_der, delegation.constraints_kind)


def is_active(delegation: Delegation, now: dt.datetime) -> bool:
    """Active status and ``now`` inside [not_before, not_after)."""
    return (
        delegation.status == ACTIVE
        and delegation.not_before <= now
        and (delegation.not_after is None or now < delegation.not_after)
    )


def find_covering(
    session: Session, scope: TNScope, *, clock: Clock, delegation_id: str | None = None, delegate: str | None = None
) -> Delegation:
    """The active delegation whose scope contains ``scope`` (RFC 9060 §4 "encompassing").

    Candidates come from ``delegation_scope_entries``: a delegation can only contain the
    requested scope if it has, for every requested entry, an index row that shares a number
    with it (same width, overlapping interval), the same SPC or the same literal number. The
    exact answer is :meth:`TNScope.contains`, because a requested range may be covered by the
    union of several entries; only a few entries are probed in SQL (:func:`_candidates`), so
    the search is one statement whatever the size of the scope. When several delegations
    contain the scope, the oldest wins, so
    the answer is stable. ``delegation_id`` restricts the search to that delegation (a token
    minted here names the one it was minted under); ``delegate`` to that delegate's delegations
    (an account bound to it by external account binding).

    Raises DelegationError naming the scope when none covers it (missing, revoked, expired or
    not yet valid all read the same to the requester; the detail says which when it is one).
    """
    now = clock.now()
    requested = scope.normalized()
    rows = requested.index_rows()
    if not rows:
        raise DelegationError("an empty TN scope is covered by no delegation", field="scope")
    candidates: Sequence[Delegation] = []
    if delegation_id is not None:
        # The one candidate is named: no index search, and session.get finds a row the caller
        # already loaded (the ACME challenge has, through the minted token) without a query.
        # contains() below decides exactly as for candidates found through the index.
        named = session.get(Delegation, delegation_id)
        candidates = [named] if named is not None else []
    else:
        candidates = _candidates(session, rows)
    if delegate is not None:
        candidates = [candidate for candidate in candidates if candidate.delegate == delegate]
    inactive: list[Delegation] = []
    for delegation in candidates:
        if not TNScope.from_der(delegation.scope_der).contains(requested):
            continue
        if is_active(delegation, now):
            return delegation
        inactive.append(delegation)
    where = (f"delegation {delegation_id}" if delegation_id is not None
             else f"any active delegation of {delegate!r}" if delegate is not None else "any active delegation")
    if inactive:
        reasons = "; ".join(f"{d.id} {_inactive_reason(d, now)}" for d in inactive)
        raise DelegationError(f"TN scope {scope.describe()} is not covered by {where} ({reasons})", field="scope")
    raise DelegationError(f"TN scope {scope.describe()} is not covered by {where}", field="scope")


def check_not_withdrawn(session: Session, scope: TNScope, *, clock: Clock) -> None:
    """Refuse (DelegationError, field "delegation") a scope that only revoked or ended delegations cover.

    For newOrder: a delegate whose delegation was revoked learns it at once, with the delegation
    named, rather than after answering the challenge. A scope no delegation covers at all
    passes, and so does one an active delegation covers (also one not started yet): the order
    may come before its delegation, and the challenge decides (:func:`find_covering`).
    """
    now = clock.now()
    requested = scope.normalized()
    rows = requested.index_rows()
    if not rows:
        return
    candidates = _candidates(session, rows)
    covering = [d for d in candidates if TNScope.from_der(d.scope_der, strict=False).contains(requested)]
    if not covering or any(d.status == ACTIVE and (d.not_after is None or now < d.not_after) for d in covering):
        return
    withdrawn = "; ".join(
        f"delegation {d.id} was revoked at {isoformat_or_none(d.revoked_at)}" if d.status == REVOKED
        else f"delegation {d.id} ended at {isoformat_or_none(d.not_after)}"
        for d in covering
    )
    raise DelegationError(
        f"TN scope {scope.describe()} is covered by no active delegation: {withdrawn}", field="delegation"
    )


def _candidates(session: Session, rows: Sequence[dict[str, Any]]) -> Sequence[Delegation]:
    """Delegations that may contain the scope whose normalized index rows are ``rows``, oldest
    first, in one statement of the same size whatever the number of entries.

    A delegation containing the scope overlaps every entry of it, so those overlapping its first,
    middle and last entries are a superset of the answer; ``TNScope.contains`` decides exactly.
    (One nested IN per entry made SQLite refuse a scope of ~1,000 entries, "Expression tree is
    too large", and cost a statement per entry.)
    """
    probes = [rows[i] for i in sorted({0, len(rows) // 2, len(rows) - 1})]
    # newOrder asks twice within one transaction (the per-delegate rate limit, then the
    # withdrawn-delegation check): the second asking reuses the first answer. Kept for that
    # transaction only and until its next flush (_forget_candidates), and never used while the
    # session holds unflushed changes, so nothing written since is missed.
    key = (session.get_transaction(), repr(probes))
    remembered = session.info.get(_CANDIDATES_KEY)
    if (remembered is not None and remembered[0] is key[0] and remembered[1] == key[1]
            and not (session.new or session.dirty or session.deleted)):
        return remembered[2]
    candidates = session.scalars(
        select(Delegation)
        .where(*[Delegation.id.in_(_overlapping_entries(row)) for row in probes])
        .order_by(Delegation.created_at, Delegation.id)
    ).all()
    # The transaction the query ran in (it began one if the session had none open yet).
    session.info[_CANDIDATES_KEY] = (session.get_transaction(), key[1], candidates)
    return candidates


_CANDIDATES_KEY = "tnca.delegations.candidates"


@event.listens_for(Session, "after_flush")
def _forget_candidates(session: Session, _flush_context: Any) -> None:
    session.info.pop(_CANDIDATES_KEY, None)


def _overlapping_entries(row: dict[str, Any]) -> Any:
    entry = DelegationScopeEntry
    if row["spc"] is not None:
        condition = entry.spc == row["spc"]
    elif row["literal"] is not None:
        condition = entry.literal == row["literal"]
    else:
        condition = and_(entry.width == row["width"], entry.lo <= row["hi"], entry.hi >= row["lo"])
    return select(entry.delegation_id).where(condition).distinct()


def _inactive_reason(delegation: Delegation, now: dt.datetime) -> str:
    if delegation.status != ACTIVE:
        return f"is {delegation.status}"
    if delegation.not_before > now:
        return f"starts {delegation.not_before.isoformat()}"
    return f"ended {delegation.not_after.isoformat() if delegation.not_after else ''}"


def plan_revoke(session: Session, delegation_id: str, *, reason: str, clock: Clock) -> RevocationPlan:
    """What revoking ``delegation_id`` would do. Writes nothing (admin commands are dry-run first)."""
    delegation = get(session, delegation_id)
    if not isinstance(reason, str) or not reason.strip():
        raise RevocationError("a revocation reason is required", field="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise RevocationError(f"revocation reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}", field="reason")
    if delegation.status == REVOKED:
        raise RevocationError(
            f"delegation {delegation.id} is already revoked (at {isoformat_or_none(delegation.revoked_at)})", field="delegation"
        )
    now = clock.now()
    unexpired_tokens = len(
        session.scalars(
            select(AuthorityToken.jti).where(
                AuthorityToken.delegation_id == delegation.id, AuthorityToken.expires_at > now
            )
        ).all()
    )
    unexpired_certificates = len(
        session.scalars(
            select(Certificate.id).where(
                Certificate.delegation_id == delegation.id,
                Certificate.not_after > now,
                Certificate.stage == CertificateStage.ISSUED,
                ~Certificate.revocation.has(),
            )
        ).all()
    )
    valid_authorizations = session.scalar(
        select(func.count()).select_from(Authorization).where(_withdrawn_authorizations(delegation.id))
    )
    open_orders = session.scalar(select(func.count()).select_from(Order).where(_withdrawn_orders(delegation.id)))
    return RevocationPlan(
        delegation_id=delegation.id,
        delegate=delegation.delegate,
        scope=TNScope.from_der(delegation.scope_der).describe(),
        status_before=delegation.status,
        status_after=REVOKED,
        reason=reason.strip(),
        unexpired_tokens=unexpired_tokens,
        unexpired_certificates=unexpired_certificates,
        valid_authorizations=valid_authorizations or 0,
        open_orders=open_orders or 0,
    )


def execute_revoke(session: Session, plan: RevocationPlan, *, clock: Clock, actor: str) -> Delegation:
    """Apply ``plan``: the delegation becomes revoked; tokens minted under it stop validating; the
    ACME authorizations validated under it are revoked and the orders waiting on them invalid.

    Without the last step a former delegate keeps what it proved: a ready order it could still
    finalize, and a "valid" authorization that RFC 8555 §7.6 would accept for revoking the
    certificates of whoever holds the numbers next.

    Refuses (RevocationError) when the delegation changed since the plan was made, so what the
    operator saw is what happens. Appends a ``delegation.revoke`` audit event with before/after
    and the number of authorizations and orders withdrawn.
    """
    delegation = get(session, plan.delegation_id)
    if delegation.status != plan.status_before:
        raise RevocationError(
            f"delegation {delegation.id} is {delegation.status} now, not {plan.status_before} as planned; plan again",
            field="delegation",
        )
    now = clock.now()
    before = delegation_fields(delegation)
    delegation.status = REVOKED
    delegation.revoked_at = now
    delegation.revocation_reason = plan.reason
    delegation.updated_at = now
    session.flush()
    authorizations_revoked, orders_invalidated = _withdraw_authorizations(session, delegation)
    _audit(
        session,
        actor=actor,
        action="delegation.revoke",
        delegation=delegation,
        details={"before": before, "after": delegation_fields(delegation), "plan": plan.to_json(),
                 "authorizations_revoked": authorizations_revoked, "orders_invalidated": orders_invalidated},
        clock=clock,
    )
    return delegation


def _withdrawn_authorizations(delegation_id: str) -> Any:
    return and_(
        Authorization.delegation_id == delegation_id,
        Authorization.status.in_((AuthorizationStatus.PENDING, AuthorizationStatus.VALID)),
    )


def _withdrawn_orders(delegation_id: str) -> Any:
    # STAR orders that are already valid are canceled by the cascade (ca/lifecycle/revocation.py), not here.
    return and_(
        Order.id.in_(select(Authorization.order_id).where(Authorization.delegation_id == delegation_id)),
        Order.status.in_((OrderStatus.PENDING, OrderStatus.READY)),
    )


def _withdraw_authorizations(session: Session, delegation: Delegation) -> tuple[int, int]:
    """Revoke the authorizations validated under ``delegation`` and invalidate the orders waiting
    on them (RFC 8555 §7.1.6), in two statements whatever their number; returns both counts."""
    orders = session.execute(
        sql_update(Order)
        .where(_withdrawn_orders(delegation.id))
        .values(status=OrderStatus.INVALID, error={
            "type": ACME_UNAUTHORIZED,
            "detail": f"delegation {delegation.id} was revoked: {delegation.revocation_reason}",
        })
        .execution_options(synchronize_session="fetch")
    )
    authorizations = session.execute(
        sql_update(Authorization)
        .where(_withdrawn_authorizations(delegation.id))
        .values(status=AuthorizationStatus.REVOKED)
        .execution_options(synchronize_session="fetch")
    )
    return authorizations.rowcount, orders.rowcount


def _audit(session: Session, *, actor: str, action: str, delegation: Delegation, details: dict[str, Any], clock: Clock) -> None:
    audit.append(
        session,
        actor=actor,
        action=action,
        subject_type="delegation",
        subject_id=delegation.id,
        details=details,
        clock=clock,
    )


def _aware(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None:
        raise PolicyError(f"{field} must carry a time zone (UTC)", field=field)
    return value.astimezone(dt.timezone.utc)
