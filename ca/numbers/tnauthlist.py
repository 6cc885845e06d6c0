"""TN scopes: the TNAuthList codec (RFC 8226 §9) and scope algebra (RFC 9060 §4).

A TN scope is a TNAuthorizationList: telephone numbers (``one``), number ranges (``range``:
start + count) and service provider codes (``spc``). This module turns the DER form (certificate
extension, ACME identifier value, authority-token ``tkvalue``) into immutable values and back,
and answers the questions issuance asks: is this requested scope inside that delegation
(``contains``), do two scopes share a number (``overlaps``), is a number in scope
(``covers_number``).

Invariants:

* An ``SPC``, ``TNRange`` or ``TN`` value can only be constructed if it satisfies RFC 8226 §9
  (TelephoneNumber 1..15 of ``0-9*#``; range count >= 2; range start without ``*``/``#``; the last
  number of a range fits in the start's width). Every ``ScopeError`` names the field at fault.
* Decoding is strict DER: trailing bytes, BER forms (non-minimal lengths, constructed strings,
  indefinite lengths), IMPLICIT ``80``/``81``/``82`` tags and empty lists are refused.
* Numbers are fixed-width decimal strings: "0123" and "123" are different numbers (their widths
  differ), so every interval carries its width.

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

import base64
import binascii
import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from cryptography import x509
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, tag, univ

from ca.encoding import b64url_encode
from ca.errors import ScopeError

# What pyasn1 may raise on hostile input. PyAsn1Error is its own family, but some inputs escape
# it: a length field larger than sys.maxsize raises OverflowError from the stream reader (found
# by fuzzing; regression test in tests/unit/test_tnauthlist.py). Each is a malformed value to us.
_PARSER_ERRORS = (PyAsn1Error, OverflowError, ValueError, IndexError, TypeError, RecursionError)

# RFC 8226 §9: id-pe-TNAuthList, the certificate extension carrying a TNAuthorizationList.
OID_TN_AUTH_LIST = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")

# RFC 8226 §9: TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*")).
MAX_TN_LENGTH = 15
TN_ALPHABET = frozenset("0123456789#*")
# RFC 8226 §9: TelephoneNumberRange.count INTEGER (2..MAX); a single number is a `one`.
MIN_RANGE_COUNT = 2
# ServiceProviderCode is an unconstrained IA5String. We accept 1..64 visible ASCII characters:
# real SPCs (OCNs, SPIDs) are a handful of letters and digits, 64 is the width of the indexed
# `spc` column in ca/records/store.py, and spaces or control characters could only mislead a person
# reading the scope in the admin UI or an audit record.
MAX_SPC_LENGTH = 64
_SPC_PATTERN = re.compile(r"[\x21-\x7e]+")
_DIGITS = frozenset("0123456789")

# RFC 9448 §3: the ACME identifier value is base64url without padding. Padded standard base64
# is also seen in the field and accepted; the two alphabets may not be mixed.
_BASE64URL_UNPADDED = re.compile(r"[A-Za-z0-9_-]+")
_BASE64_PADDED = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

# Field name used in ScopeError for problems with the structure as a whole.
LIST_FIELD = "TNAuthList"


# --------------------------------------------------------------------------------------------
# The three kinds of entry (RFC 8226 §9 TNEntry)
# --------------------------------------------------------------------------------------------


def _check_telephone_number(value: object, *, field: str, what: str) -> str:
    """Return ``value`` if it is an RFC 8226 §9 TelephoneNumber, else raise ScopeError."""
    if not isinstance(value, str):
        raise ScopeError(f"{what} must be a string of digits, * or # (got {type(value).__name__})", field=field)
    if value == "":
        raise ScopeError(f"{what} is empty; a TelephoneNumber has 1 to {MAX_TN_LENGTH} characters", field=field)
    if value.startswith("+"):
        raise ScopeError(
            f"{what} {_quote(value)} must be digits, * or # without '+' "
            f"(write the E.164 number as country code and national number, e.g. '12025550100')",
            field=field,
        )
    bad = sorted(set(value) - TN_ALPHABET)
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise ScopeError(
            f"{what} {_quote(value)} must contain only digits, * or # (found {shown}; RFC 8226 §9)",
            field=field,
        )
    if len(value) > MAX_TN_LENGTH:
        raise ScopeError(
            f"{what} {_quote(value)} has {len(value)} characters; "
            f"a TelephoneNumber has at most {MAX_TN_LENGTH} (RFC 8226 §9)",
            field=field,
        )
    return value


def _quote(value: str, limit: int = 24) -> str:
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
                f"SPC {_quote(self.code)} has {len(self.code)} characters; at most {MAX_SPC_LENGTH} are accepted",
                field="spc",
            )
        if not _SPC_PATTERN.fullmatch(self.code):
            raise ScopeError(
                f"SPC {_quote(self.code)} must be visible ASCII characters without spaces "
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
        _check_telephone_number(self.start, field="range.start", what="range start")
        if not set(self.start) <= _DIGITS:
            raise ScopeError(
                f"range start {_quote(self.start)} contains '*' or '#'; "
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
        _check_telephone_number(self.number, field="one", what="TN")

    @property
    def is_literal(self) -> bool:
        """A number with ``*`` or ``#`` is not an integer; it only ever matches itself."""
        return not set(self.number) <= _DIGITS

    def describe(self) -> str:
        return f"TN {self.number}"


TNEntry = Union[SPC, TNRange, TN]

def _check_strict_width(entry: TNEntry, *, field: str) -> None:
    if isinstance(entry, TNRange) and not entry.fits_strict_width:
        raise ScopeError(
            f"range {entry.start}+{entry.count}: start + count must be less than 10^{entry.width} "
            f"(RFC 8226 §9); end the range one number earlier and add the last number as a single TN",
            field=field,
        )


def _entry_field(index: int, sub: str | None) -> str:
    return f"{LIST_FIELD}[{index}]" + (f".{sub}" if sub else "")


# --------------------------------------------------------------------------------------------
# ASN.1 (RFC 8226 Appendix A, DEFINITIONS EXPLICIT TAGS)
# --------------------------------------------------------------------------------------------
# This mirrors pyasn1_alt_modules.rfc8226 tag for tag, without the value constraints: pyasn1
# reports a constraint failure as an unreadable repr, so the constraints are checked by the entry
# dataclasses above, which name the field and say what to change. The tests cross-check our DER
# against pyasn1_alt_modules.rfc8226 and `openssl asn1parse`.


class _TelephoneNumber(char.IA5String):
    pass


class _TelephoneNumberRange(univ.Sequence):
    # The ASN.1 type is extensible (`...`), but no extension has been defined; an unknown
    # extra component is refused rather than silently dropped from a scope.
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("start", _TelephoneNumber()),
        namedtype.NamedType("count", univ.Integer()),
    )


def _explicit(number: int, fmt: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, fmt, number)


class _TNEntry(univ.Choice):
    # EXPLICIT tags: pyasn1 sets the constructed bit when it encodes an explicit tag, so all
    # three alternatives appear on the wire as A0 / A1 / A2 (RFC 8226 Appendix A).
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("spc", char.IA5String().subtype(explicitTag=_explicit(0, tag.tagFormatSimple))),
        namedtype.NamedType(
            "range", _TelephoneNumberRange().subtype(explicitTag=_explicit(1, tag.tagFormatConstructed))
        ),
        namedtype.NamedType("one", _TelephoneNumber().subtype(explicitTag=_explicit(2, tag.tagFormatSimple))),
    )


class _TNAuthorizationList(univ.SequenceOf):
    componentType = _TNEntry()


# The outer SEQUENCE OF is first split into raw TLVs so that each entry can be decoded, checked
# and reported on by its index (an IMPLICIT 80 tag in entry 3 says so, rather than failing the
# whole list with a schema dump).
_RAW_LIST_SPEC = univ.SequenceOf(componentType=univ.Any())

_EXPLICIT_TAG_BYTES = {0xA0: "spc", 0xA1: "range", 0xA2: "one"}
_IMPLICIT_TAG_BYTES = {0x80: (0xA0, "spc"), 0x81: (0xA1, "range"), 0x82: (0xA2, "one")}


def _to_asn1_entry(entry: TNEntry) -> _TNEntry:
    asn1 = _TNEntry()
    if isinstance(entry, SPC):
        asn1["spc"] = entry.code
    elif isinstance(entry, TNRange):
        component = asn1.componentType.getTypeByPosition(1).clone()
        component["start"] = entry.start
        component["count"] = entry.count
        asn1["range"] = component
    elif isinstance(entry, TN):
        asn1["one"] = entry.number
    else:
        raise ScopeError(f"not a TN scope entry: {type(entry).__name__}", field=LIST_FIELD)
    return asn1


def encode(entries: Sequence[TNEntry], *, strict: bool = True) -> bytes:
    """DER TNAuthorizationList (RFC 8226 §9) of ``entries``, in the order given.

    Raises ScopeError for an empty list and, with ``strict`` (issuance), for a range that breaks
    the ``start + count < 10^D`` formula.
    """
    entries = tuple(entries)
    if not entries:
        raise ScopeError("TNAuthList must contain at least one entry (RFC 8226 §9: SIZE (1..MAX))", field=LIST_FIELD)
    asn1 = _TNAuthorizationList()
    for index, entry in enumerate(entries):
        if strict:
            _check_strict_width(entry, field=_entry_field(index, "range.count"))
        asn1.append(_to_asn1_entry(entry))
    return der_encoder.encode(asn1)


def decode(der: bytes, *, strict: bool = True) -> tuple[TNEntry, ...]:
    """Entries of a DER TNAuthorizationList, in wire order. Raises ScopeError.

    Strict DER (X.690 §10): the input must be exactly one TNAuthorizationList with minimal
    lengths, primitive strings and EXPLICIT ``A0``/``A1``/``A2`` entry tags. See the module
    docstring for ``strict``.
    """
    if not isinstance(der, (bytes, bytearray, memoryview)):
        raise ScopeError(f"TNAuthList must be DER bytes (got {type(der).__name__})", field=LIST_FIELD)
    der = bytes(der)
    if not der:
        raise ScopeError("TNAuthList is empty (no DER bytes)", field=LIST_FIELD)
    try:
        raw_entries, rest = der_decoder.decode(der, asn1Spec=_RAW_LIST_SPEC)
    except _PARSER_ERRORS:
        raise ScopeError(
            "TNAuthList is not a DER SEQUENCE OF TNEntry (RFC 8226 §9); check that the value is the "
            "DER of the extension's content, not PEM, a whole certificate or an OCTET STRING wrapper",
            field=LIST_FIELD,
        ) from None
    if rest:
        raise ScopeError(
            f"TNAuthList is followed by {len(rest)} trailing byte(s); the value must be exactly one DER "
            f"TNAuthorizationList",
            field=LIST_FIELD,
        )
    if der_encoder.encode(raw_entries) != der:
        raise ScopeError(
            "TNAuthList is BER, not DER: the outer SEQUENCE length is not in its minimal form (X.690 §10.1)",
            field=LIST_FIELD,
        )
    if len(raw_entries) == 0:
        raise ScopeError("TNAuthList must contain at least one entry (RFC 8226 §9: SIZE (1..MAX))", field=LIST_FIELD)
    entries = tuple(_decode_entry(bytes(raw), index) for index, raw in enumerate(raw_entries))
    if strict:
        for index, entry in enumerate(entries):
            _check_strict_width(entry, field=_entry_field(index, "range.count"))
    return entries


def _decode_entry(raw: bytes, index: int) -> TNEntry:
    first = raw[0]
    if first in _IMPLICIT_TAG_BYTES:
        expected, kind = _IMPLICIT_TAG_BYTES[first]
        raise ScopeError(
            f"TNAuthList entry {index} ({kind}) uses the IMPLICIT tag 0x{first:02X}; RFC 8226 Appendix A "
            f"uses EXPLICIT tags, so {kind} must be encoded as 0x{expected:02X} wrapping the universal type",
            field=_entry_field(index, kind),
        )
    kind = _EXPLICIT_TAG_BYTES.get(first)
    if kind is None:
        raise ScopeError(
            f"TNAuthList entry {index} has tag 0x{first:02X}; expected [0] spc (0xA0), [1] range (0xA1) "
            f"or [2] one (0xA2) (RFC 8226 §9)",
            field=_entry_field(index, None),
        )
    shape = {
        "spc": "[0] IA5String",
        "range": "[1] SEQUENCE { start IA5String, count INTEGER }",
        "one": "[2] IA5String",
    }[kind]
    try:
        asn1, rest = der_decoder.decode(raw, asn1Spec=_TNEntry())
        reencoded = der_encoder.encode(asn1)
    except _PARSER_ERRORS:
        raise ScopeError(
            f"TNAuthList entry {index} ({kind}) is malformed: expected {shape} of ASCII text (RFC 8226 §9)",
            field=_entry_field(index, kind),
        ) from None
    if rest or reencoded != raw:
        raise ScopeError(
            f"TNAuthList entry {index} ({kind}) is BER, not DER (non-minimal length or integer, "
            f"constructed string, or extra components); expected {shape}",
            field=_entry_field(index, kind),
        )
    name = asn1.getName()
    try:
        if name == "spc":
            return SPC(str(asn1["spc"]))
        if name == "range":
            component = asn1["range"]
            return TNRange(str(component["start"]), int(component["count"]))
        return TN(str(asn1["one"]))
    except ScopeError as error:
        raise ScopeError(
            f"TNAuthList entry {index}: {error.detail}", field=_entry_field(index, error.field)
        ) from None


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
        return cls(decode(der, strict=strict))

    def to_der(self, *, strict: bool = True) -> bytes:
        return encode(self.entries, strict=strict)

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
            _check_strict_width(entry, field=f"ranges[{index}]")
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
        return self.contains(TNScope((TN(_check_telephone_number(tn, field="tn", what="TN")),)))

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
        raise ScopeError(f"{what} {_quote(text)} has leading or trailing spaces", field=what)
    return text  # type: ignore[return-value]


def _parse_range(text: object) -> TNRange:
    """``START:COUNT`` as typed on the command line, e.g. ``12025550000:100``."""
    if not isinstance(text, str):
        raise ScopeError(f"range must be a string START:COUNT (got {type(text).__name__})", field="range")
    _strip_check(text, "range")
    start, sep, count = text.partition(":")
    if not sep or not start or not count:
        raise ScopeError(
            f"range {_quote(text)} must be START:COUNT, e.g. '12025550000:100' for 100 numbers", field="range"
        )
    if not count.isascii() or not count.isdigit():
        raise ScopeError(f"range {_quote(text)}: COUNT {_quote(count)} must be a decimal integer", field="range")
    return TNRange(start, int(count))


def decode_identifier_value(value: str) -> bytes:
    """DER bytes of an ACME ``TNAuthList`` identifier value (or token ``tkvalue``).

    Accepts base64url without padding (RFC 9448 §3, RFC 7515 §2) and padded standard base64.
    Refuses whitespace, mixed alphabets and non-canonical encodings (non-zero pad bits,
    RFC 4648 §3.5), so one DER value has exactly one accepted text in each alphabet.
    """
    field = "identifier"
    if not isinstance(value, str):
        raise ScopeError(f"TNAuthList identifier value must be a string (got {type(value).__name__})", field=field)
    if not value:
        raise ScopeError("TNAuthList identifier value is empty", field=field)
    if "=" in value:
        if not _BASE64_PADDED.fullmatch(value):
            raise ScopeError(
                "TNAuthList identifier value has '=' padding but is not standard base64; send base64url "
                "of the DER without padding (RFC 9448 §3)",
                field=field,
            )
        der = base64.b64decode(value, validate=True)
        canonical = base64.b64encode(der).decode("ascii")
    else:
        if not _BASE64URL_UNPADDED.fullmatch(value):
            raise ScopeError(
                "TNAuthList identifier value must be base64url of the DER without padding (RFC 9448 §3): "
                "only A-Z, a-z, 0-9, '-' and '_'",
                field=field,
            )
        if len(value) % 4 == 1:
            raise ScopeError(
                f"TNAuthList identifier value has an impossible base64url length ({len(value)})", field=field
            )
        try:
            der = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):  # pragma: no cover - the pattern and length rule exclude this
            raise ScopeError("TNAuthList identifier value is not valid base64url", field=field) from None
        canonical = b64url_encode(der)
    if canonical != value:
        raise ScopeError(
            "TNAuthList identifier value is not canonical base64 (non-zero bits after the last byte, "
            "RFC 4648 §3.5)",
            field=field,
        )
    return der


__all__ = [
    "LIST_FIELD",
    "MAX_TN_LENGTH",
    "OID_TN_AUTH_LIST",
    "SPC",
    "TN",
    "TNEntry",
    "TNRange",
    "TNScope",
    "decode",
    "decode_identifier_value",
    "encode",
]
