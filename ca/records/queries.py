"""Audit queries: the one source of answers for the audit API, ``tnca audit query`` and the
auditor pages.

The question they answer is the auditor's: *which certificates covered this telephone number at
time T, under which delegation, and who said so?* — and its relatives: by range, SPC, delegate,
serial, account and time window, for issuances, revocations, delegations and audit events.

Shape of every query::

    filter = parse_certificate_filter({"tn": "12025550100", "at": "2026-03-01T12:00:00Z"})
    page = certificates(session, filter)        # Page(items=[...], next_cursor=...)
    page.to_json()                              # what the API returns and `--json` prints

- ``parse_*_filter(params)`` turns text parameters (query string, CLI options) into a frozen
  filter, raising :class:`ca.errors.QueryError` with ``field`` naming the parameter. The API and
  the CLI call the same parser, so they accept and refuse exactly the same input.
- Items are plain JSON values built by ``*_json`` functions here, so every front end shows the
  same fields with the same meaning.
- Paging is keyset: items come newest first in a fixed order (certificates and revocations by
  row id, delegations by creation time and id, audit events by ``seq``); ``next_cursor`` is the
  key of the last item (``"1234"``, or ``"<microseconds>.<id>"`` for delegations) and the next
  page holds the items after it. Rows added while paging appear on no page that was already read,
  and no row is shown twice.
- ``iter_*`` walk every page for exports.

Number containment. A certificate "covers" a TN when one of its TNAuthList entries is that TN
or a range containing it (RFC 8226 §9). ``certificate_scope_entries`` stores each numeric entry
as ``[lo, hi]`` of a fixed digit ``width`` and its span class ``span_digits`` (the digits of
``hi - lo``; see :func:`ca.records.store.span_digits`). An entry of class d is shorter than 10^d numbers,
so one containing n starts in ``(n - 10^d, n]``: the query probes at most width + 1 short ranges
of the covering index ``(width, span_digits, lo, hi, certificate_id)``, whatever the table size,
and then reads the certificates by primary key (:func:`_driven_by_scope` says why).

Not answered here: whether an SPC covers a number. That needs number-portability data
(RFC 9060 §4.1), so a query by TN never matches an SPC entry; query by ``spc`` for those.

Times. "Valid at T" is RFC 5280 §4.1.2.5: notBefore <= T <= notAfter, both inclusive. A
certificate counts as revoked at T when its revocation was recorded at or before T.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import BigInteger, and_, literal, or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from ca.encoding import b64url_encode, isoformat_or_none
from ca.errors import QueryError, ScopeError
from ca.lifecycle.revocation import CRLReason
from ca.records.store import (
    AuditCheckpoint,
    AuditEvent,
    Authorization,
    Certificate,
    CertificateScopeEntry,
    Delegation,
    DelegationScopeEntry,
    Issuer,
    Revocation,
)
from ca.numbers.tnauthlist import SPC, TN, TNRange, TNScope

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# RFC 8226 §9: a TelephoneNumber has at most 15 characters, so hi - lo has at most 15 digits.
MAX_SPAN_DIGITS = 15

STAGES = ("issued", "precertificate", "failed")
REVOCATION_STATES = ("any", "revoked", "unrevoked")
DELEGATION_STATES = ("active", "revoked")
REASON_NAMES = tuple(reason.name.lower().replace("_", "-") for reason in CRLReason)

# RFC 3339 §5.6 date-time (with "Z" or an offset; no leap seconds), or a bare full-date meaning
# midnight UTC at its start.
_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SERIAL = re.compile(r"[0-9a-f]{1,64}")
_RANDOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RANGE = re.compile(r"([0-9]{1,15}):([1-9][0-9]{0,15})")
_ACTION = re.compile(r"[a-z_]{1,32}(?:\.[a-z_]{1,32})?\.?")
_SUBJECT_TYPE = re.compile(r"[a-z_]{1,32}")
MAX_TEXT_PARAM = 255
# C0 and C1 control characters and DEL: refused in every text parameter.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INT_CURSOR = re.compile(r"[0-9]{1,18}")
# Up to 17 digits of microseconds since 1970 stay inside datetime's range (year 5138).
_DELEGATION_CURSOR = re.compile(r"([0-9]{1,17})\.([A-Za-z0-9_-]{1,64})")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------------------------------
# Filters and their parser
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NumberRange:
    """The numbers ``lo..hi`` (inclusive) of digit width ``width``: what a ``range`` query asks about.

    Unlike a TNAuthList range (RFC 8226 §9: count >= 2, no carry past the width), a query range may
    hold one number, and a count running past the width simply ends at the last number of that
    width: the question "what overlaps these numbers" has an answer either way.
    """

    width: int
    lo: int
    hi: int

    @classmethod
    def parse(cls, text: str) -> "NumberRange":
        match = _RANGE.fullmatch(text)
        if match is None:
            raise QueryError(f"range {text[:40]!r} must be START:COUNT with COUNT >= 1, e.g. 12025550000:100",
                             field="range")
        start, count = match.group(1), int(match.group(2))
        width = len(start)
        return cls(width, int(start), min(int(start) + count - 1, 10**width - 1))


@dataclasses.dataclass(frozen=True)
class ScopeFilter:
    """A number, a range (overlap) and an SPC; each one given must match (they combine with AND)."""

    tn: TN | None = None
    range: NumberRange | None = None
    spc: SPC | None = None


@dataclasses.dataclass(frozen=True)
class CertificateFilter:
    scope: ScopeFilter = ScopeFilter()
    at: dt.datetime | None = None  # valid at this instant (RFC 5280 §4.1.2.5, inclusive)
    issued_after: dt.datetime | None = None  # created_at >= issued_after
    issued_before: dt.datetime | None = None  # created_at < issued_before
    delegation_id: str | None = None
    delegate: str | None = None
    serial: str | None = None
    account_id: str | None = None
    stage: str | None = "issued"  # None: any stage
    revocation: str = "any"  # any | revoked | unrevoked, as of `at` (or now)
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None  # row id of the last item already seen


@dataclasses.dataclass(frozen=True)
class RevocationFilter:
    scope: ScopeFilter = ScopeFilter()
    revoked_after: dt.datetime | None = None  # revoked_at >= revoked_after
    revoked_before: dt.datetime | None = None  # revoked_at < revoked_before
    delegation_id: str | None = None
    delegate: str | None = None
    serial: str | None = None
    account_id: str | None = None
    reason: str | None = None  # a CRLReason name, e.g. "key-compromise"; "unspecified" = no code
    source: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None


@dataclasses.dataclass(frozen=True)
class DelegationFilter:
    scope: ScopeFilter = ScopeFilter()
    at: dt.datetime | None = None  # in force at this instant: started, not ended, not yet revoked
    delegate: str | None = None
    status: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: tuple[dt.datetime, str] | None = None


@dataclasses.dataclass(frozen=True)
class EventFilter:
    action: str | None = None  # exact ("delegation.revoke") or a prefix ending in "." ("user.")
    actor: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    after: dt.datetime | None = None  # occurred_at >= after
    before: dt.datetime | None = None  # occurred_at < before
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None  # seq of the last event already seen


# The parameters each filter takes, with one line of help each: the API's OpenAPI document and
# the CLI's options are generated from these tables so they cannot drift from the parser.
SCOPE_PARAMETERS = {
    "tn": "A telephone number (digits, or with * or #): certificates whose TNAuthList covers it. "
          "tn, range and spc combine: each one given must match.",
    "range": "START:COUNT, e.g. 12025550000:100: entries sharing at least one number with these COUNT numbers.",
    "spc": "A service provider code: entries that name exactly this SPC.",
}
PAGE_PARAMETERS = {
    "limit": f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
    "cursor": "The next_cursor of the previous page: the key of its last item; items after it follow.",
}
CERTIFICATE_PARAMETERS = {
    **SCOPE_PARAMETERS,
    "at": "Valid at this time (notBefore <= at <= notAfter, RFC 5280 §4.1.2.5); RFC 3339 or YYYY-MM-DD.",
    "issued_after": "Issued at or after this time.",
    "issued_before": "Issued before this time.",
    "delegation": "Issued under this delegation id.",
    "delegate": "Issued under a delegation to this delegate (exact name).",
    "serial": "Serial number, lower-case hex without leading zeros.",
    "account": "Issued to this ACME account id.",
    "stage": "issued (default), precertificate, failed or any.",
    "revocation": "any (default), revoked or unrevoked - as of 'at' when given, else now.",
    **PAGE_PARAMETERS,
}
REVOCATION_PARAMETERS = {
    **SCOPE_PARAMETERS,
    "revoked_after": "Revoked at or after this time.",
    "revoked_before": "Revoked before this time.",
    "delegation": "Of certificates issued under this delegation id.",
    "delegate": "Of certificates issued under a delegation to this delegate.",
    "serial": "Of the certificate with this serial number.",
    "account": "Of certificates issued to this ACME account id.",
    "reason": "CRLReason (RFC 5280 §5.3.1) name, e.g. key-compromise; unspecified means no reason code.",
    "source": "How it was revoked: acme, operator, delegation or number.",
    **PAGE_PARAMETERS,
}
DELEGATION_PARAMETERS = {
    **SCOPE_PARAMETERS,
    "at": "In force at this time: started, not ended, not revoked yet.",
    "delegate": "Delegations to this delegate (exact name).",
    "status": "active or revoked (the status now).",
    **PAGE_PARAMETERS,
}
EVENT_PARAMETERS = {
    "action": "An action such as delegation.revoke, or a prefix ending in '.' such as user.",
    "actor": "Who acted, e.g. user:alice or cli:root.",
    "subject_type": "certificate, delegation, user, api_token, authority_token, ...",
    "subject_id": "The subject's id (a serial, a delegation id, a person's name).",
    "after": "Occurred at or after this time.",
    "before": "Occurred before this time.",
    **PAGE_PARAMETERS,
}


def parse_certificate_filter(params: Mapping[str, Any]) -> CertificateFilter:
    reader = _Params(params, CERTIFICATE_PARAMETERS)
    stage = reader.choice("stage", (*STAGES, "any"), default="issued")
    return CertificateFilter(
        scope=reader.scope(),
        at=reader.time("at"),
        issued_after=reader.time("issued_after"),
        issued_before=reader.time("issued_before"),
        delegation_id=reader.random_id("delegation"),
        delegate=reader.text("delegate"),
        serial=reader.serial("serial"),
        account_id=reader.random_id("account"),
        stage=None if stage == "any" else stage,
        revocation=reader.choice("revocation", REVOCATION_STATES, default="any"),
        limit=reader.limit(),
        cursor=reader.int_cursor(),
    )


def parse_revocation_filter(params: Mapping[str, Any]) -> RevocationFilter:
    reader = _Params(params, REVOCATION_PARAMETERS)
    return RevocationFilter(
        scope=reader.scope(),
        revoked_after=reader.time("revoked_after"),
        revoked_before=reader.time("revoked_before"),
        delegation_id=reader.random_id("delegation"),
        delegate=reader.text("delegate"),
        serial=reader.serial("serial"),
        account_id=reader.random_id("account"),
        reason=reader.choice("reason", REASON_NAMES, default=None),
        source=reader.choice("source", ("acme", "operator", "delegation", "number"), default=None),
        limit=reader.limit(),
        cursor=reader.int_cursor(),
    )


def parse_delegation_filter(params: Mapping[str, Any]) -> DelegationFilter:
    reader = _Params(params, DELEGATION_PARAMETERS)
    return DelegationFilter(
        scope=reader.scope(),
        at=reader.time("at"),
        delegate=reader.text("delegate"),
        status=reader.choice("status", DELEGATION_STATES, default=None),
        limit=reader.limit(),
        cursor=reader.delegation_cursor(),
    )


def parse_event_filter(params: Mapping[str, Any]) -> EventFilter:
    reader = _Params(params, EVENT_PARAMETERS)
    action = reader.text("action")
    if action is not None and not _ACTION.fullmatch(action):
        raise QueryError(f"action {action[:40]!r} is not an action name like 'delegation.revoke' or a prefix "
                         "like 'user.'", field="action")
    subject_type = reader.text("subject_type")
    if subject_type is not None and not _SUBJECT_TYPE.fullmatch(subject_type):
        raise QueryError(f"subject_type {subject_type[:40]!r} must be lower-case letters and '_'",
                         field="subject_type")
    return EventFilter(
        action=action,
        actor=reader.text("actor"),
        subject_type=subject_type,
        subject_id=reader.text("subject_id"),
        after=reader.time("after"),
        before=reader.time("before"),
        limit=reader.limit(),
        cursor=reader.int_cursor(),
    )


class _Params:
    """Reads text parameters, each error naming the parameter; refuses unknown names."""

    def __init__(self, params: Mapping[str, Any], known: Mapping[str, str]) -> None:
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise QueryError(f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(known))}",
                             field=str(unknown[0])[:64])
        self._params = params

    def raw(self, name: str) -> str | None:
        value = self._params.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise QueryError(f"{name} must be text", field=name)
        if value == "":
            raise QueryError(f"{name} is empty; leave it out instead", field=name)
        if len(value) > MAX_TEXT_PARAM:
            raise QueryError(f"{name} has {len(value)} characters; at most {MAX_TEXT_PARAM} are accepted", field=name)
        if _CONTROL.search(value):
            raise QueryError(f"{name} contains control characters", field=name)
        return value

    def text(self, name: str) -> str | None:
        return self.raw(name)

    def choice(self, name: str, allowed: Sequence[str], *, default: str | None) -> str | None:
        value = self.raw(name)
        if value is None:
            return default
        if value not in allowed:
            raise QueryError(f"{name} must be one of {', '.join(allowed)} (got {value[:40]!r})", field=name)
        return value

    def time(self, name: str) -> dt.datetime | None:
        value = self.raw(name)
        if value is None:
            return None
        return parse_time(value, field=name)

    def serial(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        if not _SERIAL.fullmatch(value) or (len(value) > 1 and value.startswith("0")):
            raise QueryError(f"serial {value[:70]!r} must be lower-case hex without leading zeros, as stored",
                             field=name)
        return value

    def random_id(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not _RANDOM_ID.fullmatch(value):
            raise QueryError(f"{name} {value[:40]!r} is not an id (letters, digits, '-' and '_')", field=name)
        return value

    def limit(self) -> int:
        value = self.raw("limit")
        if value is None:
            return DEFAULT_LIMIT
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
            raise QueryError(f"limit must be an integer from 1 to {MAX_LIMIT} (got {value[:20]!r})", field="limit")
        return int(value)

    def scope(self) -> ScopeFilter:
        tn, range_text, spc = self.raw("tn"), self.raw("range"), self.raw("spc")
        return ScopeFilter(
            tn=_scope_entry(TN, tn, "tn") if tn is not None else None,
            range=NumberRange.parse(range_text) if range_text is not None else None,
            spc=_scope_entry(SPC, spc, "spc") if spc is not None else None,
        )

    def int_cursor(self) -> int | None:
        """The key of the last item seen: every decimal number is a valid cursor (items below it follow)."""
        value = self.raw("cursor")
        if value is None:
            return None
        if not _INT_CURSOR.fullmatch(value):
            raise QueryError(f"cursor {value[:40]!r} is not a next_cursor of this list (digits)", field="cursor")
        return int(value)

    def delegation_cursor(self) -> tuple[dt.datetime, str] | None:
        """``<microseconds since 1970>.<delegation id>`` of the last delegation seen."""
        value = self.raw("cursor")
        if value is None:
            return None
        match = _DELEGATION_CURSOR.fullmatch(value)
        if match is None:
            raise QueryError(f"cursor {value[:40]!r} is not a next_cursor of delegations (MICROSECONDS.ID)",
                             field="cursor")
        return _EPOCH + dt.timedelta(microseconds=int(match.group(1))), match.group(2)


def _scope_entry(kind: Any, value: str, field: str) -> Any:
    try:
        return kind(value)
    except ScopeError as error:
        raise QueryError(error.detail, field=field) from None


def parse_time(value: str, *, field: str) -> dt.datetime:
    """RFC 3339 §5.6 date-time (with "Z" or an offset) or a full-date (midnight UTC); aware UTC.

    As RFC 3339 allows: "t"/"z" in lower case, any number of fraction digits (kept to the
    microsecond), a leap second (23:59:60 UTC, read as the last microsecond of that minute). A
    time too close to year 1 or 9999 to shift into UTC is clamped to the first or last one there is.
    """
    if _DATE.fullmatch(value):
        text, leap = value + "T00:00:00+00:00", False
    else:
        match = _DATE_TIME.fullmatch(value)
        if match is None:
            raise QueryError(f"{field} {value[:40]!r} must be an RFC 3339 time such as 2026-03-01T12:00:00Z, "
                             "or a date such as 2026-03-01", field=field)
        date, hours, minutes, seconds, fraction, offset = match.groups()
        leap = seconds == "60"
        fraction = (fraction or "")[:6]
        offset = "+00:00" if offset in ("Z", "z") else offset
        text = f"{date}T{hours}:{minutes}:{'59' if leap else seconds}{'.' + fraction if fraction and not leap else ''}{offset}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise QueryError(f"{field} {value[:40]!r} is not a real time: {error}", field=field) from None
    try:
        utc = parsed.astimezone(dt.timezone.utc)
    except OverflowError:
        limit = dt.datetime.min if parsed.year == dt.MINYEAR else dt.datetime.max
        utc = limit.replace(tzinfo=dt.timezone.utc)
    if leap:
        # RFC 3339 §5.7: a leap second is inserted (if at all) at the end of a UTC day.
        if (utc.hour, utc.minute) != (23, 59):
            raise QueryError(f"{field} {value[:40]!r} is not a real time: a leap second (:60) is 23:59:60 UTC",
                             field=field)
        utc = utc.replace(microsecond=999999)
    return utc


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


def _interval_probe(owner: Any, entry: Any, width: int, lo: int, hi: int) -> Select:
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
            probes.append(_interval_probe(owner, entry, len(scope.tn.number), number, number))
    if scope.range is not None:
        probes.append(_interval_probe(owner, entry, scope.range.width, scope.range.lo, scope.range.hi))
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


def certificate_json(
    row: Certificate,
    *,
    issuer: str | None,
    delegation: Delegation | None,
    revocation: Revocation | None,
    issue_event: AuditEvent | None,
    token_jtis: Sequence[str] = (),
) -> dict[str, Any]:
    """The item for one certificate: what it covered, when, under whose delegation, who said so."""
    return {
        "serial": row.serial,
        "kind": row.kind,
        "stage": row.stage,
        "subject": row.subject,
        "issuer": issuer,
        "not_before": isoformat_or_none(row.not_before),
        "not_after": isoformat_or_none(row.not_after),
        "issued_at": isoformat_or_none(row.created_at),
        "scope": scope_json(row.scope_der),
        "delegation": _delegation_ref(delegation),
        "account_id": row.account_id,
        "order_id": row.order_id,
        "authority_token_jtis": list(token_jtis),
        "fingerprint_sha256": row.fingerprint_sha256,
        "sct_count": len(row.scts or []),
        "revocation": revocation_fields(revocation) if revocation is not None else None,
        "issue_event": event_ref(issue_event),
    }


def scope_json(scope_der: bytes) -> dict[str, Any]:
    """A TN scope for people and for machines: description, entries and the DER (base64url)."""
    try:
        scope = TNScope.from_der(scope_der, strict=False)
    except ScopeError:
        # A stored scope always decoded when it was written; say so rather than fail the page.
        return {"description": "unreadable TNAuthList", "tnauthlist": b64url_encode(scope_der), "entries": []}
    entries: list[dict[str, Any]] = []
    for entry in scope.entries:
        if isinstance(entry, TN):
            entries.append({"type": "tn", "number": entry.number})
        elif isinstance(entry, TNRange):
            entries.append({"type": "range", "start": entry.start, "count": entry.count})
        else:
            entries.append({"type": "spc", "code": entry.code})
    return {
        "description": scope.describe(),
        "tnauthlist": b64url_encode(scope_der),
        "entries": entries,
    }


def _delegation_ref(delegation: Delegation | None) -> dict[str, Any] | None:
    if delegation is None:
        return None
    return {
        "id": delegation.id,
        "delegate": delegation.delegate,
        "created_by": delegation.created_by,
        "status": delegation.status,
    }


def revocation_fields(revocation: Revocation) -> dict[str, Any]:
    reason = CRLReason(revocation.reason_code).name.lower().replace("_", "-") if revocation.reason_code is not None else "unspecified"
    return {
        "revoked_at": isoformat_or_none(revocation.revoked_at),
        "reason_code": revocation.reason_code,
        "reason": reason,
        "source": revocation.source,
        "actor": revocation.actor,
        "comment": revocation.comment,
    }


def event_ref(event: AuditEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"seq": event.seq, "actor": event.actor, "occurred_at": isoformat_or_none(event.occurred_at), "hash": event.hash}


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
    events = _first_events(session, "delegation", [d.id for d in rows], ("delegation.create", "delegation.revoke"))
    items = [delegation_json(d, events.get((d.id, "delegation.create")), events.get((d.id, "delegation.revoke"))) for d in rows]
    if not more:
        return Page(items, None, flt.limit)
    key = (rows[-1].created_at, rows[-1].id)
    micros = (key[0] - _EPOCH) // dt.timedelta(microseconds=1)
    return Page(items, f"{micros}.{key[1]}", flt.limit, key)


def delegation_json(delegation: Delegation, create_event: AuditEvent | None, revoke_event: AuditEvent | None) -> dict[str, Any]:
    return {
        "id": delegation.id,
        "delegate": delegation.delegate,
        "scope": scope_json(delegation.scope_der),
        "ca": delegation.ca_allowed,
        "max_lifetime_seconds": delegation.max_lifetime_seconds,
        "not_before": isoformat_or_none(delegation.not_before),
        "not_after": isoformat_or_none(delegation.not_after),
        "status": delegation.status,
        "revoked_at": isoformat_or_none(delegation.revoked_at),
        "revocation_reason": delegation.revocation_reason,
        "created_by": delegation.created_by,
        "created_at": isoformat_or_none(delegation.created_at),
        "create_event": event_ref(create_event),
        "revoke_event": event_ref(revoke_event),
    }


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


def event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": isoformat_or_none(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


@dataclasses.dataclass(frozen=True)
class CheckpointFilter:
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None  # id of the last checkpoint already seen


CHECKPOINT_PARAMETERS = {**PAGE_PARAMETERS}


def parse_checkpoint_filter(params: Mapping[str, Any]) -> CheckpointFilter:
    reader = _Params(params, CHECKPOINT_PARAMETERS)
    return CheckpointFilter(limit=reader.limit(), cursor=reader.int_cursor())


def checkpoints(session: Session, flt: CheckpointFilter) -> Page:
    """Signed checkpoints of the chain head (ca/records/audit.py), newest first."""
    query = select(AuditCheckpoint)
    if flt.cursor is not None:
        query = query.where(_below(AuditCheckpoint.id, flt.cursor))
    rows = list(session.scalars(query.order_by(AuditCheckpoint.id.desc()).limit(flt.limit + 1)))
    more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    return _page([checkpoint_json(c) for c in rows], rows[-1].id if more else None, flt.limit)


def checkpoint_json(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as stored: the exact signed statement, the signature and the signing certificate."""
    return {
        "id": checkpoint.id,
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "signed_at": isoformat_or_none(checkpoint.signed_at),
        "statement": checkpoint.statement,
        "signature": base64.b64encode(checkpoint.signature).decode("ascii"),
        "certificate": x509.load_der_x509_certificate(checkpoint.certificate_der)
        .public_bytes(serialization.Encoding.PEM)
        .decode("ascii"),
    }


# ------------------------------------------------------------------------------------------
# Exports
# ------------------------------------------------------------------------------------------


def iter_all(fetch: Callable[[Any], Page], flt: Any, *, batch: int = MAX_LIMIT) -> Iterator[dict[str, Any]]:
    """Every item of a query, page by page: ``fetch`` is e.g. ``functools.partial(certificates, session)``."""
    flt = dataclasses.replace(flt, limit=batch, cursor=None)
    while True:
        page = fetch(flt)
        yield from page.items
        if page.next_cursor is None:
            return
        flt = dataclasses.replace(flt, cursor=page.next_key)


# One row per certificate: the columns an auditor's spreadsheet needs, in a fixed order.
CERTIFICATE_CSV_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("serial", lambda i: i["serial"]),
    ("kind", lambda i: i["kind"]),
    ("stage", lambda i: i["stage"]),
    ("subject", lambda i: i["subject"]),
    ("issuer", lambda i: i["issuer"]),
    ("not_before", lambda i: i["not_before"]),
    ("not_after", lambda i: i["not_after"]),
    ("issued_at", lambda i: i["issued_at"]),
    ("scope", lambda i: i["scope"]["description"]),
    ("tnauthlist", lambda i: i["scope"]["tnauthlist"]),
    ("delegation_id", lambda i: (i["delegation"] or {}).get("id")),
    ("delegate", lambda i: (i["delegation"] or {}).get("delegate")),
    ("delegation_created_by", lambda i: (i["delegation"] or {}).get("created_by")),
    ("account_id", lambda i: i["account_id"]),
    ("order_id", lambda i: i["order_id"]),
    ("authority_token_jtis", lambda i: " ".join(i["authority_token_jtis"])),
    ("fingerprint_sha256", lambda i: i["fingerprint_sha256"]),
    ("sct_count", lambda i: i["sct_count"]),
    ("revoked_at", lambda i: (i["revocation"] or {}).get("revoked_at")),
    ("revocation_reason", lambda i: (i["revocation"] or {}).get("reason")),
    ("revoked_by", lambda i: (i["revocation"] or {}).get("actor")),
    ("issue_event_seq", lambda i: (i["issue_event"] or {}).get("seq")),
    ("issued_by", lambda i: (i["issue_event"] or {}).get("actor")),
)
REVOCATION_CSV_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("serial", lambda i: i["serial"]),
    ("revoked_at", lambda i: i["revoked_at"]),
    ("reason", lambda i: i["reason"]),
    ("reason_code", lambda i: i["reason_code"]),
    ("source", lambda i: i["source"]),
    ("actor", lambda i: i["actor"]),
    ("comment", lambda i: i["comment"]),
    ("revoke_event_seq", lambda i: (i["revoke_event"] or {}).get("seq")),
    ("scope", lambda i: i["certificate"]["scope"]["description"]),
    ("delegation_id", lambda i: (i["certificate"]["delegation"] or {}).get("id")),
    ("delegate", lambda i: (i["certificate"]["delegation"] or {}).get("delegate")),
    ("account_id", lambda i: i["certificate"]["account_id"]),
    ("not_before", lambda i: i["certificate"]["not_before"]),
    ("not_after", lambda i: i["certificate"]["not_after"]),
)

# OWASP "CSV injection": a cell starting with one of these is a formula to a spreadsheet. The
# subject DN comes from a CSR, i.e. from outside; such cells get a leading apostrophe.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_lines(items: Iterable[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]) -> Iterator[str]:
    """CSV text (RFC 4180, CRLF line ends), header first, one line per item, streamable."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([name for name, _ in columns])
    yield flush()
    for item in items:
        writer.writerow([_csv_cell(get(item)) for _, get in columns])
        yield flush()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
