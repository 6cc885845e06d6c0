"""Option values the commands share: a TN scope from ``--tn/--range/--spc``, durations, dates,
and which option a ``ca`` error's ``field`` refers to.

Every failure is :class:`tnca.context.BadInput`: exit code 2, one line naming the option.
"""

from __future__ import annotations

import datetime as dt
from typing import NoReturn

import click

from ca.errors import ClaimConstraintsError, NotFoundError, PolicyError, QueryError, ScopeError, TNCAError
from ca.numbers.tnauthlist import TNScope
from ca.policy import parse_duration
from ca.records.query_filters import parse_time
from tnca.context import BadInput

# Which scope option a ScopeError field refers to, by the field's first component: ``tns[0]``
# and ``ranges[1]`` from TNScope.parse, ``range.start`` and ``spc`` from the entry checks.
_SCOPE_FIELDS = (("tns", "--tn"), ("ranges", "--range"), ("range", "--range"), ("spcs", "--spc"),
                 ("spc", "--spc"), ("SPC", "--spc"))

# Which option each ``field`` of a ca error about a delegation or a token refers to.
_FIELD_OPTIONS = {
    "delegate": "--delegate",
    "max_lifetime": "--max-lifetime",
    "not_after": "--not-after",
    "constraints": "--constraints",
    "ca": "--ca",
    "reason": "--reason",
    "ttl": "--ttl",
    "fingerprint": "--fingerprint",
    "delegation": "--delegation",
    "profile": "--profile",
    "legal_name": "--legal-name",
    "country": "--country",
    "lei": "--lei",
    "assurance": "--assurance",
    "vetted_by": "--vetted-by",
    "vetted_at": "--vetted-at",
    "evidence": "--evidence",
    "source": "--source",
    "verified_by": "--verified-by",
    "verified_at": "--verified-at",
}


def scope_option(field: str | None, *, tn_option: str = "--tn", given: str | None = None) -> str:
    """The scope option an error's field names (``ranges[0]`` → ``--range``); else ``given``,
    the options the user typed, or all three."""
    field = field or ""
    for prefix, option in _SCOPE_FIELDS:
        if field.startswith(prefix):
            return tn_option if option == "--tn" else option
    return given or f"{tn_option}/--range/--spc"


def given_scope_options(tns: tuple[str, ...], ranges: tuple[str, ...], spcs: tuple[str, ...], *,
                        tn_option: str = "--tn") -> str:
    """The scope options the user gave, for an error about the scope as a whole."""
    given = [option for option, values in ((tn_option, tns), ("--range", ranges), ("--spc", spcs)) if values]
    return "/".join(given) or f"{tn_option}/--range/--spc"


def parse_scope(tns: tuple[str, ...], ranges: tuple[str, ...], spcs: tuple[str, ...], *,
                tn_option: str = "--tn") -> TNScope:
    """A TN scope from the command line; ``tn_option`` is how this command spells ``--tn``."""
    try:
        return TNScope.parse(tns=tns, ranges=ranges, spcs=spcs)
    except ScopeError as error:
        given = given_scope_options(tns, ranges, spcs, tn_option=tn_option)
        raise BadInput(scope_option(error.field, tn_option=tn_option, given=given), error.detail) from None


def option_for(field: str | None, default_option: str) -> str:
    """The option a delegation or token error's field refers to."""
    if field is None:
        return default_option
    base = field.split("[", 1)[0].split(".", 1)[0]
    if base in ("tns", "ranges", "spcs"):
        return scope_option(base)
    return _FIELD_OPTIONS.get(base, default_option)


def fail_on(error: TNCAError, *, default_option: str) -> NoReturn:
    """Turn a ca error into the CLI's answer: bad input (exit 2) naming the option, else exit 1."""
    if isinstance(error, ScopeError | ClaimConstraintsError | PolicyError) or (
        isinstance(error, NotFoundError) and error.field == "delegation"
    ):
        raise BadInput(option_for(error.field, default_option), error.detail) from error
    raise click.ClickException(error.detail) from error


def duration_option(value: str | None, option: str) -> dt.timedelta | None:
    """``90d``, ``12h``, ``5m`` (ca.policy.parse_duration); None when the option was not given."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise BadInput(option, str(error)) from error


def date_option(value: str | None, option: str) -> dt.datetime | None:
    """``2026-12-31`` (midnight UTC at the start of that day) or an RFC 3339 time with its offset:
    what the operator pages and the audit API accept (``ca.records.queries.parse_time``)."""
    if value is None:
        return None
    try:
        return parse_time(value, field=option)
    except QueryError as error:
        raise BadInput(option, f"expected a date such as 2026-12-31 or 2026-12-31T18:00:00Z, got {value!r}") from error
