"""Helpers of the certificate-transparency tests: a throwaway PKI made with cryptography, real
logs (``tnca ctlog serve`` subprocesses on free loopback ports, each with its own database), and
the brute-force reference of RFC 6962 §2.1's definitions.

With ``TNCA_TEST_DATABASE_URL`` naming PostgreSQL, every log gets a fresh PostgreSQL database on
that server (dropped afterwards) instead of its SQLite file.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ca.issuing.transparency import SCT, LogClient, sct_list_extension

TEST_DATABASE_URL_ENV = "TNCA_TEST_DATABASE_URL"
TNAUTHLIST_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")
TNAUTHLIST_SPC_709J = bytes.fromhex("3008a00616043730394a")  # TNAuthList { spc "709J" } (RFC 8226 §9)
READY_TIMEOUT_SECONDS = 30
READY_LINE = re.compile(r"listening on (http://\S+?)/? log_id=([0-9a-f]{64})")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


@dataclasses.dataclass
class Authority:
    """A CA certificate with its key."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_ca(self, common_name: str, *, precert_signing: bool = False) -> "Authority":
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0 if precert_signing else None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(_ski(key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if precert_signing:
            # RFC 6962 §3.1: "Extended Key Usage: Certificate Transparency, OID 1.3.6.1.4.1.11129.2.4.4".
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CERTIFICATE_TRANSPARENCY]), critical=True)
        return Authority(key, builder.sign(self.key, hashes.SHA256()))


def make_root(common_name: str = "Test CT Root") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(_ski(key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, certificate)


@dataclasses.dataclass
class PKI:
    root: Authority
    issuing: Authority


@dataclasses.dataclass
class DelegateCertificate:
    """The two halves of RFC 6962 §3.1 issuance: the precertificate and what makes the final one."""

    builder: x509.CertificateBuilder  # everything but the poison / SCT list
    precertificate: x509.Certificate
    issuer: Authority  # the CA that signs the final certificate

    @property
    def precert_der(self) -> bytes:
        return self.precertificate.public_bytes(serialization.Encoding.DER)

    def final(self, scts: list[SCT]) -> x509.Certificate:
        """The final certificate: the same TBS with the SCT list where the poison was."""
        return self.builder.add_extension(sct_list_extension(scts), critical=False).sign(self.issuer.key, hashes.SHA256())


def delegate_builder(issuer: x509.Certificate, *, dns_name: str | None = None,
                     authority_key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    """An end-entity STIR certificate's TBS (TNAuthList spc 709J); ``dns_name`` adds a SAN so a
    Web-PKI monitor such as certspotter has something to match."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"SHAKEN 709J {uuid.uuid4().hex[:8]}"))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=24))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()), critical=False)
        .add_extension(x509.UnrecognizedExtension(TNAUTHLIST_OID, TNAUTHLIST_SPC_709J), critical=False)
    )
    if dns_name:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
    return builder


def make_delegate(issuer: Authority, *, dns_name: str | None = None, poison_critical: bool = True) -> DelegateCertificate:
    """A precertificate signed directly by ``issuer`` (RFC 6962 §3.1, first option)."""
    builder = delegate_builder(issuer.certificate, dns_name=dns_name, authority_key=issuer.key)
    precertificate = builder.add_extension(
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.3"), b"\x05\x00")
        if not poison_critical else x509.PrecertPoison(),
        critical=poison_critical,
    ).sign(issuer.key, hashes.SHA256())
    return DelegateCertificate(builder=builder, precertificate=precertificate, issuer=issuer)


# -- running logs ----------------------------------------------------------------------------------

@dataclasses.dataclass
class RunningLog:
    name: str
    url: str
    log_id_hex: str
    home: Path
    process: subprocess.Popen
    database_url: str | None

    @property
    def directory(self) -> Path:
        return self.home / "ctlog" / self.name

    @property
    def public_key_file(self) -> Path:
        return self.directory / "key.pem"

    def client(self) -> LogClient:
        return LogClient.from_pem_file(self.name, self.url, self.public_key_file)

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(f"{self.url}/ct/v1/{path}", params=params, timeout=10)


def postgres_database(name: str) -> tuple[str, Callable[[], None]] | None:
    """A fresh PostgreSQL database next to the test database, and how to drop it."""
    url = os.environ.get(TEST_DATABASE_URL_ENV, "")
    if not url.startswith("postgresql"):
        return None
    base = make_url(url)
    database = f"{base.database}_ctlog_{name}_{uuid.uuid4().hex[:8]}".lower()
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=database).render_as_string(hide_password=False), drop


def start_log(home: Path, name: str, roots_file: Path, *, merge_delay: float = 0.3,
              database_url: str | None = None) -> RunningLog:
    """``tnca --home HOME ctlog serve --name NAME --port 0`` as a subprocess, once it is ready."""
    command = [sys.executable, "-c", "from tnca.cli import main; main()", "--home", str(home), "ctlog", "serve",
               "--name", name, "--port", "0", "--roots", str(roots_file), "--merge-delay", str(merge_delay)]
    if database_url:
        command += ["--database-url", database_url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT_SECONDS)
    line = process.stdout.readline() if ready else ""
    match = READY_LINE.search(line)
    if not match:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"log {name} did not start: {line!r} {err[-2000:]}")
    return RunningLog(name=name, url=match.group(1), log_id_hex=match.group(2), home=home, process=process,
                      database_url=database_url)


def stop_log(running: RunningLog) -> None:
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait(timeout=5)
    for stream in (running.process.stdout, running.process.stderr):
        if stream:
            stream.close()




# -- the reference: RFC 6962 §2.1, §2.1.1, §2.1.2 transcribed literally over the leaf data ---------

def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()  # "MTH({}) = SHA-256()"
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()  # "MTH({d(0)}) = SHA-256(0x00 || d(0))"
    k = ref_k(n)
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:  # "the largest power of two smaller than n"
        k *= 2
    return k


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []  # "PATH(0, {d(0)}) = {}"
    k = ref_k(n)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]  # "PATH(m, D[0:k]) : MTH(D[k:n])"
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]  # "PATH(m - k, D[k:n]) : MTH(D[0:k])"


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]  # "SUBPROOF(m, D[m], true) = {}", "... false) = {MTH(D[m])}"
    k = ref_k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)  # "PROOF(m, D[n]) = SUBPROOF(m, D[n], true)"


# -- checks of what a running log serves ---------------------------------------------------------

MERGE_WAIT_SECONDS = 10


def wait_for_tree_size(log, size: int) -> dict:
    """Poll get-sth until the tree has ``size`` entries (bounded: the merge delay is 0.3 s)."""
    deadline = time.monotonic() + MERGE_WAIT_SECONDS
    while time.monotonic() < deadline:
        sth = log.get("get-sth").json()
        if sth["tree_size"] >= size:
            return sth
        time.sleep(0.1)
    raise AssertionError(f"log {log.name} did not reach tree size {size} within {MERGE_WAIT_SECONDS} s")


def verify_sth(public_key: ec.EllipticCurvePublicKey, sth: dict) -> None:
    """RFC 6962 §3.5 TreeHeadSignature over the JSON fields of §4.3."""
    root = base64.b64decode(sth["sha256_root_hash"])
    signature = base64.b64decode(sth["tree_head_signature"])
    assert signature[:2] == b"\x04\x03"  # sha256, ecdsa
    assert int.from_bytes(signature[2:4], "big") == len(signature) - 4
    signed = struct.pack(">BBQQ", 0, 1, sth["timestamp"], sth["tree_size"]) + root
    public_key.verify(signature[4:], signed, ec.ECDSA(hashes.SHA256()))


def log_key(log) -> ec.EllipticCurvePublicKey:
    return serialization.load_pem_public_key(log.public_key_file.read_bytes())


# -- a log answering bad SCTs ---------------------------------------------------------------------

class TamperingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards add-pre-chain to ``target`` and hands back its answer changed by ``mutate``."""

    target = ""
    mutate = staticmethod(lambda body: body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        request = self.rfile.read(int(self.headers["Content-Length"]))
        answer = requests.post(self.target + self.path, data=request, headers={"Content-Type": "application/json"},
                               timeout=10)
        changed = type(self).mutate(answer.json())
        payload = changed.encode() if isinstance(changed, str) else json.dumps(changed).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def tampering_proxy():
    """``start(target_url, mutate)`` → the URL of a real HTTP proxy to that log that tampers with its SCTs."""
    servers = []

    def start(target: str, mutate) -> str:
        handler = type("Proxy", (TamperingProxy,), {"target": target, "mutate": staticmethod(mutate)})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
