"""The SHAKEN end-entity subject rule (ATIS-1000080 §6.4.1; ca.issuing.profiles.shaken_subject).

The rule echoes the CSR's subject byte for byte (deployed clients compare it) only when every
attribute is one the rule names and CN's SPC is the certified one.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ca.errors import CSRError, PolicyError
from ca.issuing.profiles import shaken_subject
from ca.numbers.tnauthlist import TNScope
from ca.policy import Policy

SPC_1234 = TNScope.parse(spcs=["1234"])


def name(*pairs) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]) for oid, value in pairs])


CLIENT_SUBJECT = name((NameOID.COUNTRY_NAME, "US"), (NameOID.STATE_OR_PROVINCE_NAME, "TX"),
                      (NameOID.LOCALITY_NAME, "Irving"), (NameOID.ORGANIZATION_NAME, "Example Telecom"),
                      (NameOID.ORGANIZATIONAL_UNIT_NAME, "VoIP"), (NameOID.COMMON_NAME, "SHAKEN 1234 20261204T2200"))


def test_the_clients_subject_is_echoed_byte_for_byte():
    subject = shaken_subject(CLIENT_SUBJECT, SPC_1234)
    assert subject.public_bytes() == CLIENT_SUBJECT.public_bytes()
    assert shaken_subject(name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "E"),
                               (NameOID.COMMON_NAME, "SHAKEN 1234")), SPC_1234)


@pytest.mark.parametrize("subject, fragment", [
    (name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "E"), (NameOID.COMMON_NAME, "SHAKEN 1234"),
          (NameOID.EMAIL_ADDRESS, "a@example.com")), "does not echo the subject attribute 1.2.840.113549.1.9.1"),
    (name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "E"), (NameOID.COMMON_NAME, "SHAKEN 709J")),
     "names SPC '709J', but the order certifies SPC '1234'"),
    (name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "E"), (NameOID.COMMON_NAME, "delegate")),
     "must be 'SHAKEN <SPC>'"),
    (name((NameOID.COUNTRY_NAME, "US"), (NameOID.COMMON_NAME, "SHAKEN 1234")), "needs subject O"),
    (name((NameOID.COUNTRY_NAME, "us"), (NameOID.ORGANIZATION_NAME, "E"), (NameOID.COMMON_NAME, "SHAKEN 1234")),
     "ISO 3166-1 alpha-2"),
    (name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "E"), (NameOID.ORGANIZATION_NAME, "F"),
          (NameOID.COMMON_NAME, "SHAKEN 1234")), "O more than once"),
    (x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                                                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "E")])]),
     "multi-valued"),
], ids=["email", "other-spc", "cn-form", "no-o", "country", "two-o", "multi-valued-rdn"])
def test_what_the_rule_refuses(subject, fragment):
    with pytest.raises(CSRError) as caught:
        shaken_subject(subject, SPC_1234)
    assert fragment in caught.value.detail


def test_a_scope_with_numbers_is_not_a_shaken_certificate():
    """ATIS-1000080 §6.4.1 (v004): exactly one SPC, no TNs or ranges."""
    with pytest.raises(CSRError, match="exactly one SPC"):
        shaken_subject(CLIENT_SUBJECT, TNScope.parse(tns=["12025550100"], spcs=["1234"]))


def test_policy_profile_key_defaults_to_stir_and_refuses_unknown_values(tmp_path):
    from ca.policy import DEFAULT_POLICY_PATH

    assert Policy.default().certificates.profile == "stir"
    text = DEFAULT_POLICY_PATH.read_text().replace('profile = "stir"', 'profile = "shaken"', 1)
    (tmp_path / "p.toml").write_text(text)
    assert Policy.load(tmp_path / "p.toml").certificates.profile == "shaken"
    (tmp_path / "p.toml").write_text(text.replace('profile = "shaken"', 'profile = "acme"'))
    with pytest.raises(PolicyError, match=r"\[certificates\] profile"):
        Policy.load(tmp_path / "p.toml")
