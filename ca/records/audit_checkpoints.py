"""Signed checkpoints of the audit chain, and verification of the chain against them.

A checkpoint is a signed statement "the chain had `seq` events and its head hash was
`head_hash` at `signed_at`", made by the audit key (ca/records/audit_keys.py: a key of its own,
certified by the root, so that the issuing CA's key signs nothing but certificates and CRLs).
Rewriting the chain from some event on, or cutting its tail and rewinding `audit_head`, keeps
the chain self-consistent, but not consistent with a checkpoint signed before: the event at the
checkpoint's seq is missing or has another hash. Checkpoints are only as good as their copies
outside the database: auditors keep exports (:mod:`ca.records.audit_export`, or the
/api/v1/audit/checkpoints answers), and ``verify_export`` compares a new export with nothing but
itself and the trust anchor.

It stands apart from the chain (:mod:`ca.records.audit`) because appending needs no key and no
certificate, while everything here does; the export reuses the statement checks below.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import AuditChainError
from ca.issuing.signers import Signer
from ca.records.audit_notes import NoteKey, make_note
from ca.records.audit import GENESIS_HASH, canonical_json, event_body, head, locked_head, utc_timestamp, verify_link
from ca.records.models_audit import AuditCheckpoint, AuditEvent

CHECKPOINT_STATEMENT_TYPE = "tnca-audit-checkpoint/v1"

@dataclasses.dataclass(frozen=True)
class CheckpointSigner:
    """The key that signs checkpoints and its certificate (ca/records/audit_keys.py loads one from a home)."""

    signer: Signer
    certificate: x509.Certificate


@dataclasses.dataclass(frozen=True)
class Verification:
    """What :func:`verify_all` or :func:`ca.records.audit_export.verify_export` established."""

    events: int  # events verified, 1..events
    head_hash: str
    checkpoints: int  # checkpoints whose signature and position verified
    last_checkpoint_seq: int | None
    anchored: bool  # every checkpoint certificate chains to the given trust anchor

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def signature_algorithm_name(signer: Signer) -> str:
    """The name a statement records for how it was signed (so verifiers need no guessing)."""
    key = signer.public_key
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ecdsa-{_hash_name(signer.hash_algorithm)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-pkcs1v15-{_hash_name(signer.hash_algorithm)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise ValueError(f"cannot sign checkpoints with a {type(key).__name__}")


def _hash_name(algorithm: hashes.HashAlgorithm | None) -> str:
    if algorithm is None or algorithm.name not in ("sha256", "sha384", "sha512"):
        raise ValueError(f"unsupported checkpoint hash {algorithm!r}")
    return algorithm.name


def _hash_for_name(name: str) -> hashes.HashAlgorithm:
    return {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name]


def checkpoint_statement(*, seq: int, head_hash: str, signed_at: dt.datetime, certificate: x509.Certificate,
                         algorithm: str) -> bytes:
    """The canonical JSON a checkpoint signs. ``key`` is SHA-256 of the signing certificate's
    SubjectPublicKeyInfo, which binds the statement to the certificate it is shipped with."""
    return canonical_json({
        "type": CHECKPOINT_STATEMENT_TYPE,
        "seq": seq,
        "head_hash": head_hash,
        "signed_at": utc_timestamp(signed_at),
        "signature_algorithm": algorithm,
        "key": _spki_sha256(certificate),
    })


def _spki_sha256(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def checkpoint(session: Session, *, signer: CheckpointSigner, clock: Clock,
               note_key: NoteKey | None = None) -> AuditCheckpoint:
    """Sign the current chain head and store the checkpoint (the caller commits); with
    ``note_key``, also the C2SP tlog-checkpoint note of the same head (ca/records/audit_notes.py).

    The head row is locked as for an append, so the signed (seq, hash) is the committed head
    and no append can slip in between reading and signing it.
    """
    head_row = locked_head(session)
    seq, head_hash = head_row.seq, head_row.hash
    signed_at = clock.now().astimezone(dt.timezone.utc)
    algorithm = signature_algorithm_name(signer.signer)
    statement = checkpoint_statement(seq=seq, head_hash=head_hash, signed_at=signed_at,
                                     certificate=signer.certificate, algorithm=algorithm)
    signature = signer.signer.sign(statement)
    # A signer that returns a wrong signature (wrong key for the certificate, a broken HSM
    # session) must not leave a checkpoint that fails every later verification.
    _check_signature(statement, signature, signer.certificate, algorithm, where="the new checkpoint")
    row = AuditCheckpoint(
        seq=seq,
        head_hash=head_hash,
        signed_at=signed_at,
        statement=statement.decode("utf-8"),
        signature=signature,
        certificate_der=signer.certificate.public_bytes(serialization.Encoding.DER),
    )
    if note_key is not None:
        row.note, row.tree_root = make_note(session, seq=seq, key=note_key)
    session.add(row)
    session.flush()
    return row


# Events after which a checkpoint is due at once (the renewal worker's rule): a revocation is
# what a relying party's verdict on a past call turns on, so it is anchored without waiting.
REVOCATION_ACTIONS = ("certificate.revoke", "delegation.revoke")


def checkpoint_if_due(session: Session, *, signer: CheckpointSigner, clock: Clock,
                      interval: dt.timedelta, max_events: int, note_key: NoteKey | None = None,
                      due_after: tuple[str, ...] = ()) -> AuditCheckpoint | None:
    """A checkpoint when the chain moved and either ``interval`` passed since the last one,
    ``max_events`` events were appended since, or one of them is a ``due_after`` action; else
    None. For cron / a scheduler loop."""
    seq, _ = head(session)
    last = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)).first()
    if last is not None:
        if seq == last.seq:
            return None
        if seq - last.seq < max_events and clock.now() - last.signed_at < interval and not (
                due_after and session.scalar(
                    select(AuditEvent.seq).where(AuditEvent.seq > last.seq, AuditEvent.action.in_(due_after)).limit(1))):
            return None
    return checkpoint(session, signer=signer, clock=clock, note_key=note_key)


def _check_signature(statement: bytes, signature: bytes, certificate: x509.Certificate, algorithm: str,
                     *, where: str, seq: int = 0) -> None:
    key = certificate.public_key()
    try:
        if algorithm.startswith("ecdsa-") and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, statement, ec.ECDSA(_hash_for_name(algorithm[len("ecdsa-"):])))
        elif algorithm.startswith("rsa-pkcs1v15-") and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, statement, padding.PKCS1v15(), _hash_for_name(algorithm[len("rsa-pkcs1v15-"):]))
        elif algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, statement)
        else:
            raise AuditChainError(f"{where}: signature algorithm {algorithm!r} does not fit its certificate's key",
                                  seq=seq)
    except (InvalidSignature, KeyError, ValueError):
        raise AuditChainError(f"{where}: the signature does not verify with its certificate", seq=seq) from None


def verify_statement(statement_text: str, signature: bytes, certificate: x509.Certificate, *, where: str,
                      trust_anchor: x509.Certificate | None) -> dict[str, Any]:
    """Parse, check and return a checkpoint statement; AuditChainError names what is wrong."""
    try:
        statement = json.loads(statement_text)
    except ValueError:
        statement = None
    if not isinstance(statement, dict) or statement.get("type") != CHECKPOINT_STATEMENT_TYPE:
        raise AuditChainError(f"{where}: the statement is not a {CHECKPOINT_STATEMENT_TYPE} statement", seq=0)
    seq = statement.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise AuditChainError(f"{where}: the statement has no valid seq", seq=0)
    if canonical_json(statement) != statement_text.encode("utf-8"):
        raise AuditChainError(f"{where}: the statement is not in canonical form", seq=seq)
    if statement.get("key") != _spki_sha256(certificate):
        raise AuditChainError(f"{where}: the statement names another key than the certificate shipped with it",
                              seq=seq)
    expected = checkpoint_statement(seq=seq, head_hash=str(statement.get("head_hash")),
                                    signed_at=_parse_timestamp(statement.get("signed_at"), where, seq),
                                    certificate=certificate, algorithm=str(statement.get("signature_algorithm")))
    if expected != statement_text.encode("utf-8"):
        raise AuditChainError(f"{where}: the statement has fields a {CHECKPOINT_STATEMENT_TYPE} statement does not",
                              seq=seq)
    _check_signature(statement_text.encode("utf-8"), signature, certificate, statement["signature_algorithm"],
                     where=where, seq=seq)
    if trust_anchor is not None:
        try:
            certificate.verify_directly_issued_by(trust_anchor)
        except (ValueError, TypeError, InvalidSignature):
            raise AuditChainError(f"{where}: the signing certificate was not issued by the trust anchor "
                                  f"({trust_anchor.subject.rfc4514_string()})", seq=seq) from None
        signed_at = _parse_timestamp(statement["signed_at"], where, seq)
        if not certificate.not_valid_before_utc <= signed_at <= certificate.not_valid_after_utc:
            raise AuditChainError(f"{where}: signed at {statement['signed_at']}, outside its certificate's validity",
                                  seq=seq)
    return statement


def _parse_timestamp(value: Any, where: str, seq: int) -> dt.datetime:
    try:
        return dt.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise AuditChainError(f"{where}: signed_at {str(value)[:40]!r} is not a timestamp", seq=seq) from None


class CheckpointLedger:
    """Checks checkpoints against a chain read once, in order (database or export)."""

    def __init__(self, statements: list[tuple[str, dict[str, Any]]]) -> None:
        # (where, statement) in signing order; the chain never shrinks between two of them.
        self.by_seq: dict[int, list[tuple[str, str]]] = {}
        previous: tuple[str, int] | None = None
        for where, statement in statements:
            if previous is not None and statement["seq"] < previous[1]:
                raise AuditChainError(
                    f"{where} covers event {statement['seq']}, fewer than {previous[0]} signed before it "
                    f"({previous[1]}): the chain was cut back and rebuilt", seq=statement["seq"] + 1)
            previous = (where, statement["seq"])
            self.by_seq.setdefault(statement["seq"], []).append((where, str(statement["head_hash"])))
        self.count = len(statements)
        self.last_seq = previous[1] if previous is not None else None

    def check_event(self, seq: int, event_hash: str) -> None:
        for where, head_hash in self.by_seq.get(seq, ()):
            if head_hash != event_hash:
                raise AuditChainError(
                    f"audit event {seq} is not the event {where} signed (its hash differs): the chain was "
                    f"rewritten at or before event {seq}", seq=seq)

    def check_end(self, last_seq: int) -> None:
        if self.last_seq is not None and self.last_seq > last_seq:
            where = self.by_seq[self.last_seq][-1][0]
            raise AuditChainError(
                f"the chain ends at event {last_seq}, but {where} signed a chain of {self.last_seq} events: "
                f"events {last_seq + 1}..{self.last_seq} were removed (truncated tail)", seq=last_seq + 1)


def verify_all(session: Session, *, trust_anchor: x509.Certificate | None = None,
               batch_size: int = 1000) -> Verification:
    """The whole chain (as :func:`verify`) and every checkpoint: signature, trust anchor (when
    given), and that the chain still holds the event each one signed. Raises AuditChainError
    naming the first broken link."""
    ledger = CheckpointLedger([
        (f"checkpoint {row.id}", verify_statement(row.statement, row.signature,
                                                   x509.load_der_x509_certificate(row.certificate_der),
                                                   where=f"checkpoint {row.id}", trust_anchor=trust_anchor))
        for row in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id))
    ])
    for where, head_hash in ledger.by_seq.get(0, ()):
        if head_hash != GENESIS_HASH:
            raise AuditChainError(f"{where} signed an empty chain with a head hash other than the genesis hash", seq=1)
    expected_seq = 1
    prev_hash = GENESIS_HASH
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch_size))
    for event in events:
        prev_hash = verify_link(expected_seq, prev_hash, event.seq, event.prev_hash, event_body(event), event.hash)
        ledger.check_event(event.seq, event.hash)
        expected_seq += 1
    last_seq = expected_seq - 1
    ledger.check_end(last_seq)
    head_seq, head_hash = head(session)
    if head_seq != last_seq:
        raise AuditChainError(
            f"audit events {last_seq + 1}..{head_seq} are missing: the chain head is at {head_seq}, "
            f"the last stored event is {last_seq}", seq=last_seq + 1)
    if head_hash != prev_hash:
        raise AuditChainError(f"audit event {last_seq} does not match the chain head's hash", seq=last_seq)
    return Verification(last_seq, prev_hash, ledger.count, ledger.last_seq, trust_anchor is not None)
