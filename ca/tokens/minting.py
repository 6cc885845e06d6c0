"""Minting authority tokens: this authority acting as the token authority for its delegations.

An operator (``tnca token mint``, the admin delegation page) mints a token for a delegate's ACME
account key and a TN scope inside one of its delegations (RFC 9447 §4, RFC 9448 §5). The token is
an ES256 JWT whose ``x5u`` points at this authority's token authority certificate; the
``authority_tokens`` row and a ``token.mint`` audit event record it, so that
:func:`ca.tokens.verification.check_minted_here` can later refuse a token this key signed
without minting it, or one minted under a delegation since revoked.

It stands apart from verification: minting needs a signer and a delegation, verification needs
neither, and the ACME server only ever verifies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import urllib.parse
from typing import Any, Protocol

from cryptography import x509
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import DelegationError, PolicyError, ScopeError, TokenError
from ca.numbers.tnauthlist import TNScope
from ca.policy import format_duration
from ca.encoding import b64url_encode
from ca.records import audit, external_accounts, models_acme, models_authority
from ca.tokens.fingerprints import parse_fingerprint, render_fingerprint
from ca.tokens.jws import sign_es256
from ca.tokens.trust_config import DEFAULT_MAX_TOKEN_TTL
from ca.tokens.verification import TKTYPE_TNAUTHLIST
from ca.records.statuses import DelegationStatus

# RFC 7519 §4.1.7: "jti" must be unique; 128 random bits make a collision negligible.
JTI_BYTES = 16


class TokenAuthority(Protocol):
    """What :func:`mint` needs of ``home.token_authority()``."""

    certificate: x509.Certificate
    x5u: str

    @property
    def signer(self) -> Any: ...


@dataclasses.dataclass(frozen=True)
class MintedToken:
    """A token just minted (the compact JWS in ``token``) and what its ``authority_tokens`` row records."""

    token: str
    jti: str
    expires: dt.datetime
    delegation_id: str
    scope: TNScope
    ca: bool
    fingerprint: str


def check_authority_current(certificate: x509.Certificate, now: dt.datetime) -> None:
    """PolicyError unless the token authority certificate is valid at ``now``: a token signed
    under an expired one is refused by every relying party (RFC 9448 §6 step 2, RFC 5280
    §4.1.2.5), so none is minted."""
    subject = certificate.subject.rfc4514_string()
    if now > certificate.not_valid_after_utc:
        raise PolicyError(
            f"the token authority certificate '{subject}' expired at {certificate.not_valid_after_utc.isoformat()}; "
            "tokens signed under it would be refused (RFC 9448 §6 step 2): renew it ([token_authority] certificate "
            "in tnca.toml) before minting",
            field="token_authority",
        )
    if now < certificate.not_valid_before_utc:
        raise PolicyError(
            f"the token authority certificate '{subject}' is not valid before "
            f"{certificate.not_valid_before_utc.isoformat()}; tokens signed under it would be refused until then",
            field="token_authority",
        )


def mint(
    session: Session,
    *,
    delegation: models_authority.Delegation,
    fingerprint: str,
    scope: TNScope,
    ca: bool,
    ttl: dt.timedelta,
    authority: TokenAuthority,
    clock: Clock,
    actor: str,
    max_ttl: dt.timedelta = DEFAULT_MAX_TOKEN_TTL,
    issuer_url: str | None = None,
    tkvalue: str | None = None,
) -> MintedToken:
    """Mint an authority token for ``scope`` under ``delegation``, bound to one account key.

    Refuses (nothing written): a delegation that is not active now (DelegationError); a scope not
    inside the delegation's (ScopeError); ``ca`` when the delegation does not allow
    sub-delegation, a ``ttl`` that is not positive, exceeds ``max_ttl`` (the policy's maximum) or
    outlives the delegation (PolicyError); a malformed fingerprint (TokenError); a fingerprint of
    an account bound by external account binding to another delegate (DelegationError).

    Writes the ``authority_tokens`` row and a ``token.mint`` audit event in the caller's
    transaction. ``iss`` is ``issuer_url``, or the origin of the token authority's ``x5u``.

    ``tkvalue``: the text ``atc.tkvalue`` is written as, when the requester chose it (the STI-PA
    API echoes what the client asked for, padded standard base64 or base64url; clients compare
    the strings). It must be the identifier text of exactly ``scope``'s DER (ScopeError otherwise);
    by default the unpadded base64url of RFC 9448 §3.
    """
    now = clock.now()
    check_authority_current(authority.certificate, now)
    digest = _parse_fingerprint_input(fingerprint)
    fingerprint = render_fingerprint(digest)
    _check_delegation_active(delegation, now)
    # An account made with an external account binding acts for that key's delegate only
    # (RFC 8555 §7.3.4): no token for it under another delegate's delegation.
    external_accounts.check_may_act_for(
        session, external_accounts.account_by_thumbprint(session, b64url_encode(digest)), delegation
    )
    delegation_scope = TNScope.from_der(delegation.scope_der)
    if not delegation_scope.contains(scope):
        raise ScopeError(
            f"scope {scope.describe()} is not inside delegation {delegation.id} ({delegation_scope.describe()})",
            field="scope",
        )
    if ca and not delegation.ca_allowed:
        raise PolicyError(f"delegation {delegation.id} does not allow sub-delegation, so 'ca' cannot be set", field="ca")
    if ttl <= dt.timedelta(0):
        raise PolicyError(f"token ttl must be positive, got {format_duration(ttl)}", field="ttl")
    if ttl > max_ttl:
        raise PolicyError(f"token ttl {format_duration(ttl)} exceeds the policy maximum {format_duration(max_ttl)}", field="ttl")
    expires = (now + ttl).replace(microsecond=0)
    if delegation.not_after is not None and expires > delegation.not_after:
        raise PolicyError(
            f"token would expire at {expires.isoformat()}, after delegation {delegation.id} ends at "
            f"{delegation.not_after.isoformat()}",
            field="ttl",
        )
    if expires > authority.certificate.not_valid_after_utc:
        raise PolicyError(
            f"token would expire at {expires.isoformat()}, after the token authority certificate does "
            f"({authority.certificate.not_valid_after_utc.isoformat()}): from then on relying parties refuse it "
            "(RFC 9448 §6 step 2); use a shorter ttl, or renew the token authority certificate",
            field="ttl",
        )

    tkvalue = _tkvalue_text(tkvalue, scope)
    jti = secrets.token_urlsafe(JTI_BYTES)
    header = {"typ": "JWT", "alg": "ES256", "x5u": authority.x5u}
    payload = {
        "iss": issuer_url or _origin(authority.x5u),
        "exp": int(expires.timestamp()),
        "jti": jti,
        "atc": {
            "tktype": TKTYPE_TNAUTHLIST,
            "tkvalue": tkvalue,
            "ca": bool(ca),
            "fingerprint": fingerprint,
        },
    }
    token = sign_es256(header, payload, authority.signer)

    session.add(
        models_acme.AuthorityToken(
            jti=jti,
            delegation_id=delegation.id,
            fingerprint=fingerprint,
            scope_der=scope.to_der(),
            ca=bool(ca),
            expires_at=expires,
            created_by=actor,
            created_at=now,
        )
    )
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="token.mint",
        subject_type="authority_token",
        subject_id=jti,
        details={
            "delegation_id": delegation.id,
            "scope": scope.describe(),
            "tkvalue": tkvalue,
            "ca": bool(ca),
            "fingerprint": fingerprint,
            "expires": expires.isoformat(),
        },
        clock=clock,
    )
    return MintedToken(
        token=token,
        jti=jti,
        expires=expires,
        delegation_id=delegation.id,
        scope=scope,
        ca=bool(ca),
        fingerprint=fingerprint,
    )


def _tkvalue_text(requested: str | None, scope: TNScope) -> str:
    if requested is None:
        return scope.to_identifier_value()
    if TNScope.from_identifier_value(requested).to_der() != scope.to_der():
        raise ScopeError(f"tkvalue {requested[:80]!r} is not the TNAuthList {scope.describe()}", field="tkvalue")
    return requested


def _parse_fingerprint_input(value: str) -> bytes:
    try:
        return parse_fingerprint(value.strip() if isinstance(value, str) else value)
    except TokenError as exc:
        raise TokenError(exc.detail.replace("token 'atc.fingerprint'", "fingerprint"), claim="fingerprint") from exc


def _check_delegation_active(delegation: models_authority.Delegation, now: dt.datetime) -> None:
    if delegation.status != DelegationStatus.ACTIVE:
        raise DelegationError(f"delegation {delegation.id} is {delegation.status}", field="delegation")
    if delegation.not_before > now:
        raise DelegationError(
            f"delegation {delegation.id} is not valid before {delegation.not_before.isoformat()}", field="delegation"
        )
    if delegation.not_after is not None and delegation.not_after <= now:
        raise DelegationError(f"delegation {delegation.id} ended at {delegation.not_after.isoformat()}", field="delegation")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
