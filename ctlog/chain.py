"""Chain checks for add-chain and add-pre-chain (RFC 6962 §3.1, §4.1, §4.2).

A log accepts a chain only if every certificate is signed by the next one and the last one is,
or is signed by, one of the log's accepted roots. Validity periods are not checked: RFC 6962 §3.1
lets logs accept expired and not-yet-valid certificates, and a log is a record, not a relying
party. Nothing else about the certificates' content is judged either.

For precertificates (RFC 6962 §3.1): the leaf must carry the poison extension
1.3.6.1.4.1.11129.2.4.3, critical. It is signed either by the CA that will issue the final
certificate, or by a Precertificate Signing Certificate (cA, EKU 1.3.6.1.4.1.11129.2.4.4) that
CA certified directly. In the second case the signed entry names the final issuer: the issuer key
hash is of that CA's key and the TBSCertificate's issuer and authority key identifier are
rewritten to the ones the final certificate will carry (RFC 6962 §3.2).

Every problem raises :class:`ChainError` with a reason a submitter can act on; nothing here
raises anything else on bad input.

A submitter sends the same issuer chain with every (pre)certificate, so what follows the leaf
(its "tail": parsed, every link's signature checked, completed with the accepted root) is
checked once and kept by the :class:`RootStore` (:meth:`RootStore.verified_tail`): that
verdict depends on the tail's bytes and the store's roots alone, neither of which changes. Only
the leaf is parsed and checked against its issuer on every submission.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280

from ctlog import structures

# RFC 6962 §3.1: the precertificate poison, a critical extension whose value is ASN.1 NULL.
POISON_OID = "1.3.6.1.4.1.11129.2.4.3"
# RFC 6962 §3.1: "A log MAY limit the length of chain it is willing to accept"; ours is generous
# for STIR (root → intermediate → delegate CA → precert signing certificate → leaf).
MAX_CHAIN_LENGTH = 8
# Verified tails a RootStore keeps (one per issuer chain its submitters use; emptied when full).
MAX_VERIFIED_TAILS = 256


class ChainError(Exception):
    """The submitted chain is malformed or does not lead to an accepted root."""


@dataclass(frozen=True)
class AcceptedChain:
    """What the log records for one accepted submission."""

    entry_type: int          # structures.ENTRY_TYPE_X509 or ENTRY_TYPE_PRECERT
    signed_entry: bytes      # the TLS signed_entry (ASN.1Cert or PreCert), as the SCT signs it
    extra_data: bytes        # served by get-entries (RFC 6962 §4.6)


def parse_certificate(der: bytes, position: int) -> x509.Certificate:
    try:
        certificate = x509.load_der_x509_certificate(der)
        # Parse lazily-decoded parts now, so that a malformed field is reported here and not
        # as a crash further down.
        certificate.extensions  # noqa: B018
        certificate.issuer  # noqa: B018
        certificate.subject  # noqa: B018
        certificate.public_key()
    # InvalidVersion, DuplicateExtension and UnsupportedGeneralNameType are not ValueErrors, nor
    # is the TypeError of a Name attribute whose ASN.1 type does not fit its OID.
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType) as exc:
        raise ChainError(f"chain[{position}] is not a usable DER X.509 certificate: {exc}") from None
    return certificate


def _extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension | None:
    try:
        return certificate.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def _is_ca(certificate: x509.Certificate) -> bool:
    extension = _extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    return extension is not None and extension.value.ca


def _is_precertificate_signing_certificate(certificate: x509.Certificate) -> bool:
    extension = _extension(certificate, ExtensionOID.EXTENDED_KEY_USAGE)
    return extension is not None and ExtendedKeyUsageOID.CERTIFICATE_TRANSPARENCY in extension.value


@dataclass(frozen=True)
class VerifiedTail:
    """What follows the leaf in an accepted chain, completed with the accepted root if it was
    left out: each certificate is issued by the next, the last is an accepted root."""

    certificates: tuple[x509.Certificate, ...]
    ders: tuple[bytes, ...]
    key_hashes: tuple[bytes, ...]  # SHA-256 of each one's SubjectPublicKeyInfo (RFC 6962 §3.2)


def _check_issued_by(child: x509.Certificate, parent: x509.Certificate, child_position: int) -> None:
    if not _is_ca(parent):
        raise ChainError(f"chain[{child_position + 1}] is not a CA certificate (basicConstraints cA is not true)")
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature:
        raise ChainError(f"chain[{child_position}] signature does not verify with chain[{child_position + 1}]'s key") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ChainError(f"chain[{child_position}] is not issued by chain[{child_position + 1}]: {exc}") from None


def spki_sha256(certificate: x509.Certificate) -> bytes:
    """SHA-256 of a certificate's DER SubjectPublicKeyInfo (RFC 6962 §3.2 issuer_key_hash)."""
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


class RootStore:
    """The roots a log accepts (RFC 6962 §4.7 get-roots serves them)."""

    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        self.roots = tuple(roots)
        self._der = {root.public_bytes(serialization.Encoding.DER) for root in self.roots}
        self._tails: dict[tuple[bytes, ...], VerifiedTail] = {}
        self._tails_lock = threading.Lock()

    @classmethod
    def from_pem(cls, pem: bytes) -> "RootStore":
        roots = x509.load_pem_x509_certificates(pem)  # raises ValueError when there are none
        return cls(roots)

    def der_list(self) -> list[bytes]:
        return [root.public_bytes(serialization.Encoding.DER) for root in self.roots]

    def complete(self, chain: list[x509.Certificate]) -> list[x509.Certificate]:
        """The chain ending in an accepted root (appending the root if it was left out)."""
        last = chain[-1]
        if last.public_bytes(serialization.Encoding.DER) in self._der:
            return chain
        for root in self.roots:
            if root.subject != last.issuer:
                continue
            try:
                last.verify_directly_issued_by(root)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
                continue
            return [*chain, root]
        raise ChainError(
            f"chain does not end at an accepted root: no root of this log issued chain[{len(chain) - 1}] "
            f"(issuer {last.issuer.rfc4514_string()!r})"
        )

    def verified_tail(self, leaf: x509.Certificate, tail_ders: tuple[bytes, ...]) -> VerifiedTail:
        """The chain after ``leaf`` (``tail_ders``, chain[1:]), checked, with ``leaf`` checked
        against its first certificate. Errors come in the order a full check finds them: a
        certificate that does not parse, then each link from the leaf up, then the root."""
        tail = self._tails.get(tail_ders)
        if tail is not None:
            _check_issued_by(leaf, tail.certificates[0], 0)
            return tail
        certificates = [parse_certificate(der, position) for position, der in enumerate(tail_ders, start=1)]
        _check_issued_by(leaf, certificates[0], 0)
        for position in range(len(certificates) - 1):
            _check_issued_by(certificates[position], certificates[position + 1], position + 1)
        tail = _tail(self.complete([leaf, *certificates])[1:])
        with self._tails_lock:
            if len(self._tails) >= MAX_VERIFIED_TAILS:
                self._tails.clear()
            self._tails[tail_ders] = tail
        return tail


def _check_chain(ders: Sequence[bytes], roots: RootStore) -> tuple[x509.Certificate, VerifiedTail | None]:
    """The parsed leaf, and what follows it checked (None when the leaf is an accepted root)."""
    if not ders:
        raise ChainError("chain is empty: it must hold at least the (pre)certificate")
    if len(ders) > MAX_CHAIN_LENGTH:
        raise ChainError(f"chain has {len(ders)} certificates; this log accepts at most {MAX_CHAIN_LENGTH}")
    leaf = parse_certificate(ders[0], 0)
    if len(ders) > 1:
        return leaf, roots.verified_tail(leaf, tuple(ders[1:]))
    completed = roots.complete([leaf])  # the leaf is a root, or a root issued it
    return leaf, (_tail(completed[1:]) if len(completed) > 1 else None)


def _tail(certificates: Sequence[x509.Certificate]) -> VerifiedTail:
    der = serialization.Encoding.DER
    return VerifiedTail(certificates=tuple(certificates), ders=tuple(c.public_bytes(der) for c in certificates),
                        key_hashes=tuple(spki_sha256(c) for c in certificates))


def accept_chain(ders: Sequence[bytes], roots: RootStore) -> AcceptedChain:
    """add-chain (RFC 6962 §4.1): a final certificate and its chain."""
    leaf, tail = _check_chain(ders, roots)
    if _extension(leaf, ExtensionOID.PRECERT_POISON) is not None:
        raise ChainError("chain[0] carries the precertificate poison extension: submit it with add-pre-chain")
    return AcceptedChain(
        entry_type=structures.ENTRY_TYPE_X509,
        signed_entry=structures.x509_signed_entry(leaf.public_bytes(serialization.Encoding.DER)),
        extra_data=structures.x509_extra_data(list(tail.ders) if tail else []),
    )


def accept_pre_chain(ders: Sequence[bytes], roots: RootStore) -> AcceptedChain:
    """add-pre-chain (RFC 6962 §4.2): a precertificate and its chain."""
    precertificate, tail = _check_chain(ders, roots)
    poison = _extension(precertificate, ExtensionOID.PRECERT_POISON)
    if poison is None:
        raise ChainError("chain[0] is not a precertificate: the poison extension 1.3.6.1.4.1.11129.2.4.3 is missing")
    if not poison.critical:
        raise ChainError("chain[0]'s poison extension 1.3.6.1.4.1.11129.2.4.3 must be critical (RFC 6962 §3.1)")
    if tail is None:
        raise ChainError("a precertificate must be submitted with its issuer")
    if _is_precertificate_signing_certificate(tail.certificates[0]):
        # RFC 6962 §3.1: the Precertificate Signing Certificate "MUST be directly certified by
        # the (root or intermediate) CA certificate that will ultimately sign" the final one.
        if len(tail.certificates) < 2:
            raise ChainError("chain[1] is a Precertificate Signing Certificate; its issuer must follow it")
        issuer_key_hash = tail.key_hashes[1]
        tbs = precert_tbs(precertificate, signing_certificate=tail.certificates[0])
    else:
        issuer_key_hash = tail.key_hashes[0]
        tbs = precert_tbs(precertificate)
    return AcceptedChain(
        entry_type=structures.ENTRY_TYPE_PRECERT,
        signed_entry=structures.precert_signed_entry(issuer_key_hash, tbs),
        extra_data=structures.precert_extra_data(precertificate.public_bytes(serialization.Encoding.DER), list(tail.ders)),
    )


def precert_tbs(precertificate: x509.Certificate, *, signing_certificate: x509.Certificate | None = None) -> bytes:
    """The ``tbs_certificate`` of a precert entry (RFC 6962 §3.2): the precertificate's
    TBSCertificate "without the signature and the poison extension".

    When a Precertificate Signing Certificate signed it, the TBSCertificate "has its issuer
    changed to that of the CA that will issue the final certificate"; its authority key
    identifier likewise becomes the final issuer's, which is the one the signing certificate
    itself carries (as the final certificate will).

    (cryptography's ``tbs_precertificate_bytes`` removes the SCT list of a *final* certificate
    and refuses a precertificate, hence the DER work here.) Without a signing certificate only
    the poison goes, and the DER is edited in place (``_drop_poison``: every other byte is the
    precertificate's, whose DER cryptography checked when it loaded it); with one, the
    TBSCertificate is decoded to rewrite its issuer."""
    original = precertificate.tbs_certificate_bytes
    if signing_certificate is None:
        try:
            return _drop_poison(original)
        except (ValueError, IndexError) as exc:
            raise ChainError(f"cannot take the poison out of chain[0]'s TBSCertificate: {exc}") from None
    try:
        tbs, rest = der_decoder.decode(original, asn1Spec=rfc5280.TBSCertificate())
    except PyAsn1Error as exc:
        raise ChainError(f"cannot decode chain[0]'s TBSCertificate: {exc}") from None
    if rest or der_encoder.encode(tbs) != original:
        raise ChainError("chain[0]'s TBSCertificate is not DER: it would not survive re-encoding")
    kept = tbs["extensions"].clone()
    for extension in tbs["extensions"]:
        if extension["extnID"] != univ.ObjectIdentifier(POISON_OID):
            kept.append(extension)
    tbs["extensions"] = kept
    if signing_certificate is not None:
        _rewrite_issuer(tbs, signing_certificate)
    return der_encoder.encode(tbs)


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``offset``."""
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        start, length = offset + 2, first
    else:
        count = first & 0x7F
        if not 0 < count <= 4:
            raise ValueError("indefinite or oversized length")
        start, length = offset + 2 + count, int.from_bytes(data[offset + 2:offset + 2 + count], "big")
    if start + length > len(data):
        raise ValueError("element runs past its container")
    return tag, start, start + length


def _wrap(tag: int, content: bytes) -> bytes:
    size = len(content)
    length = bytes([size]) if size < 0x80 else (
        bytes([0x80 | ((size.bit_length() + 7) // 8)]) + size.to_bytes((size.bit_length() + 7) // 8, "big"))
    return bytes([tag]) + length + content


_POISON_EXTN_ID = _wrap(0x06, bytes.fromhex("2b06010401d679020403"))  # 1.3.6.1.4.1.11129.2.4.3


def _drop_poison(tbs: bytes) -> bytes:
    """A DER TBSCertificate without its poison extension (RFC 5280 §4.1: the extensions are the
    last field, [3] EXPLICIT SEQUENCE OF Extension, each starting with its extnID)."""
    _tag, start, end = _tlv(tbs, 0)
    if tbs[0] != 0x30 or end != len(tbs):
        raise ValueError("not one SEQUENCE")
    fields, offset = [], start
    while offset < end:
        field_end = _tlv(tbs, offset)[2]
        fields.append((offset, field_end))
        offset = field_end
    last_start, last_end = fields[-1]
    if tbs[last_start] != 0xA3:
        raise ValueError("no extensions")
    _tag, list_start, list_end = _tlv(tbs, _tlv(tbs, last_start)[1])
    kept, removed, offset = [], 0, list_start
    while offset < list_end:
        _tag, ext_start, ext_end = _tlv(tbs, offset)
        if tbs[ext_start:ext_start + len(_POISON_EXTN_ID)] == _POISON_EXTN_ID:
            removed += 1
        else:
            kept.append(tbs[offset:ext_end])
        offset = ext_end
    if removed != 1:
        raise ValueError(f"{removed} poison extensions, expected one")
    head = tbs[start:last_start]
    tail = _wrap(0xA3, _wrap(0x30, b"".join(kept))) if kept else b""
    return _wrap(0x30, head + tail)


def _rewrite_issuer(tbs: rfc5280.TBSCertificate, signing_certificate: x509.Certificate) -> None:
    try:
        psc, rest = der_decoder.decode(signing_certificate.tbs_certificate_bytes, asn1Spec=rfc5280.TBSCertificate())
    except PyAsn1Error as exc:
        raise ChainError(f"cannot decode the Precertificate Signing Certificate: {exc}") from None
    if rest:
        raise ChainError("trailing data after the Precertificate Signing Certificate's TBSCertificate")
    tbs["issuer"] = psc["issuer"]
    psc_aki = None
    if psc["extensions"].isValue:
        for extension in psc["extensions"]:
            if extension["extnID"] == rfc5280.id_ce_authorityKeyIdentifier:
                psc_aki = extension["extnValue"]
    for extension in tbs["extensions"]:
        if extension["extnID"] == rfc5280.id_ce_authorityKeyIdentifier:
            if psc_aki is None:
                raise ChainError(
                    "chain[0] has an authority key identifier but the Precertificate Signing Certificate "
                    "has none to replace it with"
                )
            extension["extnValue"] = psc_aki
