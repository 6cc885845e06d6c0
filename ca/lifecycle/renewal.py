"""STAR auto-renewal (RFC 8739): the schedule of an auto-renewal order, its cancellation, and the
worker that issues each next certificate.

**The schedule** (RFC 8739 §3.5). With T the order's ``lifetime``, ``end`` the order's end (its
``end-date``; never later than the authority token's ``exp``, see below) and f = 1/2:

::

    nrd[0]    = the first issuance (finalize), or start-date if that is later
    nrd[i+1]  = notAfter of certificate i          (= nrd[i] + T until the end is reached)
    adjust    = max(min(T, lifetime-adjust), ⌈f·T⌉)
    notBefore = nrd[i] − adjust                    (the first: never before start-date)
    notAfter  = min(nrd[i] + T, end)

Certificate i+1 is issued ("published") at its notBefore, so it is valid the moment it appears at
the star-certificate URL, and it appears halfway through the nominal lifetime of certificate i at
the latest (RFC 8739 §3.3: "at the latest halfway"; f = 1/2 is the smallest §3.5 allows). The
order reflects ``adjust`` as its ``lifetime-adjust`` (§3.1.1: the reflected value is the client's
hint for its polling timer; §3.3: "the server might need to increase the auto-renewal
lifetime-adjust value"). nrd[i+1] is read off the current certificate, so the schedule lives in
the certificates table and no counter can drift from it. A certificate that the end would make
shorter than the policy minimum starts earlier instead, and a worker that was down for longer than
a certificate lives resumes at the slot that still covers the present.

**Bounds.** Each certificate obeys the policy and the delegation like any other (``ca.issuing.issuance``:
``[lifetimes]``, the delegation's maximum lifetime and end). Its whole validity is T + adjust, so
that is what must fit under those caps (checked at newOrder against the policy, at the challenge
against the delegation). RFC 9447 §7 says an ACME service relying on authority tokens "SHOULD NOT
issue certificates that expire later than the token"; renewals are certificates too, so the
end-date of a STAR order must not be later than the token's ``exp`` (the challenge fails
otherwise) and renewal stops there. A long STAR order needs a token that lives as long.

**Stopping.** A STAR order stops renewing when its end is reached (it stays ``valid``, §3.3), when
the client cancels it (§3.1.2), when an operator cancels it, when its account is deactivated, or
when issuance refuses for good (the delegation revoked or ended, the CSR no longer acceptable):
those make it ``canceled``; :func:`cancel` is the one function that does it, and an order stopped
by the authority carries an ``autoRenewalCanceled`` problem in its ``error`` saying why (the
column holds an RFC 7807 problem document, ``ca/records/store.py``). Transient failures (a log down, an
HSM busy) are retried after :data:`RETRY_DELAY`.

**Workers** (:func:`renew_due`; ``tnca worker``). Any number may run against one database:

1. *Claim.* One statement, ``UPDATE orders … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``,
   stamps the due orders with a random claim and moves their ``next_renewal_at`` past a lease. On
   PostgreSQL a concurrent worker skips rows another one has locked and then finds them no longer
   due; on SQLite (no ``FOR UPDATE``) the database write lock serializes the statement.
2. *Fence.* Each claimed order is renewed in its own transaction, which begins with a
   conditional ``UPDATE`` that matches only while the order is still ``valid`` and still carries
   this worker's claim. It is repeated right after the precertificate row is committed (the
   issuance pipeline commits it before any log sees it), and the lock it takes — the order's row
   on PostgreSQL, the database on SQLite — is held until the certificate is committed. So a
   cancellation either commits before the precertificate reaches a log (and the renewal stops
   there) or waits until the renewal has committed: once a cancellation succeeds, no certificate
   follows it (RFC 8739 §3.1.2). A worker whose lease ran out finds its claim replaced and
   commits nothing.
3. *Schedule.* The certificate, its audit event and the order's next ``next_renewal_at`` are one
   transaction.

On SQLite the write lock is held for the CT round trip of one renewal (bounded by the policy's
``[ct] submission_deadline``), during which other writers queue; SQLite is the single-host store,
PostgreSQL the one for several workers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from sqlalchemy import func, inspect, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ca.issuing import issuance
from ca.records import audit
from ca.errors import (
    AutoRenewalError,
    ClaimConstraintsError,
    CSRError,
    DelegationError,
    PolicyError,
    ScopeError,
    TNCAError,
    TokenError,
)
from ca.policy import Policy, format_duration
from ca.issuing.profiles import DELEGATE_CA, END_ENTITY, Profile
from ca.records.store import Account, Authorization, Certificate, Delegation, Order
from ca.numbers.tnauthlist import TNScope
from ca.clock import Clock
from ca.home import Home

log = logging.getLogger("tnca.renewal")

# RFC 8739 §3.1.1: the members of the "auto-renewal" object (also its stored form, Order.auto_renewal).
START_DATE = "start-date"
END_DATE = "end-date"
LIFETIME = "lifetime"
LIFETIME_ADJUST = "lifetime-adjust"
ALLOW_CERTIFICATE_GET = "allow-certificate-get"

# RFC 8739 §3.5: the server pads notBefore by f·T, 0.5 <= f < 1. One half is the least padding
# that still publishes the next certificate halfway through the current one (§3.3).
PUBLICATION_FRACTION = 0.5
# How long a claim keeps other workers off an order. One renewal takes a signature and one CT
# round trip, bounded by [ct] submission_deadline (seconds); a worker that died is replaced
# after this long.
CLAIM_LEASE = dt.timedelta(minutes=5)
# After a transient failure (too few SCTs, a signer error) the next attempt waits this long.
RETRY_DELAY = dt.timedelta(minutes=1)
# A claim token: 96 random bits, URL-safe (fits Order.renewal_claim).
CLAIM_TOKEN_BYTES = 12
# Who the audit log names for a renewal.
RENEWAL_ACTOR = "system:star-renewal"
# The audit action of a cancellation.
AUDIT_ACTION_CANCEL = "order.cancel"
# RFC 8739 §5 (IANA): the problem type a canceled order's star-certificate answers with; stored
# in Order.error when the authority, not the client, stopped the order.
AUTO_RENEWAL_CANCELED = "urn:ietf:params:acme:error:autoRenewalCanceled"

# Who stopped an order (the audit event's "by").
CANCELED_BY_CLIENT = "client"
CANCELED_BY_OPERATOR = "operator"
CANCELED_BY_ACCOUNT = "account-deactivation"
CANCELED_BY_AUTHORITY = "authority"


# --------------------------------------------------------------------------------------------
# The auto-renewal object and the schedule (RFC 8739 §3.1.1, §3.5)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AutoRenewal:
    """An accepted ``auto-renewal`` object. Times are aware UTC, whole seconds."""

    end_date: dt.datetime
    lifetime: dt.timedelta  # T, the nominal validity of each certificate
    lifetime_adjust: dt.timedelta = dt.timedelta(0)  # as the client asked ("la")
    start_date: dt.datetime | None = None
    allow_certificate_get: bool = False

    @property
    def adjust(self) -> dt.timedelta:
        """max(adjust_client, adjust_server) of RFC 8739 §3.5, rounded up to whole seconds."""
        lifetime = int(self.lifetime.total_seconds())
        client = min(lifetime, int(self.lifetime_adjust.total_seconds()))
        server = math.ceil(PUBLICATION_FRACTION * lifetime)
        return dt.timedelta(seconds=max(client, server))

    @property
    def longest_validity(self) -> dt.timedelta:
        """notAfter − notBefore of a full certificate: the nominal lifetime plus the adjustment."""
        return self.lifetime + self.adjust

    def end(self, token_expires: dt.datetime | None) -> dt.datetime:
        """The order's end: its end-date, never later than the authority token (RFC 9447 §7)."""
        return self.end_date if token_expires is None else min(self.end_date, token_expires)

    def to_json(self) -> dict[str, Any]:
        """The object the order shows (and stores): ``lifetime-adjust`` is the adjustment applied."""
        obj: dict[str, Any] = {}
        if self.start_date is not None:
            obj[START_DATE] = _rfc3339(self.start_date)
        obj[END_DATE] = _rfc3339(self.end_date)
        obj[LIFETIME] = int(self.lifetime.total_seconds())
        obj[LIFETIME_ADJUST] = int(self.adjust.total_seconds())
        obj[ALLOW_CERTIFICATE_GET] = self.allow_certificate_get
        return obj

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> "AutoRenewal":
        """Read what :meth:`to_json` stored (``Order.auto_renewal``)."""
        start = stored.get(START_DATE)
        return cls(
            end_date=_parse_stored_time(stored[END_DATE]),
            lifetime=dt.timedelta(seconds=int(stored[LIFETIME])),
            lifetime_adjust=dt.timedelta(seconds=int(stored.get(LIFETIME_ADJUST, 0))),
            start_date=_parse_stored_time(start) if start is not None else None,
            allow_certificate_get=bool(stored.get(ALLOW_CERTIFICATE_GET, False)),
        )


@dataclasses.dataclass(frozen=True)
class Window:
    """The validity of one certificate of a STAR order; it is issued at ``not_before``."""

    nominal: dt.datetime  # nrd[i], the nominal renewal date
    not_before: dt.datetime
    not_after: dt.datetime


def _window(auto: AutoRenewal, nominal: dt.datetime, *, end: dt.datetime, minimum: dt.timedelta) -> Window:
    not_after = min(nominal + auto.lifetime, end)
    not_before = nominal - auto.adjust
    # The last certificate, cut short by the end, starts earlier instead of being shorter than
    # the policy minimum; it never reaches back before the current one (T + adjust >= minimum).
    not_before = min(not_before, not_after - minimum)
    return Window(nominal=nominal, not_before=not_before, not_after=not_after)


def first_window(auto: AutoRenewal, *, now: dt.datetime, end: dt.datetime, minimum: dt.timedelta) -> Window:
    """The first certificate (issued at finalize): nrd[0] is now, or the start-date if later.

    RFC 8739 §3.5: its notBefore "MUST NOT" precede the start-date. ``ca.issuing.issuance`` further keeps
    it within the backdating allowance of now.
    """
    nominal = now.replace(microsecond=0)
    if auto.start_date is not None and auto.start_date > nominal:
        nominal = auto.start_date
    window = _window(auto, nominal, end=end, minimum=minimum)
    if auto.start_date is not None and window.not_before < auto.start_date:
        window = dataclasses.replace(window, not_before=auto.start_date)
    return window


def next_window(
    auto: AutoRenewal, current_not_after: dt.datetime, *, now: dt.datetime, end: dt.datetime, minimum: dt.timedelta
) -> Window | None:
    """The certificate after the one that ends at ``current_not_after``; None when none remains.

    nrd[i+1] is the current certificate's notAfter. A slot that can no longer give a certificate
    of the minimum length from ``now`` on (the worker was down) is skipped for the next one.
    """
    nominal = current_not_after
    while nominal < end:
        window = _window(auto, nominal, end=end, minimum=minimum)
        if window.not_after - max(window.not_before, now) >= minimum:
            return window
        nominal += auto.lifetime
    return None


# --------------------------------------------------------------------------------------------
# What newOrder and the challenge check (RFC 8739 §3.1.1, §3.2; RFC 9447 §7)
# --------------------------------------------------------------------------------------------


def check_order_request(auto: AutoRenewal, *, now: dt.datetime, policy: Policy, issuer_not_after: dt.datetime) -> None:
    """newOrder: what the policy can never honour. Raises PolicyError naming the member."""
    lifetimes = policy.lifetimes
    max_duration = policy.acme.auto_renewal_max_duration
    if max_duration <= dt.timedelta(0):
        raise PolicyError(
            "this authority does not offer STAR auto-renewal (RFC 8739); its directory has no meta 'auto-renewal'",
            field="auto-renewal",
        )
    earliest_start = now - lifetimes.backdate
    if auto.start_date is not None and auto.start_date < earliest_start:
        raise PolicyError(
            f"auto-renewal start-date {_rfc3339(auto.start_date)} is in the past; omit it to start as soon as the "
            "authorization is complete",
            field=f"auto-renewal.{START_DATE}",
        )
    start = auto.start_date if auto.start_date is not None else now
    if auto.end_date <= start:
        raise PolicyError(
            f"auto-renewal end-date {_rfc3339(auto.end_date)} must be later than the start-date and than now",
            field=f"auto-renewal.{END_DATE}",
        )
    if auto.end_date - start > max_duration:
        raise PolicyError(
            f"auto-renewal runs for {format_duration(auto.end_date - start)} from start to end-date; this authority's "
            f"max-duration is {format_duration(max_duration)} (RFC 8739 §3.2)",
            field=f"auto-renewal.{END_DATE}",
        )
    if auto.end_date > issuer_not_after:
        raise PolicyError(
            f"auto-renewal end-date {_rfc3339(auto.end_date)} is after the issuing CA's own notAfter "
            f"{_rfc3339(issuer_not_after)}",
            field=f"auto-renewal.{END_DATE}",
        )
    if auto.lifetime < lifetimes.minimum:
        raise PolicyError(
            f"auto-renewal lifetime {format_duration(auto.lifetime)} is below this authority's min-lifetime of "
            f"{format_duration(lifetimes.minimum)} (RFC 8739 §3.2)",
            field=f"auto-renewal.{LIFETIME}",
        )
    if auto.end_date - start < lifetimes.minimum:
        raise PolicyError(
            f"auto-renewal from start to end-date is {format_duration(auto.end_date - start)}, shorter than one "
            f"certificate of the minimum lifetime {format_duration(lifetimes.minimum)}",
            field=f"auto-renewal.{END_DATE}",
        )
    longest = max(lifetimes.end_entity, lifetimes.delegate_ca)
    if auto.longest_validity > longest:
        raise PolicyError(_too_long(auto, longest, "the policy maximum"), field=f"auto-renewal.{LIFETIME}")


def check_within_authority(
    auto: AutoRenewal,
    *,
    token_expires: dt.datetime,
    token_ca: bool,
    delegation: Delegation,
    policy: Policy,
) -> None:
    """The challenge: the order fits the authority token, the delegation and the certificate kind.

    Raises TokenError (RFC 9447 §7: no certificate of the order may outlive the token, so its
    end-date may not either), DelegationError (the delegation's end and maximum lifetime) or
    PolicyError (the profile's maximum lifetime).
    """
    if auto.end_date > token_expires:
        raise TokenError(
            f"the order's auto-renewal end-date {_rfc3339(auto.end_date)} is after the authority token's 'exp' "
            f"{_rfc3339(token_expires)}; no certificate of a STAR order may outlive its token (RFC 9447 §7)",
            claim="exp",
        )
    if delegation.not_after is not None and auto.end_date > delegation.not_after:
        raise DelegationError(
            f"the order's auto-renewal end-date {_rfc3339(auto.end_date)} is after delegation {delegation.id} ends "
            f"({_rfc3339(delegation.not_after)})",
            field="delegation",
        )
    delegated = dt.timedelta(seconds=delegation.max_lifetime_seconds)
    if auto.longest_validity > delegated:
        raise DelegationError(
            _too_long(auto, delegated, f"the maximum lifetime of delegation {delegation.id}"), field="delegation"
        )
    profile = Profile.for_name(DELEGATE_CA if token_ca else END_ENTITY, policy)
    if auto.longest_validity > profile.max_lifetime:
        raise PolicyError(
            _too_long(auto, profile.max_lifetime, f"the policy maximum for {profile.name} certificates"),
            field=f"auto-renewal.{LIFETIME}",
        )


def _too_long(auto: AutoRenewal, longest: dt.timedelta, what: str) -> str:
    return (
        f"auto-renewal lifetime {format_duration(auto.lifetime)} plus the renewal overlap of "
        f"{format_duration(auto.adjust)} (RFC 8739 §3.5: each certificate is valid from half a lifetime, or the "
        f"lifetime-adjust if longer, before its nominal start) makes certificates valid for "
        f"{format_duration(auto.longest_validity)}, above {what} of {format_duration(longest)}"
    )


# --------------------------------------------------------------------------------------------
# Reading an order's state
# --------------------------------------------------------------------------------------------


def auto_renewal_of(order: Order) -> AutoRenewal | None:
    return AutoRenewal.from_json(order.auto_renewal) if order.auto_renewal else None


def order_end(order: Order) -> dt.datetime | None:
    """When the STAR order ends: its end-date, capped by its authority token's ``exp``."""
    auto = auto_renewal_of(order)
    if auto is None:
        return None
    token_expires = order.authorizations[0].token_expires if order.authorizations else None
    return auto.end(token_expires)


def current_certificate(session: Session, order_id: str) -> Certificate | None:
    """The order's newest issued certificate: what its star-certificate URL serves."""
    return session.scalars(
        select(Certificate)
        .where(Certificate.order_id == order_id, Certificate.stage == "issued")
        .order_by(Certificate.id.desc())
        .limit(1)
    ).first()


def schedule_after(order: Order, issued_not_after: dt.datetime, *, now: dt.datetime, policy: Policy) -> dt.datetime | None:
    """``next_renewal_at`` after a certificate ending at ``issued_not_after``: when the next one
    is published (its notBefore), or None when the order has reached its end."""
    auto = auto_renewal_of(order)
    end = order_end(order)
    if auto is None or end is None:
        return None
    window = next_window(auto, issued_not_after, now=now, end=end, minimum=policy.lifetimes.minimum)
    return window.not_before if window is not None else None


def star_orders_under(session: Session, delegation_id: str) -> list[Order]:
    """The valid STAR orders whose authorization was validated under ``delegation_id`` (the ones a
    revocation of that delegation must cancel)."""
    return list(
        session.scalars(
            select(Order)
            .join(Authorization, Authorization.order_id == Order.id)
            .where(Authorization.delegation_id == delegation_id, Order.status == "valid", Order.auto_renewal.is_not(None))
            .order_by(Order.created_at)
        )
    )


# --------------------------------------------------------------------------------------------
# Cancellation (RFC 8739 §3.1.2)
# --------------------------------------------------------------------------------------------


def cancel(
    session: Session,
    order: Order,
    *,
    actor: str,
    by: str,
    clock: "Clock",
    reason: str | None = None,
) -> Order:
    """Make a valid STAR order ``canceled``: no certificate is issued for it once this commits.

    ``by`` is :data:`CANCELED_BY_CLIENT`, ``_OPERATOR``, ``_ACCOUNT`` or ``_AUTHORITY``; anything
    but the client's own cancellation records ``reason`` as an ``autoRenewalCanceled`` problem in
    the order's ``error`` so the client learns why. The status change is one conditional UPDATE,
    the first statement of its transaction when the caller has just committed or rolled back
    (SQLite cannot upgrade a stale read snapshot to a write): it waits for a renewal in progress
    to commit (the worker holds the order's row) and matches only a valid STAR order, so two
    cancellations cannot both succeed. Raises AutoRenewalError (nothing written) when the order
    is not an auto-renewal order or not ``valid``. Appends an ``order.cancel`` audit event; the
    caller commits.
    """
    # The identity key needs no SELECT, even when the caller's rollback expired ``order``.
    (order_id,) = inspect(order).identity
    now = clock.now()
    values: dict[str, Any] = {
        "status": "canceled",
        # RFC 8739 §3.1.2: the server "MUST set an appropriate 'expires' date": the order's
        # auto-renewal ended now.
        "expires": now,
        "next_renewal_at": None,
        "renewal_claim": None,
    }
    if by != CANCELED_BY_CLIENT:
        values["error"] = {"type": AUTO_RENEWAL_CANCELED, "detail": reason or f"order {order_id} was canceled by the {by}"}
    result = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == "valid", Order.auto_renewal.is_not(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(order)
        if not order.auto_renewal:
            raise AutoRenewalError(f"order {order_id} is not an auto-renewal (STAR) order", field="order")
        raise AutoRenewalError(
            f"order {order_id} is {order.status}; only a valid auto-renewal order can be canceled (RFC 8739 §3.1.2)",
            field="order",
        )
    session.refresh(order)
    current = current_certificate(session, order.id)
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_CANCEL,
        subject_type="order",
        subject_id=order.id,
        details={
            "by": by,
            "reason": reason,
            "account_id": order.account_id,
            "certificates_issued": session.scalar(
                select(func.count()).select_from(Certificate).where(
                    Certificate.order_id == order.id, Certificate.stage == "issued"
                )
            ),
            # The last certificate stays valid until its notAfter (RFC 8739 §3.3: a
            # cancellation is fully effective when the published certificate expires).
            "current_serial": current.serial if current is not None else None,
            "current_not_after": current.not_after.isoformat() if current is not None else None,
        },
        clock=clock,
    )
    return order


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Claim:
    order_id: str
    token: str


class _ClaimLost(Exception):
    """The order was canceled, or another worker took it over, while this worker renewed it."""


def claim_due(session_factory: sessionmaker, *, clock: "Clock", limit: int, lease: dt.timedelta = CLAIM_LEASE) -> list[Claim]:
    """Step 1 (module docstring): claim up to ``limit`` due orders, oldest due first; commits."""
    now = clock.now()
    token = secrets.token_urlsafe(CLAIM_TOKEN_BYTES)
    due = (
        select(Order.id)
        .where(Order.status == "valid", Order.next_renewal_at <= now)
        .order_by(Order.next_renewal_at)
        .limit(limit)
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited for.
        # SQLite renders no FOR UPDATE; its write lock serializes this whole statement.
        .with_for_update(skip_locked=True)
    )
    with session_factory() as session:
        claimed = session.execute(
            update(Order)
            .where(Order.id.in_(due.scalar_subquery()))
            .values(renewal_claim=token, next_renewal_at=now + lease)
            .returning(Order.id)
            .execution_options(synchronize_session=False)
        ).scalars().all()
        session.commit()
    return [Claim(order_id, token) for order_id in sorted(claimed)]


def _fence(session: Session, claim: Claim) -> bool:
    """Step 2: re-take the order's row if it is still valid and still ours. Must be the first
    statement of its transaction (SQLite cannot upgrade a read snapshot that went stale)."""
    result = session.execute(
        update(Order)
        .where(Order.id == claim.order_id, Order.status == "valid", Order.renewal_claim == claim.token)
        .values(renewal_claim=claim.token)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


@dataclasses.dataclass(frozen=True)
class RenewalResult:
    order_id: str
    outcome: str  # "renewed" | "finished" | "canceled" | "retry" | "lost" | "not-due"
    serial: str | None = None
    detail: str | None = None


def cancel_unauthorized(session_factory: sessionmaker, *, clock: "Clock", limit: int = 100) -> list[str]:
    """Cancel the valid STAR orders whose delegation is no longer active (revoked, or past its
    end): the certificate they serve stays, but none follows it. Returns the canceled order ids.

    A delegation revocation that cancels its STAR orders in its own transaction makes this a
    no-op; run each tick, it bounds how long any other path to a dead delegation can leave an
    order looking alive to one tick, instead of until its next renewal.
    """
    now = clock.now()
    with session_factory() as session:
        stale = session.execute(
            select(Order.id, Delegation.id, Delegation.status, Delegation.not_after)
            .join(Authorization, Authorization.order_id == Order.id)
            .join(Delegation, Delegation.id == Authorization.delegation_id)
            .where(
                Order.status == "valid",
                Order.auto_renewal.is_not(None),
                Order.next_renewal_at.is_not(None),
                (Delegation.status != "active") | (Delegation.not_after <= now),
            )
            .order_by(Order.next_renewal_at)
            .limit(limit)
        ).all()
    canceled = []
    for order_id, delegation_id, status, not_after in stale:
        why = (f"delegation {delegation_id} is {status}" if status != "active"
               else f"delegation {delegation_id} ended at {not_after.isoformat()}")
        with session_factory() as session:
            order = session.get(Order, order_id)
            session.commit()  # end the read: cancel() begins with its UPDATE
            try:
                cancel(session, order, actor=RENEWAL_ACTOR, by=CANCELED_BY_AUTHORITY, clock=clock,
                       reason=f"auto-renewal stopped: {why}")
            except AutoRenewalError:  # canceled meanwhile (by the client, or another worker)
                continue
            session.commit()
        log.warning("STAR order %s canceled: %s", order_id, why)
        canceled.append(order_id)
    return canceled


def renew_due(session_factory: sessionmaker, home: "Home", *, clock: "Clock", limit: int = 100) -> int:
    """Renew every STAR order that is due now (up to ``limit``); returns how many certificates
    were issued. Safe to run from any number of processes at once (module docstring).

    First cancels the orders whose delegation died (:func:`cancel_unauthorized`).
    """
    cancel_unauthorized(session_factory, clock=clock, limit=limit)
    renewed = 0
    for claim in claim_due(session_factory, clock=clock, limit=limit):
        try:
            result = renew_claimed(session_factory, home, claim, clock=clock)
        except Exception:  # a bug or a lost database must not stop the other orders' renewals
            # The claim stands until its lease runs out; then the order is tried again.
            log.exception("renewal of STAR order %s failed; it is retried after the claim lease (%s)",
                          claim.order_id, format_duration(CLAIM_LEASE))
            continue
        renewed += result.outcome == "renewed"
    return renewed


def renew_claimed(session_factory: sessionmaker, home: "Home", claim: Claim, *, clock: "Clock") -> RenewalResult:
    """Issue the next certificate of one claimed order through ``ca.issuing.issuance.issue`` (with the
    policy's CT logs), then schedule the one after it."""
    policy = home.policy
    with session_factory() as session:
        if not _fence(session, claim):
            session.rollback()
            return RenewalResult(claim.order_id, "lost", detail="canceled or claimed by another worker")
        order = session.get(
            Order,
            claim.order_id,
            options=[selectinload(Order.authorizations), selectinload(Order.account)],
            populate_existing=True,
        )
        assert order is not None  # the fence matched its row
        now = clock.now()
        auto = AutoRenewal.from_json(order.auto_renewal)
        authz = order.authorizations[0]
        end = auto.end(authz.token_expires)
        current = current_certificate(session, order.id)
        account: Account = order.account

        if account.status != "valid":
            return _stop(session, order, f"account {account.id} is {account.status}", by=CANCELED_BY_ACCOUNT, clock=clock)
        if current is None or order.csr_der is None:  # pragma: no cover - finalize writes both
            return _stop(session, order, "the order has no certificate to renew", by=CANCELED_BY_AUTHORITY, clock=clock)
        window = next_window(auto, current.not_after, now=now, end=end, minimum=policy.lifetimes.minimum)
        if window is None:
            order.next_renewal_at = None
            order.renewal_claim = None
            session.commit()
            return RenewalResult(order.id, "finished")
        if window.not_before > now:
            # Claimed by a worker whose clock runs ahead of this one: not due here yet.
            order.next_renewal_at = window.not_before
            order.renewal_claim = None
            session.commit()
            return RenewalResult(order.id, "not-due")

        csr = x509.load_der_x509_csr(order.csr_der)
        request = issuance.IssuanceRequest(
            csr=csr,
            scope=TNScope.from_der(order.scope_der),
            kind=DELEGATE_CA if _csr_asks_for_ca(csr) else END_ENTITY,
            delegation_id=authz.delegation_id,
            constraints=None,  # the delegation's, as at finalize
            not_before=window.not_before,
            not_after=window.not_after,
            account_id=order.account_id,
            order_id=order.id,
            actor=RENEWAL_ACTOR,
        )
        precertificate_ids: list[int] = []

        def precertificate_recorded() -> None:
            # RFC 6962 §3.1 via ca.issuing.issuance: the precertificate is committed before any log sees
            # it; then the order is fenced again, so a cancellation that slipped in between ends
            # the renewal before the precertificate reaches a log.
            precertificate_ids.append(session.scalar(
                select(func.max(Certificate.id)).where(Certificate.order_id == order.id, Certificate.stage == "precertificate")
            ))
            session.commit()
            if not _fence(session, claim):
                raise _ClaimLost()

        try:
            issued = issuance.issue(
                session,
                request,
                issuer=home.issuing_ca(),
                policy=policy,
                clock=clock,
                transparency=home.transparency(),
                precertificate_recorded=precertificate_recorded,
            )
        except _ClaimLost:
            session.rollback()
            _abandon_precertificates(session, precertificate_ids, "the order was canceled before the precertificate was submitted")
            return RenewalResult(claim.order_id, "lost", detail="canceled during the renewal")
        except (DelegationError, CSRError, ScopeError, PolicyError, ClaimConstraintsError) as error:
            # Refused for good: the delegation was revoked or ended, the CSR or the scope is no
            # longer acceptable. Nothing was written (these checks come before the precertificate).
            session.rollback()
            return _stop(session, order, f"renewal refused: {error.detail}", by=CANCELED_BY_AUTHORITY, clock=clock)
        except TNCAError as error:
            # Transient (too few SCTs, a signer error): keep what issue() recorded (a failed
            # precertificate stays for auditors) and try again later.
            session.commit()
            log.warning("renewal of order %s failed, retrying in %s: %s", order.id, format_duration(RETRY_DELAY), error.detail)
            if _fence(session, claim):
                order.next_renewal_at = clock.now() + RETRY_DELAY
                order.renewal_claim = None
            session.commit()
            return RenewalResult(order.id, "retry", detail=error.detail)

        order.next_renewal_at = schedule_after(order, issued.certificate.not_valid_after_utc, now=now, policy=policy)
        order.renewal_claim = None
        session.commit()
        log.info(
            "renewed STAR order %s: certificate %s valid %s – %s, %d SCT(s); next %s",
            order.id, issued.serial, issued.certificate.not_valid_before_utc.isoformat(),
            issued.certificate.not_valid_after_utc.isoformat(), len(issued.scts),
            order.next_renewal_at.isoformat() if order.next_renewal_at else "none (end reached)",
        )
        return RenewalResult(order.id, "renewed", serial=issued.serial)


def _stop(session: Session, order: Order, reason: str, *, by: str, clock: "Clock") -> RenewalResult:
    """End the renewals of an order the authority can no longer renew (module docstring)."""
    (order_id,) = inspect(order).identity
    session.rollback()
    try:
        cancel(session, order, actor=RENEWAL_ACTOR, by=by, clock=clock, reason=reason)
    except AutoRenewalError:  # canceled meanwhile by someone else: the outcome is the same
        session.rollback()
        return RenewalResult(order_id, "lost", detail="canceled meanwhile")
    session.commit()
    log.warning("STAR order %s canceled: %s", order_id, reason)
    return RenewalResult(order_id, "canceled", detail=reason)


def _abandon_precertificates(session: Session, ids: list[int], reason: str) -> None:
    """A precertificate committed for a renewal that then stopped never went to a log."""
    ids = [i for i in ids if i is not None]
    if ids:
        session.execute(
            update(Certificate)
            .where(Certificate.id.in_(ids), Certificate.stage == "precertificate")
            .values(stage="failed", error=reason)
            .execution_options(synchronize_session=False)
        )
        session.commit()


def _csr_asks_for_ca(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return csr.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# --------------------------------------------------------------------------------------------
# Times as stored in the auto-renewal object (RFC 3339, whole seconds, "Z")
# --------------------------------------------------------------------------------------------


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stored_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
