"""Fault injection: the disk under a SQLite database is full.

A real full filesystem: the home's database lives on a small tmpfs mounted for the test (root
only; elsewhere the test is skipped, saying so), filled to the last byte by a filler file after
the order is ready. SQLite's write then fails with SQLITE_FULL ("database or disk is full").

What must hold: finalize (RFC 8555 §7.4) answers a problem document, 503 ``serverInternal`` with
``Retry-After`` (the database-unavailable answer, ``acme_server/acme/errors.py``), not a 500;
nothing is half-written (every table's row count as before, the order still ``ready``, the
database's integrity check ``ok``); the audit chain verifies (``tnca audit verify``); and once the
filler is deleted the same client finalizes the same order and gets its certificate, with no
restart of anything.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from acme import messages
from click.testing import CliRunner
from sqlalchemy import text

from acme_server import create_app
from bench.issuance import create_delegation, make_csr, mint_jobs
from ca.home import Home
from protocol.support import serving
from tests.e2e.devhome import TNCA_SCRIPT
from tests.helpers import free_port, row_counts
from tnca.acme_client import STIRClient
from tnca.cli import cli

pytestmark = pytest.mark.e2e

DISK_BYTES = 16 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path, database_url: str):
    if not database_url.startswith("sqlite"):
        pytest.skip("the disk under a SQLite file: PostgreSQL's disk belongs to the database server")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left (ENOSPC)."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:
                out.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_sqlite_on_a_full_disk_fails_finalize_cleanly_and_resumes_once_space_is_freed(small_disk, tmp_path, database_url,
                                                                                     caplog):
    port = free_port()
    home_path = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home_path), "init", "--base-url", f"http://127.0.0.1:{port}",
                                      "--database-url", f"sqlite:///{small_disk / 'tnca.db'}"],
                                env={"TNCA_DATABASE_URL": ""}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    home = Home(home_path)
    try:
        with home.sessionmaker() as session:
            (job,) = mint_jobs(session, home, create_delegation(session, home), [0])
            session.commit()
        key, identifier, token = job
        with serving(create_app(home), home, port) as server:
            client = STIRClient.connect(server.base_url + "/acme/directory", key)
            client.register(terms_of_service_agreed=True)
            orderr = client.new_order(identifier)
            client.answer(orderr, token)
            csr_pem = make_csr()
            with home.engine.connect() as conn:
                # Empty the write-ahead log, so the next write needs new space (a WAL that was
                # checkpointed is otherwise rewritten in place).
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            with home.sessionmaker() as session:
                before = row_counts(session)
            filler = fill(small_disk)

            seen = []  # every HTTP response the client gets, for the status and Retry-After as sent
            client.acme.net.session.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response))
            with pytest.raises(messages.Error) as failed:
                client.acme.begin_finalization(orderr.update(csr_pem=csr_pem))
            problem = failed.value
            assert problem.code == "serverInternal", problem
            assert "the database is unavailable for a moment; retry after 2 s" in problem.detail
            assert (seen[-1].status_code, seen[-1].headers.get("Retry-After")) == (503, "2")
            logged = [r for r in caplog.records if r.name == "tnca.acme" and r.exc_info]
            assert any("database or disk is full" in str(r.exc_info[1]) for r in logged), logged  # SQLITE_FULL

            os.remove(filler)
            with home.sessionmaker() as session:
                assert row_counts(session) == before  # nothing half-written
                assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            assert client.poll(orderr).status == messages.STATUS_READY
            finished = client.acme.begin_finalization(orderr.update(csr_pem=csr_pem))
            assert finished.body.status == messages.STATUS_VALID
            chain = client.acme._post_as_get(finished.body.certificate).text
            assert chain.count("BEGIN CERTIFICATE") == 2
        verified = subprocess.run([str(TNCA_SCRIPT), "--home", str(home_path), "audit", "verify"],
                                  capture_output=True, text=True, timeout=120,
                                  env={k: v for k, v in os.environ.items() if k != "TNCA_DATABASE_URL"})
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        home.close()
