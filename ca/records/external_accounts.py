"""External account binding keys (RFC 8555 §7.3.4): made by an operator for one delegate, handed
to that delegate out of band, used once by its ACME client to create an account bound to it.

An account created with a key acts for the key's delegate only: :func:`check_may_act_for`
refuses an authority token minted (``ca.tokens.minting``) or answered (``ca.orders.answer``)
under another delegate's delegation, and refuses everything once the key is revoked.

The MAC key is a shared secret (RFC 8555 §7.3.4 has the server verify an HMAC with it), so it is
stored as is and shown once, when it is made: :func:`create` returns it, nothing else does, and
the audit event names the key id, never the key. Every change appends an audit event in the
caller's transaction; the caller commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.encoding import b64url_encode, isoformat_or_none
from ca.errors import DelegationError, NotFoundError, PolicyError, RevocationError
from ca.numbers.tnauthlist import TNScope
from ca.records import audit, delegations
from ca.records.models_acme import Account, ExternalAccountKey
from ca.records.models_authority import Delegation
from ca.records.models_base import random_id

# RFC 8555 §7.3.4 uses HS256 in its example; a 256-bit key is as strong as its MAC.
HMAC_KEY_BYTES = 32
MAX_LISTED_KEYS = 1000

UNUSED, BOUND, EXPIRED, REVOKED = "unused", "bound", "expired", "revoked"


@dataclasses.dataclass(frozen=True)
class CreatedKey:
    """A key just made: ``hmac_key`` (base64url) is the only time the secret leaves the authority."""

    key_id: str
    hmac_key: str
    delegate: str
    delegation_id: str | None
    expires_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"kid": self.key_id, "hmac_key": self.hmac_key, "delegate": self.delegate,
                "delegation_id": self.delegation_id, "expires": isoformat_or_none(self.expires_at)}


def create(
    session: Session,
    *,
    delegate: str | None = None,
    delegation_id: str | None = None,
    expires_at: dt.datetime | None = None,
    clock: Clock,
    actor: str,
) -> CreatedKey:
    """A new single-use key for ``delegate`` (or for the delegate of ``delegation_id``).

    Refuses, writing nothing: both or neither of ``delegate`` and ``delegation_id``; a delegate
    with no delegation (a typo would otherwise mint a key nobody can use) or an unknown delegation
    (DelegationError / NotFoundError); an expiry not in the future (PolicyError, field "expires").
    """
    if (delegate is None) == (delegation_id is None):
        raise PolicyError("name either a delegate or a delegation, not both or neither", field="delegate")
    if delegation_id is not None:
        delegation = session.get(Delegation, delegation_id)
        if delegation is None:
            raise NotFoundError(f"no delegation with id {delegation_id!r}", field="delegation")
        delegate = delegation.delegate
    elif not session.scalar(select(exists().where(Delegation.delegate == delegate))):
        raise DelegationError(f"no delegation names the delegate {delegate!r}; create one first", field="delegate")
    now = clock.now()
    if expires_at is not None and expires_at <= now:
        raise PolicyError(f"the expiry {expires_at.isoformat()} is not in the future", field="expires")
    secret = secrets.token_bytes(HMAC_KEY_BYTES)
    key = ExternalAccountKey(
        key_id=random_id(),
        hmac_key=secret,
        delegate=delegate,
        delegation_id=delegation_id,
        created_at=now,
        created_by=actor,
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    audit.append(
        session, actor=actor, action="eab.create", subject_type="external_account_key", subject_id=key.key_id,
        details={"delegate": delegate, "delegation_id": delegation_id, "expires": isoformat_or_none(expires_at)},
        clock=clock,
    )
    assert delegate is not None
    return CreatedKey(key_id=key.key_id, hmac_key=b64url_encode(secret), delegate=delegate,
                      delegation_id=delegation_id, expires_at=expires_at)


def status_of(key: ExternalAccountKey, now: dt.datetime) -> str:
    """``revoked``, ``bound`` (used by an account), ``expired`` (unused past its expiry) or ``unused``."""
    if key.revoked_at is not None:
        return REVOKED
    if key.bound_at is not None:
        return BOUND
    if key.expires_at is not None and key.expires_at <= now:
        return EXPIRED
    return UNUSED


def delegate_of(session: Session, key: ExternalAccountKey) -> str | None:
    """The delegate a key acts for (rows from before delegates were recorded: their delegation's)."""
    if key.delegate is not None:
        return key.delegate
    if key.delegation_id is None:
        return None
    delegation = session.get(Delegation, key.delegation_id)
    return delegation.delegate if delegation is not None else None


def list_keys(session: Session) -> list[ExternalAccountKey]:
    """The newest keys first (at most MAX_LISTED_KEYS). The MAC keys stay on the rows: callers
    show ids, delegates and states only."""
    query = select(ExternalAccountKey).order_by(ExternalAccountKey.created_at.desc(), ExternalAccountKey.key_id)
    return list(session.scalars(query.limit(MAX_LISTED_KEYS)))


def account_of(session: Session, key: ExternalAccountKey) -> Account | None:
    return session.scalars(select(Account).where(Account.eab_key_id == key.key_id)).first()


def describe(session: Session, key: ExternalAccountKey, now: dt.datetime) -> dict[str, Any]:
    """What ``tnca eab list`` and the operator page show of a key (never the MAC key)."""
    account = account_of(session, key) if key.bound_at is not None else None
    return {
        "kid": key.key_id,
        "delegate": delegate_of(session, key),
        "delegation_id": key.delegation_id,
        "status": status_of(key, now),
        "created": isoformat_or_none(key.created_at),
        "created_by": key.created_by,
        "expires": isoformat_or_none(key.expires_at),
        "bound": isoformat_or_none(key.bound_at),
        "account_id": account.id if account is not None else None,
        "revoked": isoformat_or_none(key.revoked_at),
    }


def revoke(session: Session, key_id: str, *, clock: Clock, actor: str) -> ExternalAccountKey:
    """Revoke a key: unused, it can no longer create an account; bound, its account can no
    longer obtain tokens or answer challenges (its certificates stay as they are; revoke those
    with ``tnca revoke``). Refuses an unknown key (NotFoundError) and a revoked one (RevocationError)."""
    key = session.get(ExternalAccountKey, key_id) if isinstance(key_id, str) else None
    if key is None:
        raise NotFoundError(f"no external account key with id {str(key_id)[:64]!r}", field="kid")
    if key.revoked_at is not None:
        raise RevocationError(f"external account key {key.key_id} was revoked at {key.revoked_at.isoformat()}", field="kid")
    now = clock.now()
    status_before = status_of(key, now)
    key.revoked_at = now
    account = account_of(session, key)
    audit.append(
        session, actor=actor, action="eab.revoke", subject_type="external_account_key", subject_id=key.key_id,
        details={"delegate": delegate_of(session, key), "status_before": status_before,
                 "account_id": account.id if account is not None else None},
        clock=clock,
    )
    return key


def check_usable(key: ExternalAccountKey, now: dt.datetime) -> None:
    """RFC 8555 §7.3.4 on newAccount: the key must be unused, unexpired and not revoked.
    Raises DelegationError (field "externalAccountBinding") naming what is wrong."""
    status = status_of(key, now)
    if status == BOUND:
        raise DelegationError(f"external account key {key.key_id!r} has already been used", field="externalAccountBinding")
    if status == REVOKED:
        raise DelegationError(f"external account key {key.key_id!r} was revoked", field="externalAccountBinding")
    if status == EXPIRED:
        assert key.expires_at is not None
        raise DelegationError(f"external account key {key.key_id!r} expired at {key.expires_at.isoformat()}",
                              field="externalAccountBinding")


def _bound_delegate_unless_revoked(session: Session, account: Account | None) -> str | None:
    """The delegate an account is bound to by its external account key (None when unbound);
    DelegationError (field "account") once that key is revoked: the account acts for nobody."""
    if account is None or account.eab_key_id is None:
        return None
    key = session.get(ExternalAccountKey, account.eab_key_id)
    if key is None:
        return None
    if key.revoked_at is not None:
        raise DelegationError(
            f"account {account.id} was bound by external account key {key.key_id}, revoked at {key.revoked_at.isoformat()}",
            field="account",
        )
    return delegate_of(session, key)


def check_may_act_for(session: Session, account: Account | None, delegation: Delegation) -> None:
    """An account created with an external account binding acts for that key's delegate only,
    and for nobody once the key is revoked. Accounts without a binding are not limited here.
    Raises DelegationError (field "account")."""
    bound = _bound_delegate_unless_revoked(session, account)
    if bound is not None and bound != delegation.delegate:
        raise DelegationError(
            f"account {account.id} is bound (external account key {account.eab_key_id}) to delegate {bound!r}; "
            f"the scope is delegated to {delegation.delegate!r}",
            field="account",
        )


def check_may_order(session: Session, account: Account, scope: TNScope, *, clock: Clock) -> None:
    """newOrder by an account bound by external account binding: an active delegation of its
    delegate must cover ``scope``, and the key must not be revoked. Raises DelegationError
    (field "account"); accounts without a binding are not limited here."""
    bound = _bound_delegate_unless_revoked(session, account)
    if bound is None:
        return
    try:
        delegations.find_covering(session, scope, clock=clock, delegate=bound)
    except DelegationError as error:
        raise DelegationError(
            f"account {account.id} is bound (external account key {account.eab_key_id}) to delegate {bound!r}: {error.detail}",
            field="account",
        ) from error


def bound_delegate(session: Session, account: Account) -> str | None:
    """The delegate an account acts for through its external account binding; None when unbound."""
    if account.eab_key_id is None:
        return None
    key = session.get(ExternalAccountKey, account.eab_key_id)
    return delegate_of(session, key) if key is not None else None


def account_by_thumbprint(session: Session, thumbprint_b64url: str) -> Account | None:
    return session.scalars(select(Account).where(Account.jwk_thumbprint == thumbprint_b64url)).one_or_none()
