"""How values read on the pages: times in UTC with a relative hint, durations, status words.

Registered as Jinja filters by :func:`register`. Every time is shown in UTC (stored as UTC,
ca/records/models_base.py); auditors compare them with other systems' records, so a page never
converts to the browser's zone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint

from acme_server.state import current_state
from ca.encoding import rfc3339, unsafe_text
from ca.errors import ScopeError
from ca.policy import format_duration
from ca.numbers.tnauthlist import TNScope

_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def as_datetime(value: Any) -> dt.datetime | None:
    """A datetime from an aware datetime or the ISO text ``ca.records.queries`` items carry."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    return dt.datetime.fromisoformat(str(value)).astimezone(dt.timezone.utc)


def utc(value: Any, *, seconds: bool = True) -> str:
    """``2026-03-01 12:00:05 UTC``; an empty string for None."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def iso(value: Any) -> str:
    """RFC 3339 with ``Z`` (what the search fields and the audit API accept)."""
    moment = as_datetime(value)
    return rfc3339(moment) if moment is not None else ""


def relative(value: Any, now: dt.datetime | None = None) -> str:
    """``in 3 h``, ``2 d ago``, ``now``: the largest whole unit, one decimal below 10 of it."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    now = now or current_state().clock.now()
    delta = (moment - now).total_seconds()
    magnitude = abs(delta)
    if magnitude < 30:
        return "now"
    for unit, size in _UNITS:
        # 59.8 minutes read as "1 h", not "60 min".
        if magnitude >= size * 0.995:
            amount = magnitude / size
            text = f"{amount:.1f}".rstrip("0").rstrip(".") if amount < 9.95 and unit != "s" else f"{round(amount)}"
            return f"in {text} {unit}" if delta > 0 else f"{text} {unit} ago"
    return "now"  # pragma: no cover - magnitude >= 30 s always matches a unit


def duration(seconds: Any) -> str:
    """A lifetime for people: ``1d``, ``12h``, ``1h30m`` (the same spelling the CLI accepts)."""
    if seconds is None:
        return ""
    if isinstance(seconds, dt.timedelta):
        return format_duration(seconds)
    return format_duration(dt.timedelta(seconds=int(seconds)))


def short_hash(value: Any, length: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= length else text[:length] + "…"


def scope_description(scope_der: bytes | None) -> str:
    """A stored TNAuthList for people (``TN 12025550100, range 12025550000+100``)."""
    if not scope_der:
        return ""
    try:
        return TNScope.from_der(scope_der, strict=False).describe()
    except ScopeError:
        return "unreadable TNAuthList"


def without(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A copy of ``mapping`` without ``keys`` (paging links drop the cursor)."""
    return {key: value for key, value in mapping.items() if key not in keys}


def visible(value: Any) -> Any:
    """Text as it may be shown to people: a control or bidi character (a right-to-left override
    in a subject read from a certificate) is written as ``⟦U+202E⟧`` instead of reordering the
    text around it (Unicode Technical Report #36 §2.1). The pages' Jinja ``finalize`` applies
    it to every expression, so no template can forget it; Markup (already safe HTML) is left alone."""
    if type(value) is not str or unsafe_text(value) is None:
        return value
    # Tab and line breaks reorder nothing and appear in multi-line texts (reasons, comments).
    return "".join(f"⟦U+{ord(char):04X}⟧" if char not in "\t\n\r" and unsafe_text(char) else char for char in value)


def register(blueprint: Blueprint) -> None:
    for name, function in {
        "utc": utc,
        "iso": iso,
        "relative": relative,
        "duration": duration,
        "short_hash": short_hash,
        "scope_description": scope_description,
        "without": without,
        "visible": visible,
    }.items():
        blueprint.add_app_template_filter(function, name)
