"""The offline audit export: the whole chain and its checkpoints as JSON lines, and its verifier.

``tnca audit export`` and the audit API write it with :func:`export_lines`;
:func:`verify_export` (``tnca audit verify --export FILE``) and the commands in
docs/auditor-guide.md check it with nothing but the file and a trust anchor: no database, no
trust in this authority's software beyond the rules the header states.

JSON lines (one canonical JSON object per line, UTF-8)::

  {"type": "header", "format": EXPORT_FORMAT, "exported_at", "events", "checkpoints", "hash_rule", ...}
  {"type": "checkpoint", "id", "statement": "<the signed text>", "signature": "<base64>", "certificate": "<PEM>"}  ×N
  {"type": "event", "body": {...as hashed...}, "prev_hash", "hash"}  ×M, seq 1..M in order
  {"type": "end", "events": M, "checkpoints": N}

Checkpoints come first so a verifier holds only them in memory while it streams the events.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import AuditChainError, AuditExportError
from ca.records.audit import GENESIS_HASH, canonical_json, event_body, head, utc_timestamp, verify_link
from ca.records.audit_checkpoints import CheckpointLedger, Verification, verify_statement
from ca.records.models_audit import AuditCheckpoint, AuditEvent

EXPORT_FORMAT = "tnca-audit-export/v1"
# How the chain hashes, stated in every export so a verifier needs nothing else.
HASH_RULE = "hash = hex(SHA-256(ascii(prev_hash) || canonical_json(body))); prev_hash of seq 1 is 64 zeros"
CANONICAL_JSON_RULE = "UTF-8 JSON, keys sorted, separators ',' and ':', no whitespace, non-ASCII unescaped"


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
        "exported_at": utc_timestamp(clock.now()),
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
        statements.append((where, verify_statement(statement_text, signature, certificate, where=where,
                                                    trust_anchor=trust_anchor)))
        record = reader.next()
    ledger = CheckpointLedger(statements)
    for where, head_hash in ledger.by_seq.get(0, ()):
        if head_hash != GENESIS_HASH:
            raise AuditChainError(f"{where} signed an empty chain with a head hash other than the genesis hash", seq=1)
    expected_seq = 1
    prev_hash = GENESIS_HASH
    while record.get("type") == "event":
        body, stored_prev, stored_hash = record.get("body"), record.get("prev_hash"), record.get("hash")
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int) or not isinstance(stored_hash, str):
            raise AuditExportError(f"line {reader.line}: event record is malformed", line=reader.line)
        prev_hash = verify_link(expected_seq, prev_hash, body["seq"], stored_prev, body, stored_hash)
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
