"""The STI-PA-compatible token API: delegates obtain authority tokens as SHAKEN tooling expects.

Deployed SHAKEN clients (docs/shaken.md) fetch their authority token (an "SPC token", RFC 9448
§5) from a policy administrator's API: log in with a user id and password, then ask for a token
for an ``atc`` (RFC 9448 §5.4) they name. This module is that API's authority, over the real
records: a credential belongs to one delegation, so the logged-in principal is that delegation's
delegate, and every token is minted by :func:`ca.tokens.minting.mint` under that delegation
(its scope, its ``ca`` allowance, its active state), recorded, single use and audited like any
token an operator mints. It is also the RFC 9447 §5 token-acquisition path for any client.

- :func:`create_credentials` (``tnca stipa credentials``): a user id and a generated password,
  shown once; only its argon2id hash is stored (``ca.records.users.hash_password``).
- :func:`revoke_credentials`: the credential and its access tokens stop working.
- :func:`login`: throttled exactly like people's logins (``ca.records.users.begin_attempt``, the
  ``login_attempts`` table, under the name ``stipa:<userId>``); every attempt is audited. Returns
  an opaque access token (256 random bits, only SHA-256 stored) valid for :data:`ACCESS_TOKEN_LIFETIME`.
- :func:`request_token`: checks the access token, the account id in the URL and the ``atc`` the
  client sent, and mints a token that echoes that ``atc`` (``tkvalue`` as sent, the fingerprint in
  upper-case hex as STI-PA clients send it). A refusal appends a
  ``stipa.token_refused`` event and mints nothing; the caller commits in both cases.

Front end: ``acme_server/stipa.py`` (a thin blueprint under ``/stipa``). Nothing here knows HTTP.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import AuthenticationError, DelegationError, PolicyError, ScopeError, TNCAError, TokenError
from ca.numbers.tn_entries import SPC
from ca.numbers.tnauthlist import TNScope
from ca.policy import STI_PA_LOGINS, RateLimits
from ca.records import audit, delegations, rate_limits, users
from ca.records.models_base import random_id
from ca.records.models_people import StipaAccessToken, StipaCredential
from ca.records.statuses import DelegationStatus
from ca.tokens import minting
from ca.tokens.fingerprints import parse_fingerprint
from ca.tokens.verification import TKTYPE_TNAUTHLIST

# How long an access token from login is good for: one issuance run needs seconds.
ACCESS_TOKEN_LIFETIME = dt.timedelta(hours=1)
# A token this API mints lives as long as the policy allows ([tokens] max_lifetime, capped by the
# delegation's end): no certificate outlives its token (RFC 9447 §7), and the clients cannot ask
# for a lifetime. It must outlive the clients' order polling (180 s by default); being single
# use and bound to one account key keeps a long life harmless.
MIN_TOKEN_LIFETIME = dt.timedelta(seconds=180)
# The name credentials use in login_attempts, apart from people's names (which have no ":").
_THROTTLE_PREFIX = "stipa:"
_ATC_MEMBERS = frozenset({"tktype", "tkvalue", "ca", "fingerprint"})


class StipaRefusal(TNCAError):
    """A token request the API refuses; ``status`` is the HTTP status the front end answers with."""

    def __init__(self, detail: str, *, status: int, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.status = status


@dataclasses.dataclass(frozen=True)
class NewCredentials:
    """What ``tnca stipa credentials`` prints: the password appears here and nowhere else."""

    user_id: str
    password: str
    sp_id: str
    delegation_id: str


@dataclasses.dataclass(frozen=True)
class Grant:
    """A token the API minted, with the ``atc`` it echoes."""

    token: str
    jti: str
    expires: dt.datetime


def actor_of(user_id: str) -> str:
    """How audit events name a credential acting through the API."""
    return f"stipa:{user_id}"


def sp_id_of(scope: TNScope, default: str) -> str:
    """The account id of a delegation in the API's URLs: its SPC when it has exactly one (what
    SHAKEN clients use by default), else ``default``."""
    spcs = [entry.code for entry in scope.entries if isinstance(entry, SPC)]
    return spcs[0] if len(spcs) == 1 else default


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def create_credentials(session: Session, *, delegation_id: str, actor: str, clock: Clock) -> NewCredentials:
    """A new login for the delegate of ``delegation_id`` (which must be active now)."""
    delegation = delegations.get(session, delegation_id)
    if delegation.status != DelegationStatus.ACTIVE:
        raise DelegationError(f"delegation {delegation.id} is {delegation.status}", field="delegation")
    user_id = f"sp-{random_id()[:16]}"
    password = users.generate_password()
    sp_id = sp_id_of(TNScope.from_der(delegation.scope_der), user_id)
    session.add(StipaCredential(user_id=user_id, delegation_id=delegation.id, sp_id=sp_id,
                                password_hash=users.hash_password(password), created_by=actor, created_at=clock.now()))
    session.flush()
    audit.append(session, actor=actor, action="stipa.credentials_create", subject_type="stipa_credential",
                 subject_id=user_id, details={"delegation_id": delegation.id, "sp_id": sp_id}, clock=clock)
    return NewCredentials(user_id=user_id, password=password, sp_id=sp_id, delegation_id=delegation.id)


def revoke_credentials(session: Session, user_id: str, *, actor: str, clock: Clock) -> StipaCredential:
    """The credential can no longer log in; its access tokens are deleted."""
    credential = session.get(StipaCredential, user_id) if isinstance(user_id, str) else None
    if credential is None:
        raise AuthenticationError(f"no STI-PA credential {str(user_id)[:64]!r}", field="user_id")
    if credential.revoked_at is not None:
        raise PolicyError(f"STI-PA credential {user_id} was revoked at {credential.revoked_at.isoformat()}",
                          field="user_id")
    credential.revoked_at = clock.now()
    ended = session.execute(delete(StipaAccessToken).where(StipaAccessToken.user_id == user_id)).rowcount or 0
    audit.append(session, actor=actor, action="stipa.credentials_revoke", subject_type="stipa_credential",
                 subject_id=user_id, details={"delegation_id": credential.delegation_id, "access_tokens_ended": ended},
                 clock=clock)
    return credential


def list_credentials(session: Session) -> list[StipaCredential]:
    return list(session.scalars(select(StipaCredential).order_by(StipaCredential.created_at, StipaCredential.user_id)))


# --------------------------------------------------------------------------------------------
# Login
# --------------------------------------------------------------------------------------------


def login(session: Session, *, user_id: Any, password: Any, remote_addr: str, clock: Clock,
          limits: RateLimits) -> str | AuthenticationError:
    """Check a login; the access token on success, the (fixed-wording) error on failure.

    The attempt is recorded and audited either way, so the caller commits in both cases and then
    refuses with the returned error. Raises LoginThrottledError (nothing checked, nothing kept)
    when the user id or the address has too many recent failures, and RateLimitedError (the
    refusal audited once per window, nothing else kept) when the policy's ``sti_pa_logins``
    limit is reached for the user id or the address, successful logins included: that limit
    holds across every process and host (``ca/records/rate_limits.py``).
    """
    name = user_id.strip()[:64] if isinstance(user_id, str) else ""
    for key in ("user:" + name, "addr:" + rate_limits.address_key(remote_addr)):
        rate_limits.check(session, limits, STI_PA_LOGINS, key, clock=clock)
    attempt = users.begin_attempt(session, name=_THROTTLE_PREFIX + name, remote_addr=remote_addr, clock=clock)
    credential = session.get(StipaCredential, name) if name else None
    matches = users.verify_password(credential.password_hash if credential is not None else None, password)
    if credential is None:
        reason = "unknown user id"
    elif not matches:
        reason = "wrong password"
    elif credential.revoked_at is not None:
        reason = "credential revoked"
    else:
        reason = None
    now = clock.now()
    if reason is not None:
        audit.append(session, actor="anonymous", action="stipa.login_failed", subject_type="stipa_credential",
                     subject_id=name or "-", details={"remote_addr": attempt.remote_addr, "reason": reason}, clock=clock)
        session.flush()
        return AuthenticationError(users.LOGIN_FAILED_DETAIL.replace("name", "user id"), field="login")
    assert credential is not None
    attempt.succeeded = True
    credential.last_login_at = now
    access_token = secrets.token_urlsafe(32)
    session.add(StipaAccessToken(token_sha256=users.sha256_hex(access_token), user_id=credential.user_id,
                                 created_at=now, expires_at=now + ACCESS_TOKEN_LIFETIME))
    session.flush()
    audit.append(session, actor=actor_of(credential.user_id), action="stipa.login", subject_type="stipa_credential",
                 subject_id=credential.user_id, details={"remote_addr": attempt.remote_addr}, clock=clock)
    return access_token


def principal(session: Session, access_token: Any, clock: Clock) -> StipaCredential:
    """The credential an ``Authorization`` header's access token stands for. Raises StipaRefusal (401)."""
    if not isinstance(access_token, str) or not access_token.strip():
        raise StipaRefusal("an Authorization header with the accessToken from login is required", status=401)
    row = session.get(StipaAccessToken, users.sha256_hex(access_token.strip()))
    if row is None or row.expires_at <= clock.now():
        raise StipaRefusal("the access token is unknown or expired; log in again", status=401)
    credential = session.get(StipaCredential, row.user_id)
    if credential is None or credential.revoked_at is not None:
        raise StipaRefusal("the credential of this access token was revoked", status=401)
    return credential


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


def request_token(
    session: Session,
    *,
    access_token: Any,
    sp_id: str,
    body: Any,
    authority: minting.TokenAuthority,
    clock: Clock,
    max_ttl: dt.timedelta,
) -> Grant:
    """Mint the token the body's ``atc`` asks for, under the credential's delegation.

    Refuses with :class:`StipaRefusal`: an unknown, expired or revoked access token (401); an
    account id that is not the credential's (403); an ``atc`` that is not the four RFC 9448 §5.4
    members with their types, or a fingerprint or ``tkvalue`` that does not parse (400); a
    ``tkvalue`` outside the delegation, ``ca: true`` the delegation does not allow, or a
    delegation that is no longer active (403). Every refusal of an authenticated request appends
    ``stipa.token_refused`` and mints nothing; the caller commits either way.
    """
    credential = principal(session, access_token, clock)
    actor = actor_of(credential.user_id)
    atc = body.get("atc") if isinstance(body, Mapping) else None
    try:
        if sp_id != credential.sp_id:
            raise StipaRefusal(f"account {sp_id[:64]!r} is not this credential's (it is {credential.sp_id!r})", status=403)
        tkvalue, ca, fingerprint = _check_atc(atc)
        delegation = delegations.get(session, credential.delegation_id)
        if delegation.status != DelegationStatus.ACTIVE:
            raise StipaRefusal(f"delegation {delegation.id} is {delegation.status}; no tokens are issued under it",
                               status=403)
        now = clock.now()
        ttl = max_ttl
        if delegation.not_after is not None:
            ttl = min(ttl, delegation.not_after.replace(microsecond=0) - now - dt.timedelta(seconds=1))
        if ttl < MIN_TOKEN_LIFETIME:
            raise StipaRefusal(f"delegation {delegation.id} ends too soon for a token that outlives an issuance",
                               status=403)
        with session.begin_nested():
            minted = minting.mint(session, delegation=delegation, fingerprint=fingerprint,
                                  scope=TNScope.from_identifier_value(tkvalue), ca=ca, ttl=ttl, authority=authority,
                                  clock=clock, actor=actor, max_ttl=max_ttl, tkvalue=tkvalue)
    except (ScopeError, PolicyError, DelegationError, TokenError, StipaRefusal) as error:
        refusal = error if isinstance(error, StipaRefusal) else StipaRefusal(error.detail, status=_status(error),
                                                                             field=error.field)
        audit.append(session, actor=actor, action="stipa.token_refused", subject_type="stipa_credential",
                     subject_id=credential.user_id,
                     details={"delegation_id": credential.delegation_id, "sp_id": sp_id[:64],
                              "atc": _loggable(atc), "reason": refusal.detail},
                     clock=clock)
        session.flush()
        raise refusal from None
    return Grant(token=minted.token, jti=minted.jti, expires=minted.expires)


def _check_atc(atc: Any) -> tuple[str, bool, str]:
    if not isinstance(atc, Mapping):
        raise StipaRefusal("the body must be {\"atc\": {\"tktype\", \"tkvalue\", \"ca\", \"fingerprint\"}}", status=400)
    if set(atc) != _ATC_MEMBERS:
        raise StipaRefusal(f"'atc' must have exactly the members {', '.join(sorted(_ATC_MEMBERS))} (RFC 9448 §5.4)",
                           status=400)
    if atc["tktype"] != TKTYPE_TNAUTHLIST:
        raise StipaRefusal(f"'atc.tktype' must be {TKTYPE_TNAUTHLIST!r}", status=400)
    if not isinstance(atc["tkvalue"], str) or not isinstance(atc["fingerprint"], str):
        raise StipaRefusal("'atc.tkvalue' and 'atc.fingerprint' must be strings", status=400)
    if not isinstance(atc["ca"], bool):
        raise StipaRefusal("'atc.ca' must be true or false", status=400)
    try:
        parse_fingerprint(atc["fingerprint"])
        TNScope.from_identifier_value(atc["tkvalue"])
    except (TokenError, ScopeError) as error:
        raise StipaRefusal(error.detail.replace("token 'atc.fingerprint'", "'atc.fingerprint'"), status=400) from None
    return atc["tkvalue"], atc["ca"], atc["fingerprint"]


def _status(error: TNCAError) -> int:
    # Outside the delegation, a "ca" it does not allow, a delegation no longer active: the
    # request is understood and not authorized (403). What does not parse is 400.
    return 403 if isinstance(error, ScopeError | PolicyError | DelegationError) else 400


def _loggable(atc: Any) -> Any:
    """The requested atc for the audit trail, bounded (it came from an authenticated client)."""
    if not isinstance(atc, Mapping):
        return None
    return {str(k)[:32]: (v[:256] if isinstance(v, str) else v if isinstance(v, bool) else None)
            for k, v in list(atc.items())[:8]}
