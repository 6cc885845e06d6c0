"""Certificate profiles (ca/issuing/profiles.py) and the issuance policy they read (ca/policy.py).

The lint tests hand-build drafts that break exactly one rule each and assert the finding names
the rule and its citation: lint must catch what build would never produce.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ca.numbers.claims import ClaimConstraints
from ca.clock import FixedClock
from ca.errors import IssuanceError, PolicyError
from ca.issuing.issuance import certify_authority_key
from ca.policy import DEFAULT_POLICY_PATH, Policy, format_duration, parse_duration
from ca.issuing.profiles import (
    CERTIFICATE,
    CERTIFICATE_WITH_SCTS,
    DELEGATE_CA,
    END_ENTITY,
    ISSUING_CA,
    PRECERTIFICATE,
    ROOT,
    TOKEN_AUTHORITY,
    CertificateContent,
    IssuerContext,
    Profile,
    build,
    check,
    lint,
)
from ca.issuing.signers.file import FileSigner
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST
from ca.issuing.transparency import SCT_LIST_OID as EMBEDDED_SCT_LIST_OID, sct_list_extension

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
OPERATOR = TNScope.parse(ranges=["12025550000:10000"], spcs=["1234"])
SHAKEN_CP_V1_1 = "2.16.840.1.114569.1.1.1"
SHAKEN_CP_V1_3 = "2.16.840.1.114569.1.1.3"


def default_mapping() -> dict:
    with DEFAULT_POLICY_PATH.open("rb") as fh:
        return tomllib.load(fh)


def policy_with(**sections) -> Policy:
    data = default_mapping()
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return Policy.from_mapping(data, base_dir=Path("/home/tnca"))


# ----------------------------------------------------------------------------------------------
# Durations and the policy file
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("5m", 300), ("24h", 86400), ("30d", 2592000), ("1h30m", 5400), ("1d2h3m4s", 93784), ("0s", 0)],
)
def test_durations_parse_and_format_back(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(dt.timedelta(seconds=seconds))) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "1 h", "1.5h", "-5m", "5m ", "5w", "m5", "1h-1m", 3600])
def test_durations_that_are_not_whole_units_are_refused(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["36501d", "99999999999999d", "9" * 5000 + "s", "1d" * 40000])
def test_durations_longer_than_a_century_are_refused_as_bad_input_not_overflow(text):
    with pytest.raises(ValueError, match="longest duration accepted, 36500d"):
        parse_duration(text)


def test_the_longest_duration_is_accepted_and_fits_in_a_datetime():
    longest = parse_duration("36500d")
    assert dt.datetime.now(dt.timezone.utc) + longest > dt.datetime.now(dt.timezone.utc)


def test_the_default_policy_loads_with_the_documented_defaults():
    policy = Policy.default()
    assert policy.lifetimes.end_entity == dt.timedelta(hours=24)
    assert policy.lifetimes.minimum == dt.timedelta(minutes=5)
    assert policy.keys.end_entity == ("ec-p256",)
    assert policy.certificates.crl_url(base_url="http://ca.test/", issuer="issuing") == "http://ca.test/crl/issuing.crl"
    assert policy.certificates.policy_oids == ()
    assert policy.tokens.allowed_algorithms == ("ES256",)
    assert policy.ct.required_scts == 0 and policy.ct.logs == ()
    assert policy.acme.terms_of_service is None and policy.acme.eab_required is False


def test_every_default_policy_key_is_documented_by_a_comment():
    """Each key line in ca/policies/default.toml follows a comment line (the policy reference)."""
    lines = DEFAULT_POLICY_PATH.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            previous = next(lines[j] for j in range(index - 1, -1, -1) if lines[j].strip())
            assert previous.startswith("#") or "=" in previous, f"undocumented policy key: {line}"


def test_end_entity_lifetime_is_configurable_down_to_minutes():
    policy = policy_with(lifetimes={"end_entity": "10m"})
    assert Profile.for_name(END_ENTITY, policy).max_lifetime == dt.timedelta(minutes=10)


@pytest.mark.parametrize(
    "sections, field, message",
    [
        ({"lifetimes": {"end_entity": "4m"}}, "[lifetimes] end_entity", "below the minimum of 5m"),
        ({"lifetimes": {"minimum": "1m"}}, "[lifetimes] minimum", "below the minimum of 5m"),
        ({"lifetimes": {"end_entity": "24"}}, "[lifetimes] end_entity", "expected a duration"),
        ({"lifetimes": {"backdate": "2h"}}, "[lifetimes] backdate", "must not exceed 1h"),
        ({"lifetimes": {"minimum": "2d"}}, "[lifetimes] end_entity", "shorter than [lifetimes] minimum"),
        ({"keys": {"end_entity": ["ec-p257"]}}, "[keys] end_entity", "unknown value(s) ec-p257"),
        ({"keys": {"end_entity": []}}, "[keys] end_entity", "must not be empty"),
        ({"certificates": {"policy_oids": ["shaken"]}}, "[certificates] policy_oids", "not a dotted object identifier"),
        ({"certificates": {"crl_distribution_point": "{base}/crl"}}, "[certificates] crl_distribution_point",
         "only {base_url} and {issuer}"),
        ({"certificates": {"crl_distribution_point": "ldap://x/{issuer}"}}, "[certificates] crl_distribution_point",
         "http:// or https://"),
        ({"certificates": {"crl_issuer": "not a DN"}}, "[certificates] crl_issuer", "RFC 4514"),
        ({"certificates": {"delegate_ca_path_length": -2}}, "[certificates] delegate_ca_path_length", "≥ -1"),
        ({"tokens": {"allowed_algorithms": ["HS256"]}}, "[tokens] allowed_algorithms", "unknown value(s) HS256"),
        ({"ct": {"required_scts": 1}}, "[ct] required_scts", "only 0 log(s) configured"),
        ({"ct": {"logs": [{"name": "a", "url": "ftp://x"}]}}, "[ct] logs[0]", "expected { name"),
        ({"acme": {"terms_of_service": "tos.html"}}, "[acme] terms_of_service", "not an http(s) URL"),
        ({"acme": {"eab_required": "yes"}}, "[acme] eab_required", "expected true or false"),
        ({"acme": {"nonce_lifetimes": "1h"}}, "[acme] nonce_lifetimes", "unknown policy key"),
        ({"lifetime": {"end_entity": "1h"}}, "[lifetime]", "unknown policy section"),
    ],
)
def test_bad_policy_values_are_refused_naming_section_and_key(sections, field, message):
    with pytest.raises(PolicyError) as caught:
        policy_with(**sections)
    assert caught.value.field == field
    assert message in caught.value.detail


def test_missing_policy_key_is_named():
    data = default_mapping()
    del data["tokens"]["max_lifetime"]
    with pytest.raises(PolicyError, match=r"\[tokens\] max_lifetime is missing"):
        Policy.from_mapping(data, base_dir=Path("/"))


def test_policy_file_paths_are_relative_to_the_policy_file(tmp_path):
    text = DEFAULT_POLICY_PATH.read_text().replace("trusted_authorities = []", 'trusted_authorities = ["ta/other.pem"]')
    text = text.replace("logs = []", 'logs = [{ name = "a", url = "http://127.0.0.1:8091/", public_key = "logs/a.pem" }]')
    (tmp_path / "policy.toml").write_text(text)
    policy = Policy.load(tmp_path / "policy.toml")
    assert policy.tokens.trusted_authorities == (tmp_path.resolve() / "ta" / "other.pem",)
    assert policy.ct.logs[0].public_key == tmp_path.resolve() / "logs" / "a.pem"
    assert policy.ct.logs[0].url == "http://127.0.0.1:8091"


def test_unreadable_or_invalid_policy_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.load(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[lifetimes\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        Policy.load(tmp_path / "bad.toml")


# ----------------------------------------------------------------------------------------------
# Building certificates
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    """Root and issuing CA keys and certificates made with the default policy."""
    policy = Policy.default()
    clock = FixedClock(NOW - dt.timedelta(days=1))
    root_signer = FileSigner(ec.generate_private_key(ec.SECP256R1()))
    issuing_signer = FileSigner(ec.generate_private_key(ec.SECP256R1()))
    root = certify_authority_key(ROOT, subject=policy.names.root, public_key=root_signer.public_key,
                                 signer=root_signer, issuer_certificate=None, issuer_scope=None, scope=None,
                                 crl_url=None, policy=policy, clock=clock)
    issuing = certify_authority_key(ISSUING_CA, subject=policy.names.issuing_ca, public_key=issuing_signer.public_key,
                                    signer=root_signer, issuer_certificate=root, issuer_scope=None, scope=OPERATOR,
                                    crl_url="http://ca.test/crl/root.crl", policy=policy, clock=clock)
    return {"root": root, "issuing": issuing, "issuing_key": issuing_signer._private_key, "policy": policy}


def context(pki, **overrides) -> IssuerContext:
    values = dict(certificate=pki["issuing"], scope=OPERATOR, crl_url="http://ca.test/crl/issuing.crl",
                  crl_issuer=None, policy_oids=())
    values.update(overrides)
    return IssuerContext(**values)


def content(**overrides) -> CertificateContent:
    values = dict(subject=x509.Name.from_rfc4514_string("CN=Example Enterprise"),
                  public_key=ec.generate_private_key(ec.SECP256R1()).public_key(), serial=0x1234567890ABCDEF12,
                  not_before=NOW, not_after=NOW + dt.timedelta(hours=1),
                  scope=TNScope.parse(ranges=["12025550100:100"]))
    values.update(overrides)
    return CertificateContent(**values)


def draft(pki, builder: x509.CertificateBuilder) -> x509.Certificate:
    return builder.sign(pki["issuing_key"], hashes.SHA256())


@pytest.mark.parametrize(
    "name, ca, path_length, key_cert_sign, digital_signature",
    [(ROOT, True, None, True, False), (ISSUING_CA, True, None, True, False), (DELEGATE_CA, True, 0, True, False),
     (END_ENTITY, False, None, False, True), (TOKEN_AUTHORITY, False, None, False, True)],
)
def test_each_profile_has_critical_basic_constraints_and_key_usage(pki, name, ca, path_length, key_cert_sign,
                                                                   digital_signature):
    """RFC 5280 §4.2.1.3, §4.2.1.9 and the SHAKEN profile (ca/issuing/profiles.py): both present
    and critical."""
    profile = Profile.for_name(name, pki["policy"])
    scope = TNScope.parse(ranges=["12025550100:100"]) if profile.tn_auth_list == "required" else None
    issuer = context(pki, certificate=None, scope=None) if name == ROOT else context(pki)
    cert = draft(pki, build(profile, content(scope=scope), issuer))
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert basic.critical and usage.critical
    assert (basic.value.ca, basic.value.path_length) == (ca, path_length)
    assert (usage.value.key_cert_sign, usage.value.digital_signature) == (key_cert_sign, digital_signature)
    assert (OID_TN_AUTH_LIST in [e.oid for e in cert.extensions]) == (profile.tn_auth_list == "required")


def test_shaken_certificate_policy_oids_are_expressible_below_the_root(pki):
    """The SHAKEN CP OIDs (2.16.840.1.114569.1.1.1 / .1.1.3) come from policy [certificates]."""
    policy = policy_with(certificates={"policy_oids": [SHAKEN_CP_V1_1, SHAKEN_CP_V1_3]})
    oids = policy.certificates.policy_oids
    cert = draft(pki, build(Profile.for_name(END_ENTITY, policy), content(), context(pki, policy_oids=oids)))
    extension = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
    assert extension.critical is False
    assert [p.policy_identifier.dotted_string for p in extension.value] == [SHAKEN_CP_V1_1, SHAKEN_CP_V1_3]
    root = draft(pki, build(Profile.for_name(ROOT, policy), content(scope=None),
                            context(pki, certificate=None, scope=None, policy_oids=oids)))
    with pytest.raises(x509.ExtensionNotFound):
        root.extensions.get_extension_for_class(x509.CertificatePolicies)


def test_crl_distribution_point_and_optional_crl_issuer(pki):
    """RFC 5280 §4.2.1.13; SHAKEN's indirect CRL names its issuer in cRLIssuer."""
    crl_issuer = x509.Name.from_rfc4514_string("CN=Example STI-PA CRL,O=Example,C=US")
    cert = draft(pki, build(Profile.for_name(END_ENTITY, pki["policy"]), content(), context(pki, crl_issuer=crl_issuer)))
    (point,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name == [x509.UniformResourceIdentifier("http://ca.test/crl/issuing.crl")]
    assert point.crl_issuer == [x509.DirectoryName(crl_issuer)]
    without = draft(pki, build(Profile.for_name(END_ENTITY, pki["policy"]), content(), context(pki, crl_url=None)))
    with pytest.raises(x509.ExtensionNotFound):
        without.extensions.get_extension_for_class(x509.CRLDistributionPoints)


def test_claim_constraints_cannot_be_built_into_a_ca_certificate(pki):
    constraints = ClaimConstraints(must_include=("rcd",))
    with pytest.raises(IssuanceError, match="only for end-entity certificates") as caught:
        build(Profile.for_name(DELEGATE_CA, pki["policy"]), content(constraints=constraints), context(pki))
    assert caught.value.field == "constraints"


def test_stir_profiles_cannot_be_built_without_a_scope(pki):
    with pytest.raises(IssuanceError, match="needs a TN scope") as caught:
        build(Profile.for_name(END_ENTITY, pki["policy"]), content(scope=None), context(pki))
    assert caught.value.field == "scope"


def test_unknown_profile_name_is_refused(pki):
    with pytest.raises(IssuanceError, match="unknown certificate profile 'server'"):
        Profile.for_name("server", pki["policy"])


# ----------------------------------------------------------------------------------------------
# Lint: every rule, one broken draft each
# ----------------------------------------------------------------------------------------------


def _builder(pki, *, key=None, not_before=NOW, not_after=NOW + dt.timedelta(hours=1), issuer_name=None,
             omit=(), replace=None) -> x509.CertificateBuilder:
    """A hand-built end-entity draft; ``omit`` drops extensions by class name, ``replace`` swaps them."""
    key = key or ec.generate_private_key(ec.SECP256R1()).public_key()
    issuer_ski = pki["issuing"].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    extensions = {
        "BasicConstraints": (x509.BasicConstraints(ca=False, path_length=None), True),
        "KeyUsage": (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
        "SubjectKeyIdentifier": (x509.SubjectKeyIdentifier.from_public_key(key), False),
        "AuthorityKeyIdentifier": (x509.AuthorityKeyIdentifier(issuer_ski, None, None), False),
        "TNAuthList": (TNScope.parse(ranges=["12025550100:100"]).to_extension(), False),
    }
    extensions.update(replace or {})
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name.from_rfc4514_string("CN=Example"))
               .issuer_name(issuer_name or pki["issuing"].subject)
               .public_key(key).serial_number(0x1234567890ABCDEF)
               .not_valid_before(not_before).not_valid_after(not_after))
    for name, (value, critical) in extensions.items():
        if name not in omit:
            builder = builder.add_extension(value, critical=critical)
    return builder


def _findings(pki, builder) -> list[str]:
    return lint(Profile.for_name(END_ENTITY, pki["policy"]), draft(pki, builder), context(pki))


def test_a_conforming_hand_built_draft_has_no_findings(pki):
    assert _findings(pki, _builder(pki)) == []


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"replace": {"BasicConstraints": (x509.BasicConstraints(ca=False, path_length=None), False)}},
         "basicConstraints missing or not critical (RFC 5280 §4.2.1.9"),
        ({"omit": ("BasicConstraints",)}, "basicConstraints missing or not critical"),
        ({"replace": {"BasicConstraints": (x509.BasicConstraints(ca=True, path_length=None), True)}},
         "basicConstraints cA is True, profile end-entity needs False"),
        ({"omit": ("KeyUsage",)}, "keyUsage missing or not critical (RFC 5280 §4.2.1.3"),
        ({"replace": {"KeyUsage": (x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)}},
         "keyUsage differs from the end-entity profile"),
        ({"omit": ("SubjectKeyIdentifier",)}, "subjectKeyIdentifier missing or critical (RFC 5280 §4.2.1.2)"),
        ({"omit": ("AuthorityKeyIdentifier",)}, "authorityKeyIdentifier missing or critical"),
        ({"replace": {"AuthorityKeyIdentifier": (x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None), False)}},
         "does not equal the issuer's subjectKeyIdentifier (RFC 9060 §7)"),
        ({"issuer_name": x509.Name.from_rfc4514_string("CN=Someone else")},
         "issuer name does not equal the issuer certificate's subject"),
        ({"omit": ("TNAuthList",)}, "TNAuthList missing from a end-entity certificate (RFC 8226 §9)"),
        ({"replace": {"TNAuthList": (TNScope.parse(ranges=["12025550100:100"]).to_extension(), True)}},
         "TNAuthList is critical (RFC 8226 §9: non-critical)"),
        ({"replace": {"TNAuthList": (TNScope.parse(ranges=["12025559900:200"]).to_extension(), False)}},
         "TNAuthList is not inside the issuer's scope: range 12025560000+100 (RFC 9060 §4)"),
        ({"replace": {"TNAuthList": (x509.UnrecognizedExtension(OID_TN_AUTH_LIST, b"\x30\x03\x80\x01\x31"), False)}},
         "TNAuthList does not decode"),
        ({"not_after": NOW + dt.timedelta(hours=25)}, "validity 1d1h exceeds the end-entity maximum of 1d"),
        ({"not_after": NOW + dt.timedelta(minutes=4)}, "validity 4m is below the minimum of 5m"),
        ({"not_after": NOW}, "notAfter is not after notBefore"),
        ({"not_before": NOW + dt.timedelta(days=3650), "not_after": NOW + dt.timedelta(days=3650, hours=1)},
         "notAfter is later than the issuer's notAfter"),
        ({"key": ec.generate_private_key(ec.SECP384R1()).public_key()},
         "subject key ec-p384 is not allowed for end-entity"),
    ],
    ids=["bc-noncritical", "bc-missing", "bc-ca", "ku-missing", "ku-wrong", "ski-missing", "aki-missing",
         "aki-mismatch", "issuer-name", "tnauthlist-missing", "tnauthlist-critical", "tnauthlist-outside",
         "tnauthlist-malformed", "too-long", "too-short", "zero-length", "past-issuer", "p384-key"],
)
def test_lint_names_each_broken_rule(pki, kwargs, expected):
    findings = _findings(pki, _builder(pki, **kwargs))
    assert any(expected in finding for finding in findings), findings


def test_lint_refuses_both_claim_constraint_variants_and_critical_ones(pki):
    """RFC 9118 §6: never both; RFC 8226 §8: non-critical."""
    jwt = ClaimConstraints(must_include=("rcd",))
    enhanced = ClaimConstraints(must_exclude=("rcd",))
    builder = (_builder(pki)
               .add_extension(x509.UnrecognizedExtension(jwt.oid, jwt.to_der()), critical=False)
               .add_extension(x509.UnrecognizedExtension(enhanced.oid, enhanced.to_der()), critical=True))
    findings = _findings(pki, builder)
    assert any("both JWTClaimConstraints and EnhancedJWTClaimConstraints present" in f for f in findings)
    assert any("claim constraints extension is critical" in f for f in findings)


def test_lint_refuses_claim_constraints_and_a_tnauthlist_where_the_profile_forbids_them(pki):
    jwt = ClaimConstraints(must_include=("rcd",))
    builder = _builder(pki, replace={
        "BasicConstraints": (x509.BasicConstraints(ca=True, path_length=0), True),
        "KeyUsage": (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
    }).add_extension(x509.UnrecognizedExtension(jwt.oid, jwt.to_der()), critical=False)
    findings = lint(Profile.for_name(DELEGATE_CA, pki["policy"]), draft(pki, builder), context(pki))
    assert any("claim constraints on a CA certificate" in f for f in findings), findings
    ta = lint(Profile.for_name(TOKEN_AUTHORITY, pki["policy"]), draft(pki, _builder(pki)), context(pki))
    assert any("a token-authority certificate carries no TNAuthList" in f for f in ta), ta


def test_lint_refuses_unexpected_critical_extensions(pki):
    builder = _builder(pki).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
    assert any("unexpected critical extension(s) 2.5.29.37" in f for f in _findings(pki, builder))


def test_check_raises_an_issuance_error_listing_every_finding(pki):
    builder = _builder(pki, omit=("KeyUsage", "TNAuthList"))
    with pytest.raises(IssuanceError) as caught:
        check(Profile.for_name(END_ENTITY, pki["policy"]), draft(pki, builder), context(pki))
    assert caught.value.detail.startswith("end-entity certificate failed lint: ")
    assert "keyUsage missing" in caught.value.detail and "TNAuthList missing" in caught.value.detail


def test_profile_lifetime_caps_follow_the_policy(pki):
    policy = dataclasses.replace(pki["policy"], lifetimes=dataclasses.replace(
        pki["policy"].lifetimes, end_entity=dt.timedelta(minutes=30), delegate_ca=dt.timedelta(days=7)))
    assert Profile.for_name(END_ENTITY, policy).max_lifetime == dt.timedelta(minutes=30)
    assert Profile.for_name(DELEGATE_CA, policy).max_lifetime == dt.timedelta(days=7)
    assert Profile.for_name(END_ENTITY, policy).allowed_key_types == ("ec-p256",)


# ----------------------------------------------------------------------------------------------
# Lint of the three forms a TBS is signed in (RFC 6962 §3.1, §3.3)
# ----------------------------------------------------------------------------------------------

# One TLS-encoded SCT (RFC 6962 §3.2) of the right shape; lint reads its shape, not its signature.
_SCT = (b"\x00" + b"\x11" * 32 + (1_780_000_000_000).to_bytes(8, "big") + b"\x00\x00" + b"\x04\x03"
        + (8).to_bytes(2, "big") + b"\x30\x06\x02\x01\x01\x02\x01\x01")


class _SerializedSCT:
    """An SCT already in its TLS encoding, as the list encoder takes SCTs."""

    def __init__(self, tls: bytes) -> None:
        self.tls = tls

    def serialize(self) -> bytes:
        return self.tls


def _poisoned(builder, critical=True):
    return builder.add_extension(x509.PrecertPoison(), critical=critical)


def _with_scts(builder, critical=False):
    return builder.add_extension(
        sct_list_extension([_SerializedSCT(_SCT)]), critical=critical
    )


def _form_findings(pki, builder, form, precertificate=None) -> list[str]:
    return lint(Profile.for_name(END_ENTITY, pki["policy"]), draft(pki, builder), context(pki), form=form,
                precertificate=precertificate)


def test_a_conforming_precertificate_and_its_certificate_with_scts_have_no_findings(pki):
    builder = _builder(pki)
    precertificate = draft(pki, _poisoned(builder))
    assert _form_findings(pki, _poisoned(builder), PRECERTIFICATE) == []
    assert _form_findings(pki, _with_scts(builder), CERTIFICATE_WITH_SCTS, precertificate) == []


@pytest.mark.parametrize(
    "change, form, expected",
    [
        (lambda b: b, PRECERTIFICATE, "precertificate poison missing or not critical (RFC 6962 §3.1)"),
        (lambda b: _poisoned(b, critical=False), PRECERTIFICATE, "precertificate poison missing or not critical"),
        (_poisoned, CERTIFICATE, "a certificate carries the precertificate poison (RFC 6962 §3.1)"),
        (lambda b: _with_scts(_poisoned(b)), CERTIFICATE_WITH_SCTS,
         "a certificate-with-scts carries the precertificate poison"),
        (_with_scts, CERTIFICATE, "a certificate carries an SCT list (RFC 6962 §3.3"),
        (lambda b: _with_scts(_poisoned(b)), PRECERTIFICATE, "a precertificate carries an SCT list"),
        (lambda b: b, CERTIFICATE_WITH_SCTS, "SCT list missing from a certificate-with-scts (RFC 6962 §3.3)"),
        (lambda b: _with_scts(b, critical=True), CERTIFICATE_WITH_SCTS, "SCT list is critical (RFC 6962 §3.3"),
        (lambda b: b.add_extension(x509.UnrecognizedExtension(EMBEDDED_SCT_LIST_OID, b"\x04\x02\x00\x00"),
                                   critical=False),
         CERTIFICATE_WITH_SCTS, "SCT list is empty (RFC 6962 §3.3: sct_list<1..2^16-1>)"),
        (lambda b: b.add_extension(x509.UnrecognizedExtension(EMBEDDED_SCT_LIST_OID, b"\x04\x04\x00\x02\x00\x01"),
                                   critical=False),
         CERTIFICATE_WITH_SCTS, "extensions do not decode: "),
    ],
    ids=["precert-no-poison", "precert-poison-noncritical", "cert-poison", "with-scts-poison", "cert-scts",
         "precert-scts", "with-scts-missing", "with-scts-critical", "with-scts-empty", "with-scts-malformed"],
)
def test_lint_names_each_broken_transparency_rule(pki, change, form, expected):
    precertificate = draft(pki, _poisoned(_builder(pki)))
    findings = _form_findings(pki, change(_builder(pki)), form, precertificate)
    assert any(expected in finding for finding in findings), findings


def test_a_certificate_with_scts_must_be_its_precertificate_plus_the_sct_list(pki):
    """RFC 6962 §3.3: the SCTs sign the precertificate's TBS; any other difference breaks them."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    precertificate = draft(pki, _poisoned(_builder(pki, key=key)))
    assert _form_findings(pki, _with_scts(_builder(pki, key=key)), CERTIFICATE_WITH_SCTS, precertificate) == []
    later = _with_scts(_builder(pki, key=key, not_after=NOW + dt.timedelta(hours=2)))
    findings = _form_findings(pki, later, CERTIFICATE_WITH_SCTS, precertificate)
    assert any("TBS differs from the precertificate's beyond the poison and the SCT list" in f for f in findings)
    alone = _form_findings(pki, _with_scts(_builder(pki)), CERTIFICATE_WITH_SCTS)
    assert any("linted against its precertificate" in f for f in alone), alone


def test_check_names_the_form_that_failed_and_unknown_forms_are_refused(pki):
    with pytest.raises(IssuanceError) as caught:
        check(Profile.for_name(END_ENTITY, pki["policy"]), draft(pki, _builder(pki)), context(pki), form=PRECERTIFICATE)
    assert caught.value.detail.startswith("end-entity precertificate failed lint: ")
    with pytest.raises(IssuanceError, match="unknown certificate form 'final'"):
        lint(Profile.for_name(END_ENTITY, pki["policy"]), draft(pki, _builder(pki)), context(pki), form="final")
