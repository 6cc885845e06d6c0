"""The TNAuthList DER codec (RFC 8226 §9 and Appendix A), and the ACME identifier's base64 text.

A TN scope travels as DER in three places: the certificate extension ``id-pe-TNAuthList``, the
ACME ``TNAuthList`` identifier value and an authority token's ``tkvalue`` (the last two as
base64url text, RFC 9448 §3). :func:`encode` and :func:`decode` turn entries
(:mod:`ca.numbers.tn_entries`) into DER and back; :func:`decode_identifier_value` reads the text.

Decoding is strict DER: trailing bytes, BER forms (non-minimal lengths, constructed strings,
indefinite lengths), IMPLICIT ``80``/``81``/``82`` tags and empty lists are refused, each with a
``ScopeError`` naming the entry at fault. ``strict`` is the RFC 8226 §9 range-width knob
described in :mod:`ca.numbers.tnauthlist`.

It stands apart from the scope algebra because it is the only code that knows the wire format
(pyasn1 specs, tag bytes), and the algebra never needs to.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography import x509
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, tag, univ

from ca.errors import ScopeError
from ca.numbers.tn_entries import LIST_FIELD, SPC, TN, TNEntry, TNRange, check_strict_width, entry_field
from ca.encoding import b64url_encode

# What pyasn1 may raise on hostile input. PyAsn1Error is its own family, but some inputs escape
# it: a length field larger than sys.maxsize raises OverflowError from the stream reader (found
# by fuzzing; regression test in tests/unit/test_tnauthlist.py). Each is a malformed value to us.
_PARSER_ERRORS = (PyAsn1Error, OverflowError, ValueError, IndexError, TypeError, RecursionError)

# RFC 8226 §9: id-pe-TNAuthList, the certificate extension carrying a TNAuthorizationList.
OID_TN_AUTH_LIST = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")

# RFC 9448 §3: the ACME identifier value is base64url without padding. Padded standard base64
# is also seen in the field and accepted; the two alphabets may not be mixed.
_BASE64URL_UNPADDED = re.compile(r"[A-Za-z0-9_-]+")
_BASE64_PADDED = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


# --------------------------------------------------------------------------------------------
# ASN.1 (RFC 8226 Appendix A, DEFINITIONS EXPLICIT TAGS)
# --------------------------------------------------------------------------------------------
# This mirrors pyasn1_alt_modules.rfc8226 tag for tag, without the value constraints: pyasn1
# reports a constraint failure as an unreadable repr, so the constraints are checked by the entry
# dataclasses (ca/numbers/tn_entries.py), which name the field and say what to change. The tests
# cross-check our DER against pyasn1_alt_modules.rfc8226 and `openssl asn1parse`.


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
            check_strict_width(entry, field=entry_field(index, "range.count"))
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
            check_strict_width(entry, field=entry_field(index, "range.count"))
    return entries


def _decode_entry(raw: bytes, index: int) -> TNEntry:
    first = raw[0]
    if first in _IMPLICIT_TAG_BYTES:
        expected, kind = _IMPLICIT_TAG_BYTES[first]
        raise ScopeError(
            f"TNAuthList entry {index} ({kind}) uses the IMPLICIT tag 0x{first:02X}; RFC 8226 Appendix A "
            f"uses EXPLICIT tags, so {kind} must be encoded as 0x{expected:02X} wrapping the universal type",
            field=entry_field(index, kind),
        )
    kind = _EXPLICIT_TAG_BYTES.get(first)
    if kind is None:
        raise ScopeError(
            f"TNAuthList entry {index} has tag 0x{first:02X}; expected [0] spc (0xA0), [1] range (0xA1) "
            f"or [2] one (0xA2) (RFC 8226 §9)",
            field=entry_field(index, None),
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
            field=entry_field(index, kind),
        ) from None
    if rest or reencoded != raw:
        raise ScopeError(
            f"TNAuthList entry {index} ({kind}) is BER, not DER (non-minimal length or integer, "
            f"constructed string, or extra components); expected {shape}",
            field=entry_field(index, kind),
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
            f"TNAuthList entry {index}: {error.detail}", field=entry_field(index, error.field)
        ) from None


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
