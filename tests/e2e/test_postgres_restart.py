"""Fault injection: PostgreSQL restarted under load, on a private cluster made for the test.

``initdb`` and ``pg_ctl`` (PostgreSQL's own tools, scripts/system-packages.sh) make a cluster in a
temporary directory on a free port; ``tnca init`` puts the authority in it; ``tnca serve`` (gunicorn,
2 workers) serves it; client threads run issuances with certbot's ``acme`` library (resuming
their orders after any failure, tests/e2e/acme_load.py) while a probe sends a signed POST-as-GET
of its account every 50 ms (spending its nonce is a database write, RFC 8555 §6.5; handing a
nonce out is not: newNonce answers without the database). Mid-run the cluster is stopped (``pg_ctl stop -m fast``: every
connection terminated), left down for a moment and started again.

What must hold: while the database is away every answer is 503 ``serverInternal`` with
``Retry-After`` (RFC 8555 §6.6; ``acme_server/acme/errors.py``), never a 500; the server recovers
by itself (the same gunicorn master, never restarted) and the probe's first success comes soon
after the database is back; every issuance completes; no order is left ``processing``; ``tnca
audit verify`` passes. The figures (errors by kind, recovery time) are printed for
docs/reliability.md. Runs in the PostgreSQL suite (TNCA_TEST_DATABASE_URL naming PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import josepy as jose
import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from bench.issuance import create_delegation, make_csr, mint_jobs, turn_off_rate_limits
from ca.config import POLICY_FILE
from ca.home import Home
from ca.records.models_acme import Order
from tests.e2e.acme_load import Server, run_job
from tests.e2e.devhome import TNCA_SCRIPT
from tests.helpers import free_port
from tnca.acme_client import STIRClient
from tnca.cli import cli

pytestmark = pytest.mark.e2e

def postgres_bin() -> Path | None:
    """The newest PostgreSQL server tools' directory (Debian: /usr/lib/postgresql/N/bin, from the
    ``postgresql`` package the PostgreSQL suite's server comes from)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None
ISSUANCES = 60
CLIENTS = 6
DOWN_SECONDS = 3.0


class PrivatePostgres:
    """A PostgreSQL cluster of its own (never the shared server), run as the postgres user when
    the test runs as root (initdb refuses root)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.root = Path(tempfile.mkdtemp(prefix="tnca-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{tool}: {result.stdout}{result.stderr}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL suite's test (TNCA_TEST_DATABASE_URL naming PostgreSQL); SQLite has no server "
                    "to restart")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.fail("initdb and pg_ctl are missing: install the PostgreSQL server (Debian package postgresql)")
    cluster = PrivatePostgres(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def test_postgres_restarted_under_load_gives_retryable_503s_and_the_server_recovers_by_itself(private_postgres, tmp_path):
    home_path = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "TNCA_DATABASE_URL"}
    result = CliRunner().invoke(cli, ["--home", str(home_path), "init", "--database-url", private_postgres.url],
                                env={"TNCA_DATABASE_URL": ""}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # Every client shares one address: the load is issuance, not the limits.
    turn_off_rate_limits(home_path / POLICY_FILE)
    server = Server(home_path, env, tmp_path / "serve.log", workers=2)
    home = Home(home_path)
    try:
        with home.sessionmaker() as session:
            jobs = mint_jobs(session, home, create_delegation(session, home), range(ISSUANCES))
            session.commit()
        home.engine.dispose()
        server.start()
        master = server.process.pid
        csr_pem = make_csr()
        probes: list[tuple[float, int, str | None]] = []
        done = threading.Event()
        nonce_url = server.directory_url.replace("/directory", "/new-nonce")
        prober = STIRClient.connect(server.directory_url, ec.generate_private_key(ec.SECP256R1()))
        account_url = prober.register(terms_of_service_agreed=True).uri

        def probe() -> None:
            while not done.is_set():
                try:
                    # A worker that has not yet read the nonces' key from the database answers
                    # newNonce with the same 503 as any request the database is needed for.
                    response = requests.head(nonce_url, timeout=5)
                    if response.status_code == 200:
                        nonce = jose.b64decode(response.headers["Replay-Nonce"])  # acme's nonces are decoded bytes
                        signed = prober.acme.net._wrap_in_jws(None, nonce, account_url)
                        response = requests.post(account_url, data=signed, timeout=5,
                                                 headers={"Content-Type": "application/jose+json"})
                    probes.append((time.monotonic(), response.status_code, response.headers.get("Retry-After")))
                except requests.RequestException as exc:
                    probes.append((time.monotonic(), 0, type(exc).__name__))
                time.sleep(0.05)

        outage: dict[str, float] = {}

        def restart() -> None:
            time.sleep(2.0)
            outage["stop"] = time.monotonic()
            private_postgres.stop("fast")
            time.sleep(DOWN_SECONDS)
            private_postgres.start()
            outage["up"] = time.monotonic()

        probing = threading.Thread(target=probe, daemon=True)
        restarting = threading.Thread(target=restart, daemon=True)
        probing.start()
        restarting.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            outcomes = list(pool.map(lambda job: run_job(server.directory_url, job, csr_pem), jobs))
        restarting.join(timeout=60)
        time.sleep(1.0)  # the probe sees the recovered server even if the clients finished early
        done.set()
        probing.join(timeout=10)
        elapsed = time.monotonic() - started

        failed = [(t, status, retry) for t, status, retry in probes if status != 200]
        refused = Counter((status, retry) for _, status, retry in failed)
        first_ok = next((t for t, status, _ in probes if status == 200 and t > outage["up"]), None)
        transient = sum((o.transient for o in outcomes), Counter())
        print(f"\npostgres restart: {ISSUANCES} issuances in {elapsed:.1f} s with the database down "
              f"{outage['up'] - outage['stop']:.1f} s; probe answers {len(probes)}, not 200: {dict(refused)}; "
              f"first probe success {first_ok - outage['up']:.2f} s after the database was back; "
              f"errors seen by clients {dict(transient)}")

        assert [o.failure for o in outcomes if o.failure] == []
        # No 500 to any client either (a problem without Retry-After, or an answer without a body).
        log_text = (tmp_path / "serve.log").read_text(errors="replace")
        internal = [line for line in log_text.splitlines() if "incident" in line and "database unavailable" not in line]
        assert not any(kind in transient for kind in ("http:500", "acme:serverInternal:500")), (transient, internal,
                                                                                                 log_text[-6000:])
        assert failed, "the probe never saw the database down"
        # Every answer while the database was away: 503 with Retry-After (never a 500, never no answer).
        assert set(refused) == {(503, "2")}, refused
        assert first_ok is not None and first_ok - outage["up"] < 10.0
        assert server.process.poll() is None and server.process.pid == master and server.starts == 1
        with home.sessionmaker() as session:
            assert session.scalar(select(func.count()).select_from(Order).where(Order.status == "processing")) == 0
        verified = subprocess.run([str(TNCA_SCRIPT), "--home", str(home_path), "audit", "verify"],
                                  capture_output=True, text=True, env=env, timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        server.stop()
        home.close()
