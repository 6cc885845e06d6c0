"""TN scopes: the scope algebra (RFC 9060 §4) over TNAuthList values (RFC 8226 §9).

A TN scope is a TNAuthorizationList: telephone numbers (``one``), number ranges (``range``:
start + count) and service provider codes (``spc``). :class:`TNScope` is its immutable value,
read from and written to DER (certificate extension, ACME identifier value, authority-token
``tkvalue``) through :mod:`ca.numbers.tnauthlist_der`, and answers the questions issuance asks:
is this requested scope inside that delegation (``contains``), do two scopes share a number
(``overlaps``), is a number in scope (``covers_number``). Its entries are
:mod:`ca.numbers.tn_entries`.

The ``strict`` knob (RFC 8226 §9 range width). The prose says a range must not make the number
longer than the start; the formula says ``start + count < 10^D``, which is one stricter (start
"90" count 10 ends at "99": fine by the prose, refused by the formula). With ``strict=True`` (the
default, used when *issuing*) the formula is enforced so that both readings hold. Pass
``strict=False`` when *evaluating* a certificate or token someone else produced: the prose
reading is then accepted. Nothing else depends on the knob.

Not checked here: whether an SPC really owns a number. That needs industry data or an authority
token (RFC 9060 §4.1, §8), so an SPC never contains a TN or a range in ``contains``.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ca.errors import ScopeError
from ca.numbers.tn_entries import LIST_FIELD, SPC, TN, TNEntry, TNRange, check_strict_width, check_telephone_number, quote
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST, decode, decode_identifier_value, encode
from ca.encoding import b64url_encode


# --------------------------------------------------------------------------------------------
# Scope algebra
# --------------------------------------------------------------------------------------------

# An interval of fixed-width decimal numbers: (width, lo, hi), inclusive at both ends.
_Interval = tuple[int, int, int]


@dataclass(frozen=True)
class _Normal:
    """A scope as three sets (RFC 9060 §4.1 union semantics), intervals merged per width."""

    spcs: frozenset[str]
    intervals: dict[int, tuple[tuple[int, int], ...]]  # width -> sorted disjoint non-adjacent (lo, hi)
    literals: frozenset[str]

    @classmethod
    def of(cls, entries: Iterable[TNEntry]) -> _Normal:
        spcs: set[str] = set()
        literals: set[str] = set()
        raw: dict[int, list[tuple[int, int]]] = {}
        for entry in entries:
            if isinstance(entry, SPC):
                spcs.add(entry.code)
            elif isinstance(entry, TNRange):
                raw.setdefault(entry.width, []).append((entry.lo, entry.hi))
            elif entry.is_literal:
                literals.add(entry.number)
            else:
                raw.setdefault(len(entry.number), []).append((int(entry.number), int(entry.number)))
        return cls(frozenset(spcs), {w: _merge(v) for w, v in sorted(raw.items())}, frozenset(literals))

    def covers(self, width: int, lo: int, hi: int) -> bool:
        """Is [lo, hi] inside the union of this scope's intervals of the same width?"""
        merged = self.intervals.get(width, ())
        # Merged intervals are disjoint and non-adjacent, so one of them must hold all of [lo, hi].
        i = bisect.bisect_right(merged, (lo, float("inf"))) - 1
        return i >= 0 and merged[i][0] <= lo and hi <= merged[i][1]

    def intersects(self, width: int, lo: int, hi: int) -> bool:
        merged = self.intervals.get(width, ())
        i = bisect.bisect_right(merged, (hi, float("inf"))) - 1
        return i >= 0 and merged[i][1] >= lo

    def subtract(self, width: int, lo: int, hi: int) -> list[tuple[int, int]]:
        """Parts of [lo, hi] not covered by this scope's intervals of the same width."""
        remaining = []
        cursor = lo
        for a, b in self.intervals.get(width, ()):
            if b < cursor:
                continue
            if a > hi:
                break
            if a > cursor:
                remaining.append((cursor, a - 1))
            cursor = max(cursor, b + 1)
            if cursor > hi:
                break
        if cursor <= hi:
            remaining.append((cursor, hi))
        return remaining


def _merge(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and merge overlapping or adjacent intervals ([1,3] + [4,5] -> [1,5])."""
    merged: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def _interval_entries(width: int, lo: int, hi: int) -> list[TNEntry]:
    """Canonical entries for one merged interval.

    A run of numbers becomes one range, except that a run reaching the last number of its width
    (all nines) gives that last number as a separate TN: ``start + count < 10^D`` (RFC 8226 §9
    formula) then holds for every range we produce, so a normalized scope is always issuable.
    """
    entries: list[TNEntry] = []
    top = 10**width - 1
    last = hi
    if hi == top and hi > lo:
        last = hi - 1
    if last > lo:
        entries.append(TNRange(str(lo).zfill(width), last - lo + 1))
    else:
        entries.append(TN(str(lo).zfill(width)))
    if last != hi:
        entries.append(TN(str(hi).zfill(width)))
    return entries


def _entries_of(normal: _Normal) -> tuple[TNEntry, ...]:
    entries: list[TNEntry] = [SPC(code) for code in sorted(normal.spcs)]
    for width, merged in normal.intervals.items():
        for lo, hi in merged:
            entries.extend(_interval_entries(width, lo, hi))
    entries.extend(TN(literal) for literal in sorted(normal.literals))
    return tuple(entries)


def _numeric_interval(entry: TNEntry) -> _Interval | None:
    if isinstance(entry, TNRange):
        return (entry.width, entry.lo, entry.hi)
    if isinstance(entry, TN) and not entry.is_literal:
        value = int(entry.number)
        return (len(entry.number), value, value)
    return None


# The same few scopes (a delegation's, an order's) are decoded and encoded on every request of
# an issuance; both directions are pure functions of immutable values, so each process keeps the
# recent ones (bounded). Errors are not cached: bad input is decoded, and refused, every time.
_CODEC_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_CODEC_CACHE_SIZE)
def _decoded(der: bytes, strict: bool) -> tuple[TNEntry, ...]:
    return decode(der, strict=strict)


@functools.lru_cache(maxsize=_CODEC_CACHE_SIZE)
def _encoded(entries: tuple[TNEntry, ...], strict: bool) -> bytes:
    return encode(entries, strict=strict)


@dataclass(frozen=True)
class TNScope:
    """A TN scope (TNAuthList) as an immutable value.

    ``entries`` keeps the order it was built or decoded with, so ``from_der(x).to_der() == x``;
    ``normalized()`` gives the canonical form (SPCs sorted, numbers merged per width and sorted,
    literal ``*``/``#`` numbers last). Equality is on ``entries``: compare ``normalized()`` values
    to ask whether two scopes name the same numbers.

    An empty TNScope is a valid value (e.g. the result of ``difference``) but has no DER form.
    """

    entries: tuple[TNEntry, ...]

    def __post_init__(self) -> None:
        entries = tuple(self.entries)
        for entry in entries:
            if not isinstance(entry, (SPC, TNRange, TN)):
                raise ScopeError(f"not a TN scope entry: {type(entry).__name__}", field=LIST_FIELD)
        object.__setattr__(self, "entries", entries)

    # ---- codecs -------------------------------------------------------------------------------

    @classmethod
    def from_der(cls, der: bytes, *, strict: bool = True) -> TNScope:
        if isinstance(der, (bytearray, memoryview)):
            der = bytes(der)
        return cls(_decoded(der, strict) if isinstance(der, bytes) else decode(der, strict=strict))

    def to_der(self, *, strict: bool = True) -> bytes:
        return _encoded(self.entries, strict)

    @classmethod
    def from_identifier_value(cls, value: str, *, strict: bool = True) -> TNScope:
        """The scope named by an ACME ``TNAuthList`` identifier value or a token ``tkvalue``.

        RFC 9448 §3: base64url of the DER, without padding. Padded standard base64 is accepted
        too because some clients and token authorities send it; comparisons are always made on
        the decoded DER, never on the text.
        """
        return cls.from_der(decode_identifier_value(value), strict=strict)

    def to_identifier_value(self, *, strict: bool = True) -> str:
        """base64url of the DER, without padding (RFC 9448 §3)."""
        return b64url_encode(self.to_der(strict=strict))

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate, *, strict: bool = False) -> TNScope | None:
        """The TNAuthList extension of ``certificate`` (RFC 8226 §9), or None if it has none.

        Lenient on range width by default: this reads a certificate that already exists.
        """
        try:
            extension = certificate.extensions.get_extension_for_oid(OID_TN_AUTH_LIST)
        except x509.ExtensionNotFound:
            return None
        except (x509.DuplicateExtension, ValueError) as error:
            # RFC 5280 §4.2: an extension appears at most once; cryptography refuses the whole list.
            raise ScopeError(f"certificate extensions cannot be read: {error}", field=LIST_FIELD) from None
        value = extension.value
        if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - cryptography parses it raw
            raise ScopeError("TNAuthList extension could not be read as raw DER", field=LIST_FIELD)
        return cls.from_der(value.value, strict=strict)

    def to_extension(self) -> x509.UnrecognizedExtension:
        """The extension value for a certificate builder (non-critical, RFC 8226 §9)."""
        return x509.UnrecognizedExtension(OID_TN_AUTH_LIST, self.to_der())

    @classmethod
    def parse(cls, tns: Iterable[str] = (), ranges: Iterable[str] = (), spcs: Iterable[str] = ()) -> TNScope:
        """A scope from human input (CLI ``--tn``, ``--range START:COUNT``, ``--spc CODE``).

        Strict: no '+', spaces, dashes or dots are stripped; the error says what to type instead.
        The result keeps the order tns, ranges, spcs; it is checked as for issuance.
        """
        entries: list[TNEntry] = []
        for index, text in enumerate(tns):
            entries.append(_parse_one(lambda: TN(_strip_check(text, "TN")), f"tns[{index}]"))
        for index, text in enumerate(ranges):
            entry = _parse_one(lambda: _parse_range(text), f"ranges[{index}]")
            check_strict_width(entry, field=f"ranges[{index}]")
            entries.append(entry)
        for index, text in enumerate(spcs):
            entries.append(_parse_one(lambda: SPC(_strip_check(text, "SPC")), f"spcs[{index}]"))
        if not entries:
            raise ScopeError("a TN scope needs at least one TN, range or SPC", field=LIST_FIELD)
        return cls(tuple(entries))

    # ---- algebra --------------------------------------------------------------------------------

    def _normal(self) -> _Normal:
        return _Normal.of(self.entries)

    def normalized(self) -> TNScope:
        """Canonical form: SPCs sorted; numbers merged per width (adjacent and overlapping entries
        become one range) and sorted by width then value; literal numbers last, sorted.

        The result always satisfies the strict RFC 8226 §9 range formula (see
        ``_interval_entries``), so it can be encoded for issuance.
        """
        return TNScope(_entries_of(self._normal()))

    def contains(self, other: TNScope) -> bool:
        """RFC 9060 §4: is ``other`` encompassed by this scope (equal to or a subset of it)?

        Each SPC of ``other`` must be one of ours (exact, case-sensitive); each number and range
        must lie in the union of our numbers and ranges of the same width (a range may span
        several of our entries); each literal ``*``/``#`` number must be one of our TNs exactly.
        An SPC here never contains a number or range: that needs industry data or an authority
        token (RFC 9060 §4.1), which the caller must weigh on its own.
        """
        return not self.difference_of(other).entries

    def difference_of(self, other: TNScope) -> TNScope:
        """The part of ``other`` this scope does not encompass, in normalized form.

        Empty exactly when ``self.contains(other)``; used to tell a person what is out of scope.
        """
        mine = self._normal()
        theirs = other._normal()
        missing_intervals: dict[int, list[tuple[int, int]]] = {}
        for width, merged in theirs.intervals.items():
            for lo, hi in merged:
                for part in mine.subtract(width, lo, hi):
                    missing_intervals.setdefault(width, []).append(part)
        missing = _Normal(
            spcs=theirs.spcs - mine.spcs,
            intervals={w: _merge(v) for w, v in sorted(missing_intervals.items())},
            literals=theirs.literals - mine.literals,
        )
        return TNScope(_entries_of(missing))

    def overlaps(self, other: TNScope) -> bool:
        """Do the two scopes share an SPC, a number of the same width or a literal number?

        As in ``contains``, an SPC is not known to overlap any number or range.
        """
        mine = self._normal()
        theirs = other._normal()
        if mine.spcs & theirs.spcs or mine.literals & theirs.literals:
            return True
        return any(
            mine.intersects(width, lo, hi) for width, merged in theirs.intervals.items() for lo, hi in merged
        )

    def covers_number(self, tn: str) -> bool:
        """Is the single TelephoneNumber ``tn`` in this scope? Raises ScopeError if ``tn`` is not one."""
        return self.contains(TNScope((TN(check_telephone_number(tn, field="tn", what="TN")),)))

    # ---- presentation -----------------------------------------------------------------------------

    def index_rows(self) -> list[dict[str, Any]]:
        """One row per normalized entry for ``certificate_scope_entries`` / ``delegation_scope_entries``.

        A TN or range gives ``width``, ``lo`` and ``hi`` (inclusive); an SPC gives ``spc``; a TN with
        ``*`` or ``#`` gives ``literal``. Unused columns are None.
        """
        rows: list[dict[str, Any]] = []
        for entry in self.normalized().entries:
            row: dict[str, Any] = {"width": None, "lo": None, "hi": None, "spc": None, "literal": None}
            interval = _numeric_interval(entry)
            if isinstance(entry, SPC):
                row["spc"] = entry.code
            elif interval is not None:
                row["width"], row["lo"], row["hi"] = interval
            else:
                row["literal"] = entry.number  # type: ignore[union-attr]
            rows.append(row)
        return rows

    def describe(self) -> str:
        """For people: ``"TN 12025550100, range 12025550000+100, SPC 1234"`` (entries in order)."""
        if not self.entries:
            return "no numbers"
        return ", ".join(entry.describe() for entry in self.entries)

    def __str__(self) -> str:
        return self.describe()


# --------------------------------------------------------------------------------------------
# Input helpers
# --------------------------------------------------------------------------------------------


def _parse_one(build: Any, field: str) -> TNEntry:
    try:
        return build()
    except ScopeError as error:
        raise ScopeError(error.detail, field=field) from None


def _strip_check(text: object, what: str) -> str:
    if isinstance(text, str) and text != text.strip():
        raise ScopeError(f"{what} {quote(text)} has leading or trailing spaces", field=what)
    return text  # type: ignore[return-value]


def _parse_range(text: object) -> TNRange:
    """``START:COUNT`` as typed on the command line, e.g. ``12025550000:100``."""
    if not isinstance(text, str):
        raise ScopeError(f"range must be a string START:COUNT (got {type(text).__name__})", field="range")
    _strip_check(text, "range")
    start, sep, count = text.partition(":")
    if not sep or not start or not count:
        raise ScopeError(
            f"range {quote(text)} must be START:COUNT, e.g. '12025550000:100' for 100 numbers", field="range"
        )
    if not count.isascii() or not count.isdigit():
        raise ScopeError(f"range {quote(text)}: COUNT {quote(count)} must be a decimal integer", field="range")
    return TNRange(start, int(count))
