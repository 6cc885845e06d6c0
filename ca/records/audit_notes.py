"""Published checkpoints of the audit trail: C2SP signed notes over an RFC 6962 Merkle tree.

The hash chain (``ca/records/audit.py``) makes later tampering evident to whoever recomputes it
from a copy they trust. A checkpoint makes that copy small: the C2SP ``tlog-checkpoint`` body

    <origin>
    <tree size>
    <base64 root hash>

signed as a C2SP ``signed-note`` with an Ed25519 key (signature type 0x01):

    — <key name> base64(key ID || Ed25519 signature over the body)

where key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]. The key name is the
origin. The verifier key is published as ``<name>+<hex key ID>+base64(0x01 || public key)``.

The tree. Leaf ``i`` (0-based) is event ``i + 1``'s chain hash (32 bytes), hashed as an RFC 6962
§2.1 leaf (SHA-256(0x00 || hash)); the root is MTH over events 1..size. A checkpoint of size N
therefore commits to the first N events exactly, and a consistency proof (RFC 6962 §2.1.2,
verified by RFC 9162 §2.1.4.2) shows that a later tree of size M extends it without fetching
the events in between.

``verify_against`` answers the auditor's question: is the trail I saw (a checkpoint I kept) still
a prefix of today's? It names the first event that breaks the chain (edited or deleted), a cut
tail (truncated), or — for a chain rebuilt consistently from some event on — the range the other
signed checkpoints narrow it to.

This module needs no key but the one handed in, and no ``Home``: ``audit_keys.py`` loads the
note key and the worker (``ca/lifecycle/renewal_worker.py``) signs on schedule.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import merkle
from ca.errors import AuditChainError, AuditExportError
from ca.issuing.signers import Signer
from ca.records.audit import GENESIS_HASH, event_body, head, verify_link
from ca.records.models_audit import AuditCheckpoint, AuditEvent

SIGNATURE_TYPE_ED25519 = b"\x01"  # C2SP signed-note: "0x01 — Ed25519 signatures"
EM_DASH = "\u2014"
MAX_NOTE_BYTES = 4096  # a checkpoint note is a few hundred bytes; signed-note asks verifiers for a limit
_KEY_NAME = re.compile(r"[^\s+]+")  # signed-note: non-empty, no Unicode spaces, no "+"


@dataclasses.dataclass(frozen=True)
class NoteKey:
    """An Ed25519 signer and the key name its signatures carry (the checkpoint origin)."""

    name: str
    signer: Signer

    def __post_init__(self) -> None:
        if not isinstance(self.signer.public_key, ed25519.Ed25519PublicKey):
            raise ValueError("checkpoint notes are signed with an Ed25519 key (C2SP signed-note type 0x01)")
        if not _KEY_NAME.fullmatch(self.name):
            raise ValueError(f"a signed-note key name has no spaces and no '+': {self.name!r}")

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self.signer.public_key  # type: ignore[return-value]

    @property
    def vkey(self) -> str:
        return verifier_key(self.name, self.public_key)


def origin_for(base_url: str) -> str:
    """A schema-less origin (C2SP tlog-checkpoint) for this authority's trail: ``host[:port]/audit``."""
    parts = urlsplit(base_url)
    return f"{parts.netloc}{parts.path.rstrip('/')}/audit"


def _raw(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: ed25519.Ed25519PublicKey) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] (C2SP signed-note)."""
    return hashlib.sha256(name.encode() + b"\n" + SIGNATURE_TYPE_ED25519 + _raw(public_key)).digest()[:4]


def verifier_key(name: str, public_key: ed25519.Ed25519PublicKey) -> str:
    return f"{name}+{key_id(name, public_key).hex()}+{base64.b64encode(SIGNATURE_TYPE_ED25519 + _raw(public_key)).decode()}"


def parse_verifier_key(text: str) -> tuple[str, ed25519.Ed25519PublicKey]:
    """``name+hexid+base64(0x01||key)``; AuditExportError(field="vkey") when it is not one."""
    parts = text.strip().split("+", 2)  # the name and the hex ID hold no "+"; base64 may
    try:
        name, hex_id, encoded = parts
        raw = base64.b64decode(encoded, validate=True)
        if raw[:1] != SIGNATURE_TYPE_ED25519 or len(raw) != 33:
            raise ValueError("not an Ed25519 verifier key")
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(raw[1:])
        if bytes.fromhex(hex_id) != key_id(name, public_key):
            raise ValueError("the key ID does not match the key")
    except (ValueError, binascii.Error) as error:
        raise AuditExportError(f"not a signed-note verifier key (name+keyid+base64): {error}", line=0) from None
    return name, public_key


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The C2SP tlog-checkpoint note text: origin, decimal size, base64 root, each ending in newline."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def sign_note(body: str, key: NoteKey) -> str:
    signature = key.signer.sign(body.encode("utf-8"))
    try:
        key.public_key.verify(signature, body.encode("utf-8"))
    except InvalidSignature:
        raise AuditChainError("the note key's signer returned a signature its public key does not verify", seq=0) from None
    line = base64.b64encode(key_id(key.name, key.public_key) + signature).decode()
    return f"{body}\n{EM_DASH} {key.name} {line}\n"


@dataclasses.dataclass(frozen=True)
class SignedCheckpoint:
    origin: str
    size: int
    root: bytes
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "tree_size": self.size, "root_hash": base64.b64encode(self.root).decode()}


def open_note(text: str, *, name: str, public_key: ed25519.Ed25519PublicKey) -> SignedCheckpoint:
    """Verify a checkpoint note with the trusted key and read its body; AuditExportError names
    what is wrong (C2SP signed-note: signatures from unknown keys are ignored; at least one from
    the known key must verify)."""
    if len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise AuditExportError(f"a checkpoint note is at most {MAX_NOTE_BYTES} bytes", line=0)
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise AuditExportError("a signed note has no control characters but newlines (C2SP signed-note)", line=0)
    body, separator, signatures = text.rpartition("\n\n")
    if not separator or not body:
        raise AuditExportError("not a signed note: no blank line between the text and its signatures", line=0)
    body += "\n"
    wanted_id = key_id(name, public_key)
    verified = False
    for line in signatures.split("\n"):
        if not line:
            continue
        prefix = f"{EM_DASH} "
        if not line.startswith(prefix) or line.count(" ") != 2:
            raise AuditExportError(f"not a signature line: {line[:60]!r}", line=0)
        line_name, encoded = line[len(prefix):].split(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise AuditExportError(f"the signature of {line_name[:40]!r} is not base64", line=0) from None
        if line_name != name or raw[:4] != wanted_id:
            continue  # an unknown key: ignored
        try:
            public_key.verify(raw[4:], body.encode("utf-8"))
        except InvalidSignature:
            raise AuditExportError(f"the signature of {name} does not verify: the note was altered", line=0) from None
        verified = True
    if not verified:
        raise AuditExportError(f"the note carries no signature by the trusted key {name}", line=0)
    lines = body.split("\n")
    try:
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        size = int(size_text) if re.fullmatch(r"0|[1-9][0-9]{0,18}", size_text) else -1
        root = base64.b64decode(root_text, validate=True)
    except (IndexError, binascii.Error):
        size, root, origin = -1, b"", ""
    if size < 0 or len(root) != merkle.HASH_SIZE:
        raise AuditExportError("the note is not a tlog-checkpoint (origin, tree size, base64 root hash)", line=0)
    return SignedCheckpoint(origin, size, root, text)


# -- the tree over the audit events ---------------------------------------------------------------

def _events(session: Session, *, batch_size: int = 1000):  # type: ignore[no-untyped-def]
    return session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch_size))


def leaf_hashes(session: Session, size: int | None = None) -> list[bytes]:
    """RFC 6962 leaf hashes of events 1..size (all when None), from their chain hashes."""
    stmt = select(AuditEvent.hash).order_by(AuditEvent.seq)
    if size is not None:
        stmt = stmt.where(AuditEvent.seq <= size)
    return [merkle.leaf_hash(bytes.fromhex(value)) for value in session.scalars(stmt)]


def consistency(session: Session, first: int, second: int) -> list[bytes]:
    """PROOF(first, D[second]) over today's events (RFC 6962 §2.1.2); ValueError for sizes that do not fit."""
    current, _ = head(session)
    if not 0 < first <= second <= current:
        raise ValueError(f"no consistency proof from {first} to {second}: the trail has {current} events")
    return merkle.consistency_proof(first, second, merkle.LeafHashList(leaf_hashes(session, second)))


def make_note(session: Session, *, seq: int, key: NoteKey) -> tuple[str, str]:
    """(note text, hex root) of the tree of the first ``seq`` events, signed with ``key``."""
    root = merkle.root_hash(leaf_hashes(session, seq))
    return sign_note(checkpoint_body(key.name, seq, root), key), root.hex()


@dataclasses.dataclass(frozen=True)
class PrefixReport:
    seen: int  # events the checkpoint signed
    today: int  # events today
    proof_hashes: int  # length of the consistency proof that was verified

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def verify_against(session: Session, seen: SignedCheckpoint, *, name: str,
                   public_key: ed25519.Ed25519PublicKey) -> PrefixReport:
    """Is the trail ``seen`` signed still the first ``seen.size`` events of today's? Raises
    AuditChainError naming the first event that differs (module docstring)."""
    leaves: list[bytes] = []
    expected, prev_hash = 1, GENESIS_HASH
    for event in _events(session):
        prev_hash = verify_link(expected, prev_hash, event.seq, event.prev_hash, event_body(event), event.hash)
        leaves.append(merkle.leaf_hash(bytes.fromhex(event.hash)))
        expected += 1
    today = len(leaves)
    head_seq, head_hash = head(session)
    if head_seq != today or (today and head_hash != prev_hash):
        raise AuditChainError(f"the chain head says {head_seq} events but {today} are stored", seq=today + 1)
    if today < seen.size:
        raise AuditChainError(
            f"the checkpoint you kept signed {seen.size} events; today's trail has {today}: events "
            f"{today + 1}..{seen.size} were removed (truncated history)", seq=today + 1)
    if seen.size and not hmac.compare_digest(merkle.root_hash(leaves[:seen.size]), seen.root):
        low, high = _narrow(session, leaves, seen.size, name=name, public_key=public_key)
        where = f"event {high}" if low + 1 == high else f"one of events {low + 1}..{high}"
        raise AuditChainError(
            f"the first {seen.size} events are not the trail the checkpoint signed: history was rewritten; "
            f"the first differing event is {where} (the chain was rebuilt consistently from there)", seq=low + 1)
    proof: Sequence[bytes] = []
    if 0 < seen.size < today:
        hashes = merkle.LeafHashList(leaves)
        proof = merkle.consistency_proof(seen.size, today, hashes)
        try:
            merkle.verify_consistency(seen.size, today, seen.root, merkle.root_hash(leaves), proof)
        except merkle.ProofError as error:  # pragma: no cover - the roots were compared above
            raise AuditChainError(f"consistency proof failed: {error}", seq=seen.size) from None
    return PrefixReport(seen=seen.size, today=today, proof_hashes=len(proof))


def _narrow(session: Session, leaves: list[bytes], size: int, *, name: str,
            public_key: ed25519.Ed25519PublicKey) -> tuple[int, int]:
    """(low, high): events 1..low still match a signed checkpoint, ``high`` no longer does, using
    the checkpoint notes kept in the database whose signature verifies with the trusted key."""
    low, high = 0, size
    for row in session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.note.is_not(None))):
        try:
            kept = open_note(row.note or "", name=name, public_key=public_key)
        except AuditExportError:
            continue
        if not 0 < kept.size <= size:
            continue
        if hmac.compare_digest(merkle.root_hash(leaves[:kept.size]), kept.root):
            low = max(low, kept.size)
        else:
            high = min(high, kept.size)
    return low, max(high, low + 1)
