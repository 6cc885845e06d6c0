"""Issuance benchmark: real ACME clients over HTTP against a real server, logs and database.

    make bench                                   # defaults below, SQLite, two CT logs
    python -m bench.issuance --clients 8 --issuances 200 --workers 4
    python -m bench.issuance --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

What runs: ``tnca init`` into a fresh home; two RFC 6962 logs (``tnca ctlog serve``) with the
policy requiring an SCT from each (skip with ``--no-ct``); ``tnca serve`` under gunicorn. One
delegation covers the numbers; each issuance has its own account key and authority token (minted
beforehand, as a carrier would). ``--clients`` threads each run certbot's ``acme`` client
(tnca.acme_client) through the whole flow: newAccount, newOrder, tkauth-01, finalize (the server
issues synchronously: precertificate, both logs, final certificate), certificate download.

Reported: per-issuance latency (newOrder to downloaded chain) p50/p95/p99/max, and throughput
(issued certificates per second of wall time). Account creation is outside the timed window.
Nothing here asserts on time: the figures go into docs/performance.md with the machine noted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
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
    delegate, and measure issuance, not the limits (policies/default.toml)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description="tnca issuance benchmark (real ACME clients over HTTP)")
    parser.add_argument("--home", type=Path, default=Path("./tnca-home-bench"))
    parser.add_argument("--clients", type=int, default=4, help="concurrent ACME clients")
    parser.add_argument("--issuances", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the home")
    parser.add_argument("--no-ct", action="store_true", help="issue without CT logs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with Stack(args.home, workers=args.workers, ct=not args.no_ct, database_url=args.database_url) as stack:
        jobs = prepare(stack, args.issuances)
        latencies, wall = run(stack, jobs, args.clients)
    result = {
        "machine": machine(),
        "database": (args.database_url or "sqlite").split(":")[0],
        "ct_logs": 0 if args.no_ct else 2,
        "clients": args.clients,
        "workers": args.workers,
        "issuances": len(latencies),
        "throughput_per_s": round(len(latencies) / wall, 2),
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(percentile(latencies, 0.95) * 1000, 1),
            "p99": round(percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine:    {result['machine']}")
    print(f"setup:      {result['database']}, {result['ct_logs']} CT logs, {args.workers} gunicorn workers, "
          f"{args.clients} concurrent clients")
    print(f"issued:     {result['issuances']} certificates in {wall:.1f}s = {result['throughput_per_s']}/s")
    lat = result["latency_ms"]
    print(f"latency:    p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
          "(newOrder → chain downloaded)")


if __name__ == "__main__":
    main()
