"""Rich Call Data constraints (RFC 9795 with RFC 8226 §8 / RFC 9118): pinned values compared in
their RFC 8785 canonical form, rcdi digests checked (ca/numbers/rcd.py, ca/numbers/claims.py)."""

from __future__ import annotations

import base64

import pytest

from ca.errors import ClaimConstraintsError
from ca.numbers import rcd as rcd_module
from ca.numbers.claims import ClaimConstraints, evaluate

LOGO = b"\x89PNG\r\n\x1a\n not really a logo"
ICON = "https://example.com/logo.png"
RCD = {"nam": "Example Retail", "icn": ICON}
RCDI = {"/icn": rcd_module.digest(LOGO)}
BASE = {"orig": {"tn": "12025550100"}, "dest": {"tn": ["12025551001"]}, "iat": 1767225600}


@pytest.fixture
def pinned() -> ClaimConstraints:
    return ClaimConstraints.from_json({"rcd": RCD, "rcdi": RCDI})


def test_spec_vector_jwtclaimconstraints_pinning_one_rcd():
    """The worked example of the spec digest §4.5: mustInclude [rcd], permittedValues rcd -> the
    canonical object; DER byte-equal to the published base64url."""
    value = ClaimConstraints(must_include=("rcd",), permitted_values=(("rcd", (rcd_module.canonical(RCD),)),))
    expected = ("MFWgBzAFFgNyY2ShSjBIMEYWA3JjZDA_DD17ImljbiI6Imh0dHBzOi8vZXhhbXBsZS5jb20vbG9nby5wbmci"
                "LCJuYW0iOiJFeGFtcGxlIFJldGFpbCJ9")
    assert base64.urlsafe_b64encode(value.to_der()).rstrip(b"=").decode() == expected


def test_pinned_rcd_and_rcdi_go_in_must_include_and_permitted_values(pinned):
    assert pinned.must_include == ("rcd", "rcdi")
    assert dict(pinned.permitted_values) == {
        "rcd": ('{"icn":"https://example.com/logo.png","nam":"Example Retail"}',),
        "rcdi": ('{"/icn":"' + RCDI["/icn"] + '"}',),
    }
    assert ClaimConstraints.from_der(pinned.to_der(), pinned.kind) == pinned


def test_rfc9795_matching_rcd_passes_whatever_its_key_order_or_spacing(pinned):
    reordered = {"icn": ICON, "nam": "Example Retail"}
    assert pinned.evaluate({**BASE, "rcd": reordered, "rcdi": RCDI}) == []
    assert evaluate({**BASE, "rcd": RCD, "rcdi": RCDI}, pinned, resources={ICON: LOGO}) == []


@pytest.mark.parametrize("changed", [
    {"nam": "Example Retail Inc", "icn": ICON},
    {"nam": "Example Retail", "icn": "https://example.com/other.png"},
    {"nam": "Example Retail", "icn": ICON, "apn": "12025550199"},
    {"nam": "Example Retail"},
    {"nam": "example retail", "icn": ICON},
])
def test_rfc9795_rcd_differing_in_any_member_fails(pinned, changed):
    violations = pinned.evaluate({**BASE, "rcd": changed, "rcdi": {"/icn": RCDI["/icn"]} if "icn" in changed else {}})
    rcd_violations = [v for v in violations if v.startswith("claim 'rcd'")]
    assert rcd_violations and "differing member(s)" in rcd_violations[0], violations


def test_rfc9795_rcd_as_a_string_never_matches_an_object(pinned):
    text = rcd_module.canonical(RCD)
    assert pinned.evaluate({**BASE, "rcd": text, "rcdi": RCDI}) != []


def test_rfc9795_rcdi_mismatches_are_found(pinned):
    wrong_digest = {"/icn": rcd_module.digest(b"another image")}
    found = evaluate({**BASE, "rcd": RCD, "rcdi": wrong_digest}, None, resources={ICON: LOGO})
    assert found == [f"rcdi '/icn': the content at {ICON} does not match its sha256 digest"]
    # Against the certificate, the pinned rcdi differs too.
    assert any(v.startswith("claim 'rcdi'") for v in pinned.evaluate({**BASE, "rcd": RCD, "rcdi": wrong_digest}))
    # A URI without a digest, a pointer leading nowhere, a malformed digest.
    assert evaluate({**BASE, "rcd": RCD, "rcdi": {}}, None) == [
        f"rcd references {ICON} at /icn but rcdi has no digest for it (RFC 9795)"]
    assert "does not resolve" in evaluate({**BASE, "rcd": RCD, "rcdi": {**RCDI, "/jcl": RCDI["/icn"]}}, None)[0]
    assert "digest is not" in evaluate({**BASE, "rcd": RCD, "rcdi": {"/icn": "md5-AAAA"}}, None)[0]
    # The right content passes.
    assert evaluate({**BASE, "rcd": RCD, "rcdi": RCDI}, None, resources={ICON: LOGO}) == []


def test_rfc9795_jcard_uris_need_digests_by_nested_pointer():
    jcard = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "James Bond"],
                       ["logo", {}, "uri", "https://example.com/bond.png"]]]
    rcd = {"nam": "James Bond", "jcd": jcard}
    assert list(rcd_module.uri_pointers(rcd)) == [("/jcd/1/2/3", "https://example.com/bond.png")]
    assert evaluate({**BASE, "rcd": rcd, "rcdi": {"/jcd/1/2/3": rcd_module.digest(b"bond")}}, None,
                    resources={"https://example.com/bond.png": b"bond"}) == []


@pytest.mark.parametrize("obj, field", [
    ({"rcd": {"nam": "A", "icn": ICON}}, "rcdi"),  # a URI pinned without its digest
    ({"rcd": {"nam": "A", "icn": "http://example.com/x.png"}, "rcdi": {}}, "rcd.icn"),
    ({"rcd": {"nam": "A", "xyz": 1}}, "rcd.xyz"),
    ({"rcd": {"nam": "A", "jcd": ["vcard", []], "jcl": ICON}, "rcdi": {"/jcl": RCDI["/icn"]}}, "rcd.jcl"),
    ({"rcd": []}, "rcd"),
    ({"rcd": {"nam": "A"}, "mustInclude": ["rcd"]}, "rcd"),
    ({"rcdi": RCDI}, "rcdi"),
    ({"rcd": {"nam": "x" * 5000}}, "rcd"),
    ({"rcd": {"nam": "A", "icn": ICON}, "rcdi": {"/icn": "sha256-short"}}, "rcdi"),
])
def test_delegation_rcd_input_is_refused_with_the_member_named(obj, field):
    with pytest.raises(ClaimConstraintsError) as caught:
        ClaimConstraints.from_json(obj)
    assert caught.value.field == field, caught.value.detail


def test_rfc8785_canonical_form_is_what_is_compared():
    """RFC 8785 §3.2.3: keys sorted by UTF-16 code units; §3.2.2.3: ECMAScript number form."""
    assert rcd_module.canonical({"b": 1.0, "a": "é", "\u20ac": 1e21}) == '{"a":"é","b":1,"€":1e+21}'
    assert rcd_module.same_json({"nam": "A", "n": 1.0}, '{ "n" : 1, "nam" : "A" }')
    with pytest.raises(ClaimConstraintsError):
        rcd_module.canonical({"nam": float("nan")})
