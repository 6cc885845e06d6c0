"""An outside monitor watches our logs: Debian's certspotter (SSLMate, Go) pointed at a running
log through a custom JSON log list (v3 schema; the ``-logs`` option takes a file path and the log
``url`` may be plain http on loopback).

certspotter 0.16 verifies each STH's signature with the key from the list, downloads the
entries, recomputes the Merkle tree from the leaf inputs and requires it to equal every STH root
it has seen; it resumes from its saved collapsed tree, so a later run checks that the log only
appended (the consistency a get-sth-consistency proof would show). It also parses every
precertificate entry and checks that the TBS in the leaf matches the precertificate in
extra_data. With ``-start_at_end`` it instead checks the log's audit path for the newest leaf
(get-proof-by-hash) against the STH root.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from ca.issuing.transparency import submit_precertificate
from ct_helpers import RunningLog, make_delegate, wait_for_tree_size
from ctlog import store as log_store

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("certspotter") is None, reason="Debian package certspotter is not installed"),
]

RUN_TIMEOUT_SECONDS = 60
FINISHED = "finished downloading entries from"
MISMATCH = "does not match the entries returned by the log"
BRAND_NEW = "brand new log"


def write_log_list(log: RunningLog, path: Path) -> None:
    """A log list in the v3 format CT monitors read, with one log."""
    client = log.client()
    path.write_text(json.dumps({
        "version": "1",
        "operators": [{
            "name": "tnca tests",
            "email": ["ct@example.test"],
            "logs": [{
                "description": f"tnca dev log {log.name}",
                "log_id": client.log_id_b64,
                "key": base64.b64encode(client.public_key_der).decode(),
                "url": f"{log.url}/",
                "mmd": 1,
                "state": {"usable": {"timestamp": "2024-01-01T00:00:00Z"}},
            }],
        }],
    }))


class Certspotter:
    def __init__(self, tmp_path: Path, log: RunningLog) -> None:
        self.tmp_path = tmp_path
        self.log_list = tmp_path / "loglist.json"
        write_log_list(log, self.log_list)
        self.watchlist = tmp_path / "watchlist"
        self.watchlist.write_text(".example.test\n")
        self.config_dir = tmp_path / "certspotter-config"  # no hooks.d, no email_recipients
        self.config_dir.mkdir()

    def run(self, state_dir: Path, *, start_at_end: bool = False, until: tuple[str, ...]) -> tuple[str, str]:
        """One monitoring pass: certspotter runs as a daemon, so it is stopped (SIGTERM) once its
        stderr shows one of ``until`` (bounded by RUN_TIMEOUT_SECONDS)."""
        command = ["certspotter", "-logs", str(self.log_list), "-state_dir", str(state_dir),
                   "-watchlist", str(self.watchlist), "-stdout", "-verbose"]
        if start_at_end:
            command.append("-start_at_end")
        env = dict(os.environ, CERTSPOTTER_CONFIG_DIR=str(self.config_dir), HOME=str(self.tmp_path))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines: list[str] = []
        seen = threading.Event()

        def read_stderr() -> None:
            for line in process.stderr:
                lines.append(line)
                if any(marker in line for marker in until):
                    seen.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        seen.wait(RUN_TIMEOUT_SECONDS)
        process.send_signal(signal.SIGTERM)
        stdout = process.stdout.read()
        process.wait(timeout=20)
        reader.join(timeout=5)
        process.stdout.close()
        process.stderr.close()
        assert seen.is_set(), f"certspotter did not get to {until}: {''.join(lines)[-3000:]}"
        return stdout, "".join(lines)


def submit(log: RunningLog, pki, names: list[str]) -> None:
    client = log.client()
    for name in names:
        submit_precertificate([client], make_delegate(pki.issuing, dns_name=name).precert_der, [pki.issuing.der],
                              deadline_per_log=10, required=1)


def test_certspotter_verifies_tree_heads_and_growth_and_reports_a_rewritten_tree(log_factory, pki, tmp_path):
    log = log_factory("monitored", merge_delay=0.2)
    monitor = Certspotter(tmp_path, log)
    state = tmp_path / "state"

    # Run 1: three precertificates; certspotter checks the STH signature and the tree of entries.
    submit(log, pki, ["sti0.example.test", "sti1.example.test", "sti2.example.test"])
    wait_for_tree_size(log, 3)
    stdout, stderr = monitor.run(state, until=(FINISHED, MISMATCH))
    assert "downloading entries from" in stderr and "in range [0, 3)" in stderr and FINISHED in stderr
    assert MISMATCH not in stderr and "error" not in stderr.replace("stopped with error context canceled", "")
    for n in range(3):
        assert f"DNS Name = sti{n}.example.test" in stdout

    # A fresh monitor starting at the end checks the log's audit path for the newest leaf.
    stdout, stderr = monitor.run(tmp_path / "state-at-end", start_at_end=True, until=(BRAND_NEW, "error"))
    assert "(starting from 3)" in stderr and "error reconstructing" not in stderr

    # Run 2: the log grows to 5; certspotter resumes from its saved tree: the log only appended.
    submit(log, pki, ["sti3.example.test", "sti4.example.test"])
    wait_for_tree_size(log, 5)
    stdout, stderr = monitor.run(state, until=(FINISHED, MISMATCH))
    assert "in range [3, 5)" in stderr and FINISHED in stderr and MISMATCH not in stderr
    assert "DNS Name = sti3.example.test" in stdout and "DNS Name = sti4.example.test" in stdout
    assert "sti0.example.test" not in stdout  # already seen in run 1

    # Rewrite history: edit the stored hash of leaf 4 (the last of an odd-sized tree, so no cached
    # parent hides it), then grow the log. Its next tree head is signed over the edited leaf.
    engine = create_engine(log.database_url or f"sqlite:///{log.directory / 'log.db'}")
    with engine.begin() as conn:
        conn.execute(update(log_store.entries).where(log_store.entries.c.leaf_index == 4).values(leaf_hash=b"\xee" * 32))
    engine.dispose()
    submit(log, pki, ["sti5.example.test", "sti6.example.test", "sti7.example.test"])
    wait_for_tree_size(log, 8)
    stdout, stderr = monitor.run(state, until=(MISMATCH,))
    assert f"error verifying {log.url}/ at tree size 8: the STH root hash" in stderr
    assert MISMATCH in stderr
