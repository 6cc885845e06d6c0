"""Issuance benchmark, measured as a capacity planner would (docs/performance.md).

    make bench                                             # SQLite, 8 clients, 320 issuances
    make bench BENCH_ARGS="--database-url postgresql+psycopg://postgres@127.0.0.1:5432/tnca_bench --reset-database"
    python -m bench.issuance --clients 8 --issuances 800 --stored 300000 --json

The server side is ``tnca dev --workers 2`` on a fresh home (``tnca init``): two RFC 6962 logs
with the policy requiring an SCT from each and the renewal worker, threads of the ``tnca dev``
process, and the ACME server under gunicorn, its child.
One delegation (``tnca delegation create``) covers the numbers. Before the timed window every
issuance gets its own account key and single-use authority token (one ``tnca token mint
--fingerprints-from`` per client process), each client process (bench/client.py) registers its
accounts and makes one CSR with its own key per issuance. In the window the ``--clients``
processes run the whole flow one issuance after another: newOrder, authorization, tkauth-01,
poll the authorization, finalize (the server issues synchronously: precertificate, both logs,
final certificate), poll the order, download the chain.

Reported: issuances per second of the window; server CPU per issuance summed over the whole
``tnca dev`` process tree (utime + stime from /proc, before and after the window) and per role,
PostgreSQL's backends apart, with ``tnca dev``'s own CPU split by thread (each log's threads and
the worker's carry their name at the OS level); p50/p95/p99/max per step and end to end; the
peak summed RSS and the peak summed PSS of the tree (bench/proctree.py says which is which);
SQL statements per issuance (bench/sqlcount.py, the same flow in-process on the same database
after the window); the crypto-only cost of an issuance (bench/crypto_baseline.py, in the same
run) and the ratio of server CPU to it; the load average before and after, since other work on
the machine inflates wall-clock figures. ``--stored N`` bulk-loads N orders with their
certificates first (bench/history.py). Nothing here asserts on time.

``Stack``, ``mint_jobs`` and ``issue_one`` (in-process client threads against ``tnca serve``)
serve bench/soak.py.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import re
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import josepy as jose
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench import proctree
from ca.records import delegations
from ca.tokens import fingerprints, minting
from ca.config import POLICY_FILE
from ca.home import Home
from ca.numbers.tnauthlist import TNScope
from tnca.acme_client import STIRClient
from tnca.commands.dev import configure_dev_logs

FIRST_NUMBER = 12025550000
DELEGATED_RANGE = f"{FIRST_NUMBER}:10000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tnca(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tnca", "--home", str(home), *args]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Stack:
    def __init__(self, home: Path, *, workers: int, ct: bool, database_url: str | None) -> None:
        self.home_path = home
        self.workers = workers
        self.ct = ct
        self.database_url = database_url
        self.processes: list[subprocess.Popen] = []
        self.port = free_port()

    def __enter__(self) -> "Stack":
        shutil.rmtree(self.home_path, ignore_errors=True)
        init = tnca(self.home_path, "init", "--base-url", f"http://127.0.0.1:{self.port}")
        if self.database_url:
            init += ["--database-url", self.database_url]
        subprocess.run(init, check=True, stdout=subprocess.DEVNULL)
        turn_off_rate_limits(self.home_path / POLICY_FILE)
        if self.ct:
            logs = []
            for name in ("bench1", "bench2"):
                port = free_port()
                self.processes.append(subprocess.Popen(tnca(self.home_path, "ctlog", "serve", "--name", name,
                                                            "--port", str(port)), stdout=subprocess.DEVNULL))
                url = f"http://127.0.0.1:{port}"
                wait_http(url + "/ct/v1/get-sth")
                logs.append((name, url, self.home_path / "ctlog" / name / "key.pem"))
            configure_dev_logs(self.home_path / POLICY_FILE, logs)
        # The server's log stays in the home: an incident id a client reports can be looked up.
        self.server_log = open(self.home_path / "serve.log", "wb")  # noqa: SIM115 (closed in __exit__)
        self.processes.append(subprocess.Popen(
            tnca(self.home_path, "serve", "--port", str(self.port), "--workers", str(self.workers)),
            stdout=self.server_log, stderr=subprocess.STDOUT))
        wait_http(self.directory_url)
        self.home = Home(self.home_path)
        return self

    @property
    def directory_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/acme/directory"

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if hasattr(self, "home"):
            self.home.close()
        if hasattr(self, "server_log"):
            self.server_log.close()


def turn_off_rate_limits(policy_path: Path) -> None:
    """Every [rate_limits] count to 0: the benchmark's clients all share one address and one
    delegate, and measure issuance, not the limits (ca/policies/default.toml)."""
    text = policy_path.read_text()
    head, marker, limits = text.partition("\n[rate_limits]\n")
    policy_path.write_text(head + marker + re.sub(r"count = \d+", "count = 0", limits))


def create_delegation(session, home: Home):
    """The one delegation every benchmark issuance is under: DELEGATED_RANGE, 24 h certificates."""
    return delegations.create(
        session, delegate="Bench Enterprise", scope=TNScope.parse(ranges=[DELEGATED_RANGE]),
        issuer_scope=home.issuing_ca().scope, max_lifetime=dt.timedelta(hours=24), clock=home.clock,
        actor="bench")


def mint_jobs(session, home: Home, delegation, indices) -> list[tuple[ec.EllipticCurvePrivateKey, str, str]]:
    """One (account key, identifier value, authority token) per index: number FIRST_NUMBER + index."""
    jobs = []
    for index in indices:
        key = ec.generate_private_key(ec.SECP256R1())
        scope = TNScope.parse(tns=[str(FIRST_NUMBER + index)])
        minted = minting.mint(
            session, delegation=delegation,
            fingerprint=fingerprints.account_fingerprint(jose.JWKEC(key=key.public_key())), scope=scope,
            ca=False, ttl=dt.timedelta(hours=1), authority=home.token_authority(), clock=home.clock,
            actor="bench")
        jobs.append((key, scope.to_identifier_value(), minted.token))
    return jobs


def prepare(stack: Stack, count: int) -> list[tuple[ec.EllipticCurvePrivateKey, str, str]]:
    """One (account key, identifier value, authority token) per issuance, minted up front."""
    home = stack.home
    with home.sessionmaker() as session:
        jobs = mint_jobs(session, home, create_delegation(session, home), range(count))
        session.commit()
    return jobs


def make_csr() -> bytes:
    csr_key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name.from_rfc4514_string("CN=Bench Enterprise"))
            .sign(csr_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def issue_one(directory_url: str, job, csr_pem: bytes, user_agent: str = "tnca-bench") -> float:
    """The whole ACME flow for one job; returns the seconds from newOrder to the downloaded chain."""
    key, identifier, token = job
    client = STIRClient.connect(directory_url, key, user_agent=user_agent)
    client.register(terms_of_service_agreed=True)
    start = time.perf_counter()
    chain = client.issue(identifier, token, csr_pem)
    elapsed = time.perf_counter() - start
    if chain.count("BEGIN CERTIFICATE") != 2:
        raise AssertionError(f"expected a chain of 2 certificates, got {chain.count('BEGIN CERTIFICATE')}")
    return elapsed


def run(stack: Stack, jobs, clients: int) -> tuple[list[float], float]:
    csr_pem = make_csr()
    latencies: list[float] = []
    lock = threading.Lock()

    def one(job) -> None:
        elapsed = issue_one(stack.directory_url, job, csr_pem)
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()
    return latencies, time.perf_counter() - started


# ------------------------------------------------------------------------------------------
# make bench: separate client processes against a `tnca dev`-shaped server side
# ------------------------------------------------------------------------------------------


def free_port_pair(avoid: int | None = None) -> int:
    """A port P with P and P + 1 free (``tnca dev --ct-port P`` takes both), below the ephemeral
    range so that no outgoing connection takes either before the logs bind them, and neither of
    them ``avoid`` (the ACME server's port, chosen before and still free: tnca dev binds the logs
    first, and a log on it made the server fail with "Address already in use")."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = max(1024, ephemeral_low - 20000), ephemeral_low - 2
    block = os.environ.get("TNCA_TEST_PORT_BLOCK", "")  # runs side by side take disjoint blocks (tests/helpers.py)
    if block:
        index, count = (int(part) for part in block.split("/"))
        size = (high - low) // count
        low, high = low + index * size, low + (index + 1) * size - 1
    choose = random.SystemRandom()
    for _ in range(200):
        port = choose.randrange(low, high)
        if avoid in (port, port + 1):
            continue
        try:
            for candidate in (port, port + 1):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
    raise SystemExit("no two adjacent free ports")


def reset_database(url: str) -> None:
    """Empty a PostgreSQL database (schema ``public`` dropped) so ``tnca init`` can build it afresh."""
    from sqlalchemy import text

    from ca.records.store import make_engine

    engine = make_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            raise SystemExit("--reset-database is for PostgreSQL URLs")
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def run_cli(home: Path, *args: str) -> str:
    done = subprocess.run(tnca(home, *args), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"tnca {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


class DevStack:
    """``tnca dev --workers N`` on a fresh home: two CT logs and the renewal worker in its
    process, the ACME server under gunicorn, as the development stack runs them; its output
    (and the server's, which writes straight to it) kept in the home's dev.log."""

    def __init__(self, home: Path, workers: int, server_port: int) -> None:
        self.home_path = home
        self.workers = workers
        self.server_port = server_port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path = self.home_path / "dev.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            tnca(self.home_path, "dev", "--workers", str(self.workers), "--ct-port",
                 str(free_port_pair(avoid=self.server_port))),
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if "tnca development stack is running" in self.log_path.read_text():
                return
            if self.process.poll() is not None:
                raise SystemExit(f"tnca dev exited ({self.process.returncode}):\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise SystemExit("tnca dev was not running after 90 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
        if hasattr(self, "log"):
            self.log.close()


DEV_ROLE = "tnca dev (2 CT logs, renewal worker, supervisor)"


def roles(root: int, pids: list[int]) -> dict[int, str]:
    """Name each process of the server tree by what it runs."""
    named = {}
    for pid in pids:
        words = proctree.command_line(pid).split()
        if pid == root:
            named[pid] = DEV_ROLE
        elif "serve" in words:
            named[pid] = "ACME workers"
        else:
            named[pid] = "other"
    # gunicorn's master is the serve process whose parent is tnca dev; its forks are the workers.
    for pid in pids:
        if named[pid] == "ACME workers" and proctree.parent(pid) == root:
            named[pid] = "ACME master"
    return named


def postgres_backends(url: str) -> list[int]:
    """The PostgreSQL server processes serving the benchmark's database (their CPU is counted apart)."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND pid <> pg_backend_pid()").fetchall()
    return [row[0] for row in rows]


def prepare_clients(home: Path, delegation_id: str, clients: int, issuances: int, directory_url: str,
                    work: Path, *, concurrent: bool) -> list[Path]:
    """Per client process: its accounts' keys and one single-use token for each, minted by one
    ``tnca token mint --fingerprints-from`` per client (client c orders number FIRST_NUMBER + c).
    The mints run side by side only when ``concurrent`` (PostgreSQL): on SQLite a transaction
    that read before it writes cannot wait for another writer's commit, it fails at once."""
    shares = [issuances // clients + (1 if c < issuances % clients else 0) for c in range(clients)]
    minting_runs = []
    specs = []
    for c, share in enumerate(shares):
        keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(share)]
        listing = work / f"client{c}.fingerprints"
        listing.write_text("".join(fingerprints.account_fingerprint(jose.JWKEC(key=k.public_key())) + "\n"
                                   for k in keys))
        number = str(FIRST_NUMBER + c)
        run = subprocess.Popen(
            tnca(home, "token", "mint", "--delegation", delegation_id, "--fingerprints-from", str(listing),
                 "--tn", number, "--ttl", "1h", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # communicate(), never wait(): a run's tokens outgrow the pipe's buffer, and a child
        # blocked writing to a full pipe would never exit.
        minting_runs.append((run, None if concurrent else run.communicate()))
        specs.append((keys, TNScope.parse(tns=[number]).to_identifier_value()))
    paths = []
    for c, ((run, output), (keys, identifier)) in enumerate(zip(minting_runs, specs)):
        out, err = output or run.communicate()
        if run.returncode != 0:
            raise SystemExit(f"tnca token mint failed: {err}")
        tokens = [json.loads(line)["token"] for line in out.splitlines()]
        assert len(tokens) == len(keys)
        jobs = [{"key": k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode(),
                 "token": token, "identifier": identifier} for k, token in zip(keys, tokens)]
        path = work / f"client{c}.json"
        path.write_text(json.dumps({"directory": directory_url, "jobs": jobs}))
        paths.append(path)
    return paths


def summarize_latencies(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {"p50": round(statistics.median(values) * 1000, 1), "p95": round(percentile(values, 0.95) * 1000, 1),
            "p99": round(percentile(values, 0.99) * 1000, 1), "max": round(max(values) * 1000, 1)}


def capacity_run(args: argparse.Namespace) -> dict:
    from bench import crypto_baseline, sqlcount
    from bench.client import STEPS

    home_path: Path = args.home
    shutil.rmtree(home_path, ignore_errors=True)
    if args.database_url and args.reset_database:
        reset_database(args.database_url)
    port = free_port_pair()
    init = ["init", "--base-url", f"http://127.0.0.1:{port}"]
    if args.database_url:
        init += ["--database-url", args.database_url]
    run_cli(home_path, *init)
    # Every client process registers its accounts from 127.0.0.1: the run measures issuance, not
    # the per-address limits (a run of 320 would be refused at the 51st account).
    turn_off_rate_limits(home_path / POLICY_FILE)
    work = home_path / "bench"
    work.mkdir()
    stored = None
    if args.stored:
        from bench import history

        stored = history.load(Home(home_path), args.stored)
    delegation_id = json.loads(run_cli(home_path, "delegation", "create", "--delegate", "Bench Enterprise",
                                       "--range", DELEGATED_RANGE, "--max-lifetime", "24h", "--json"))["id"]
    directory_url = f"http://127.0.0.1:{port}/acme/directory"
    prepared = time.perf_counter()
    job_files = prepare_clients(home_path, delegation_id, args.clients, args.issuances, directory_url, work,
                                concurrent=bool(args.database_url))
    stack = DevStack(home_path, args.workers, port)
    clients: list[subprocess.Popen] = []
    try:
        stack.start()
        assert stack.process is not None
        root = stack.process.pid
        for path in job_files:
            clients.append(subprocess.Popen([sys.executable, "-m", "bench.client", str(path)], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True))
        for client in clients:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "ready":
                raise SystemExit("a client process failed before the window (see above)")
        preparation_s = time.perf_counter() - prepared
        load_before = proctree.load_average()
        pids = proctree.process_tree([root])
        named = roles(root, pids)
        pg_pids = postgres_backends(args.database_url) if args.database_url else []
        sampler = proctree.TreeSampler(root)
        threads_before = proctree.thread_cpu(root)
        sampler.start()
        cpu_before = proctree.cpu_by_process(pids + pg_pids)
        started = time.perf_counter()
        for client in clients:
            assert client.stdin is not None
            client.stdin.write("go\n")
            client.stdin.flush()
        outputs = []
        for client in clients:
            assert client.stdout is not None
            outputs.append(json.loads(client.stdout.readline()))
        wall = time.perf_counter() - started
        pids_after = proctree.process_tree([root])
        pg_after = postgres_backends(args.database_url) if args.database_url else []
        cpu_after = proctree.cpu_by_process(pids_after + pg_after)
        sampler.stopped.set()
        sampler.join()
        sampler.sample()  # the threads' CPU at the end of the window
        load_after = proctree.load_average()
        for pid, role in roles(root, pids_after).items():
            named.setdefault(pid, role)
        sql = sqlcount.count(home_path, delegation_id, str(FIRST_NUMBER + args.clients)) if not args.no_sql_count else None
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        stack.stop()
    crypto = crypto_baseline.measure()

    def used(pid: int) -> float:
        return cpu_after.get(pid, 0.0) - cpu_before.get(pid, 0.0)

    results = [r for output in outputs for r in output["results"]]
    errors = collections.Counter(e for output in outputs for e in output["errors"])
    issued = len(results)
    server_pids = set(pids) | set(pids_after)
    by_role: dict[str, float] = collections.defaultdict(float)
    for pid in server_pids:
        by_role[named.get(pid, "other")] += used(pid)
    server_cpu = sum(by_role.values())
    postgres_cpu = sum(used(pid) for pid in set(pg_pids) | set(pg_after))
    per_issuance_ms = server_cpu / issued * 1000 if issued else None
    by_thread = proctree.thread_roles(root, threads_before, sampler.threads, used(root))
    result = {
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_after},
        "database": (args.database_url or "sqlite").split(":")[0].split("+")[0],
        "stored": stored,
        "clients": args.clients,
        "workers": args.workers,
        "issued": issued,
        "errors": dict(errors),
        "wall_s": round(wall, 2),
        "preparation_s": round(preparation_s, 1),
        "issuances_per_s": round(issued / wall, 2),
        "server_cpu_ms_per_issuance": round(per_issuance_ms, 2) if per_issuance_ms else None,
        "server_cpu_ms_per_issuance_by_role": {role: round(seconds / issued * 1000, 2)
                                               for role, seconds in sorted(by_role.items())} if issued else {},
        "tnca_dev_cpu_ms_per_issuance_by_thread": {role: round(seconds / issued * 1000, 2)
                                                   for role, seconds in sorted(by_thread.items())} if issued else {},
        "server_cpu_utilisation": round(server_cpu / wall, 2),
        "postgres_cpu_ms_per_issuance": round(postgres_cpu / issued * 1000, 2) if (issued and pg_pids) else None,
        "client_cpu_ms_per_issuance": round(sum(o["cpu_seconds"] for o in outputs) / issued * 1000, 2) if issued else None,
        "peak_rss_mb": round(sampler.peak_rss_kib / 1024, 1),
        "peak_pss_mb": round(sampler.peak_pss_kib / 1024, 1),
        "server_processes": len(server_pids),
        "latency_ms": {"end_to_end": summarize_latencies([r["total"] for r in results]),
                       **{step: summarize_latencies([r[step] for r in results]) for step in STEPS}},
        "sql_statements_per_issuance": sql["per_issuance"] if sql else None,
        "sql_statements_per_step": sql["per_step"] if sql else None,
        "unloaded_acme_cpu_ms_per_issuance": sql["acme_cpu_ms_per_issuance"] if sql else None,
        "unloaded_acme_cpu_ms_per_step": sql["acme_cpu_ms_per_step"] if sql else None,
        "crypto_baseline": crypto,
        "ratio_to_crypto": round(per_issuance_ms / crypto["ms_per_issuance"], 1) if per_issuance_ms else None,
    }
    return result


def print_summary(result: dict) -> None:
    print(f"machine:      {result['machine']}")
    print(f"load average: {result['load_average']['before']} before, {result['load_average']['after']} after "
          "(other work on the machine inflates wall-clock figures; CPU per issuance is less affected)")
    stored = f", {result['stored']['orders']} orders stored before" if result["stored"] else ""
    print(f"setup:        {result['database']}{stored}; tnca dev --workers {result['workers']} "
          f"({result['server_processes']} processes: tnca dev with 2 CT logs and the renewal worker, gunicorn); "
          f"{result['clients']} client processes")
    errors = ", ".join(f"{kind} ×{n}" for kind, n in result["errors"].items()) or "none"
    print(f"issued:       {result['issued']} in {result['wall_s']} s = {result['issuances_per_s']}/s   errors: {errors}")
    print(f"server CPU:   {result['server_cpu_ms_per_issuance']} ms per issuance "
          f"({result['server_cpu_utilisation']} cores busy)")
    for role, ms in result["server_cpu_ms_per_issuance_by_role"].items():
        print(f"  {role:<48} {ms:>8} ms")
        if role == DEV_ROLE:
            for thread, thread_ms in result["tnca_dev_cpu_ms_per_issuance_by_thread"].items():
                print(f"    {thread:<46} {thread_ms:>8} ms")
    if result["postgres_cpu_ms_per_issuance"] is not None:
        print(f"  (PostgreSQL backends, not in the total: {result['postgres_cpu_ms_per_issuance']} ms)")
    print(f"client CPU:   {result['client_cpu_ms_per_issuance']} ms per issuance (the {result['clients']} client "
          "processes, on the same CPUs)")
    crypto = result["crypto_baseline"]
    print(f"crypto only:  {crypto['ms_per_issuance']} ms per issuance ({crypto['issuances_per_core_s']}/s per core; "
          f"{crypto['certificate_signatures_per_core_s']} certificate signatures/s) → ratio {result['ratio_to_crypto']}×")
    print(f"SQL:          {result['sql_statements_per_issuance']} statements per issuance "
          f"{result['sql_statements_per_step']}")
    if result["unloaded_acme_cpu_ms_per_issuance"] is not None:
        print(f"ACME alone:   {result['unloaded_acme_cpu_ms_per_issuance']} ms CPU per issuance, one request at a time "
              f"in-process (logs not counted) {result['unloaded_acme_cpu_ms_per_step']}")
    print(f"peak RSS:     {result['peak_rss_mb']} MB (server tree, summed: pages the gunicorn workers share with "
          "their master count once per process)")
    print(f"peak PSS:     {result['peak_pss_mb']} MB (server tree, summed: each shared page counted once in all)")
    print("latency (ms)         p50      p95      p99      max")
    for step, values in result["latency_ms"].items():
        print(f"  {step:<16} {values['p50']!s:>8} {values['p95']!s:>8} {values['p99']!s:>8} {values['max']!s:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="tnca issuance benchmark: client processes against tnca dev (see docs/performance.md)")
    parser.add_argument("--home", type=Path, default=Path("./tnca-home-bench"))
    parser.add_argument("--clients", type=int, default=8, help="client processes (default 8)")
    parser.add_argument("--issuances", type=int, default=320, help="issuances in the timed window (default 320)")
    parser.add_argument("--workers", type=int, default=2, help="tnca dev --workers (default 2)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; default SQLite in the home")
    parser.add_argument("--reset-database", action="store_true",
                        help="drop the PostgreSQL database's public schema first (it must be a bench database)")
    parser.add_argument("--stored", type=int, default=0, metavar="N",
                        help="pre-load N stored orders and certificates (bulk insert) before the run")
    parser.add_argument("--no-sql-count", action="store_true", help="skip counting SQL statements per issuance")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.clients < 1 or args.issuances < args.clients:
        parser.error("--issuances must be at least --clients")
    result = capacity_run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)


if __name__ == "__main__":
    main()
