"""Crash safety: kill -9 under load, restart, and prove that nothing was lost or done twice.

The real stack, all on loopback: ``tnca init`` against the test database, two RFC 6962 logs
(``tnca ctlog serve``) that the policy requires an SCT from each, ``tnca serve`` under gunicorn
(3 workers × 4 threads), one delegation, and one pre-minted single-use authority token and account
key per issuance (bench/issuance.py's ``mint_jobs``). Client threads drive certbot's ``acme``
library (tnca.acme_client) through newAccount, newOrder, tkauth-01, finalize and the download,
each resuming its own order after any failure the way a real client would: poll the order and do
what its status asks (RFC 8555 §7.1.6; ``processing`` → poll again after Retry-After, §7.4).

Meanwhile a killer sends SIGKILL at random points of the run (random issuance counts between 5 %
and 90 % of the total, so every kill lands inside the run on any machine) to a random gunicorn
worker (the master forks a new one) and, a few times, to the master and all its workers at once,
and starts ``tnca serve`` again (its start reconciles orders left ``processing``:
``ca/orders/recovery.py``). The draw's seed is printed; ``TNCA_CRASH_SEED`` replays it.

Then, for every certificate any client received: its row is in the database with the same DER and
its ``certificate.issue`` audit event; both logs hold its precertificate entry (each log's whole
tree is fetched, its STH signature and root hash checked, and the entry the embedded SCT promises
is among its leaves); and every entry of both logs is a precertificate row of the database (issued,
or failed with the reason), so nothing in a log is unexplained. No serial twice; no order left
``processing``; every token validated one authorization; a used token is refused; ``tnca audit
verify`` passes. On PostgreSQL 500 issuances; on SQLite 100, with the same checks (the SQLite
suite's time budget).
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from bench.issuance import create_delegation, make_csr, mint_jobs, turn_off_rate_limits
from ca.config import POLICY_FILE
from ca.home import Home
from ca.issuing.transparency import issuer_key_hash, tbs_without_poison, verify_embedded_scts
from ca.orders.recovery import AUDIT_ACTION_RECOVER
from ca.records.models_acme import Authorization, Order
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate
from ctlog import merkle
from ctlog.structures import ENTRY_TYPE_PRECERT, merkle_tree_leaf, precert_signed_entry
from tests.ct.ct_helpers import RunningLog, log_key, start_log, stop_log, verify_sth
from tests.e2e.acme_load import Outcome, Server, connect, run_job
from tnca.commands.dev import configure_dev_logs

pytestmark = pytest.mark.e2e

CLIENTS = 10
ISSUANCES = {"postgresql": 500, "sqlite": 100}
WORKER_KILLS = {"postgresql": 8, "sqlite": 3}
SERVER_KILLS = {"postgresql": 3, "sqlite": 1}


# -- the logs' contents ---------------------------------------------------------------------------

def log_leaves(log: RunningLog, expected_size: int) -> set[bytes]:
    """Every leaf of the log's tree (RFC 6962 §4.6), checked against its signed tree head: the STH
    signature verifies and the root computed from the leaves is the STH's (§2.1, §3.5)."""
    deadline = time.monotonic() + 30
    while True:
        sth = log.get("get-sth").json()
        if sth["tree_size"] >= expected_size or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    verify_sth(log_key(log), sth)
    leaves: list[bytes] = []
    while len(leaves) < sth["tree_size"]:
        entries = log.get("get-entries", start=len(leaves), end=sth["tree_size"] - 1).json()["entries"]
        assert entries, f"log {log.name} returned no entries from {len(leaves)}"
        leaves.extend(base64.b64decode(entry["leaf_input"]) for entry in entries)
    assert merkle.root_hash([merkle.leaf_hash(leaf) for leaf in leaves]) == base64.b64decode(sth["sha256_root_hash"])
    return set(leaves)


def precert_tbs_of_leaf(leaf: bytes) -> bytes:
    """The TBSCertificate of a precert_entry MerkleTreeLeaf (RFC 6962 §3.4): version, leaf type,
    timestamp (8), entry type (2), issuer_key_hash (32), then tbs_certificate<1..2^24-1>."""
    assert leaf[0:2] == b"\x00\x00" and int.from_bytes(leaf[10:12], "big") == ENTRY_TYPE_PRECERT
    length = int.from_bytes(leaf[44:47], "big")
    return leaf[47:47 + length]


# -- the test -------------------------------------------------------------------------------------

@pytest.fixture
def stack(dev_home, tmp_path):
    logs = []
    for name in ("crash1", "crash2"):
        logs.append(start_log(dev_home.path, name, dev_home.root_pem, merge_delay=0.2))
    assert configure_dev_logs(dev_home.path / POLICY_FILE, [(log.name, log.url, log.public_key_file) for log in logs])
    # Every client shares one address and one delegate: the load is issuance, not the limits.
    turn_off_rate_limits(dev_home.path / POLICY_FILE)
    env = {**os.environ, **dev_home.env()}
    server = Server(dev_home.path, env, tmp_path / "serve.log")
    try:
        server.start()
        yield dev_home, logs, server
    finally:
        server.stop()
        for log in logs:
            stop_log(log)


def test_kill_9_during_concurrent_issuance_loses_nothing_and_does_nothing_twice(stack, database_url):
    dev_home, logs, server = stack
    dialect = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    count = ISSUANCES[dialect]
    home = Home(dev_home.path)
    phases = {"begin": time.monotonic()}
    try:
        with home.sessionmaker() as session:
            jobs = mint_jobs(session, home, create_delegation(session, home), range(count))
            session.commit()
        csr_pem = make_csr()
        seed = int(os.environ.get("TNCA_CRASH_SEED", "0")) or random.randrange(1, 2**31)
        rng = random.Random(seed)
        outcomes: list[Outcome] = []
        done = threading.Event()
        kills: list[str] = []

        finished = Counter()  # issuances done so far
        finished_lock = threading.Lock()

        def killer() -> None:
            # Each kill at a random point of the run's progress (between 5 % and 90 % of the
            # issuances done), whatever the machine's speed; a random worker, or the master and
            # every worker at once followed by a new tnca serve.
            plan = ["worker"] * WORKER_KILLS[dialect] + ["server"] * SERVER_KILLS[dialect]
            rng.shuffle(plan)
            marks = sorted(rng.sample(range(count // 20, count * 9 // 10), len(plan)))
            for what, mark in zip(plan, marks):
                while finished["done"] < mark:
                    if done.wait(0.02):
                        return
                if what == "worker" and server.kill_worker(rng):
                    kills.append("worker")
                elif what == "server":
                    server.kill_all()
                    kills.append("server")
                    server.start()

        def one(job) -> Outcome:
            outcome = run_job(server.directory_url, job, csr_pem)
            with finished_lock:
                finished["done"] += 1
            return outcome

        started = phases["minted"] = time.monotonic()
        killing = threading.Thread(target=killer, daemon=True)
        killing.start()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            outcomes = list(pool.map(one, jobs))
        done.set()
        killing.join(timeout=120)
        elapsed = time.monotonic() - started

        # A last kill of everything and a restart: the start reconciles whatever is left.
        server.kill_all()
        server.start()
        phases["restarted"] = time.monotonic()

        failures = [o.failure for o in outcomes if o.failure]
        transient = sum((o.transient for o in outcomes), Counter())
        print(f"\ncrash test ({dialect}, TNCA_CRASH_SEED={seed}): {count} issuances in {elapsed:.1f} s; "
              f"kills {Counter(kills)}; "
              f"server starts {server.starts}; transient errors seen by clients {dict(transient)}")
        assert Counter(kills) == {"worker": WORKER_KILLS[dialect], "server": SERVER_KILLS[dialect]}, kills
        assert failures == [], failures[:5]
        chains = [o.chain for o in outcomes]

        issuing = x509.load_pem_x509_certificate(dev_home.issuing_pem.read_bytes())
        key_hash = issuer_key_hash(issuing)
        log_clients = [log.client() for log in logs]
        leaves_of = {log.log_id_hex: log_leaves(log, count) for log in logs}

        received: dict[str, x509.Certificate] = {}
        for chain in chains:
            leaf = x509.load_pem_x509_certificates(chain.encode())[0]
            serial = format(leaf.serial_number, "x")
            assert serial not in received, f"serial {serial} received twice"
            received[serial] = leaf

        with home.sessionmaker() as session:
            rows = {row.serial: row for row in session.scalars(select(Certificate))}
            issue_events = set(session.scalars(
                select(AuditEvent.subject_id).where(AuditEvent.action == "certificate.issue")))
            recovered = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == AUDIT_ACTION_RECOVER))
            processing = session.scalars(select(Order.id).where(Order.status == "processing")).all()
            jti_uses = session.execute(
                select(Authorization.token_jti, func.count()).where(Authorization.token_jti.is_not(None))
                .group_by(Authorization.token_jti)).all()
            issued_per_order = Counter(row.order_id for row in rows.values() if row.stage == "issued")

        # Every certificate a client received: stored as sent, audited, in both logs.
        for serial, leaf in received.items():
            row = rows.get(serial)
            assert row is not None and row.stage == "issued", f"received {serial} is not an issued row"
            assert row.der == leaf.public_bytes(serialization.Encoding.DER)
            assert serial in issue_events, f"no certificate.issue audit event for {serial}"
            scts = verify_embedded_scts(leaf, issuing, log_clients, required=2)
            tbs = leaf.tbs_precertificate_bytes  # RFC 6962 §3.2: the TBS without the SCT list
            for sct in scts:
                expected = merkle_tree_leaf(sct.timestamp, ENTRY_TYPE_PRECERT, precert_signed_entry(key_hash, tbs),
                                            sct.extensions)
                assert expected in leaves_of[sct.log_id.hex()], f"{serial} is not in log {sct.log_id.hex()}"
        # Every log entry is explained by a precertificate row (issued, or failed with its reason).
        recorded_tbs = {tbs_without_poison(x509.load_der_x509_certificate(row.precertificate_der)): row
                        for row in rows.values() if row.precertificate_der}
        for log_id, leaves in leaves_of.items():
            for leaf in leaves:
                row = recorded_tbs.get(precert_tbs_of_leaf(leaf))
                assert row is not None, f"an entry of log {log_id} has no certificate row"
                assert row.stage == "issued" or (row.stage == "failed" and row.error), (row.serial, row.stage)
        unfinished = [row.serial for row in rows.values() if row.stage == "precertificate"]
        assert unfinished == [], f"precertificates neither issued nor failed: {unfinished}"

        assert len(received) == count == sum(issued_per_order.values())
        assert max(issued_per_order.values()) == 1, "an order got two certificates"
        assert processing == [], f"orders left processing: {processing}"
        assert jti_uses and max(uses for _, uses in jti_uses) == 1, "a token validated two authorizations"
        assert len(jti_uses) == count

        # A used token stays used: its own account gives up the valid authorization a new order
        # would reuse (RFC 8555 §7.5.2), orders again, and presents the same token: refused.
        key, identifier, token = jobs[0]
        client = connect(server.directory_url, key)
        reused = client.new_order(identifier)
        client.acme.deactivate_authorization(reused.authorizations[0])
        orderr = client.new_order(identifier)
        assert orderr.body.status == messages.STATUS_PENDING
        refused = client.answer(orderr, token).body
        assert refused.status == messages.STATUS_INVALID and "token already used" in refused.error.detail, refused

        phases["checked"] = time.monotonic()
        verified = dev_home.run("audit", "verify")
        assert verified.exit_code == 0, verified.output
        failed_rows = sum(1 for row in rows.values() if row.stage == "failed")
        print(f"crash test ({dialect}): {len(received)} certificates received, all stored, audited and in both logs; "
              f"{failed_rows} precertificate(s) of abandoned finalizes marked failed; {recovered} order(s) recovered; "
              f"log sizes {[len(v) for v in leaves_of.values()]}; seconds: minting {phases['minted'] - phases['begin']:.1f}, "
              f"final restart {phases['restarted'] - started - elapsed:.1f}, checks {phases['checked'] - phases['restarted']:.1f}, "
              f"audit verify {time.monotonic() - phases['checked']:.1f}")
    finally:
        home.close()
