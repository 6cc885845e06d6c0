"""TN scopes: the TNAuthList codec (RFC 8226 §9) and the encompassing rules (RFC 9060 §4).

Vectors come from tests/vectors/ (core-standards.md Appendix A.1 and the RFC 9118 §5 certificate);
our DER is cross-checked with pyasn1_alt_modules.rfc8226 and `openssl asn1parse`; the scope
algebra is checked against a brute-force set model on short widths.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder as reference_decoder
from pyasn1_alt_modules import rfc8226
from sqlalchemy import func, select

from ca.records import models_authority
from ca.errors import ScopeError
from ca.numbers.tn_entries import SPC, TN, TNRange
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import decode, decode_identifier_value, encode

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
A1 = json.loads((VECTORS / "tnauthlist-appendix-a1.json").read_text())


def entries_from_json(items: list[dict]) -> tuple:
    out = []
    for item in items:
        ((kind, value),) = item.items()
        out.append({"spc": lambda v: SPC(v), "one": lambda v: TN(v), "range": lambda v: TNRange(v[0], v[1])}[kind](value))
    return tuple(out)


def scope(*entries) -> TNScope:
    return TNScope(tuple(entries))


def reference_entries(der: bytes) -> list[tuple]:
    """Decode with pyasn1_alt_modules.rfc8226 (an independent schema with the RFC's constraints)."""
    value, rest = reference_decoder.decode(der, asn1Spec=rfc8226.TNAuthorizationList())
    assert rest == b""
    out = []
    for entry in value:
        name = entry.getName()
        if name == "spc":
            out.append(("spc", str(entry["spc"])))
        elif name == "range":
            out.append(("range", str(entry["range"]["start"]), int(entry["range"]["count"])))
        else:
            out.append(("one", str(entry["one"])))
    return out


def as_reference(entries) -> list[tuple]:
    return [
        ("spc", e.code) if isinstance(e, SPC) else ("range", e.start, e.count) if isinstance(e, TNRange) else ("one", e.number)
        for e in entries
    ]


# ---------------------------------------------------------------------------------------------
# Appendix A.1 vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", A1["valid"], ids=lambda v: v["name"])
def test_rfc8226_s9_appendix_a1_vectors_decode_and_encode(vector):
    """RFC 8226 §9: TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry, EXPLICIT A0/A1/A2."""
    der = bytes.fromhex(vector["der"])
    expected = entries_from_json(vector["entries"])
    assert decode(der) == expected
    assert encode(expected) == der
    assert reference_entries(der) == as_reference(expected)


@pytest.mark.parametrize("vector", A1["valid"], ids=lambda v: v["name"])
def test_rfc9448_s3_identifier_value_is_base64url_without_padding(vector):
    """RFC 9448 §3: the identifier value is base64url of the DER TNAuthorizationList, no padding."""
    der = bytes.fromhex(vector["der"])
    scope_ = TNScope.from_der(der)
    assert scope_.to_identifier_value() == vector["base64url"]
    assert TNScope.from_identifier_value(vector["base64url"]) == scope_
    # Padded standard base64 is seen in the field and names the same DER.
    assert TNScope.from_identifier_value(base64.b64encode(der).decode()) == scope_


@pytest.mark.parametrize("vector", A1["invalid"], ids=lambda v: v["name"])
def test_rfc8226_s9_appendix_a1_invalid_vectors_are_refused_naming_the_field(vector):
    der = bytes.fromhex(vector["der"])
    with pytest.raises(ScopeError) as caught:
        decode(der)
    assert caught.value.field == vector["field"]
    assert vector["detail"] in caught.value.detail
    # The independent decoder refuses them too, with two exceptions where we must be stricter than
    # the ASN.1 schema: pyasn1 does not enforce SIZE (1..MAX) on decode (empty list), and "a range
    # start has no * or #" is RFC 8226 §9 prose, not an ASN.1 constraint.
    if vector["name"] not in ("empty list", "range start 1212* count 10"):
        with pytest.raises(Exception):
            reference_entries(der)


def test_rfc8226_s9_our_der_matches_openssl_asn1parse(tmp_path):
    """An outside tool reads our encoding of all three entry kinds as the RFC's EXPLICIT tags."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is a system package of this project (scripts/system-packages.sh)"
    der = TNScope.parse(tns=["12025551212"], ranges=["12125551000:1000"], spcs=["709J"]).to_der()
    path = tmp_path / "tnauthlist.der"
    path.write_bytes(der)
    out = subprocess.run(
        [openssl, "asn1parse", "-inform", "DER", "-in", str(path)], check=True, capture_output=True, text=True
    ).stdout
    lines = [" ".join(line.split(":", 1)[1].split()) for line in out.splitlines()]
    assert lines == [
        "d=0 hl=2 l= 44 cons: SEQUENCE",
        "d=1 hl=2 l= 13 cons: cont [ 2 ]",
        "d=2 hl=2 l= 11 prim: IA5STRING :12025551212",
        "d=1 hl=2 l= 19 cons: cont [ 1 ]",
        "d=2 hl=2 l= 17 cons: SEQUENCE",
        "d=3 hl=2 l= 11 prim: IA5STRING :12125551000",
        "d=3 hl=2 l= 2 prim: INTEGER :03E8",
        "d=1 hl=2 l= 6 cons: cont [ 0 ]",
        "d=2 hl=2 l= 4 prim: IA5STRING :709J",
    ]


def test_rfc9118_s5_example_certificate_tnauthlist_round_trips():
    """RFC 9118 §5: the example certificate's TNAuthList is spc "1234" (3008a006160431323334)."""
    cert = x509.load_pem_x509_certificate((VECTORS / "rfc9118-s5-example-cert.pem").read_bytes())
    scope_ = TNScope.from_certificate(cert)
    assert scope_ == scope(SPC("1234"))
    raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26"))
    assert raw.critical is False
    assert scope_.to_der() == raw.value.value == bytes.fromhex("3008a006160431323334")
    assert scope_.to_extension() == raw.value


# ---------------------------------------------------------------------------------------------
# Strict DER and the RFC 8226 §9 constraints
# ---------------------------------------------------------------------------------------------

REFUSED_DER = [
    # (name, hex, field, detail fragment)
    ("trailing byte", "3008a00616043730394a00", "TNAuthList", "1 trailing byte"),
    ("outer length not minimal", "308108a00616043730394a", "TNAuthList", "BER, not DER"),
    ("entry length not minimal", "3009a0810616043730394a", "TNAuthList[0].spc", "BER, not DER"),
    ("indefinite length", "3080a00616043730394a0000", "TNAuthList", "not a DER SEQUENCE OF TNEntry"),
    ("constructed IA5String", "300ca00a360816023730160239 4a".replace(" ", ""), "TNAuthList[0].spc", "spc"),
    ("implicit [1] range", "30138111160b3132313235353531303030020203e8", "TNAuthList[0].range", "IMPLICIT tag 0x81"),
    ("implicit [2] one", "300d820b3132303235353531323132", "TNAuthList[0].one", "IMPLICIT tag 0x82"),
    ("unknown entry tag [3]", "3008a30616043730394a", "TNAuthList[0]", "tag 0xA3"),
    ("entry is a bare IA5String", "3006160437303949", "TNAuthList[0]", "tag 0x16"),
    ("spc wraps a PrintableString", "3008a00613043730394a", "TNAuthList[0].spc", "malformed"),
    ("spc is not ASCII", "3008a0061604373039ff", "TNAuthList[0].spc", "malformed"),
    ("range count not minimal", "3016a1143012160b31323132353535313030300203 0003e8".replace(" ", ""), "TNAuthList[0].range", "BER, not DER"),
    ("range has an extra component", "3018a1163014160b3132313235353531303030020203e8010100", "TNAuthList[0].range", "range"),
    ("range count negative", "3014a1123010160b31323132353535313030300201ff", "TNAuthList[0].range.count", "at least 2 (got -1)"),
    ("range start has #", "300ea10c300a1605313231322302010a", "TNAuthList[0].range.start", "contains '*' or '#'"),
    ("spc empty", "3004a0021600", "TNAuthList[0].spc", "SPC is empty"),
    ("spc with a space", "3008a0061604373020 4a".replace(" ", ""), "TNAuthList[0].spc", "without spaces"),
    ("one empty", "3004a2021600", "TNAuthList[0].one", "is empty"),
    ("second entry bad", "3016a00616043730394aa20c160a3132333435362d373839", "TNAuthList[1].one", "TNAuthList entry 1"),
    ("not a SEQUENCE", "a00616043730394a", "TNAuthList", "not a DER SEQUENCE OF TNEntry"),
    ("OCTET STRING wrapper", "040a3008a00616043730394a", "TNAuthList", "OCTET STRING wrapper"),
    # Fuzzing regression: pyasn1 raised OverflowError (not PyAsn1Error) for this length field.
    ("length beyond sys.maxsize", "3088ffffffffffffffff00", "TNAuthList", "not a DER SEQUENCE OF TNEntry"),
    ("entry length beyond sys.maxsize", "300ba088ffffffffffffffff00", "TNAuthList", "not a DER SEQUENCE OF TNEntry"),
]


@pytest.mark.parametrize("name,hexed,field,fragment", REFUSED_DER, ids=[r[0] for r in REFUSED_DER])
def test_x690_s10_decoder_is_strict_der_and_names_the_field(name, hexed, field, fragment):
    """X.690 §10 / RFC 8226 §9: only the one DER encoding of a valid TNAuthorizationList is accepted."""
    with pytest.raises(ScopeError) as caught:
        decode(bytes.fromhex(hexed))
    assert caught.value.field == field
    assert fragment in caught.value.detail


def test_rfc8226_s9_range_width_formula_is_enforced_when_issuing_and_prose_accepted_when_evaluating():
    """RFC 8226 §9: "start + count MUST be less than 10^D" (formula) vs. the prose, which only
    forbids the last number growing longer than the start. "90" count 10 ends at "99"."""
    boundary = encode([TNRange("90", 10)], strict=False)
    assert boundary.hex() == "300ba10930071602393002010a"
    with pytest.raises(ScopeError) as caught:
        decode(boundary)
    assert caught.value.field == "TNAuthList[0].range.count"
    assert "start + count must be less than 10^2" in caught.value.detail
    assert decode(boundary, strict=False) == (TNRange("90", 10),)
    with pytest.raises(ScopeError) as caught:
        encode([TNRange("90", 10)])
    assert caught.value.field == "TNAuthList[0].range.count"
    # One further is wrong under both readings: the last number would be "100".
    with pytest.raises(ScopeError) as caught:
        TNRange("90", 11)
    assert caught.value.field == "range.count"
    assert "last number would be 100" in caught.value.detail
    assert TNRange("90", 9).fits_strict_width and not TNRange("90", 10).fits_strict_width


def test_rfc8226_s9_the_digest_example_start_10_count_91_is_invalid():
    """RFC 8226 §9 gives start "10" with count 91 as an invalid range."""
    with pytest.raises(ScopeError):
        TNRange("10", 91)


def test_rfc8226_s9_empty_list_cannot_be_encoded():
    with pytest.raises(ScopeError) as caught:
        encode([])
    assert caught.value.field == "TNAuthList"
    assert "at least one entry" in caught.value.detail


@pytest.mark.parametrize(
    "build,field,fragment",
    [
        (lambda: TN("+12025551212"), "one", "without '+'"),
        (lambda: TN("1202-555-1212"), "one", "found '-'"),
        (lambda: TN("1" * 16), "one", "at most 15"),
        (lambda: TN(""), "one", "is empty"),
        (lambda: TN(12025551212), "one", "got int"),
        (lambda: TNRange("1212*", 10), "range.start", "contains '*' or '#'"),
        (lambda: TNRange("1212", 1), "range.count", "range count must be at least 2 (got 1)"),
        (lambda: TNRange("1212", True), "range.count", "must be an integer"),
        (lambda: SPC(""), "spc", "is empty"),
        (lambda: SPC("709 J"), "spc", "without spaces"),
        (lambda: SPC("x" * 65), "spc", "at most 64"),
    ],
)
def test_rfc8226_s9_entry_values_enforce_the_asn1_constraints(build, field, fragment):
    """RFC 8226 §9: TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*")); count (2..MAX)."""
    with pytest.raises(ScopeError) as caught:
        build()
    assert caught.value.field == field
    assert fragment in caught.value.detail


# ---------------------------------------------------------------------------------------------
# Identifier values (RFC 9448 §3)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,fragment",
    [
        ("", "is empty"),
        ("MAigBhYENzA5Sg=", "not standard base64"),  # wrong amount of padding
        ("MAig_hYENzA5Sg==", "not standard base64"),  # url alphabet with padding
        ("MAig+hYENzA5Sg", "only A-Z"),  # standard alphabet without padding
        ("MAigBhYE NzA5Sg", "only A-Z"),
        ("MAigBhYENzA5S", "impossible base64url length"),
        ("MAigBhYENzA5Sh", "not canonical"),  # non-zero pad bits, decodes to the same DER
    ],
)
def test_rfc9448_s3_identifier_value_text_is_checked(value, fragment):
    with pytest.raises(ScopeError) as caught:
        TNScope.from_identifier_value(value)
    assert caught.value.field == "identifier"
    assert fragment in caught.value.detail


def test_rfc9448_s3_identifier_value_that_decodes_to_bad_der_names_the_entry():
    value = base64.urlsafe_b64encode(bytes.fromhex("3014a1123010160b3132313235353531303030020101")).rstrip(b"=").decode()
    with pytest.raises(ScopeError) as caught:
        TNScope.from_identifier_value(value)
    assert caught.value.field == "TNAuthList[0].range.count"
    assert caught.value.detail.endswith("range count must be at least 2 (got 1); use a single TN for one number (RFC 8226 §9)")


# ---------------------------------------------------------------------------------------------
# Human input (CLI --tn / --range / --spc)
# ---------------------------------------------------------------------------------------------


def test_parse_reads_cli_strings_in_order():
    parsed = TNScope.parse(tns=["12025550100"], ranges=["12025550000:100"], spcs=["1234"])
    assert parsed.entries == (TN("12025550100"), TNRange("12025550000", 100), SPC("1234"))
    assert parsed.describe() == "TN 12025550100, range 12025550000+100, SPC 1234"


@pytest.mark.parametrize(
    "kwargs,field,detail",
    [
        ({"tns": ["+12025550100"]}, "tns[0]", "TN '+12025550100' must be digits, * or # without '+'"),
        ({"tns": ["12025550100", " 12025550101"]}, "tns[1]", "TN ' 12025550101' has leading or trailing spaces"),
        ({"ranges": ["12025550000-100"]}, "ranges[0]", "range '12025550000-100' must be START:COUNT"),
        ({"ranges": ["12025550000:1"]}, "ranges[0]", "range count must be at least 2 (got 1)"),
        ({"ranges": ["12025550000:ten"]}, "ranges[0]", "COUNT 'ten' must be a decimal integer"),
        ({"ranges": ["1:2", "90:10"]}, "ranges[1]", "start + count must be less than 10^2"),
        ({"spcs": ["709 J"]}, "spcs[0]", "must be visible ASCII"),
        ({}, "TNAuthList", "needs at least one"),
    ],
)
def test_parse_is_strict_and_says_what_to_type(kwargs, field, detail):
    with pytest.raises(ScopeError) as caught:
        TNScope.parse(**kwargs)
    assert caught.value.field == field
    assert detail in caught.value.detail


# ---------------------------------------------------------------------------------------------
# RFC 9060 §4 encompassing: the ten cases of core-standards.md §3.7
# ---------------------------------------------------------------------------------------------

ENCOMPASSING_CASES = [
    (1, [TNRange("12125551000", 1000)], [TNRange("12125551500", 100)], True),
    (2, [TNRange("12125551000", 1000)], [TN("12125551824")], True),
    (3, [TNRange("12125551000", 1000)], [TNRange("12125551950", 100)], False),
    (4, [TNRange("12125551000", 500), TNRange("12125551500", 500)], [TNRange("12125551400", 200)], True),
    (5, [TN("12125551824")], [TN("12125551825")], False),
    (6, [SPC("709J")], [SPC("709J")], True),
    (7, [SPC("709J")], [SPC("123K")], False),
    # 8: needs industry data or an authority token (RFC 9060 §4.1); by default NOT encompassed.
    (8, [SPC("709J")], [TNRange("12125551000", 100)], False),
    (9, [TNRange("0123", 10)], [TN("123")], False),
    (10, [TNRange("12125551000", 1000)], [TNRange("12125551000", 1000), TN("12125551999")], True),
]


@pytest.mark.parametrize("case,parent,child,expected", ENCOMPASSING_CASES, ids=[f"case{c[0]}" for c in ENCOMPASSING_CASES])
def test_rfc9060_s4_encompassing_cases(case, parent, child, expected):
    """RFC 9060 §4: a delegate certificate's TNAuthList MUST be equal to or a subset of its parent's."""
    assert scope(*parent).contains(scope(*child)) is expected
    assert (scope(*parent).difference_of(scope(*child)).entries == ()) is expected


def test_rfc9060_s4_difference_names_what_is_out_of_scope():
    parent = scope(TNRange("12125551000", 1000))
    child = scope(TNRange("12125551950", 100), SPC("709J"), TN("12*"))
    assert parent.difference_of(child).describe() == "SPC 709J, range 12125552000+50, TN 12*"


def test_rfc9060_s4_literal_star_and_hash_numbers_match_a_parent_one_exactly():
    parent = scope(TN("*67"), TNRange("10", 50))
    assert parent.contains(scope(TN("*67")))
    assert not parent.contains(scope(TN("#67")))
    assert not parent.contains(scope(TN("*6")))
    assert parent.covers_number("*67") and not parent.covers_number("67")


def test_rfc9060_s4_width_matters_for_overlaps_and_covers_number():
    parent = scope(TNRange("0123", 10))
    assert parent.covers_number("0125") and not parent.covers_number("125")
    assert not parent.overlaps(scope(TN("123")))
    assert parent.overlaps(scope(TNRange("0130", 5), TN("999")))
    assert not scope(SPC("709J")).overlaps(scope(TNRange("12125551000", 100)))


def test_covers_number_refuses_a_number_that_is_not_a_telephone_number():
    with pytest.raises(ScopeError) as caught:
        scope(SPC("709J")).covers_number("+12025551212")
    assert caught.value.field == "tn"


# ---------------------------------------------------------------------------------------------
# Normalisation and the index rows
# ---------------------------------------------------------------------------------------------


def test_normalized_merges_adjacent_and_overlapping_entries_per_width():
    messy = scope(TN("12125551005"), TNRange("12125551000", 5), SPC("B"), TNRange("12125551003", 10), SPC("A"),
                  TN("0123"), TN("123"), TN("#1"), SPC("A"))
    assert messy.normalized().entries == (
        SPC("A"), SPC("B"), TN("123"), TN("0123"), TNRange("12125551000", 13), TN("#1"),
    )


def test_rfc8226_s9_normalized_ranges_always_satisfy_the_strict_formula():
    """A merged run that reaches 99…9 keeps its last number as a TN, so start + count < 10^D."""
    merged = scope(TNRange("90", 9), TN("99")).normalized()
    assert merged.entries == (TNRange("90", 9), TN("99"))
    assert decode(merged.to_der()) == merged.entries
    assert scope(TN("98"), TN("99")).normalized().entries == (TN("98"), TN("99"))


def test_index_rows_match_the_scope_entry_columns():
    rows = scope(TNRange("12125551000", 1000), TN("0123"), SPC("709J"), TN("*67")).index_rows()
    assert rows == [
        {"width": None, "lo": None, "hi": None, "spc": "709J", "literal": None},
        {"width": 4, "lo": 123, "hi": 123, "spc": None, "literal": None},
        {"width": 11, "lo": 12125551000, "hi": 12125551999, "spc": None, "literal": None},
        {"width": None, "lo": None, "hi": None, "spc": None, "literal": "*67"},
    ]


def test_index_rows_store_and_find_delegations_by_number(session):
    """The rows fit certificate_scope_entries / delegation_scope_entries (15-digit numbers in
    BigInteger, on SQLite and PostgreSQL) and an interval query finds the covering delegation."""
    delegated = TNScope.parse(ranges=["999999999998000:1999"], tns=["12025550100"], spcs=["709J"])
    entry = models_authority.DelegationScopeEntry
    assert session.scalar(select(func.count()).select_from(entry)) == 0
    delegation = models_authority.Delegation(
        delegate="Example Enterprise", scope_der=delegated.to_der(), max_lifetime_seconds=86400,
        scope_entries=[models_authority.DelegationScopeEntry(**row) for row in delegated.index_rows()],
    )
    session.add(delegation)
    session.commit()
    assert session.scalar(select(func.count()).select_from(entry)) == 3

    def covering(number: str) -> list[str]:
        value = int(number)
        query = select(entry.delegation_id).where(entry.width == len(number), entry.lo <= value, entry.hi >= value)
        return list(session.scalars(query))

    assert covering("999999999999998") == [delegation.id]
    assert covering("999999999999999") == []
    assert covering("12025550100") == [delegation.id]
    assert covering("012025550100") == []  # another width: another number
    assert list(session.scalars(select(entry.delegation_id).where(entry.spc == "709J"))) == [delegation.id]
    assert TNScope.from_der(session.get(models_authority.Delegation, delegation.id).scope_der) == delegated


# ---------------------------------------------------------------------------------------------
# Properties: round trip, brute-force set model, fuzzing
# ---------------------------------------------------------------------------------------------


@st.composite
def numeric_tns(draw, widths=(1, 2, 3)):
    width = draw(st.sampled_from(widths))
    return TN(str(draw(st.integers(0, 10**width - 1))).zfill(width))


@st.composite
def ranges(draw, widths=(2, 3)):
    width = draw(st.sampled_from(widths))
    top = 10**width  # strict formula: start + count < 10^D
    start = draw(st.integers(0, top - 3))
    count = draw(st.integers(2, top - 1 - start))
    return TNRange(str(start).zfill(width), count)


literal_tns = st.text("12*#", min_size=1, max_size=3).filter(lambda s: "*" in s or "#" in s).map(TN)
spcs = st.sampled_from(["709J", "123K", "A"]).map(SPC)
small_entries = st.one_of(numeric_tns(), ranges(), literal_tns, spcs)
small_scopes = st.lists(small_entries, min_size=1, max_size=5).map(lambda e: TNScope(tuple(e)))

# Full-size entries for the codec properties (any width up to 15, any SPC text).
any_tns = st.text("0123456789*#", min_size=1, max_size=15).map(TN)


@st.composite
def any_ranges(draw):
    width = draw(st.integers(1, 15))
    top = 10**width
    assume(top >= 3)
    start = draw(st.integers(0, top - 3))
    return TNRange(str(start).zfill(width), draw(st.integers(2, top - 1 - start)))


any_spcs = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64).map(SPC)
any_scopes = st.lists(st.one_of(any_tns, any_ranges(), any_spcs), min_size=1, max_size=8).map(lambda e: TNScope(tuple(e)))


def model(scope_: TNScope) -> set[tuple]:
    """Brute-force set of everything a scope names: SPCs, literal numbers, each numeric number."""
    elements: set[tuple] = set()
    for entry in scope_.entries:
        if isinstance(entry, SPC):
            elements.add(("spc", entry.code))
        elif isinstance(entry, TNRange):
            elements.update(("tn", str(n).zfill(entry.width)) for n in range(int(entry.start), int(entry.start) + entry.count))
        else:
            elements.add(("tn", entry.number))
    return elements


@given(any_scopes)
def test_rfc8226_s9_property_decode_of_encode_is_identity(scope_):
    der = scope_.to_der()
    assert TNScope.from_der(der) == scope_
    assert TNScope.from_identifier_value(scope_.to_identifier_value()) == scope_
    assert reference_entries(der) == as_reference(scope_.entries)


@given(small_scopes, small_scopes)
def test_rfc9060_s4_property_contains_and_overlaps_agree_with_the_set_model(parent, child):
    assert parent.contains(child) == (model(child) <= model(parent))
    assert parent.overlaps(child) == bool(model(child) & model(parent))
    assert model(parent.difference_of(child)) == model(child) - model(parent)


@given(small_scopes)
def test_rfc9060_s4_property_normalized_names_the_same_numbers_and_is_canonical(scope_):
    normal = scope_.normalized()
    assert model(normal) == model(scope_)
    assert normal.normalized() == normal
    assert decode(normal.to_der()) == normal.entries  # always strictly encodable
    assert scope_.contains(normal) and normal.contains(scope_)
    assert len(normal.index_rows()) == len(normal.entries)


@given(small_scopes, st.sampled_from(["5", "05", "50", "99", "123", "*1", "#2"]))
def test_property_covers_number_agrees_with_the_set_model(scope_, number):
    assert scope_.covers_number(number) == (("tn", number) in model(scope_))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
def test_fuzz_decoder_raises_only_scope_error_on_random_bytes(data):
    try:
        entries = decode(data, strict=False)
    except ScopeError as error:
        assert error.field and error.detail
    else:
        assert encode(entries, strict=False) == data  # anything accepted is the canonical DER


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(small_scopes, st.data())
def test_fuzz_decoder_raises_only_scope_error_on_mutated_der(scope_, data):
    der = bytearray(scope_.to_der())
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(der)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "insert" or position == len(der):
            der.insert(position, data.draw(st.integers(0, 255)))
        elif action == "delete":
            del der[position]
        else:
            der[position] ^= 1 << data.draw(st.integers(0, 7))
    try:
        entries = decode(bytes(der), strict=False)
    except ScopeError as error:
        assert error.field and error.detail
    else:
        assert encode(entries, strict=False) == bytes(der)


@given(st.text(max_size=40))
def test_fuzz_identifier_value_raises_only_scope_error(text):
    try:
        der = decode_identifier_value(text)
    except ScopeError as error:
        assert error.field == "identifier"
    else:
        assert text in (base64.urlsafe_b64encode(der).rstrip(b"=").decode(), base64.b64encode(der).decode())


def test_rfc5280_s4_2_a_certificate_with_two_tnauthlist_extensions_is_a_scope_error():
    """RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a particular
    extension." The duplicate is made by renaming a second extension's OID in the DER (the
    signature no longer matters: the certificate is only parsed)."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duplicate TNAuthList")])
    value = bytes.fromhex("3008a006160431323334")
    placeholder = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.99")  # same DER length as .26
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(dt.datetime(2026, 1, 1)).not_valid_after(dt.datetime(2026, 1, 2))
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26"), value), critical=False)
        .add_extension(x509.UnrecognizedExtension(placeholder, value), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    placeholder_der, tnauthlist_der = bytes.fromhex("06082b06010505070163"), bytes.fromhex("06082b0601050507011a")
    assert der.count(placeholder_der) == 1
    duplicated = x509.load_der_x509_certificate(der.replace(placeholder_der, tnauthlist_der))
    with pytest.raises(ScopeError) as caught:
        TNScope.from_certificate(duplicated)
    assert caught.value.field == "TNAuthList"
    assert "cannot be read" in caught.value.detail
