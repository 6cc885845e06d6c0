"""The PEM chain of an issued certificate, served by certificate download (RFC 8555 §7.4.2), the
star-certificate resource (RFC 8739 §3.3) and the ``x5u`` repository (RFC 9448 §7)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from ca.issuing.issuance import IssuerHandle
from ca.records.models_authority import Certificate, Issuer

PEM_CHAIN_CONTENT_TYPE = "application/pem-certificate-chain"


def pem_chain_of(session: Session, record: Certificate, *, issuing: IssuerHandle) -> str:
    """The certificate and its issuers below the root, PEM blocks back to back (erratum 5983).
    ``issuing`` is the process's issuing CA, whose chain is loaded already."""
    chain = [x509.load_der_x509_certificate(record.der), *_issuer_chain(session, record.issuer_id, issuing)]
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in chain)


def _issuer_chain(session: Session, issuer_id: int, issuing: IssuerHandle) -> list[x509.Certificate]:
    """The certificates after the end-entity one: the issuer and its parents below the root."""
    if issuing.issuer_id == issuer_id:
        return list(issuing.chain)  # loaded once per process
    chain: list[x509.Certificate] = []
    row = session.get(Issuer, issuer_id)
    while row is not None and row.parent_id is not None:  # the root (no parent) is the trust anchor
        chain.append(x509.load_der_x509_certificate(row.certificate_der))
        row = session.get(Issuer, row.parent_id)
    return chain
