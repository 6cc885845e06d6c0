"""Account keys retired by an ACME keyChange (RFC 8555 §7.3.5), and the tokens minted for them.

An authority token is bound to an account key by its ``atc.fingerprint`` (RFC 9448 §5.4), not to
an account. After a keyChange the old key may sign for a new account (anyone holding it can make
one), so a token minted here for the old key and not yet used would authorize that account.
:func:`retire` records the retirement as an ``account-key.retire`` audit event whose subject is the
key's RFC 7638 thumbprint (the audit log is append-only, so the record stays); :func:`check_not_retired`
refuses a token minted here before its key was retired. A token minted for the key afterwards is
the operator's new decision and is accepted.
"""

from __future__ import annotations


from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import TokenError
from ca.records import audit
from ca.records.models_acme import AuthorityToken, UsedTokenJTI
from ca.records.models_audit import AuditEvent
from ca.tokens.fingerprints import FINGERPRINT_ALGORITHM, parse_fingerprint
from ca.encoding import b64url_decode, b64url_encode

AUDIT_ACTION_RETIRE = "account-key.retire"
AUDIT_SUBJECT_TYPE = "account-key"


def retire(session: Session, *, account_id: str, thumbprint: str, new_thumbprint: str, actor: str,
           clock: Clock) -> list[str]:
    """Record that ``thumbprint`` (RFC 7638, base64url) no longer is ``account_id``'s key; returns
    the ``jti`` of every unexpired, unused token minted here for it, now refused (also in the
    audit event). In the caller's transaction."""
    fingerprint = f"{FINGERPRINT_ALGORITHM} " + ":".join(f"{b:02X}" for b in _digest(thumbprint))
    unused = session.scalars(
        select(AuthorityToken.jti)
        .where(
            func.upper(AuthorityToken.fingerprint) == fingerprint,
            AuthorityToken.expires_at > clock.now(),
            AuthorityToken.jti.not_in(select(UsedTokenJTI.jti)),
        )
        .order_by(AuthorityToken.jti)
    ).all()
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_RETIRE,
        subject_type=AUDIT_SUBJECT_TYPE,
        subject_id=thumbprint,
        details={"account_id": account_id, "new_jwk_thumbprint": new_thumbprint, "unused_token_jtis": list(unused)},
        clock=clock,
    )
    return list(unused)


# Built once (every tkauth-01 answer asks): a statement object keeps its cache key.
_RETIRED_SINCE = (
    select(AuditEvent.occurred_at)
    .where(
        AuditEvent.subject_type == AUDIT_SUBJECT_TYPE,
        AuditEvent.subject_id == bindparam("thumbprint"),
        AuditEvent.action == AUDIT_ACTION_RETIRE,
        AuditEvent.occurred_at >= bindparam("since", type_=AuditEvent.occurred_at.type),
    )
    .limit(1)
)


def check_not_retired(session: Session, minted: AuthorityToken) -> None:
    """TokenError (claim ``atc.fingerprint``) if ``minted``'s key was retired after it was minted."""
    try:
        thumbprint = b64url_encode(parse_fingerprint(minted.fingerprint))
    except TokenError:  # not the RFC form; what was minted is checked against the account as usual
        return
    retired_at = session.scalar(_RETIRED_SINCE, {"thumbprint": thumbprint, "since": minted.created_at})
    if retired_at is not None:
        raise TokenError(
            f"token 'jti' {minted.jti[:40]} was minted for account key {thumbprint}, which was retired by a keyChange "
            f"at {retired_at.isoformat()} (RFC 8555 §7.3.5); ask the token authority for a token for the current key",
            claim="atc.fingerprint",
        )


def _digest(thumbprint: str) -> bytes:
    return b64url_decode(thumbprint, field="thumbprint")
