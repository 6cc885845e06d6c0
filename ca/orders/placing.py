"""newOrder (RFC 8555 §7.4) after its JSON is parsed: the checks that need the authority, then
the order with its one authorization and one ``tkauth-01`` challenge (RFC 9448 §3).

The checks, in order: the scope has at most :data:`MAX_ORDER_SCOPE_ENTRIES` entries
(ScopeError, field "entries"); the scope is inside the issuing CA's TNAuthList (ScopeError, field
"issuer"); the delegations covering it are not all withdrawn (DelegationError); an account
bound by external account binding orders numbers its delegate's delegations cover
(DelegationError, field "account"); the requested
validity is one the policy can honour (:func:`ca.orders.validity.check_order_request`,
PolicyError); the certificate named by ``replaces`` may be replaced (RFC 9773 §5:
PolicyError/NotOwnedError field "replaces", AlreadyReplacedError).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.errors import AlreadyReplacedError, DelegationError, NotFoundError, NotOwnedError, PolicyError, ScopeError
from ca.lifecycle import renewal_info
from ca.lifecycle.star_schedule import AutoRenewal
from ca.numbers.tnauthlist import TNScope
from ca.orders.authority import Authority
from ca.orders.domains import DNS_IDENTIFIER, DOMAIN_CHALLENGES
from ca.orders.status import expire_order
from ca.records.statuses import AuthorizationStatus, ChallengeStatus, OrderStatus
from ca.orders.validity import Requested, check_order_request
from ca.records import delegations, external_accounts
from ca.records.models_acme import Account, Authorization, Challenge, ORDER_STATUSES_CLAIMING_REPLACEMENT, Order
from ca.records.models_authority import Certificate

# RFC 9448 §3: the identifier type, and RFC 9447 §3 the challenge type, of every order here.
TNAUTHLIST_IDENTIFIER = "TNAuthList"
TKAUTH_CHALLENGE = "tkauth-01"
# RFC 8555 §8: challenge tokens carry at least 128 bits of entropy.
CHALLENGE_TOKEN_BYTES = 16
# The most TNAuthList entries (after normalization) one order may carry: the scope checks and the
# delegation lookup cost time in the number of entries, and a real order names far fewer.
MAX_ORDER_SCOPE_ENTRIES = 1000


@dataclasses.dataclass(frozen=True)
class Replaces:
    """newOrder's ``replaces`` (RFC 9773 §5), decoded: the certificate's RFC 9773 §4.1 parts."""

    value: str  # as the client sent it; the order shows it back
    key_identifier: bytes
    serial: int


@dataclasses.dataclass(frozen=True)
class OrderRequest:
    """A parsed newOrder: its one TNAuthList identifier and what it asks for."""

    identifier: dict[str, str]
    scope: TNScope
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    auto_renewal: AutoRenewal | None = None  # RFC 8739 §3.1.1: a STAR order
    replaces: Replaces | None = None
    # The one "dns" identifier beside the TNAuthList one (ca/orders/domains.py), checked already.
    domain: str | None = None


def check_scope_size(scope: TNScope) -> None:
    """At most MAX_ORDER_SCOPE_ENTRIES entries (ScopeError, field "entries"): checked before
    anything else, the database included."""
    entries = len(scope.normalized().entries)
    if entries > MAX_ORDER_SCOPE_ENTRIES:
        raise ScopeError(
            f"the TNAuthList has {entries} entries after normalization; this authority accepts at most "
            f"{MAX_ORDER_SCOPE_ENTRIES} per order (adjacent numbers count as one range): split it into several orders",
            field="entries",
        )


def order_delegate(session: Session, account: Account, scope: TNScope, *, clock) -> str | None:
    """Whom a newOrder counts against for the policy's ``new_orders_per_delegate`` rate limit:
    the delegate the account is bound to by external account binding, else the delegate of the
    active delegation covering ``scope``; None when there is none (the order is refused later)."""
    bound = external_accounts.bound_delegate(session, account)
    if bound is not None:
        return bound
    try:
        return delegations.find_covering(session, scope, clock=clock).delegate
    except DelegationError:
        return None


def place_order(session: Session, authority: Authority, account: Account, request: OrderRequest) -> Order:
    """Check ``request`` (module docstring) and add the new order to ``session``, flushed; the
    caller commits. Raises a ``ca.errors`` error, with nothing added, when a check fails."""
    check_scope_size(request.scope)
    now = authority.clock.now()
    issuer = authority.issuing_ca()
    if issuer.scope is not None and not issuer.scope.contains(request.scope):
        raise ScopeError(
            f"{request.scope.describe()} is outside this authority's TNAuthList: "
            f"{issuer.scope.difference_of(request.scope).describe()} is not covered",
            field="issuer",
        )
    requested = (Requested.star(request.auto_renewal) if request.auto_renewal is not None
                 else Requested.explicit(request.not_before, request.not_after, now=now, policy=authority.policy))
    issuer_not_after = issuer.certificate.not_valid_after_utc
    if request.auto_renewal is not None:
        # A STAR order's validity is decided by its auto-renewal object alone (RFC 8739 §3.1.1).
        check_order_request(requested, now=now, policy=authority.policy, issuer_not_after=issuer_not_after)
    # A scope whose delegations were all revoked or have ended is refused here, naming them; one
    # an active delegation covers, or none yet, proceeds (the challenge decides).
    delegations.check_not_withdrawn(session, request.scope, clock=authority.clock)
    # An account bound by external account binding orders its delegate's numbers only.
    external_accounts.check_may_order(session, account, request.scope, clock=authority.clock)
    if request.auto_renewal is None:
        check_order_request(requested, now=now, policy=authority.policy, issuer_not_after=issuer_not_after)
    replaced = _replaced_certificate(session, request, account, now=now)
    if request.domain is not None and request.auto_renewal is not None:
        # tn-domain-binding: the domain and the TNAuthList authority are validated in every
        # issuance; a STAR renewal would reuse both (spec digest §1.14 point 4).
        raise PolicyError("a STAR order (auto-renewal) cannot carry a dns identifier: the domain must be validated "
                          "for every issuance; place an ordinary order instead", field="identifiers")

    policy = authority.policy.acme
    order = Order(
        account_id=account.id,
        status=OrderStatus.PENDING,
        expires=now + policy.order_lifetime,
        identifiers=[request.identifier] + ([{"type": DNS_IDENTIFIER, "value": request.domain}]
                                            if request.domain is not None else []),
        scope_der=request.scope.to_der(),
        not_before=request.not_before,
        not_after=request.not_after,
        auto_renewal=request.auto_renewal.to_json() if request.auto_renewal is not None else None,
        replaces_serial=replaced.serial if replaced is not None else None,
        replaces=request.replaces.value if replaced is not None else None,
        created_at=now,
    )
    authz = Authorization(
        order=order,
        account_id=account.id,
        identifier_type=TNAUTHLIST_IDENTIFIER,
        identifier_value=request.identifier["value"],
        scope_der=order.scope_der,
        status=AuthorizationStatus.PENDING,
        expires=min(now + policy.authorization_lifetime, order.expires),
        created_at=now,
    )
    authz.challenges = [
        Challenge(type=TKAUTH_CHALLENGE, status=ChallengeStatus.PENDING,
                  token=secrets.token_urlsafe(CHALLENGE_TOKEN_BYTES))
    ]
    if request.domain is not None:
        # RFC 8555 §7.1.4: one authorization per identifier; http-01 or dns-01 proves it (§8.3, §8.4).
        domain_authz = Authorization(
            order=order,
            account_id=account.id,
            identifier_type=DNS_IDENTIFIER,
            identifier_value=request.domain,
            scope_der=b"",
            status=AuthorizationStatus.PENDING,
            expires=authz.expires,
            created_at=now + dt.timedelta(microseconds=1),  # listed after the TNAuthList authorization
        )
        domain_authz.challenges = [
            Challenge(type=kind, status=ChallengeStatus.PENDING, token=secrets.token_urlsafe(CHALLENGE_TOKEN_BYTES))
            for kind in DOMAIN_CHALLENGES
        ]
    session.add(order)
    try:
        session.flush()
    except IntegrityError:
        # Only the replacement index can refuse a new order: another newOrder replacing the
        # same certificate committed between our check and our insert.
        session.rollback()
        if replaced is None:
            raise
        _check_not_replaced(session, replaced, now)
        raise
    return order


def _replaced_certificate(session: Session, request: OrderRequest, account: Account, *,
                          now: dt.datetime) -> Certificate | None:
    """The certificate named by ``replaces`` (RFC 9773 §5), after §5's checks: one this authority
    issued to the same account, sharing a number with the order, not already replaced by
    another order that can still issue. None without ``replaces``."""
    if request.replaces is None:
        return None
    try:
        replaced = renewal_info.issued_certificate(session, request.replaces.key_identifier, request.replaces.serial)
    except NotFoundError as exc:
        raise PolicyError(f'"replaces" names no certificate: {exc.detail} (RFC 9773 §5)', field="replaces") from exc
    if replaced.account_id != account.id:
        raise NotOwnedError(
            f'"replaces" names certificate {replaced.serial}, which was not issued to this account (RFC 9773 §5)',
            field="replaces",
        )
    if not TNScope.from_der(replaced.scope_der).overlaps(request.scope):
        raise PolicyError(
            f'"replaces" names certificate {replaced.serial}, which shares no telephone number with the order\'s '
            f"{request.scope.describe()} (RFC 9773 §5)",
            field="replaces",
        )
    _check_not_replaced(session, replaced, now)
    return replaced


def _check_not_replaced(session: Session, replaced: Certificate, now: dt.datetime) -> None:
    """AlreadyReplacedError if an order that can still issue replaces ``replaced`` (RFC 9773 §5).

    An expired order still stored as pending or ready is marked invalid first (its change is
    committed with the new order), so it no longer holds the replacement.
    """
    claiming = session.scalars(
        select(Order).where(
            Order.replaces_serial == replaced.serial, Order.status.in_(ORDER_STATUSES_CLAIMING_REPLACEMENT)
        )
    ).all()
    for other in claiming:
        expire_order(other, now)
        if other.status in ORDER_STATUSES_CLAIMING_REPLACEMENT:
            raise AlreadyReplacedError(
                f"certificate {replaced.serial} is already replaced by order {other.id} ({other.status}); "
                "a certificate is replaced once (RFC 9773 §5)",
                serial=replaced.serial, order_id=other.id, order_status=str(other.status),
            )
