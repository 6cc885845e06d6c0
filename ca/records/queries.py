"""Audit queries: the one source of answers for the audit API, ``tnca audit query`` and the
auditor pages.

The question they answer is the auditor's: *which certificates covered this telephone number at
time T, under which delegation, and who said so?* — and its relatives: by range, SPC, delegate,
serial, account and time window, for issuances, revocations, delegations and audit events.

Shape of every query::

    filter = parse_certificate_filter({"tn": "12025550100", "at": "2026-03-01T12:00:00Z"})
    page = certificates(session, filter)        # Page(items=[...], next_cursor=...)
    page.to_json()                              # what the API returns and `--json` prints

- ``parse_*_filter(params)`` (:mod:`ca.records.query_filters`) turns text parameters (query
  string, CLI options) into a frozen filter, raising :class:`ca.errors.QueryError` with ``field``
  naming the parameter. The API and the CLI call the same parser, so they accept and refuse
  exactly the same input.
- Items are plain JSON values built by the ``*_json`` functions of :mod:`ca.records.record_json`,
  so every front end shows the same fields with the same meaning.
- Paging is keyset: items come newest first in a fixed order (certificates and revocations by
  row id, delegations by creation time and id, audit events by ``seq``); ``next_cursor`` is the
  key of the last item (``"1234"``, or ``"<microseconds>.<id>"`` for delegations) and the next
  page holds the items after it. Rows added while paging appear on no page that was already read,
  and no row is shown twice.
- :mod:`ca.records.exports` walks every page (``iter_all``) and writes CSV.

Number containment. A certificate "covers" a TN when one of its TNAuthList entries is that TN
or a range containing it (RFC 8226 §9). ``certificate_scope_entries`` stores each numeric entry
as ``[lo, hi]`` of a fixed digit ``width`` and its span class ``span_digits`` (the digits of
``hi - lo``; see :func:`ca.records.models_authority.span_digits`). An entry of class d is shorter than 10^d numbers,
so one containing n starts in ``(n - 10^d, n]``: the query probes at most width + 1 short ranges
of the covering index ``(width, span_digits, lo, hi, certificate_id)``, whatever the table size,
and then reads the certificates by primary key (:func:`_driven_by_scope` says why).

Not answered here: whether an SPC covers a number. That needs number-portability data
(RFC 9060 §4.1), so a query by TN never matches an SPC entry; query by ``spc`` for those.

Times. "Valid at T" is RFC 5280 §4.1.2.5: notBefore <= T <= notAfter, both inclusive. A
certificate counts as revoked at T when its revocation was recorded at or before T.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, and_, literal, or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from ca.lifecycle.reasons import CRLReason
from ca.records.query_filters import (
    CertificateFilter,
    CheckpointFilter,
    DelegationFilter,
    EventFilter,
    RevocationFilter,
    ScopeFilter,
    format_delegation_cursor,
)
from ca.records.record_json import certificate_json, checkpoint_json, delegation_json, event_json, event_ref, revocation_fields
from ca.records.models_acme import Authorization
from ca.records.models_audit import AuditCheckpoint, AuditEvent
from ca.records.models_authority import Certificate, CertificateScopeEntry, Delegation, DelegationScopeEntry, Issuer, MAX_SPAN_DIGITS, Revocation


# ------------------------------------------------------------------------------------------
# Pages
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    limit: int
    # The decoded form of next_cursor (what the filter's ``cursor`` takes), for iter_all.
    next_key: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor, "limit": self.limit}


def _below(column: Any, key: int) -> ColumnElement[bool]:
    """``column < key`` with the key bound as BIGINT: a cursor may exceed a 32-bit id column's
    range (PostgreSQL would refuse to cast it), and still means "everything below it"."""
    return column < literal(key, BigInteger)


def _page(items: list[dict[str, Any]], last_key: int | None, limit: int) -> Page:
    if last_key is None:
        return Page(items, None, limit)
    return Page(items, str(last_key), limit, last_key)


# ------------------------------------------------------------------------------------------
# Scope conditions (the indexed containment and overlap)
# ------------------------------------------------------------------------------------------


def interval_probe(owner: Any, entry: Any, width: int, lo: int, hi: int) -> Select:
    """Owner ids (``owner`` is the entry's certificate_id or delegation_id column) of the entries
    of ``width`` sharing a number with [lo, hi]: ``entry.lo <= hi AND entry.hi >= lo``.

    An entry of span class d is shorter than 10^d numbers, so it can only reach ``lo`` if it
    starts after ``lo - 10^d``: each class is one short range of the (width, span_digits, lo, hi,
    id) index, read without touching the table. Classes above the width cannot occur (a range of
    ``width`` digits spans fewer than 10^width numbers). The classes are separate SELECTs joined
    by UNION ALL rather than one OR: PostgreSQL estimates an OR of sixteen ranges as a large part
    of the table and then prefers scanning it in id order (measured: 80 ms instead of 1 ms).
    """
    probes = [
        select(owner).where(entry.width == width, entry.span_digits == digits, entry.lo > lo - 10**digits,
                            entry.lo <= hi, entry.hi >= lo)
        for digits in range(min(width, MAX_SPAN_DIGITS) + 1)
    ]
    return union_all(*probes)


def _scope_probes(owner: Any, entry: Any, scope: ScopeFilter) -> list[Select]:
    """One SELECT of owner ids per part of ``scope``; an owner must be in each of them."""
    probes = []
    if scope.tn is not None:
        if scope.tn.is_literal:
            probes.append(select(owner).where(entry.literal == scope.tn.number))
        else:
            number = int(scope.tn.number)
            probes.append(interval_probe(owner, entry, len(scope.tn.number), number, number))
    if scope.range is not None:
        probes.append(interval_probe(owner, entry, scope.range.width, scope.range.lo, scope.range.hi))
    if scope.spc is not None:
        probes.append(select(owner).where(entry.spc == scope.spc.code))
    return probes


def _certificate_probes(scope: ScopeFilter) -> list[Select]:
    return _scope_probes(CertificateScopeEntry.certificate_id, CertificateScopeEntry, scope)


# ------------------------------------------------------------------------------------------
# Certificates
# ------------------------------------------------------------------------------------------


def _certificate_conditions(flt: CertificateFilter | RevocationFilter,
                            probes: list[Select] | None = None) -> list[ColumnElement[bool]]:
    """Conditions on ``certificates`` for ``flt``; ``probes`` replaces the filter's scope probes."""
    probes = _certificate_probes(flt.scope) if probes is None else probes
    conditions: list[ColumnElement[bool]] = [Certificate.id.in_(probe) for probe in probes]
    if flt.delegation_id is not None:
        conditions.append(Certificate.delegation_id == flt.delegation_id)
    if flt.delegate is not None:
        conditions.append(Certificate.delegation_id.in_(select(Delegation.id).where(Delegation.delegate == flt.delegate)))
    if flt.serial is not None:
        conditions.append(Certificate.serial == flt.serial)
    if flt.account_id is not None:
        conditions.append(Certificate.account_id == flt.account_id)
    return conditions


def certificates(session: Session, flt: CertificateFilter, *, now: dt.datetime | None = None) -> Page:
    """Certificates matching ``flt``, newest first (by row id), with revocation and provenance."""
    probes = _certificate_probes(flt.scope)
    query = select(Certificate).where(*_certificate_conditions(flt, probes[1:]))
    if flt.at is not None:
        query = query.where(Certificate.not_before <= flt.at, Certificate.not_after >= flt.at)
    if flt.issued_after is not None:
        query = query.where(Certificate.created_at >= flt.issued_after)
    if flt.issued_before is not None:
        query = query.where(Certificate.created_at < flt.issued_before)
    if flt.stage is not None:
        query = query.where(Certificate.stage == flt.stage)
    if flt.revocation != "any":
        as_of = flt.at or now or dt.datetime.now(dt.timezone.utc)
        revoked = select(Revocation.certificate_id).where(Revocation.revoked_at <= as_of)
        query = query.where(Certificate.id.in_(revoked) if flt.revocation == "revoked" else Certificate.id.not_in(revoked))
    wanted = flt.limit + 1
    if probes:
        rows = _driven_by_scope(session, query, probes[0], flt.cursor, wanted)
    else:
        if flt.cursor is not None:
            query = query.where(_below(Certificate.id, flt.cursor))
        rows = list(session.scalars(query.order_by(Certificate.id.desc()).limit(wanted)))
    more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    items = _certificate_items(session, rows)
    return _page(items, rows[-1].id if more else None, flt.limit)


# Candidate ids fetched by the first scope probe; each further probe fetches four times more.
FIRST_CANDIDATE_CHUNK = 256


def _driven_by_scope(session: Session, query: Select, probe: Select, cursor: int | None,
                     wanted: int) -> list[Certificate]:
    """Up to ``wanted`` rows of ``query`` among the certificates ``probe`` selects, newest
    first, below ``cursor``.

    Why two steps rather than one statement: a planner cannot know that "valid at T"
    (``not_before <= T <= not_after``) is far more selective than its two halves suggest (the
    windows are short and the two columns move together), so given ``… ORDER BY id DESC LIMIT n``
    it walks the primary key backwards through the whole table hoping to meet matches early
    (measured on PostgreSQL 15 over a million rows: 450 ms). Here the indexed scope probe picks
    candidate ids, newest first, a chunk at a time, and the certificates are read by primary key;
    chunks grow fourfold so a broad range is read in O(log n) probes.
    """
    rows: list[Certificate] = []
    below = cursor
    chunk = FIRST_CANDIDATE_CHUNK
    candidates_of = probe.subquery("candidates")
    candidate = candidates_of.c[0]
    while len(rows) < wanted:
        candidates = select(candidate).distinct().order_by(candidate.desc()).limit(chunk)
        if below is not None:
            candidates = candidates.where(_below(candidate, below))
        ids = list(session.scalars(candidates))
        if ids:
            rows += session.scalars(
                query.where(Certificate.id.in_(ids)).order_by(Certificate.id.desc()).limit(wanted - len(rows)))
        if len(ids) < chunk:
            break
        below, chunk = ids[-1], chunk * 4
    return rows


def certificate_by_serial(session: Session, serial: str) -> dict[str, Any] | None:
    """One certificate's item (any stage), or None. ``serial`` as stored (lower-case hex)."""
    row = session.scalars(select(Certificate).where(Certificate.serial == serial)).one_or_none()
    return _certificate_items(session, [row])[0] if row is not None else None


def _certificate_items(session: Session, rows: Sequence[Certificate]) -> list[dict[str, Any]]:
    """Items for a page of certificates, with everything they refer to loaded in a few queries."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    serials = [row.serial for row in rows]
    revocations = {r.certificate_id: r for r in session.scalars(select(Revocation).where(Revocation.certificate_id.in_(ids)))}
    delegation_ids = {row.delegation_id for row in rows if row.delegation_id}
    delegations = {d.id: d for d in session.scalars(select(Delegation).where(Delegation.id.in_(delegation_ids)))} if delegation_ids else {}
    issuers = {i.id: i.name for i in session.execute(select(Issuer.id, Issuer.name))}
    events = {
        e.subject_id: e
        for e in session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_type == "certificate",
                AuditEvent.subject_id.in_(serials),
                AuditEvent.action == "certificate.issue",
            )
        )
    }
    order_ids = {row.order_id for row in rows if row.order_id}
    token_jtis: dict[str, list[str]] = {}
    if order_ids:
        for order_id, jti in session.execute(
            select(Authorization.order_id, Authorization.token_jti)
            .where(Authorization.order_id.in_(order_ids), Authorization.token_jti.is_not(None))
            .order_by(Authorization.created_at)
        ):
            token_jtis.setdefault(order_id, []).append(jti)
    return [
        certificate_json(
            row,
            issuer=issuers.get(row.issuer_id),
            delegation=delegations.get(row.delegation_id) if row.delegation_id else None,
            revocation=revocations.get(row.id),
            issue_event=events.get(row.serial),
            token_jtis=token_jtis.get(row.order_id, []) if row.order_id else [],
        )
        for row in rows
    ]


# ------------------------------------------------------------------------------------------
# Revocations
# ------------------------------------------------------------------------------------------


def revocations(session: Session, flt: RevocationFilter) -> Page:
    """Revocations matching ``flt``, newest first (by row id), each with its certificate."""
    query = select(Revocation).join(Certificate, Certificate.id == Revocation.certificate_id)
    query = query.where(*_certificate_conditions(flt))
    if flt.revoked_after is not None:
        query = query.where(Revocation.revoked_at >= flt.revoked_after)
    if flt.revoked_before is not None:
        query = query.where(Revocation.revoked_at < flt.revoked_before)
    if flt.reason is not None:
        if flt.reason == "unspecified":
            query = query.where(or_(Revocation.reason_code.is_(None), Revocation.reason_code == 0))
        else:
            query = query.where(Revocation.reason_code == int(CRLReason[flt.reason.upper().replace("-", "_")]))
    if flt.source is not None:
        query = query.where(Revocation.source == flt.source)
    if flt.cursor is not None:
        query = query.where(_below(Revocation.id, flt.cursor))
    rows = list(session.scalars(query.order_by(Revocation.id.desc()).limit(flt.limit + 1)))
    more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    revoked = {c.id: c for c in session.scalars(
        select(Certificate).where(Certificate.id.in_([r.certificate_id for r in rows])))} if rows else {}
    ordered = [revoked[r.certificate_id] for r in rows]
    certificate_items = dict(zip([c.id for c in ordered], _certificate_items(session, ordered)))
    events = _revocation_events(session, [c.serial for c in ordered])
    items = [
        {
            **revocation_fields(revocation),
            "serial": certificate.serial,
            "revoke_event": event_ref(events.get(certificate.serial)),
            "certificate": certificate_items[certificate.id],
        }
        for revocation, certificate in zip(rows, ordered)
    ]
    return _page(items, rows[-1].id if more else None, flt.limit)


def _revocation_events(session: Session, serials: Sequence[str]) -> dict[str, AuditEvent]:
    if not serials:
        return {}
    return {
        e.subject_id: e
        for e in session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_type == "certificate",
                AuditEvent.subject_id.in_(serials),
                AuditEvent.action == "certificate.revoke",
            )
        )
    }


# ------------------------------------------------------------------------------------------
# Delegations
# ------------------------------------------------------------------------------------------


def delegations(session: Session, flt: DelegationFilter) -> Page:
    """Delegations matching ``flt``, newest first: who was granted a number, when, by whom."""
    query = select(Delegation)
    for probe in _scope_probes(DelegationScopeEntry.delegation_id, DelegationScopeEntry, flt.scope):
        query = query.where(Delegation.id.in_(probe))
    if flt.at is not None:
        query = query.where(
            Delegation.not_before <= flt.at,
            or_(Delegation.not_after.is_(None), Delegation.not_after > flt.at),
            or_(Delegation.revoked_at.is_(None), Delegation.revoked_at > flt.at),
        )
    if flt.delegate is not None:
        query = query.where(Delegation.delegate == flt.delegate)
    if flt.status is not None:
        query = query.where(Delegation.status == flt.status)
    if flt.cursor is not None:
        created_at, delegation_id = flt.cursor
        query = query.where(
            or_(Delegation.created_at < created_at, and_(Delegation.created_at == created_at, Delegation.id < delegation_id))
        )
    rows = list(session.scalars(query.order_by(Delegation.created_at.desc(), Delegation.id.desc()).limit(flt.limit + 1)))
    more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    items = delegation_items(session, rows)
    if not more:
        return Page(items, None, flt.limit)
    key = (rows[-1].created_at, rows[-1].id)
    return Page(items, format_delegation_cursor(*key), flt.limit, key)


def delegation_items(session: Session, rows: Sequence[Delegation]) -> list[dict[str, Any]]:
    """Items for these delegations (:func:`ca.records.record_json.delegation_json`), each with the
    audit events that created and revoked it: what the API, the CLI and the pages show."""
    events = _first_events(session, "delegation", [d.id for d in rows], ("delegation.create", "delegation.revoke"))
    return [delegation_json(d, events.get((d.id, "delegation.create")), events.get((d.id, "delegation.revoke")))
            for d in rows]


def _first_events(session: Session, subject_type: str, ids: Sequence[str], actions: Sequence[str]) -> dict[tuple[str, str], AuditEvent]:
    if not ids:
        return {}
    found: dict[tuple[str, str], AuditEvent] = {}
    for event in session.scalars(
        select(AuditEvent)
        .where(AuditEvent.subject_type == subject_type, AuditEvent.subject_id.in_(ids), AuditEvent.action.in_(actions))
        .order_by(AuditEvent.seq)
    ):
        found.setdefault((event.subject_id, event.action), event)
    return found


# ------------------------------------------------------------------------------------------
# Audit events and checkpoints
# ------------------------------------------------------------------------------------------


def events(session: Session, flt: EventFilter) -> Page:
    """Audit events matching ``flt``, newest first (by ``seq``), with their chain hashes."""
    query = select(AuditEvent)
    if flt.action is not None:
        if flt.action.endswith("."):
            query = query.where(AuditEvent.action.startswith(flt.action, autoescape=True))
        else:
            query = query.where(AuditEvent.action == flt.action)
    if flt.actor is not None:
        query = query.where(AuditEvent.actor == flt.actor)
    if flt.subject_type is not None:
        query = query.where(AuditEvent.subject_type == flt.subject_type)
    if flt.subject_id is not None:
        query = query.where(AuditEvent.subject_id == flt.subject_id)
    if flt.after is not None:
        query = query.where(AuditEvent.occurred_at >= flt.after)
    if flt.before is not None:
        query = query.where(AuditEvent.occurred_at < flt.before)
    if flt.cursor is not None:
        query = query.where(_below(AuditEvent.seq, flt.cursor))
    rows = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(flt.limit + 1)))
    more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    return _page([event_json(e) for e in rows], rows[-1].seq if more else None, flt.limit)


def checkpoints(session: Session, flt: CheckpointFilter) -> Page:
    """Signed checkpoints of the chain head (ca/records/audit.py), newest first."""
    query = select(AuditCheckpoint)
    if flt.cursor is not None:
        query = query.where(_below(AuditCheckpoint.id, flt.cursor))
    rows = list(session.scalars(query.order_by(AuditCheckpoint.id.desc()).limit(flt.limit + 1)))
    more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    return _page([checkpoint_json(c) for c in rows], rows[-1].id if more else None, flt.limit)


