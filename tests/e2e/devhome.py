"""A development home made by the real ``tnca init``, and helpers for end-to-end tests.

Import as ``from tests.e2e.devhome import DevHome, …`` (not ``from conftest import``: several
directories have a conftest.py and that name resolves to whichever was imported last). The
``dev_home`` fixture itself is in tests/e2e/conftest.py.

``dev_home`` runs ``tnca --home <tmp> init`` against the test database (the ``database_url``
fixture, passed as ``TNCA_DATABASE_URL`` exactly as an operator would) over empty tables, and
hands back a :class:`DevHome` with the paths of the dev PKI and helpers to run more ``tnca``
commands and to make CSRs. Other layers (ACME protocol tests, the dev stack) reuse it.

Commands run in-process through click's ``CliRunner`` (fast, and exceptions surface with their
traceback); ``DevHome.run_subprocess`` runs the installed ``tnca`` console script when a test is
about what a person sees in a terminal (exit status, stderr lines).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import sessionmaker

from ca.home import Home
from tests.helpers import free_port, row_counts
from tnca.cli import cli

TNCA_SCRIPT = Path(sys.executable).with_name("tnca")


@dataclass
class CSRFiles:
    key: ec.EllipticCurvePrivateKey
    key_path: Path  # PEM, SEC1 "EC PRIVATE KEY" (what openssl and secsipidx read)
    csr_path: Path  # PEM PKCS#10


@dataclass
class DevHome:
    path: Path
    database_url: str
    work: Path  # scratch directory for CSRs and outputs
    home: Home = field(init=False)

    def __post_init__(self) -> None:
        self.home = Home(self.path)

    @property
    def root_pem(self) -> Path:
        return self.path / "certs" / "root.pem"

    @property
    def issuing_pem(self) -> Path:
        return self.path / "certs" / "issuing.pem"

    @property
    def token_authority_pem(self) -> Path:
        return self.path / "certs" / "token-authority.pem"

    @property
    def sessionmaker(self) -> sessionmaker:
        return self.home.sessionmaker

    def env(self) -> dict[str, str]:
        return {"TNCA_DATABASE_URL": self.database_url, "TNCA_HOME": str(self.path)}

    def run(self, *args: str) -> Result:
        """``tnca --home HOME ARGS…`` in-process; stdout and stderr are kept apart."""
        return CliRunner().invoke(cli, ["--home", str(self.path), *args], env=self.env(), catch_exceptions=False)

    def run_subprocess(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The installed ``tnca`` console script, as a person runs it."""
        return subprocess.run(
            [str(TNCA_SCRIPT), "--home", str(self.path), *args],
            capture_output=True, text=True, env={**os.environ, **self.env()}, timeout=120,
        )

    def make_csr(self, name: str = "ee", *, subject: str = "",
                 key: ec.EllipticCurvePrivateKey | None = None) -> CSRFiles:
        key = key or ec.generate_private_key(ec.SECP256R1())
        key_path = self.work / f"{name}.key"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name.from_rfc4514_string(subject))
               .sign(key, hashes.SHA256()))
        csr_path = self.work / f"{name}.csr"
        csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        return CSRFiles(key, key_path, csr_path)

    def issue(self, *args: str, name: str = "ee") -> tuple[CSRFiles, Path]:
        """``tnca cert issue`` for a fresh P-256 key; returns the key files and the chain file."""
        files = self.make_csr(name)
        result = self.run("cert", "issue", "--csr", str(files.csr_path), *args)
        assert result.exit_code == 0, result.stderr
        chain = self.work / f"{name}-chain.pem"
        chain.write_text(result.stdout)
        return files, chain

    def row_counts(self) -> dict[str, int]:
        """Row count of every table (negative tests assert it is unchanged)."""
        with self.sessionmaker() as session:
            return row_counts(session)

    def close(self) -> None:
        self.home.close()


def split_pem_chain(path: Path, into: Path) -> list[Path]:
    """One file per certificate of a PEM chain (outside tools take one certificate per file)."""
    files = []
    for index, certificate in enumerate(x509.load_pem_x509_certificates(path.read_bytes())):
        target = into / f"{path.stem}-{index}.pem"
        target.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        files.append(target)
    return files


def require_tool(name: str) -> str:
    """The path of an outside tool; fails (not skips) when it is missing: make test installs it."""
    path = shutil.which(name) or (str(Path(sys.executable).with_name(name)) if Path(sys.executable).with_name(name).exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/system-packages.sh / make setup")
    return path


def run_tool(args: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kwargs)


_BANNER_END = re.compile(r"^Walk-through:")


@contextlib.contextmanager
def dev_stack_process(command: Sequence[str], *, env: dict[str, str],
                      cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``tnca … dev …`` in its own process group until its banner is printed; yield the
    process and the banner, then stop the whole stack (SIGTERM to the group) when the block ends,
    unless the block already saw it exit."""
    dev = subprocess.Popen(list(command), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    try:
        lines: list[str] = []
        while not lines or not _BANNER_END.search(lines[-1]):
            line = dev.stdout.readline()
            assert line, "tnca dev exited early:\n" + "".join(lines)
            lines.append(line)
        yield dev, "".join(lines)
    finally:
        if dev.returncode is None:
            os.killpg(dev.pid, signal.SIGTERM)
            dev.communicate(timeout=60)


@contextlib.contextmanager
def running_dev_stack(command: Sequence[str], *, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """:func:`dev_stack_process`, for a caller that needs only the banner."""
    with dev_stack_process(command, env=env, cwd=cwd) as (_dev, banner):
        yield banner


# secsipidx -cert-verify bits (secsipidx README, "Certificate Verification"): 1 time validity,
# 4 custom root CAs (-ca-file), 8 custom intermediate CAs (-ca-inter).
SECSIPIDX_VERIFY_TIME_ROOT_INTERMEDIATE = 1 | 4 | 8


@contextlib.contextmanager
def secsipidx_service(root_pem: Path, issuing_pem: Path) -> Iterator[Any]:
    """A secsipidx verification service trusting ``root_pem``; yields check(identity) -> Response."""
    port = free_port()
    process = subprocess.Popen(
        [require_tool("secsipidx"), "-http-srv", f"127.0.0.1:{port}", "-expire", "3600", "-timeout", "5",
         "-cert-verify", str(SECSIPIDX_VERIFY_TIME_ROOT_INTERMEDIATE), "-ca-file", str(root_pem),
         "-ca-inter", str(issuing_pem)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("secsipidx did not start listening")
        yield lambda identity: requests.post(f"http://127.0.0.1:{port}/v1/check", data=identity, timeout=15)
    finally:
        process.terminate()
        process.wait(timeout=10)
