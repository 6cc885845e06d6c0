"""Signed checkpoints, ``tnca audit verify`` and the offline export (ca/records/audit.py, ca/records/audit_keys.py).

The attacks: an edited event, a deleted event, a truncated tail (with the chain head rewound so
the chain alone still looks whole), a chain rewritten consistently from some event on, a forged
checkpoint. Each test asserts that verification names the first broken link.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select, update

from ca.records import audit, audit_checkpoints, audit_export, audit_keys
from ca.errors import AuditChainError, AuditExportError, SignerError
from ca.records.models_audit import AuditCheckpoint, AuditEvent, AuditHead
from ca.numbers.tnauthlist import TNScope
from tests.audit.support import Authority

REPO = Path(__file__).resolve().parents[2]
AUDITOR_GUIDE = REPO / "docs" / "auditor-guide.md"


@pytest.fixture
def trail(authority: Authority) -> Authority:
    """Seven audit events: authority.init, a delegation, four issuances, a person.

    The clock does not move: the audit key certificate must already be valid for openssl, which
    checks it against the real time.
    """
    delegation = authority.delegate()
    for i in range(4):
        authority.issue(TNScope.parse(tns=[f"1202555010{i}"]), delegation_id=delegation)
    authority.add_user("alice", "auditor")
    return authority


def _checkpoint(authority: Authority) -> AuditCheckpoint:
    signer, _ = audit_keys.ensure_checkpoint_signer(authority.home, clock=authority.clock)
    with authority.session() as session:
        row = audit_checkpoints.checkpoint(session, signer=signer, clock=authority.clock)
        session.commit()
        return row


def _root(authority: Authority) -> x509.Certificate:
    return authority.home.root_certificate()


def _verify(authority: Authority) -> audit_checkpoints.Verification:
    with authority.session() as session:
        return audit_checkpoints.verify_all(session, trust_anchor=_root(authority))


def _last_seq(authority: Authority) -> int:
    with authority.session() as session:
        return audit.head(session)[0]


# ---- checkpoints ---------------------------------------------------------------------------


def test_checkpoint_signs_seq_and_head_hash_with_a_key_certified_by_the_root(trail):
    row = _checkpoint(trail)
    seq = _last_seq(trail)
    statement = json.loads(row.statement)
    assert (row.seq, statement["seq"], statement["type"]) == (seq, seq, "tnca-audit-checkpoint/v1")
    with trail.session() as session:
        assert statement["head_hash"] == row.head_hash == audit.head(session)[1]
    certificate = x509.load_der_x509_certificate(row.certificate_der)
    certificate.verify_directly_issued_by(_root(trail))
    key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature and not key_usage.value.key_cert_sign
    assert statement["signature_algorithm"] == "ecdsa-sha256"
    certificate.public_key().verify(row.signature, row.statement.encode(), ec.ECDSA(hashes.SHA256()))
    # The audit key is not the issuing CA's key.
    assert certificate.public_key() != trail.home.issuing_ca().certificate.public_key()


def test_openssl_verifies_the_checkpoint_signature_and_certificate(trail, tmp_path):
    row = _checkpoint(trail)
    (tmp_path / "statement.json").write_bytes(row.statement.encode())
    (tmp_path / "signature.der").write_bytes(row.signature)
    (tmp_path / "audit.pem").write_bytes(
        x509.load_der_x509_certificate(row.certificate_der).public_bytes(serialization.Encoding.PEM))
    shutil.copy(trail.path / "certs" / "root.pem", tmp_path / "root.pem")
    run = lambda *cmd: subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)  # noqa: E731
    chain = run("openssl", "verify", "-CAfile", "root.pem", "audit.pem")
    assert chain.returncode == 0 and "audit.pem: OK" in chain.stdout, chain.stderr
    run("openssl", "x509", "-in", "audit.pem", "-pubkey", "-noout", "-out", "audit.pub")
    good = run("openssl", "dgst", "-sha256", "-verify", "audit.pub", "-signature", "signature.der", "statement.json")
    assert good.returncode == 0 and "Verified OK" in good.stdout
    (tmp_path / "statement.json").write_bytes(row.statement.replace(f'"seq":{row.seq}', '"seq":1').encode())
    bad = run("openssl", "dgst", "-sha256", "-verify", "audit.pub", "-signature", "signature.der", "statement.json")
    assert bad.returncode != 0 and "Verification failure" in bad.stdout + bad.stderr


def test_verify_all_passes_an_untouched_chain_with_checkpoints(trail):
    _checkpoint(trail)
    trail.add_user("bob", "operator")
    second = _checkpoint(trail)
    result = _verify(trail)
    assert (result.events, result.checkpoints, result.last_checkpoint_seq, result.anchored) == (
        second.seq, 2, second.seq, True)


def test_edited_event_is_named(trail):
    _checkpoint(trail)
    with trail.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(actor="user:mallory"))
        session.commit()
    with pytest.raises(AuditChainError, match=r"audit event 3 was altered") as caught:
        _verify(trail)
    assert caught.value.seq == 3


def test_deleted_event_is_named(trail):
    _checkpoint(trail)
    with trail.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 4))
        session.commit()
    with pytest.raises(AuditChainError, match=r"audit event 4 is missing") as caught:
        _verify(trail)
    assert caught.value.seq == 4


def _truncate(authority: Authority, keep: int) -> None:
    """Delete the events after ``keep`` and rewind the head to match: the chain alone looks whole."""
    with authority.session() as session:
        kept_hash = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == keep))
        session.execute(delete(AuditEvent).where(AuditEvent.seq > keep))
        session.execute(update(AuditHead).values(seq=keep, hash=kept_hash))
        session.commit()


def test_without_a_checkpoint_a_truncated_tail_with_rewound_head_goes_unnoticed(trail):
    """The limit checkpoints exist for: the chain alone cannot tell a cut tail from a short chain."""
    last = _last_seq(trail)
    _truncate(trail, last - 2)
    result = _verify(trail)
    assert (result.events, result.checkpoints) == (last - 2, 0)


def test_truncated_tail_below_the_last_checkpoint_is_detected_and_named(trail):
    row = _checkpoint(trail)
    _truncate(trail, row.seq - 2)
    with pytest.raises(AuditChainError, match=rf"the chain ends at event {row.seq - 2}, but checkpoint {row.id} "
                                              rf"signed a chain of {row.seq} events: events {row.seq - 1}..{row.seq} "
                                              r"were removed \(truncated tail\)") as caught:
        _verify(trail)
    assert caught.value.seq == row.seq - 1


def test_chain_rewritten_consistently_after_a_checkpoint_is_detected(trail):
    """An attacker with the database rewrites event 3 and recomputes every later hash and the head."""
    row = _checkpoint(trail)
    with trail.session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        prev = audit.GENESIS_HASH
        for event in events:
            if event.seq == 3:
                event.actor = "user:mallory"
            event.prev_hash = prev
            event.hash = audit.event_hash(prev, audit.event_body(event))
            prev = event.hash
        session.execute(update(AuditHead).values(hash=prev))
        session.commit()
        assert audit.verify(session) == row.seq  # the chain itself is consistent again
    with pytest.raises(AuditChainError, match=rf"audit event {row.seq} is not the event checkpoint {row.id} signed"):
        _verify(trail)


def test_forged_or_edited_checkpoints_are_refused(trail):
    row = _checkpoint(trail)
    with trail.session() as session:
        session.execute(update(AuditCheckpoint).values(statement=row.statement.replace('"seq":', '"seq": ')))
        session.commit()
    with pytest.raises(AuditChainError, match="not in canonical form"):
        _verify(trail)
    # A checkpoint signed by a key the root never certified.
    forged_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=forged")
    now = trail.clock.now()
    forged_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(forged_key.public_key())
                   .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                   .sign(forged_key, hashes.SHA256()))
    statement = audit_checkpoints.checkpoint_statement(seq=row.seq, head_hash=row.head_hash, signed_at=now,
                                           certificate=forged_cert, algorithm="ecdsa-sha256")
    with trail.session() as session:
        session.execute(update(AuditCheckpoint).values(
            statement=statement.decode(), signature=forged_key.sign(statement, ec.ECDSA(hashes.SHA256())),
            certificate_der=forged_cert.public_bytes(serialization.Encoding.DER)))
        session.commit()
    with pytest.raises(AuditChainError, match="was not issued by the trust anchor"):
        _verify(trail)


def test_checkpoint_if_due_waits_for_new_events_and_the_interval(trail):
    signer, _ = audit_keys.ensure_checkpoint_signer(trail.home, clock=trail.clock)
    due = lambda: audit_checkpoints.checkpoint_if_due(session, signer=signer, clock=trail.clock,  # noqa: E731
                                          interval=dt.timedelta(hours=1), max_events=3)
    with trail.session() as session:
        assert due() is not None  # the first one
        session.commit()
        assert due() is None  # nothing new
        trail.add_user("bob", "auditor")
        assert due() is None  # one new event, interval not over
        trail.advance(hours=1)
        assert due() is not None
        session.commit()
        for name in ("c1", "c2", "c3"):
            trail.add_user(name, "auditor")
        assert due() is not None  # max_events reached before the interval


def test_audit_key_that_does_not_match_its_certificate_is_refused(trail):
    audit_keys.ensure_checkpoint_signer(trail.home, clock=trail.clock)
    (trail.path / "keys" / "audit.key").unlink()
    from ca.issuing.signers.file import generate_file_key

    generate_file_key(trail.path / "keys" / "audit.key")
    from ca.home import Home

    with pytest.raises(SignerError, match="does not match the certificate"):
        audit_keys.load_checkpoint_signer(Home(trail.path))


# ---- the export, verified offline -------------------------------------------------------------


def _export(authority: Authority) -> list[str]:
    with authority.session() as session:
        return list(audit_export.export_lines(session, clock=authority.clock))


def test_export_verifies_offline_with_its_checkpoints(trail):
    _checkpoint(trail)
    lines = _export(trail)
    assert json.loads(lines[0])["type"] == "header" and json.loads(lines[-1])["type"] == "end"
    result = audit_export.verify_export(lines, trust_anchor=_root(trail))
    assert (result.events, result.checkpoints, result.anchored) == (_last_seq(trail), 1, True)


def _events_of(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if json.loads(line)["type"] == "event"]


def test_export_with_an_edited_event_names_it(trail):
    _checkpoint(trail)
    lines = _export(trail)
    index = _events_of(lines)[2]
    record = json.loads(lines[index])
    record["body"]["details"]["note"] = "added later"
    lines[index] = json.dumps(record)
    with pytest.raises(AuditChainError, match="audit event 3 was altered"):
        audit_export.verify_export(lines)


def test_export_with_a_deleted_event_names_it(trail):
    _checkpoint(trail)
    lines = _export(trail)
    del lines[_events_of(lines)[1]]
    with pytest.raises(AuditChainError, match=r"audit event 2 is missing \(the next stored event is 3\)"):
        audit_export.verify_export(lines)


def test_export_with_a_truncated_tail_is_caught_by_its_checkpoint(trail):
    row = _checkpoint(trail)
    lines = _export(trail)
    events = _events_of(lines)
    kept = events[: row.seq - 2]
    last_hash = json.loads(lines[kept[-1]])["hash"]
    header = json.loads(lines[0])
    header.update(events=row.seq - 2, head_hash=last_hash)
    cut = [json.dumps(header)] + lines[1:events[0]] + [lines[i] for i in kept] + [
        json.dumps({"type": "end", "events": row.seq - 2, "checkpoints": 1})]
    with pytest.raises(AuditChainError, match=r"truncated tail"):
        audit_export.verify_export(cut)


@pytest.mark.parametrize(("mangle", "error", "detail"), [
    (lambda lines: lines[:-1], AuditExportError, "without its end record: it was cut off"),
    (lambda lines: lines + ['{"type":"event"}'], AuditExportError, "data after the end record"),
    (lambda lines: ["not json"] + lines[1:], AuditExportError, "line 1 is not JSON"),
    (lambda lines: lines[1:], AuditExportError, "expected a header record"),
])
def test_a_file_that_is_not_a_whole_export_is_refused_naming_the_line(trail, mangle, error, detail):
    _checkpoint(trail)
    with pytest.raises(error, match=detail):
        audit_export.verify_export(mangle(_export(trail)))


def test_export_against_another_trust_anchor_is_refused(trail, tmp_path):
    _checkpoint(trail)
    other_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=Some Other Root")
    now = trail.clock.now()
    other_root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(other_key.public_key())
                  .serial_number(7).not_valid_before(now - dt.timedelta(days=1))
                  .not_valid_after(now + dt.timedelta(days=1))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                  .sign(other_key, hashes.SHA256()))
    with pytest.raises(AuditChainError, match="not issued by the trust anchor"):
        audit_export.verify_export(_export(trail), trust_anchor=other_root)


# ---- the command line --------------------------------------------------------------------------


def test_tnca_audit_verify_reports_ok_and_names_the_first_broken_link(trail):
    ok = trail.run("audit", "checkpoint")
    assert ok.exit_code == 0 and "Created the audit key certificate" in ok.output
    result = trail.run("audit", "verify")
    assert result.exit_code == 0, result.output
    assert f"events 1..{_last_seq(trail)} link up" in result.output and "signed under the trust anchor" in result.output
    with trail.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 5).values(details={"forged": True}))
        session.commit()
    broken = trail.run("audit", "verify", "--json")
    assert broken.exit_code == 1
    assert json.loads(broken.stdout) == {"ok": False, "first_broken_seq": 5,
                                         "error": "audit event 5 was altered: its hash does not match its contents"}
    assert "Error: the audit chain does not verify: audit event 5 was altered" in broken.stderr


def test_tnca_audit_export_then_verify_export_offline(trail, tmp_path):
    assert trail.run("audit", "checkpoint").exit_code == 0
    out = tmp_path / "audit.jsonl"
    assert trail.run("audit", "export", "--out", str(out)).exit_code == 0
    root = trail.path / "certs" / "root.pem"
    result = trail.run("audit", "verify", "--export", str(out), "--root", str(root), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["anchored"] is True
    out.write_text(out.read_text().rsplit("\n", 2)[0] + "\n")  # drop the end record
    cut = trail.run("audit", "verify", "--export", str(out))
    assert cut.exit_code == 1 and "it was cut off" in cut.stderr


def test_tnca_audit_checkpoint_if_due(trail):
    assert trail.run("audit", "checkpoint").exit_code == 0
    result = trail.run("audit", "checkpoint", "--if-due")
    assert result.exit_code == 0 and result.output.strip() == "No checkpoint due."
    bad = trail.run("audit", "checkpoint", "--if-due", "--interval", "soon")
    assert bad.exit_code == 2 and "--interval" in bad.stderr


# ---- the documented offline path, run verbatim -------------------------------------------------


def _documented_commands() -> list[str]:
    """The shell blocks of docs/auditor-guide.md marked as the offline verification path."""
    text = AUDITOR_GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- offline-verify -->\s*```sh\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/auditor-guide.md has no <!-- offline-verify --> blocks"
    return blocks


def test_the_offline_commands_in_the_auditor_guide_verify_an_export_and_catch_tampering(trail, tmp_path):
    assert trail.run("audit", "checkpoint").exit_code == 0
    export = tmp_path / "audit.jsonl"
    assert trail.run("audit", "export", "--out", str(export)).exit_code == 0
    shutil.copy(trail.path / "certs" / "root.pem", tmp_path / "root.pem")
    script = "set -eu\n" + "\n".join(_documented_commands())
    good = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"chain OK: {_last_seq(trail)} events" in good.stdout
    assert "Verified OK" in good.stdout and "audit-cp" in good.stdout and ": OK" in good.stdout

    lines = export.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "event" and
                 json.loads(line)["body"]["seq"] == 2)
    record = json.loads(lines[index])
    record["body"]["actor"] = "user:mallory"
    lines[index] = json.dumps(record)
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "event 2 altered" in bad.stderr
