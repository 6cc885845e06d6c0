"""PASSporT claim constraints: JWTClaimConstraints (RFC 8226 §8) and EnhancedJWTClaimConstraints
(RFC 9118): codec, JSON form, issuance rules and verifier evaluation.

Vectors are in tests/vectors/ (core-standards.md Appendix A.2 and the RFC 9118 §5 certificate);
our DER is cross-checked with pyasn1_alt_modules.rfc8226 / rfc9118.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder as reference_decoder
from pyasn1_alt_modules import rfc8226, rfc9118

from ca.numbers.claims import (
    OID_ENHANCED_JWT_CLAIM_CONSTRAINTS,
    OID_JWT_CLAIM_CONSTRAINTS,
    ClaimConstraints,
    evaluate,
)
from ca.errors import ClaimConstraintsError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
A2 = json.loads((VECTORS / "claims-appendix-a2.json").read_text())
RFC9118_EXAMPLE = next(v for v in A2["extensions"] if v["kind"] == "enhanced")
BASELINE = {"iat": 1704067200, "orig": {"tn": "12025551212"}, "dest": {"tn": ["12025551213"]}}


def reference_decode(der: bytes, kind: str) -> dict:
    """Decode with pyasn1_alt_modules (independent schema, RFC constraints enforced)."""
    spec = rfc9118.EnhancedJWTClaimConstraints() if kind == "enhanced" else rfc8226.JWTClaimConstraints()
    value, rest = reference_decoder.decode(der, asn1Spec=spec)
    assert rest == b""
    values_field = "values" if kind == "enhanced" else "permitted"
    out: dict = {}
    if value["mustInclude"].isValue:
        out["mustInclude"] = [str(n) for n in value["mustInclude"]]
    if value["permittedValues"].isValue:
        out["permittedValues"] = {str(p["claim"]): [str(v) for v in p[values_field]] for p in value["permittedValues"]}
    if kind == "enhanced" and value["mustExclude"].isValue:
        out["mustExclude"] = [str(n) for n in value["mustExclude"]]
    return out


# ---------------------------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", A2["extensions"], ids=lambda v: v["name"])
def test_rfc8226_s8_and_rfc9118_s3_appendix_a2_vectors_round_trip(vector):
    """RFC 8226 §8 / RFC 9118 §3: EXPLICIT [0] mustInclude, [1] permittedValues, [2] mustExclude."""
    der = bytes.fromhex(vector["der"])
    decoded = ClaimConstraints.from_der(der, vector["kind"])
    assert decoded.kind == vector["kind"]
    assert decoded.to_json() == vector["json"]
    assert decoded.to_der() == der
    assert ClaimConstraints.from_json(vector["json"]) == decoded
    assert reference_decode(der, vector["kind"]) == vector["json"]


def test_rfc9118_s5_example_certificate_constraints_round_trip():
    """RFC 9118 §5: confidence required, one of high/medium; priority excluded."""
    cert = x509.load_pem_x509_certificate((VECTORS / "rfc9118-s5-example-cert.pem").read_bytes())
    constraints = ClaimConstraints.from_certificate(cert)
    assert constraints == ClaimConstraints(
        must_include=("confidence",),
        permitted_values=(("confidence", ("high", "medium")),),
        must_exclude=("priority",),
        enhanced=True,
    )
    raw = cert.extensions.get_extension_for_oid(OID_ENHANCED_JWT_CLAIM_CONSTRAINTS)
    assert raw.critical is False
    assert constraints.to_extension() == raw.value
    assert raw.value.value.hex() == RFC9118_EXAMPLE["der"]


@pytest.mark.parametrize(
    "case", A2["evaluations_against_rfc9118_example"], ids=lambda c: json.dumps(c["claims"]) + c.get("omit_baseline", "")
)
def test_rfc9118_s4_appendix_a2_claim_checks(case):
    """RFC 9118 §4: mustInclude present, permittedValues exact match, mustExclude absent, baseline present."""
    constraints = ClaimConstraints.from_json(RFC9118_EXAMPLE["json"])
    claims = {**BASELINE, **case["claims"]}
    claims.pop(case.get("omit_baseline", ""), None)
    assert constraints.evaluate(claims) == case["violations"]


# ---------------------------------------------------------------------------------------------
# Evaluation rules
# ---------------------------------------------------------------------------------------------


def test_rfc9118_s4_permitted_values_allow_an_absent_claim_unless_it_is_required():
    """RFC 9118 §4: with permittedValues confidence=["high"], a PASSporT without confidence passes."""
    constraints = ClaimConstraints(permitted_values=(("confidence", ("high",)),))
    assert constraints.evaluate(BASELINE) == []
    assert constraints.evaluate({**BASELINE, "confidence": "medium"}) == [
        "claim 'confidence' value 'medium' is not one of the permitted values 'high'"
    ]


def test_rfc9118_s4_permitted_values_match_strings_exactly():
    constraints = ClaimConstraints(permitted_values=(("confidence", ("high",)), ("attest", ("A", "B"))))
    assert constraints.evaluate({**BASELINE, "confidence": "High"}) != []
    assert constraints.evaluate({**BASELINE, "attest": ["A"]}) == [
        "claim 'attest' has a list value that equals none of the permitted values 'A', 'B' "
        "(compared as RFC 8785 canonical JSON)"
    ]
    assert constraints.evaluate({**BASELINE, "confidence": "high", "attest": "B"}) == []


def test_rfc9118_s3_baseline_claim_in_must_exclude_means_the_extension_is_ignored():
    """RFC 9118 §3: if iat, orig or dest is in mustExclude, the certificate is treated as if the
    extension were absent. Such a value can be read from a certificate (strict=False) but never issued."""
    weird = ClaimConstraints(must_include=("confidence",), must_exclude=("orig",))
    der = weird.to_der(strict=False)
    with pytest.raises(ClaimConstraintsError) as caught:
        ClaimConstraints.from_der(der, "enhanced")
    assert caught.value.field == "mustExclude"
    assert "'orig' is a baseline PASSporT claim" in caught.value.detail
    read = ClaimConstraints.from_der(der, "enhanced", strict=False)
    assert read == weird
    assert read.evaluate(BASELINE) == []  # mustInclude confidence is not enforced either
    assert read.evaluate({"iat": 1, "orig": {}}) == ["PASSporT lacks the baseline claim 'dest' (RFC 8225 §5, RFC 8226 §8)"]


def test_rfc8226_s8_without_an_extension_only_the_baseline_claims_are_required():
    assert evaluate(BASELINE, None) == []
    assert evaluate({"iat": 1}, None) == [
        "PASSporT lacks the baseline claim 'orig' (RFC 8225 §5, RFC 8226 §8)",
        "PASSporT lacks the baseline claim 'dest' (RFC 8225 §5, RFC 8226 §8)",
    ]
    assert evaluate(["iat"], None) == ["PASSporT payload must be a JSON object (got list)"]


def test_rfc9118_s4_every_violation_is_reported_not_just_the_first():
    constraints = ClaimConstraints.from_json(RFC9118_EXAMPLE["json"])
    assert constraints.evaluate({"iat": 1, "orig": {}, "priority": "1"}) == [
        "PASSporT lacks the baseline claim 'dest' (RFC 8225 §5, RFC 8226 §8)",
        "claim 'confidence' is required by mustInclude but absent",
        "claim 'priority' is present but mustExclude forbids it",
    ]


# ---------------------------------------------------------------------------------------------
# Which extension goes in a certificate (RFC 9118 §6)
# ---------------------------------------------------------------------------------------------


def test_rfc9118_s6_must_exclude_forces_the_enhanced_extension():
    constraints = ClaimConstraints(must_exclude=("priority",))
    assert constraints.enhanced is True and constraints.kind == "enhanced"
    assert constraints.to_extension().oid == OID_ENHANCED_JWT_CLAIM_CONSTRAINTS


def test_rfc9118_s6_without_must_exclude_the_rfc8226_extension_is_chosen_unless_asked():
    plain = ClaimConstraints(must_include=("confidence",))
    assert plain.kind == "jwt" and plain.oid == OID_JWT_CLAIM_CONSTRAINTS
    assert plain.to_extension().oid == OID_JWT_CLAIM_CONSTRAINTS
    asked = ClaimConstraints.from_json({"mustInclude": ["confidence"], "enhanced": True})
    assert asked.kind == "enhanced" and asked.to_json() == {"mustInclude": ["confidence"], "enhanced": True}
    # Same components, different extension: the [2] component is simply absent.
    assert asked.to_der() == plain.to_der()


def _certificate_with(*extensions: x509.UnrecognizedExtension) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "claim constraints test")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256())


def test_rfc9118_s6_a_certificate_with_both_extensions_is_refused():
    """RFC 9118 §6: JWTClaimConstraints and EnhancedJWTClaimConstraints MUST NOT both appear."""
    jwt = ClaimConstraints(must_include=("confidence",))
    enhanced = ClaimConstraints(must_exclude=("priority",))
    both = _certificate_with(jwt.to_extension(), enhanced.to_extension())
    with pytest.raises(ClaimConstraintsError) as caught:
        ClaimConstraints.from_certificate(both)
    assert caught.value.field == "constraints"
    assert "both" in caught.value.detail
    assert ClaimConstraints.from_certificate(_certificate_with(jwt.to_extension())) == jwt
    assert ClaimConstraints.from_certificate(_certificate_with()) is None


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

INVALID_JSON = [
    ({}, "constraints", "at least one of mustInclude, permittedValues or mustExclude"),
    ({"mustInclude": []}, "mustInclude", "mustInclude is empty"),
    ({"mustInclude": "confidence"}, "mustInclude", "must be a list of claim names"),
    ({"mustInclude": [""]}, "mustInclude[0]", "claim name is empty"),
    ({"mustInclude": ["confidénce"]}, "mustInclude[0]", "must be ASCII"),
    ({"mustInclude": [7]}, "mustInclude[0]", "must be a string"),
    ({"mustInclude": ["iat"]}, "mustInclude", "'iat' is a baseline PASSporT claim"),
    ({"mustExclude": ["dest"]}, "mustExclude", "'dest' is a baseline PASSporT claim and must not be in mustExclude"),
    ({"mustInclude": ["rcd"], "mustExclude": ["rcd"]}, "mustExclude", "in both mustInclude and mustExclude"),
    ({"mustInclude": ["rcd", "rcd"]}, "mustInclude", "listed twice in mustInclude"),
    ({"permittedValues": ["confidence"]}, "permittedValues", "must be an object"),
    ({"permittedValues": {"confidence": "high"}}, "permittedValues.confidence", "must be a list of strings"),
    ({"permittedValues": {"confidence": []}}, "permittedValues.confidence", "list at least one value"),
    ({"permittedValues": {"confidence": [1]}}, "permittedValues.confidence[0]", "must be a string (UTF8String)"),
    ({"permittedValues": {"confidence": ["\ud800"]}}, "permittedValues.confidence[0]", "lone surrogate"),
    ({"permittedValues": {"confidence": ["high", "high"]}}, "permittedValues.confidence", "listed twice"),
    ({"mustInclude": ["confidence"], "mustExlude": ["priority"]}, "mustExlude", "unknown member 'mustExlude'"),
    ({"mustInclude": ["confidence"], "enhanced": "yes"}, "enhanced", "true or false"),
    ([], "constraints", "must be a JSON object"),
    ("{not json", "constraints", "not valid JSON"),
]


@pytest.mark.parametrize("obj,field,fragment", INVALID_JSON, ids=[f"{i}-{c[1]}" for i, c in enumerate(INVALID_JSON)])
def test_rfc8226_s8_rfc9118_s6_invalid_constraints_are_refused_naming_the_field(obj, field, fragment):
    with pytest.raises(ClaimConstraintsError) as caught:
        ClaimConstraints.from_json(obj)
    assert caught.value.field == field
    assert fragment in caught.value.detail


def test_from_json_accepts_a_json_document_string():
    text = json.dumps(RFC9118_EXAMPLE["json"])
    assert ClaimConstraints.from_json(text).to_der().hex() == RFC9118_EXAMPLE["der"]


REFUSED_DER = [
    ("empty SEQUENCE", "jwt", "3000", "constraints", "at least one of"),
    ("present but empty mustInclude", "enhanced", "3004a0023000", "mustInclude", "present but empty"),
    ("present but empty permittedValues", "jwt", "3004a1023000", "permittedValues", "present but empty"),
    ("empty values list", "jwt", "300ba10930073005160163" "3000", "permittedValues.c", "list at least one value"),
    ("mustExclude in a JWTClaimConstraints", "jwt", "3007a20530031601" "78", "constraints", "not a DER JWTClaimConstraints"),
    ("trailing byte", "enhanced", RFC9118_EXAMPLE["der"] + "00", "constraints", "1 trailing byte"),
    ("non-minimal length", "jwt", "30810a" "a008300616016316" "0178", "constraints", "BER, not DER"),
    ("IMPLICIT tag", "enhanced", "3005820378797a", "constraints", "not a DER EnhancedJWTClaimConstraints"),
    ("length beyond sys.maxsize", "jwt", "3088ffffffffffffffff00", "constraints", "not a DER"),
]


@pytest.mark.parametrize("name,kind,hexed,field,fragment", REFUSED_DER, ids=[r[0] for r in REFUSED_DER])
def test_x690_s10_constraints_decoder_is_strict_and_names_the_field(name, kind, hexed, field, fragment):
    with pytest.raises(ClaimConstraintsError) as caught:
        ClaimConstraints.from_der(bytes.fromhex(hexed), kind)
    assert caught.value.field == field
    assert fragment in caught.value.detail


def test_from_der_refuses_an_unknown_kind():
    with pytest.raises(ClaimConstraintsError) as caught:
        ClaimConstraints.from_der(bytes.fromhex(RFC9118_EXAMPLE["der"]), "eJWT")
    assert caught.value.field == "kind"


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

claim_names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12).filter(
    lambda n: n not in ("iat", "orig", "dest")
)
claim_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def issuable_constraints(draw):
    names = draw(st.lists(claim_names, unique=True, max_size=8))
    split_a, split_b = sorted(draw(st.lists(st.integers(0, len(names)), min_size=2, max_size=2)))
    must_include, must_exclude = tuple(names[:split_a]), tuple(names[split_b:])
    permitted_claims = draw(st.lists(claim_names, unique=True, max_size=3))
    permitted = tuple(
        (claim, tuple(draw(st.lists(claim_values, unique=True, min_size=1, max_size=3)))) for claim in permitted_claims
    )
    if not (must_include or must_exclude or permitted):
        must_include = ("confidence",)
    return ClaimConstraints(must_include, permitted, must_exclude, enhanced=draw(st.booleans()))


@given(issuable_constraints())
def test_rfc9118_property_der_and_json_round_trip_and_match_the_reference_decoder(constraints):
    der = constraints.to_der()
    assert ClaimConstraints.from_der(der, constraints.kind) == constraints
    assert ClaimConstraints.from_json(constraints.to_json()) == constraints
    assert reference_decode(der, constraints.kind) == {k: v for k, v in constraints.to_json().items() if k != "enhanced"}


@given(issuable_constraints(), st.data())
def test_rfc9118_s4_property_a_passport_built_to_comply_passes_and_each_breach_is_reported(constraints, data):
    claims = dict(BASELINE)
    for claim, values in constraints.permitted_values:
        if claim in constraints.must_include or (claim not in constraints.must_exclude and data.draw(st.booleans())):
            claims[claim] = data.draw(st.sampled_from(values))
    for name in constraints.must_include:
        claims.setdefault(name, "x")
    assert constraints.evaluate(claims) == []

    if constraints.must_include:
        name = constraints.must_include[0]
        missing = {k: v for k, v in claims.items() if k != name}
        assert f"claim {name!r} is required by mustInclude but absent" in constraints.evaluate(missing)
    if constraints.must_exclude:
        name = constraints.must_exclude[0]
        assert f"claim {name!r} is present but mustExclude forbids it" in constraints.evaluate({**claims, name: "x"})
    for claim, values in constraints.permitted_values:
        outsider = "".join(values) + "?"  # longer than every listed value, so not one of them
        violations = constraints.evaluate({**claims, claim: outsider})
        assert any(v.startswith(f"claim {claim!r} value ") for v in violations)


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from(["jwt", "enhanced"]))
def test_fuzz_constraints_decoder_raises_only_claim_constraints_error(data, kind):
    try:
        constraints = ClaimConstraints.from_der(data, kind, strict=False)
    except ClaimConstraintsError as error:
        assert error.field and error.detail
    else:
        assert constraints.to_der(strict=False) == data


def test_rfc5280_s4_2_a_certificate_with_a_duplicated_constraints_extension_is_refused():
    """RFC 5280 §4.2: at most one instance of an extension. The duplicate is made by renaming a
    second extension's OID in the DER; the certificate is only parsed, never verified."""
    from cryptography.hazmat.primitives import serialization

    constraints = ClaimConstraints(must_exclude=("priority",))
    placeholder = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.99"), constraints.to_der())
    der = _certificate_with(constraints.to_extension(), placeholder).public_bytes(serialization.Encoding.DER)
    placeholder_der, enhanced_der = bytes.fromhex("06082b06010505070163"), bytes.fromhex("06082b06010505070121")
    assert der.count(placeholder_der) == 1
    duplicated = x509.load_der_x509_certificate(der.replace(placeholder_der, enhanced_der))
    with pytest.raises(ClaimConstraintsError) as caught:
        ClaimConstraints.from_certificate(duplicated)
    assert caught.value.field == "constraints"
    assert "cannot be read" in caught.value.detail
