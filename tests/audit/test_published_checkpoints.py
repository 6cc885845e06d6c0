"""Checkpoints that happen and are published: the worker signs them on its own (on the policy's
interval, at once after a revocation), ``/audit/checkpoint`` serves them as C2SP tlog-checkpoint
signed notes (Ed25519, C2SP signed-note), ``/audit/consistency`` proves a later tree extends an
earlier one (RFC 6962 §2.1.2), and ``tnca audit verify --against`` a kept note reports edited,
deleted, truncated or rewritten history with the first event that differs.

The notes are checked here with nothing of ``ca``: the signed-note key ID and signature by hand,
the consistency proof with the RFC 9162 §2.1.4.2 verifier of ``ctlog/merkle.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import delete, select, update

from ca.records import audit
from ca.records.models_audit import AuditCheckpoint, AuditEvent, AuditHead
from ctlog import merkle
from protocol.support import DELEGATED_SCOPE, app, authority, client, home, port  # noqa: F401  (fixtures)
from tnca.cli import cli

pytestmark = pytest.mark.e2e


def tnca(home, *args: str):  # noqa: F811
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)


def tick(home) -> None:  # noqa: F811
    result = tnca(home, "worker", "--once")
    assert result.exit_code == 0, result.output


def checkpoints(session_factory) -> list[tuple[int, str | None]]:
    with session_factory() as session:
        return [(row.seq, row.note) for row in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id))]


def open_note(text: str, vkey: str) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint, checked by hand: (origin, size, root)."""
    name, key_id_hex, encoded = vkey.strip().split("+", 2)  # base64 may hold "+"
    raw = base64.b64decode(encoded)
    assert raw[0] == 1 and len(raw) == 33  # signature type 0x01: Ed25519
    assert hashlib.sha256(name.encode() + b"\n\x01" + raw[1:]).digest()[:4].hex() == key_id_hex
    body, signatures = text.split("\n\n")
    (line,) = signatures.strip("\n").split("\n")
    dash, signer, signature = line.split(" ")
    assert (dash, signer) == ("\u2014", name)
    signature = base64.b64decode(signature)
    assert signature[:4].hex() == key_id_hex
    ed25519.Ed25519PublicKey.from_public_bytes(raw[1:]).verify(signature[4:], (body + "\n").encode())
    origin, size, root = body.split("\n")
    return origin, int(size), base64.b64decode(root)


def test_the_worker_signs_published_checkpoints_and_they_extend_one_another(home, authority, client,  # noqa: F811
                                                                            session_factory):
    """C2SP tlog-checkpoint: "<origin>\\n<size>\\n<base64 root>\\n", signed; the worker makes one when
    the trail moved past the interval, not when nothing happened, and at once after a revocation."""
    assert client.get("/audit/checkpoint").status_code == 404
    authority.delegate(DELEGATED_SCOPE)
    tick(home)
    [(first_seq, first_note)] = checkpoints(session_factory)
    assert first_seq > 0 and first_note is not None
    tick(home)
    assert len(checkpoints(session_factory)) == 1  # nothing moved: nothing to sign

    served = client.get("/audit/checkpoint")
    assert served.status_code == 200 and served.content_type == "text/plain; charset=utf-8"
    assert served.get_data(as_text=True) == first_note
    vkey = client.get("/audit/checkpoint-key").get_data(as_text=True)
    assert vkey.strip() == tnca(home, "audit", "note-key").output.strip()
    origin, size, root = open_note(first_note, vkey)
    assert origin == "127.0.0.1:%d/audit" % int(home.base_url.rsplit(":", 1)[1]) and size == first_seq
    with session_factory() as session:
        hashes = [bytes.fromhex(h) for h in session.scalars(select(AuditEvent.hash).order_by(AuditEvent.seq))]
    assert root == merkle.root_hash([merkle.leaf_hash(h) for h in hashes])

    # Another delegation: within the hour, no checkpoint. Its revocation: one at once.
    second = authority.delegate(DELEGATED_SCOPE, delegate="Other")
    tick(home)
    assert len(checkpoints(session_factory)) == 1
    authority.revoke(second)
    tick(home)
    [_, (later_seq, later_note)] = checkpoints(session_factory)
    _, later_size, later_root = open_note(later_note, vkey)
    assert later_size == later_seq > size
    assert client.get(f"/audit/checkpoint/{size}").get_data(as_text=True) == first_note
    proof = client.get("/audit/consistency", query_string={"first": size, "second": later_size}).json["consistency"]
    merkle.verify_consistency(size, later_size, root, later_root, [base64.b64decode(h) for h in proof])
    refused = client.get("/audit/consistency", query_string={"first": size, "second": later_size + 5})
    assert refused.status_code == 404 and f"no published checkpoint of size {later_size + 5}" in refused.json["error"]
    assert client.get("/audit/consistency", query_string={"first": "-1", "second": "2"}).status_code == 400


def _rechain(session, start: int) -> None:
    """Recompute every hash from event ``start`` on, as someone rewriting history consistently would."""
    prev = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == start - 1)) or audit.GENESIS_HASH
    for event in session.scalars(select(AuditEvent).where(AuditEvent.seq >= start).order_by(AuditEvent.seq)):
        event.prev_hash = prev
        event.hash = audit.event_hash(prev, audit.event_body(event))
        prev = event.hash
    session.execute(update(AuditHead).values(hash=prev))


@pytest.mark.parametrize(("tamper", "message"), [
    ("edit", "audit event 2 was altered"),
    ("delete", "audit event 2 is missing"),
    ("truncate", "were removed (truncated history)"),
    ("rewrite", "history was rewritten; the first differing event is"),
])
def test_verify_against_a_kept_checkpoint_names_the_first_event_that_differs(home, authority, session_factory,  # noqa: F811
                                                                            tmp_path: Path, tamper, message):
    for index in range(3):  # one event each, one checkpoint each (as a busy worker would make them)
        authority.delegate(DELEGATED_SCOPE, delegate=f"Delegate {index}")
        assert tnca(home, "audit", "checkpoint").exit_code == 0
    kept = tmp_path / "checkpoint.txt"
    seen, note = checkpoints(session_factory)[-1]
    kept.write_text(note)
    authority.delegate(DELEGATED_SCOPE, delegate="After")

    result = tnca(home, "audit", "verify", "--against", str(kept), "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["ok"], answer["seen"], answer["today"]) == (True, seen, seen + 1)
    assert answer["proof_hashes"] > 0

    with session_factory() as session:
        if tamper == "edit":
            session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="someone else"))
        elif tamper == "delete":
            session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
        elif tamper == "truncate":
            session.execute(delete(AuditEvent).where(AuditEvent.seq >= seen - 1))
            last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()
            session.execute(update(AuditHead).values(seq=last.seq, hash=last.hash))
        else:
            session.execute(update(AuditEvent).where(AuditEvent.seq == seen).values(actor="someone else"))
            _rechain(session, seen)
        session.commit()
    result = tnca(home, "audit", "verify", "--against", str(kept))
    assert result.exit_code == 1 and message in result.output, result.output
    if tamper == "rewrite":  # the earlier checkpoints still match events 1..seen-1: event `seen` is the first
        assert f"the first differing event is event {seen} " in result.output, result.output
