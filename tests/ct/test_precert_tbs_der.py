"""RFC 6962 §3.2: the precert entry's TBSCertificate is the precertificate's without the poison.

Both sides take the poison out by editing the DER in place (``ca.issuing.transparency.tbs_without_poison``
for the authority, ``ctlog.chain.precert_tbs`` for the log). Checked here against an independent
route: pyasn1 decodes the TBSCertificate with the RFC 5280 module, drops the extension and
re-encodes it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280

from ca.errors import TransparencyError
from ca.issuing.transparency import PRECERT_POISON_OID, tbs_without_poison
from ctlog.chain import ChainError, precert_tbs

KEY = ec.generate_private_key(ec.SECP256R1())


def build(*, long_names: bool, others: bool, poison: bool = True) -> x509.Certificate:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, "Example Enterprise")]
    if long_names:  # pushes the TBSCertificate's length past 255 bytes (a two-octet length)
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "O" * 64),
                       x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "U" * 64)]
    name = x509.Name(attributes)
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(KEY.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + dt.timedelta(days=1)))
    if others:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if poison:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    if others:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(KEY.public_key()), critical=False)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26"), bytes.fromhex("3000")), critical=False)
    return builder.sign(KEY, hashes.SHA256())


def by_pyasn1(certificate: x509.Certificate) -> bytes:
    tbs, rest = der_decoder.decode(certificate.tbs_certificate_bytes, asn1Spec=rfc5280.TBSCertificate())
    assert not rest
    kept = tbs["extensions"].clone()
    for extension in tbs["extensions"]:
        if extension["extnID"] != univ.ObjectIdentifier(PRECERT_POISON_OID.dotted_string):
            kept.append(extension)
    tbs["extensions"] = kept
    return der_encoder.encode(tbs)


@pytest.mark.parametrize("long_names", [False, True])
@pytest.mark.parametrize("others", [False, True])
def test_rfc6962_s3_2_both_sides_match_an_independent_reencoding(long_names: bool, others: bool) -> None:
    precertificate = build(long_names=long_names, others=others)
    expected = by_pyasn1(precertificate)
    assert tbs_without_poison(precertificate) == expected
    assert precert_tbs(precertificate) == expected
    if not others:  # the poison was the only extension: the [3] field goes with it
        assert der_decoder.decode(expected, asn1Spec=rfc5280.TBSCertificate())[0]["extensions"].isValue is False


def test_a_certificate_without_the_poison_is_refused_by_both_sides() -> None:
    certificate = build(long_names=False, others=True, poison=False)
    with pytest.raises(TransparencyError, match="poison"):
        tbs_without_poison(certificate)
    with pytest.raises(ChainError, match="poison"):
        precert_tbs(certificate)
