"""The audit log: append-only events in a SHA-256 hash chain.

Every state change of the authority (an issuance, a delegation granted or revoked, a token
minted, the home initialised) appends one :class:`ca.records.store.AuditEvent` in the same transaction
as the change itself, so an event exists exactly when its change does.

The chain. Event ``n`` stores ``prev_hash`` (event ``n-1``'s hash, or 64 zeros for the first)
and ``hash = SHA-256(prev_hash ‖ canonical JSON of event n)``, where the canonical JSON has sorted
keys, no insignificant whitespace and UTF-8 text (the shape of RFC 8785 for the values used here:
strings, integers, booleans, null, lists and objects). Editing any field of a stored event, or
deleting or inserting one, breaks every later link; :func:`verify` recomputes the chain and names
the first event that does not verify.

Concurrency. The single ``audit_head`` row holds the last ``seq`` and ``hash``. An append locks
it (``SELECT … FOR UPDATE``), so appenders in any number of processes take turns and cannot fork
the chain; the lock is held until the caller's transaction ends, which keeps the order of the
chain the order of commits. The head row is created by the first append ever; two processes
racing to create it are resolved by its primary key (``INSERT … ON CONFLICT DO NOTHING``, then
lock whichever row won). On SQLite the database lock serializes writers instead.

What the chain does not prove: that nobody rewrote the *whole* chain from some point on with a
consistent set of hashes. Anchoring the head hash outside the database (a signed checkpoint, a CT
log) is what closes that gap; ``head()`` gives the value to anchor.

Checkpoints and exports (the second half of this module): :func:`checkpoint` signs the head with
the audit key; :func:`verify_all` checks the chain and every checkpoint (a truncated tail, even
with ``audit_head`` rewound, falls short of the last checkpoint); :func:`export_lines` writes the
JSON-lines export that :func:`verify_export` (``tnca audit verify --export FILE``) and the
commands in docs/auditor-guide.md verify offline.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import AuditChainError, AuditExportError
from ca.issuing.signers import Signer
from ca.records.store import AuditCheckpoint, AuditEvent, AuditHead

HEAD_ID = 1
# prev_hash of the first event: there is nothing before it.
GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: one byte string per JSON value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(event: AuditEvent) -> dict[str, Any]:
    """The fields the hash covers (everything but ``hash`` itself; ``prev_hash`` is chained in)."""
    return {
        "seq": event.seq,
        "occurred_at": _timestamp(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "details": event.details,
    }


def event_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """SHA-256 hex over ``prev_hash`` (ASCII hex) followed by the canonical JSON of ``body``."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_json(body))
    return digest.hexdigest()


def _locked_head(session: Session) -> AuditHead:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # SQLite has no row locks and ignores FOR UPDATE. A write statement takes the database's
        # write lock (waiting out busy_timeout), which then serializes appenders until commit;
        # taking it *before* reading the head makes that read the latest committed head.
        session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq))
    lock = (
        select(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = session.scalars(lock).one_or_none()
    if head is not None:
        return head
    # First append ever: create the head; if another process just did, its row wins.
    # store.make_engine admits only these two dialects.
    insert = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}[dialect]
    session.execute(
        insert(AuditHead).values(id=HEAD_ID, seq=0, hash=GENESIS_HASH).on_conflict_do_nothing(index_elements=["id"])
    )
    return session.scalars(lock).one()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: Mapping[str, Any],
    clock: Clock,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction (the caller commits).

    ``details`` must be JSON (strings, integers, booleans, null, lists, objects with string keys);
    it is stored exactly as hashed. Raises TypeError/ValueError for anything else (bytes, NaN,
    datetimes): a caller bug, not bad input.
    """
    if not actor or not action:
        raise ValueError("an audit event needs an actor and an action")
    # Round-trip through canonical JSON so the stored value is exactly the hashed one
    # (tuples become lists, keys become strings, or it fails here rather than at verify time).
    stored_details = json.loads(canonical_json(dict(details)))
    head = _locked_head(session)
    event = AuditEvent(
        seq=head.seq + 1,
        occurred_at=clock.now().astimezone(dt.timezone.utc),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=stored_details,
        prev_hash=head.hash,
    )
    event.hash = event_hash(event.prev_hash, event_body(event))
    session.add(event)
    head.seq = event.seq
    head.hash = event.hash
    session.flush()
    return event


def head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest event: the value to anchor outside the database."""
    row = session.get(AuditHead, HEAD_ID)
    return (row.seq, row.hash) if row is not None else (0, GENESIS_HASH)


def verify(session: Session, *, batch_size: int = 1000) -> int:
    """Recompute the whole chain; return the number of events, or raise :class:`AuditChainError`.

    The error names the first event that fails: an edited event (its hash no longer matches its
    contents), a deleted event (a gap in ``seq``, or a head that points past the last event), an
    inserted or re-linked event (its ``prev_hash`` is not the previous event's hash).
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch_size))
    for event in events:
        if event.seq != expected_seq:
            raise AuditChainError(
                f"audit event {expected_seq} is missing (the next stored event is {event.seq}): deleted", seq=expected_seq
            )
        if event.prev_hash != prev_hash:
            raise AuditChainError(
                f"audit event {event.seq} does not link to event {event.seq - 1} (prev_hash differs)", seq=event.seq
            )
        if event_hash(prev_hash, event_body(event)) != event.hash:
            raise AuditChainError(f"audit event {event.seq} was altered: its hash does not match its contents",
                                  seq=event.seq)
        prev_hash = event.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    head_seq, head_hash = head(session)
    if head_seq != last_seq:
        raise AuditChainError(
            f"audit events {last_seq + 1}..{head_seq} are missing: the chain head is at {head_seq}, "
            f"the last stored event is {last_seq}",
            seq=last_seq + 1,
        )
    if head_hash != prev_hash:
        raise AuditChainError(f"audit event {last_seq} does not match the chain head's hash", seq=last_seq)
    return last_seq


def query(
    session: Session,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    action: str | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """Events newest first, optionally filtered; page with ``before_seq`` (the last seq seen)."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if subject_type is not None:
        stmt = stmt.where(AuditEvent.subject_type == subject_type)
    if subject_id is not None:
        stmt = stmt.where(AuditEvent.subject_id == subject_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    return list(session.scalars(stmt))


# --------------------------------------------------------------------------------------------
# Signed checkpoints, full verification, offline export
# --------------------------------------------------------------------------------------------
#
# A checkpoint is a signed statement "the chain had `seq` events and its head hash was
# `head_hash` at `signed_at`", made by the audit key (ca/records/audit_keys.py: a key of its own,
# certified by the root, so that the issuing CA's key signs nothing but certificates and CRLs).
# Rewriting the chain from some event on, or cutting its tail and rewinding `audit_head`, keeps
# the chain self-consistent, but not consistent with a checkpoint signed before: the event at the
# checkpoint's seq is missing or has another hash. Checkpoints are only as good as their copies
# outside the database: auditors keep exports (or the /api/v1/audit/checkpoints answers), and
# `verify_export` compares a new export with nothing but itself and the trust anchor.

CHECKPOINT_STATEMENT_TYPE = "tnca-audit-checkpoint/v1"
EXPORT_FORMAT = "tnca-audit-export/v1"
# How the chain hashes, stated in every export so a verifier needs nothing else.
HASH_RULE = "hash = hex(SHA-256(ascii(prev_hash) || canonical_json(body))); prev_hash of seq 1 is 64 zeros"
CANONICAL_JSON_RULE = "UTF-8 JSON, keys sorted, separators ',' and ':', no whitespace, non-ASCII unescaped"


@dataclasses.dataclass(frozen=True)
class CheckpointSigner:
    """The key that signs checkpoints and its certificate (ca/records/audit_keys.py loads one from a home)."""

    signer: Signer
    certificate: x509.Certificate


@dataclasses.dataclass(frozen=True)
class Verification:
    """What :func:`verify_all` or :func:`verify_export` established."""

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
        "signed_at": _timestamp(signed_at),
        "signature_algorithm": algorithm,
        "key": _spki_sha256(certificate),
    })


def _spki_sha256(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def checkpoint(session: Session, *, signer: CheckpointSigner, clock: Clock) -> AuditCheckpoint:
    """Sign the current chain head and store the checkpoint (the caller commits).

    The head row is locked as for an append, so the signed (seq, hash) is the committed head
    and no append can slip in between reading and signing it.
    """
    head_row = _locked_head(session)
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
    session.add(row)
    session.flush()
    return row


def checkpoint_if_due(session: Session, *, signer: CheckpointSigner, clock: Clock,
                      interval: dt.timedelta, max_events: int) -> AuditCheckpoint | None:
    """A checkpoint when the chain moved and either ``interval`` passed since the last one or
    ``max_events`` events were appended since; else None. For cron / a scheduler loop."""
    seq, _ = head(session)
    last = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)).first()
    if last is not None:
        if seq == last.seq:
            return None
        if seq - last.seq < max_events and clock.now() - last.signed_at < interval:
            return None
    return checkpoint(session, signer=signer, clock=clock)


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


def _verify_statement(statement_text: str, signature: bytes, certificate: x509.Certificate, *, where: str,
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


class _CheckpointLedger:
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
    ledger = _CheckpointLedger([
        (f"checkpoint {row.id}", _verify_statement(row.statement, row.signature,
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
        prev_hash = _verify_link(expected_seq, prev_hash, event.seq, event.prev_hash, event_body(event), event.hash)
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


def _verify_link(expected_seq: int, prev_hash: str, seq: int, stored_prev_hash: str, body: Mapping[str, Any],
                 stored_hash: str) -> str:
    if seq != expected_seq:
        raise AuditChainError(
            f"audit event {expected_seq} is missing (the next stored event is {seq}): deleted", seq=expected_seq)
    if stored_prev_hash != prev_hash:
        raise AuditChainError(f"audit event {seq} does not link to event {seq - 1} (prev_hash differs)", seq=seq)
    if event_hash(prev_hash, body) != stored_hash:
        raise AuditChainError(f"audit event {seq} was altered: its hash does not match its contents", seq=seq)
    return stored_hash


# ---- the export ----------------------------------------------------------------------------
#
# JSON lines (one canonical JSON object per line, UTF-8):
#   {"type": "header", "format": EXPORT_FORMAT, "exported_at", "events", "checkpoints", "hash_rule", ...}
#   {"type": "checkpoint", "id", "statement": "<the signed text>", "signature": "<base64>", "certificate": "<PEM>"}  ×N
#   {"type": "event", "body": {...as hashed...}, "prev_hash", "hash"}  ×M, seq 1..M in order
#   {"type": "end", "events": M, "checkpoints": N}
# Checkpoints come first so a verifier holds only them in memory while it streams the events.


def export_lines(session: Session, *, clock: Clock, batch_size: int = 1000) -> Iterator[str]:
    """The export, line by line (no newlines), from one consistent view of the chain.

    The head is read first; events after it and checkpoints beyond it are left out, so an
    append that commits while the export runs cannot make the file look truncated.
    """
    head_seq, head_hash = head(session)
    rows = list(session.scalars(
        select(AuditCheckpoint).where(AuditCheckpoint.seq <= head_seq).order_by(AuditCheckpoint.id)))
    yield canonical_json({
        "type": "header",
        "format": EXPORT_FORMAT,
        "exported_at": _timestamp(clock.now()),
        "events": head_seq,
        "head_hash": head_hash,
        "checkpoints": len(rows),
        "hash_rule": HASH_RULE,
        "canonical_json": CANONICAL_JSON_RULE,
    }).decode("utf-8")
    for row in rows:
        yield canonical_json({
            "type": "checkpoint",
            "id": row.id,
            "statement": row.statement,
            "signature": base64.b64encode(row.signature).decode("ascii"),
            "certificate": x509.load_der_x509_certificate(row.certificate_der)
            .public_bytes(serialization.Encoding.PEM).decode("ascii"),
        }).decode("utf-8")
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.seq <= head_seq).order_by(AuditEvent.seq)
        .execution_options(yield_per=batch_size))
    for event in events:
        yield canonical_json({"type": "event", "body": event_body(event), "prev_hash": event.prev_hash,
                              "hash": event.hash}).decode("utf-8")
    yield canonical_json({"type": "end", "events": head_seq, "checkpoints": len(rows)}).decode("utf-8")


def verify_export(lines: Iterable[str | bytes], *, trust_anchor: x509.Certificate | None = None) -> Verification:
    """Verify an export without a database: every link, every checkpoint signature (and its
    certificate against ``trust_anchor`` when given), each checkpoint's event, and the end record.

    Raises AuditExportError (with a line number) for a file that is not an export, and
    AuditChainError naming the first broken link for an export whose chain does not verify.
    """
    reader = _ExportReader(lines)
    header = reader.expect("header")
    if header.get("format") != EXPORT_FORMAT:
        raise AuditExportError(f"line 1: format {str(header.get('format'))[:60]!r} is not {EXPORT_FORMAT}", line=1)
    statements = []
    record = reader.next()
    while record.get("type") == "checkpoint":
        where = f"checkpoint {record.get('id')} (line {reader.line})"
        try:
            certificate = x509.load_pem_x509_certificate(str(record["certificate"]).encode("ascii"))
            signature = base64.b64decode(str(record["signature"]), validate=True)
            statement_text = str(record["statement"])
        except (KeyError, ValueError, UnicodeEncodeError, binascii.Error):
            raise AuditExportError(f"line {reader.line}: checkpoint record is malformed", line=reader.line) from None
        statements.append((where, _verify_statement(statement_text, signature, certificate, where=where,
                                                    trust_anchor=trust_anchor)))
        record = reader.next()
    ledger = _CheckpointLedger(statements)
    for where, head_hash in ledger.by_seq.get(0, ()):
        if head_hash != GENESIS_HASH:
            raise AuditChainError(f"{where} signed an empty chain with a head hash other than the genesis hash", seq=1)
    expected_seq = 1
    prev_hash = GENESIS_HASH
    while record.get("type") == "event":
        body, stored_prev, stored_hash = record.get("body"), record.get("prev_hash"), record.get("hash")
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int) or not isinstance(stored_hash, str):
            raise AuditExportError(f"line {reader.line}: event record is malformed", line=reader.line)
        prev_hash = _verify_link(expected_seq, prev_hash, body["seq"], stored_prev, body, stored_hash)
        ledger.check_event(body["seq"], stored_hash)
        expected_seq += 1
        record = reader.next()
    last_seq = expected_seq - 1
    if record.get("type") != "end":
        raise AuditExportError(f"line {reader.line}: expected an event or the end record, found "
                               f"{str(record.get('type'))[:20]!r}", line=reader.line)
    ledger.check_end(last_seq)
    if record.get("events") != last_seq or header.get("events") != last_seq:
        raise AuditChainError(f"the export announces {header.get('events')} events but holds {last_seq}",
                              seq=last_seq + 1)
    if record.get("checkpoints") != len(statements) or header.get("checkpoints") != len(statements):
        raise AuditExportError(f"line {reader.line}: the export announces {header.get('checkpoints')} "
                               f"checkpoints but holds {len(statements)}", line=reader.line)
    if header.get("head_hash") != prev_hash:
        raise AuditChainError(f"the export's head hash is not the hash of its last event {last_seq}", seq=last_seq)
    reader.expect_eof()
    return Verification(last_seq, prev_hash, ledger.count, ledger.last_seq, trust_anchor is not None)


class _ExportReader:
    def __init__(self, lines: Iterable[str | bytes]) -> None:
        self._lines = iter(lines)
        self.line = 0

    def next(self) -> dict[str, Any]:
        while True:
            try:
                raw = next(self._lines)
            except StopIteration:
                raise AuditExportError(
                    f"the file ends after line {self.line} without its end record: it was cut off",
                    line=self.line) from None
            self.line += 1
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            if text.strip():
                break
        try:
            value = json.loads(text)
        except ValueError:
            raise AuditExportError(f"line {self.line} is not JSON", line=self.line) from None
        if not isinstance(value, dict):
            raise AuditExportError(f"line {self.line} is not a JSON object", line=self.line)
        return value

    def expect(self, record_type: str) -> dict[str, Any]:
        record = self.next()
        if record.get("type") != record_type:
            raise AuditExportError(f"line {self.line}: expected a {record_type} record, found "
                                   f"{str(record.get('type'))[:20]!r}", line=self.line)
        return record

    def expect_eof(self) -> None:
        for raw in self._lines:
            self.line += 1
            if (raw.decode("utf-8") if isinstance(raw, bytes) else raw).strip():
                raise AuditExportError(f"line {self.line}: data after the end record", line=self.line)
