"""docs/deployment.md "Backup and restore", walked: the shell blocks are read from the document
and run verbatim with bash. On PostgreSQL (pg_dump, createdb, pg_restore, ``tnca audit verify``)
against a database populated through the ACME server, after which the restored authority serves;
on SQLite (``sqlite3 .backup``, ``tnca audit verify``). Each test skips on the other database.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from acme import errors as acme_errors
from acme import messages
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from acme_server import create_app
from ca.numbers.tnauthlist import TNScope
from ca.records import audit, store
from ca.records.models_acme import Account
from ca.records.models_authority import Certificate
from protocol.support import (  # noqa: F401  (fixtures)
    DELEGATED_SCOPE,
    Authority,
    LiveServer,
    Subscriber,
    authority,
    home,
    make_csr,
    port,
    serving,
)
from tests.e2e.test_acme_gunicorn import TNCA, wait_for_port
from tnca.cli import cli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = REPO / "docs" / "deployment.md"


def restore_block(index: int = 0) -> str:
    """The ``index``-th shell block under "Backup and restore": 0 PostgreSQL, 1 SQLite."""
    section = DEPLOYMENT.read_text().split("## Backup and restore", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "docs/deployment.md should have the PostgreSQL and the SQLite block under 'Backup and restore'"
    return blocks[index]


def tnca(home, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_backup_restores_into_a_new_database_whose_chain_verifies_and_which_serves(home, port, authority, database_url,
                                                                                   tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("the backup block is pg_dump/pg_restore: run with TNCA_TEST_DATABASE_URL naming PostgreSQL")
    url = make_url(database_url)
    # 1. A populated authority: accounts, certificates, a revocation, an external account key, a checkpoint.
    delegation_id = authority.delegate(DELEGATED_SCOPE)
    tnca(home, "eab", "create", "--delegate", "Example Enterprise")
    numbers = ("12025550100", "12025550101")
    with serving(create_app(home), home, port) as live:
        subscriber = Subscriber(live)
        subscriber.register()
        tokens = {}
        for number in numbers:
            scope = TNScope.parse(tns=[number])
            tokens[number] = authority.token(delegation_id, subscriber.public_jwk, scope)
            csr, _ = make_csr(scope=scope)
            subscriber.issue(scope.to_identifier_value(), tokens[number], csr)
    tnca(home, "revoke", "--serial", _serials(authority)[0], "--execute")
    tnca(home, "audit", "checkpoint")
    with authority.session_factory() as session:
        head_before = audit.head(session)
        serials_before = _serials(authority)

    # 2. The document's block, verbatim.
    restored = f"{url.database}_restored_{secrets.token_hex(4)}"
    server = f"postgresql://{url.username}@{url.host}:{url.port or 5432}"
    env = {**os.environ, "PGSERVER": server, "TNCA_DB": url.database, "RESTORED_DB": restored,
           "TNCA_HOME": str(home.path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("TNCA_DATABASE_URL", None)
    restored_url = url.set(database=restored).render_as_string(hide_password=False)
    engine = None
    process = None
    try:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", restore_block(0)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("OK: ") and "1 checkpoint(s)" in result.stdout, result.stdout

        # 3. The restored database holds the same chain, rows and keys.
        engine = store.make_engine(restored_url)
        restored_sessions = store.make_sessionmaker(engine)
        with restored_sessions() as session:
            assert audit.head(session) == head_before
        assert _serials(Authority(home, restored_sessions)) == serials_before

        # 4. The restored authority serves: a new certificate under the dump's delegation, with a
        # serial of its own, and the token spent before the backup stays spent.
        process = subprocess.Popen(
            [str(TNCA), "--home", str(home.path), "serve", "--port", str(port), "--workers", "1", "--threads", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TNCA_DATABASE_URL": restored_url},
        )
        wait_for_port(port, process)
        live = LiveServer(home=home, app=None, base_url=home.base_url)
        restored_authority = Authority(home, restored_sessions)
        again = Subscriber(live, subscriber.private_key)
        # The account is in the dump: newAccount answers 200 with its URL (certbot: ConflictError).
        with pytest.raises(acme_errors.ConflictError) as existing:
            again.register()
        with restored_sessions() as session:
            assert session.scalars(select(Account.id)).all() == [existing.value.location.rsplit("/", 1)[1]]
        again.acme.net.account = messages.RegistrationResource(uri=existing.value.location, body=messages.Registration())
        replay = again.new_order(TNScope.parse(tns=[numbers[0]]).to_identifier_value())
        assert again.answer(replay, tokens[numbers[0]]).body.error.code == "unauthorized"
        scope = TNScope.parse(tns=["12025550102"])
        csr, _ = make_csr(scope=scope)
        chain = again.issue(scope.to_identifier_value(),
                            restored_authority.token(delegation_id, again.public_jwk, scope), csr)
        assert "BEGIN CERTIFICATE" in chain
        after = _serials(restored_authority)
        assert len(after) == len(set(after)) == len(serials_before) + 1
        verified = CliRunner().invoke(cli, ["--home", str(home.path), "audit", "verify"],
                                      env={"TNCA_DATABASE_URL": restored_url}, catch_exceptions=False)
        assert verified.exit_code == 0 and verified.output.startswith("OK: "), verified.output
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            process.wait(timeout=20)
        if engine is not None:
            engine.dispose()
        subprocess.run(["dropdb", "--if-exists", f"--maintenance-db={server}/{url.database}", restored],
                       capture_output=True, timeout=60)


def test_sqlite_backup_copy_verifies(home, authority, database_url, tmp_path):
    if not database_url.startswith("sqlite"):
        pytest.skip("the SQLite block copies a database file; this run's database is PostgreSQL")
    authority.delegate(DELEGATED_SCOPE)
    tnca(home, "eab", "create", "--delegate", "Example Enterprise")
    tnca(home, "audit", "checkpoint")
    with authority.session_factory() as session:
        head_before = audit.head(session)
    env = {**os.environ, "DATABASE_FILE": make_url(database_url).database, "TNCA_HOME": str(home.path),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", restore_block(1)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ") and "1 checkpoint(s)" in result.stdout, result.stdout
    engine = store.make_engine(f"sqlite:///{tmp_path / 'tnca-backup.db'}")
    try:
        with store.make_sessionmaker(engine)() as session:
            assert audit.head(session) == head_before
    finally:
        engine.dispose()


def _serials(authority: Authority) -> list[str]:
    with authority.session_factory() as session:
        return sorted(session.scalars(select(Certificate.serial).where(Certificate.stage == "issued")))
