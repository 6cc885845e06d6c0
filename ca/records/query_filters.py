"""Audit query filters: the parameters auditors give, parsed into frozen filters.

The audit API's query string, ``tnca audit query`` options and the auditor pages all hand text
parameters to the same ``parse_*_filter`` functions, so they accept and refuse exactly the same
input; every refusal is a :class:`ca.errors.QueryError` whose ``field`` names the parameter. The
``*_PARAMETERS`` tables give one line of help per parameter: the OpenAPI document and the CLI
options are generated from them, so neither can drift from the parser.

It stands apart from :mod:`ca.records.queries` (which runs the filters against the database)
because the front ends need the parameter tables and :func:`parse_time` without any SQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ca.errors import QueryError, ScopeError
from ca.lifecycle.reasons import CRLReason
from ca.numbers.tn_entries import SPC, TN

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

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


@dataclasses.dataclass(frozen=True)
class CheckpointFilter:
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None  # id of the last checkpoint already seen


CHECKPOINT_PARAMETERS = {**PAGE_PARAMETERS}


def parse_checkpoint_filter(params: Mapping[str, Any]) -> CheckpointFilter:
    reader = _Params(params, CHECKPOINT_PARAMETERS)
    return CheckpointFilter(limit=reader.limit(), cursor=reader.int_cursor())


def format_delegation_cursor(created_at: dt.datetime, delegation_id: str) -> str:
    """The ``next_cursor`` after a delegation: ``<microseconds since 1970>.<delegation id>``."""
    micros = (created_at - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{micros}.{delegation_id}"
