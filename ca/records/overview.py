"""The state of the authority at a glance: what the operator dashboard shows.

Read-only and cheap: counts and short lists, each one indexed query, whatever the size of the
tables (``certificates.not_after``, ``certificates.created_at``, ``revocations.revoked_at`` and
``delegations.status`` are indexed). Searches with filters and paging are :mod:`ca.records.queries`; the
lists here are the few rows a person looks at first.

"Valid" certificates are issued, inside their validity (RFC 5280 §4.1.2.5: notBefore <= now <=
notAfter) and not revoked. Days are UTC days.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from ca.records.models_acme import Account, AuthorityToken, UsedTokenJTI
from ca.records.models_authority import Certificate, Delegation, Revocation
from ca.records.statuses import CertificateStage, DelegationStatus

# How far ahead the dashboard looks for delegations that end, and for certificates that expire.
DELEGATIONS_ENDING_WITHIN = dt.timedelta(days=30)
CERTIFICATES_EXPIRING_WITHIN = dt.timedelta(hours=24)
DEFAULT_DAYS = 30
MAX_DAYS = 366


@dataclasses.dataclass(frozen=True)
class Counts:
    delegations_active: int  # status active and not ended (a delegation that starts later counts)
    delegations_revoked: int
    certificates_valid: int  # issued, valid now, not revoked
    certificates_issued: int  # every issued certificate, ever
    certificates_revoked: int
    issuance_failures: int  # stage "failed": CT or signing failed after the serial was recorded
    tokens_outstanding: int  # authority tokens minted here, unexpired and not used yet
    accounts: int  # ACME accounts in status valid


@dataclasses.dataclass(frozen=True)
class DayCount:
    day: dt.date
    issued: int
    revoked: int


def counts(session: Session, *, now: dt.datetime, token_authority: str) -> Counts:
    """``token_authority``: this authority's token-authority issuer id (``ca.tokens.fingerprints.certificate_issuer_id``)."""
    def count(*conditions: object, of: object) -> int:
        return session.scalar(select(func.count()).select_from(of).where(*conditions)) or 0  # type: ignore[arg-type]

    return Counts(
        delegations_active=count(
            Delegation.status == DelegationStatus.ACTIVE,
            (Delegation.not_after.is_(None)) | (Delegation.not_after > now),
            of=Delegation,
        ),
        delegations_revoked=count(Delegation.status == DelegationStatus.REVOKED, of=Delegation),
        certificates_valid=certificates_valid(session, now=now),
        certificates_issued=count(Certificate.stage == CertificateStage.ISSUED, of=Certificate),
        certificates_revoked=count(of=Revocation),
        issuance_failures=count(Certificate.stage == CertificateStage.FAILED, of=Certificate),
        tokens_outstanding=count(
            AuthorityToken.expires_at > now,
            AuthorityToken.jti.not_in(select(UsedTokenJTI.jti).where(UsedTokenJTI.issuer == token_authority)),
            of=AuthorityToken,
        ),
        accounts=count(Account.status == "valid", of=Account),
    )


def certificates_valid(session: Session, *, now: dt.datetime) -> int:
    """Certificates issued, valid at ``now`` and not revoked (the dashboard's count, and the
    ``tnca_certificates_valid`` gauge at each scrape)."""
    return session.scalar(
        select(func.count()).select_from(Certificate).where(
            Certificate.stage == CertificateStage.ISSUED,
            Certificate.not_before <= now,
            Certificate.not_after >= now,
            Certificate.id.not_in(select(Revocation.certificate_id)),
        )
    ) or 0


def activity_by_day(session: Session, *, now: dt.datetime, days: int = DEFAULT_DAYS) -> list[DayCount]:
    """Certificates issued and revoked per UTC day, for the last ``days`` days up to today,
    oldest first, days without any included (zero)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1 to {MAX_DAYS}, got {days}")
    today = now.astimezone(dt.timezone.utc).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.timezone.utc)
    issued = _per_day(session, Certificate.created_at, start, Certificate.stage == CertificateStage.ISSUED)
    revoked = _per_day(session, Revocation.revoked_at, start)
    return [
        DayCount(day, issued.get(day, 0), revoked.get(day, 0))
        for day in (first + dt.timedelta(days=offset) for offset in range(days))
    ]


def _per_day(session: Session, column: object, start: dt.datetime, *conditions: object) -> dict[dt.date, int]:
    # date() exists in SQLite (text 'YYYY-MM-DD') and PostgreSQL (a date); times are stored as
    # UTC (ca/records/models_base.py), so its day is the UTC day.
    day = func.date(column)
    rows = session.execute(select(day, func.count()).where(column >= start, *conditions).group_by(day))  # type: ignore[operator]
    result: dict[dt.date, int] = {}
    for value, number in rows:
        key = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        result[key] = number
    return result


def delegations_ending(session: Session, *, now: dt.datetime, within: dt.timedelta = DELEGATIONS_ENDING_WITHIN,
                       limit: int = 10) -> list[Delegation]:
    """Active delegations whose end falls in ``(now, now + within]``, soonest first."""
    return list(session.scalars(
        select(Delegation)
        .where(Delegation.status == DelegationStatus.ACTIVE, Delegation.not_after > now, Delegation.not_after <= now + within)
        .order_by(Delegation.not_after, Delegation.id)
        .limit(limit)
    ))


def certificates_expiring(session: Session, *, now: dt.datetime, within: dt.timedelta = CERTIFICATES_EXPIRING_WITHIN,
                          limit: int = 10) -> list[Certificate]:
    """Unrevoked issued certificates whose notAfter falls in ``[now, now + within]``, soonest first."""
    return list(session.scalars(
        select(Certificate)
        .where(
            Certificate.stage == CertificateStage.ISSUED,
            Certificate.not_after >= now,
            Certificate.not_after <= now + within,
            Certificate.id.not_in(select(Revocation.certificate_id)),
        )
        .order_by(Certificate.not_after, Certificate.id)
        .limit(limit)
    ))


@dataclasses.dataclass(frozen=True)
class MintedTokenRow:
    token: AuthorityToken
    used_at: dt.datetime | None  # when an ACME challenge accepted it (its jti is single use)


def authority_tokens(session: Session, delegation_id: str, *, token_authority: str,
                     limit: int = 50) -> list[MintedTokenRow]:
    """Authority tokens minted under a delegation, newest first, with when each was used (the
    token text itself is never kept). ``token_authority`` is this authority's token-authority
    issuer id (``ca.tokens.fingerprints.certificate_issuer_id``): a ``jti`` is unique per token authority."""
    rows = session.execute(
        select(AuthorityToken, UsedTokenJTI.used_at)
        .outerjoin(UsedTokenJTI, and_(UsedTokenJTI.jti == AuthorityToken.jti, UsedTokenJTI.issuer == token_authority))
        .where(AuthorityToken.delegation_id == delegation_id)
        .order_by(AuthorityToken.created_at.desc(), AuthorityToken.jti)
        .limit(limit)
    )
    return [MintedTokenRow(token, used_at) for token, used_at in rows]


def valid_certificate_counts(session: Session, delegation_ids: Sequence[str], *, now: dt.datetime) -> dict[str, int]:
    """For each delegation id, how many certificates issued under it are valid now and unrevoked."""
    if not delegation_ids:
        return {}
    rows = session.execute(
        select(Certificate.delegation_id, func.count())
        .where(
            Certificate.delegation_id.in_(list(delegation_ids)),
            Certificate.stage == CertificateStage.ISSUED,
            Certificate.not_before <= now,
            Certificate.not_after >= now,
            Certificate.id.not_in(select(Revocation.certificate_id)),
        )
        .group_by(Certificate.delegation_id)
    )
    return {delegation_id: number for delegation_id, number in rows}


def delegate_names(session: Session, *, limit: int = 500) -> Sequence[str]:
    """Distinct delegate names, alphabetically: suggestions for the exact-name search fields."""
    return list(session.scalars(select(Delegation.delegate).distinct().order_by(Delegation.delegate).limit(limit)))
