"""What a CSR may ask for (RFC 8555 §7.4, RFC 2986): a self-consistent request whose key the
profile allows, whose TNAuthList is the order's, and whose extensions are only those a profile
reads or exactly repeats. The subject is not taken from here: ``ca/issuing/subjects.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ca.errors import BadPublicKeyError, CSRError, PolicyError, ScopeError
from ca.issuing.profiles import Profile
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import OID_TN_AUTH_LIST
from ca.x509util import MALFORMED_X509_ERRORS, key_type_name, rsa_exponent_refusal


# CSR extensions a profile reads (and checks); any other is refused rather than dropped in
# silence: nothing from a CSR reaches a certificate except through the profile.
CSR_EXTENSIONS_READ = (OID_TN_AUTH_LIST, x509.BasicConstraints.oid, x509.KeyUsage.oid)


@dataclass(frozen=True)
class ProfileSets:
    """Extensions the profile itself puts in the certificate, from the issuer and the policy:
    a CSR may repeat them (deployed SHAKEN clients put the STI-PA CRL in theirs), never ask for
    other values."""

    crl_url: str | None
    policy_oids: tuple[x509.ObjectIdentifier, ...]


def repeats_the_profile(extension: x509.Extension, sets: ProfileSets) -> bool:
    if extension.oid == x509.CRLDistributionPoints.oid:
        names = [name for point in extension.value for name in (point.full_name or [None])]
        return bool(names) and sets.crl_url is not None and all(
            isinstance(name, x509.UniformResourceIdentifier) and name.value == sets.crl_url for name in names)
    if extension.oid == x509.CertificatePolicies.oid:
        return bool(sets.policy_oids) and all(info.policy_identifier in sets.policy_oids for info in extension.value)
    return False


def check_csr_extensions(extensions: x509.Extensions, profile: Profile, domain: str | None,
                          sets: ProfileSets) -> None:
    for extension in extensions:
        if extension.oid == x509.KeyUsage.oid:
            asked = {bit for bit in ("digital_signature", "key_cert_sign", "crl_sign")
                     if getattr(extension.value, bit)}
            granted = {bit for bit in ("digital_signature", "key_cert_sign", "crl_sign")
                       if getattr(profile.key_usage, bit)}
            others = [bit for bit in ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
                      if getattr(extension.value, bit)]
            if others or not asked <= granted:
                raise CSRError(
                    f"CSR asks for keyUsage {', '.join(sorted(asked | set(others)))}; a {profile.name} certificate "
                    f"has {', '.join(sorted(granted))} only (RFC 5280 §4.2.1.3)",
                    field="csr.keyUsage",
                )
        elif extension.oid == x509.SubjectAlternativeName.oid and domain is not None:
            # RFC 8555 §7.4: the CSR asks for exactly the order's identifiers; here one dNSName.
            names = list(extension.value)
            if names != [x509.DNSName(domain)]:
                asked = ", ".join(getattr(name, "value", str(name)) if isinstance(getattr(name, "value", None), str)
                                  else type(name).__name__ for name in names[:5])
                raise CSRError(
                    f"CSR subjectAltName asks for {asked}; the order proved exactly one domain, {domain} "
                    f"(RFC 8555 §7.4; tn-domain-binding: exactly one dNSName)",
                    field="csr.subjectAltName",
                )
        elif extension.oid == x509.SubjectAlternativeName.oid:
            raise CSRError(
                "CSR asks for a subjectAltName, but the order has no dns identifier to prove it; a STIR certificate "
                "names its numbers in the TNAuthList (RFC 8226 §9), and a domain only after http-01 or dns-01 "
                "(RFC 8555 §7.4: the CSR asks for exactly the order's identifiers)",
                field="csr.subjectAltName",
            )
        elif extension.oid not in CSR_EXTENSIONS_READ and not repeats_the_profile(extension, sets):
            name = getattr(extension.oid, "_name", None) or extension.oid.dotted_string
            if name == "Unknown OID":
                name = extension.oid.dotted_string
            raise CSRError(
                f"CSR asks for extension {name} ({extension.oid.dotted_string}), which the {profile.name} profile "
                f"does not take from a CSR; remove it (the certificate's extensions come from the profile)",
                field=f"csr.extensions.{extension.oid.dotted_string}",
            )


def checked_csr_key(csr: x509.CertificateSigningRequest, scope: TNScope, domain: str | None, profile: Profile,
                    sets: ProfileSets) -> CertificatePublicKeyTypes:
    """RFC 8555 §7.4 / RFC 2986: the CSR must be self-consistent and ask for what the order says
    (``scope`` and ``domain``); its key, once every check passed."""
    try:
        public_key = csr.public_key()
        # Before the signature: verifying with a huge RSA exponent is what makes it costly.
        refusal = rsa_exponent_refusal(public_key.public_numbers().e) if isinstance(public_key, rsa.RSAPublicKey) else None
        if refusal is not None:
            raise BadPublicKeyError(f"CSR key: {refusal}", field="csr.public_key")
        signature_ok = csr.is_signature_valid
    except BadPublicKeyError:
        raise
    except Exception as exc:  # unsupported algorithms or malformed keys raise several types
        raise CSRError(f"CSR public key or signature cannot be processed: {exc}", field="csr") from None
    if not signature_ok:
        raise CSRError("CSR signature does not verify with the CSR's public key (RFC 2986 §3)", field="csr.signature")
    key_type = key_type_name(public_key)
    if profile.allowed_key_types is not None and key_type not in profile.allowed_key_types:
        raise PolicyError(
            f"CSR key type {key_type} is not allowed for a {profile.name} certificate (policy [keys] allows "
            f"{', '.join(profile.allowed_key_types)})",
            field="csr.public_key",
        )
    try:
        extensions = csr.extensions
    except MALFORMED_X509_ERRORS as exc:
        raise CSRError(f"CSR extensions cannot be parsed: {exc}", field="csr.extensions") from None
    check_csr_extensions(extensions, profile, domain, sets)
    tn_ext = next((ext for ext in extensions if ext.oid == OID_TN_AUTH_LIST), None)
    if tn_ext is not None:
        try:
            csr_scope = TNScope.from_der(tn_ext.value.value, strict=False)
        except ScopeError as exc:
            # The CSR's own fault (RFC 8555 §7.4 badCSR), not a refusal of the order's scope.
            raise CSRError(f"CSR TNAuthList does not decode: {exc.detail}", field="csr.TNAuthList") from None
        if csr_scope.normalized() != scope.normalized():
            raise CSRError(
                f"CSR TNAuthList ({csr_scope.describe()}) differs from the requested scope ({scope.describe()})",
                field="csr.TNAuthList",
            )
    basic = next((ext for ext in extensions if ext.oid == x509.BasicConstraints.oid), None)
    if basic is not None and basic.value.ca != profile.ca:
        raise CSRError(
            f"CSR asks for basicConstraints cA={basic.value.ca} but a {profile.name} certificate was requested",
            field="csr.basicConstraints",
        )
    return public_key
