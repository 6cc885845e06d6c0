"""TN scope entries: the three kinds of RFC 8226 §9 TNEntry as immutable values.

``SPC`` (a service provider code: every number it holds), ``TNRange`` (start + count) and ``TN``
(one telephone number). An entry can only be constructed if it satisfies RFC 8226 §9
(TelephoneNumber 1..15 of ``0-9*#``; range count >= 2; range start without ``*``/``#``; the last
number of a range fits in the start's width); every ``ScopeError`` names the field at fault.
Numbers are fixed-width decimal strings: "0123" and "123" are different numbers (their widths
differ), so every interval carries its width.

The entries stand apart from the DER codec (:mod:`ca.numbers.tnauthlist_der`) and the scope
algebra (:mod:`ca.numbers.tnauthlist`) because both are built on them, and neither needs the
other to say what a valid entry is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from ca.errors import ScopeError

# RFC 8226 §9: TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*")).
MAX_TN_LENGTH = 15
TN_ALPHABET = frozenset("0123456789#*")
# RFC 8226 §9: TelephoneNumberRange.count INTEGER (2..MAX); a single number is a `one`.
MIN_RANGE_COUNT = 2
# ServiceProviderCode is an unconstrained IA5String. We accept 1..64 visible ASCII characters:
# real SPCs (OCNs, SPIDs) are a handful of letters and digits, 64 is the width of the indexed
# `spc` column in ca/records/models_authority.py, and spaces or control characters could only mislead a person
# reading the scope in the admin UI or an audit record.
MAX_SPC_LENGTH = 64
_SPC_PATTERN = re.compile(r"[\x21-\x7e]+")
_DIGITS = frozenset("0123456789")

# Field name used in ScopeError for problems with the structure as a whole.
LIST_FIELD = "TNAuthList"


def check_telephone_number(value: object, *, field: str, what: str) -> str:
    """Return ``value`` if it is an RFC 8226 §9 TelephoneNumber, else raise ScopeError."""
    if not isinstance(value, str):
        raise ScopeError(f"{what} must be a string of digits, * or # (got {type(value).__name__})", field=field)
    if value == "":
        raise ScopeError(f"{what} is empty; a TelephoneNumber has 1 to {MAX_TN_LENGTH} characters", field=field)
    if value.startswith("+"):
        raise ScopeError(
            f"{what} {quote(value)} must be digits, * or # without '+' "
            f"(write the E.164 number as country code and national number, e.g. '12025550100')",
            field=field,
        )
    bad = sorted(set(value) - TN_ALPHABET)
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise ScopeError(
            f"{what} {quote(value)} must contain only digits, * or # (found {shown}; RFC 8226 §9)",
            field=field,
        )
    if len(value) > MAX_TN_LENGTH:
        raise ScopeError(
            f"{what} {quote(value)} has {len(value)} characters; "
            f"a TelephoneNumber has at most {MAX_TN_LENGTH} (RFC 8226 §9)",
            field=field,
        )
    return value


def quote(value: str, limit: int = 24) -> str:
    """Quote user input for an error detail, shortened so a huge value cannot flood a log."""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


@dataclass(frozen=True, order=True)
class SPC:
    """``spc [0] ServiceProviderCode``: every number a service provider holds (RFC 8226 §9)."""

    code: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, str):
            raise ScopeError(f"SPC must be a string (got {type(self.code).__name__})", field="spc")
        if not self.code:
            raise ScopeError("SPC is empty; a service provider code has at least one character", field="spc")
        if len(self.code) > MAX_SPC_LENGTH:
            raise ScopeError(
                f"SPC {quote(self.code)} has {len(self.code)} characters; at most {MAX_SPC_LENGTH} are accepted",
                field="spc",
            )
        if not _SPC_PATTERN.fullmatch(self.code):
            raise ScopeError(
                f"SPC {quote(self.code)} must be visible ASCII characters without spaces "
                f"(ServiceProviderCode is an IA5String, RFC 8226 §9)",
                field="spc",
            )

    def describe(self) -> str:
        return f"SPC {self.code}"


@dataclass(frozen=True, order=True)
class TNRange:
    """``range [1] TelephoneNumberRange``: ``count`` consecutive numbers from ``start``.

    The numbers are ``start, start+1, …, start+count-1`` as decimal strings of the same width as
    ``start`` (RFC 8226 §9). Construction enforces the prose reading of the width rule (the last
    number has no more digits than ``start``); ``fits_strict_width`` tells whether the stricter
    formula ``start + count < 10^D`` also holds, which issuance requires.
    """

    start: str
    count: int

    def __post_init__(self) -> None:
        check_telephone_number(self.start, field="range.start", what="range start")
        if not set(self.start) <= _DIGITS:
            raise ScopeError(
                f"range start {quote(self.start)} contains '*' or '#'; "
                f"a range applies only to a start of digits (RFC 8226 §9)",
                field="range.start",
            )
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ScopeError(f"range count must be an integer (got {type(self.count).__name__})", field="range.count")
        if self.count < MIN_RANGE_COUNT:
            raise ScopeError(
                f"range count must be at least {MIN_RANGE_COUNT} (got {self.count}); "
                f"use a single TN for one number (RFC 8226 §9)",
                field="range.count",
            )
        limit = 10 ** self.width
        if int(self.start) + self.count - 1 >= limit:
            raise ScopeError(
                f"range {self.start}+{self.count} runs past {self.width} digits: its last number would be "
                f"{int(self.start) + self.count - 1}, longer than the start (RFC 8226 §9)",
                field="range.count",
            )

    @property
    def width(self) -> int:
        return len(self.start)

    @property
    def lo(self) -> int:
        return int(self.start)

    @property
    def hi(self) -> int:
        """The last number of the range, as an integer (inclusive)."""
        return int(self.start) + self.count - 1

    @property
    def fits_strict_width(self) -> bool:
        """RFC 8226 §9 formula: ``start + count`` MUST be less than ``10^D``."""
        return int(self.start) + self.count < 10 ** self.width

    def describe(self) -> str:
        return f"range {self.start}+{self.count}"


@dataclass(frozen=True, order=True)
class TN:
    """``one [2] TelephoneNumber``: a single number, digits (and possibly ``*``/``#``)."""

    number: str

    def __post_init__(self) -> None:
        check_telephone_number(self.number, field="one", what="TN")

    @property
    def is_literal(self) -> bool:
        """A number with ``*`` or ``#`` is not an integer; it only ever matches itself."""
        return not set(self.number) <= _DIGITS

    def describe(self) -> str:
        return f"TN {self.number}"


TNEntry = Union[SPC, TNRange, TN]


def check_strict_width(entry: TNEntry, *, field: str) -> None:
    """Issuance's reading of the RFC 8226 §9 range width: ``start + count < 10^D``. Raises ScopeError."""
    if isinstance(entry, TNRange) and not entry.fits_strict_width:
        raise ScopeError(
            f"range {entry.start}+{entry.count}: start + count must be less than 10^{entry.width} "
            f"(RFC 8226 §9); end the range one number earlier and add the last number as a single TN",
            field=field,
        )


def entry_field(index: int, sub: str | None) -> str:
    """The ``field`` of a ScopeError about entry ``index``: ``TNAuthList[2].range.count``."""
    return f"{LIST_FIELD}[{index}]" + (f".{sub}" if sub else "")
