"""Helpers for the revocation, CRL and renewal-information tests (import as
``from tests.lifecycle.lifecycle_support import …``).

- :func:`issue` runs one real ACME issuance with certbot's client and keeps the key.
- :class:`FileServer` publishes a directory over loopback HTTP (PASSporT ``x5u`` chains for
  secsipidx, independent of the authority's own ``/cert-repo``).
- :class:`Secsipidx` signs PASSporTs with ``secsipidx -sign-full`` and checks them with a running
  ``secsipidx`` verification service, with or without its CRL check.
- :func:`openssl` runs the real ``openssl`` binary.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca.numbers.tnauthlist import TNScope
from protocol.support import Authority, Subscriber, make_csr
from tests.e2e.devhome import require_tool
from tests.helpers import free_port


@dataclasses.dataclass
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain_pem: str  # EE first, then the issuing CA (what the ACME server hands out)
    order_url: str

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    def write(self, directory: Path, name: str) -> tuple[Path, Path, Path]:
        """(key file, leaf file, chain file) in ``directory``; the key as SEC1 PEM, as secsipidx reads it."""
        key_path = directory / f"{name}.key"
        key_path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                                    serialization.NoEncryption()))
        leaf_path = directory / f"{name}.pem"
        leaf_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        chain_path = directory / f"{name}-chain.pem"
        chain_path.write_text(self.chain_pem)
        return key_path, leaf_path, chain_path


def issue(subscriber: Subscriber, authority: Authority, delegation_id: str, scope: TNScope) -> Issued:
    """Order → tkauth-01 with a freshly minted token → finalize → download, over real HTTP."""
    token = authority.token(delegation_id, subscriber.public_jwk, scope)
    csr_pem, key = make_csr()
    orderr = subscriber.new_order(scope.to_identifier_value())
    subscriber.answer(orderr, token)
    finished = subscriber.finalize(orderr, csr_pem)
    leaf = x509.load_pem_x509_certificates(finished.fullchain_pem.encode())[0]
    return Issued(certificate=leaf, key=key, chain_pem=finished.fullchain_pem, order_url=finished.uri)


def crl_url(certificate: x509.Certificate) -> str:
    """The one CRL distribution point URL a certificate carries (RFC 5280 §4.2.1.13)."""
    (point,) = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    (name,) = point.full_name
    return name.value


def token_jti(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("openssl"), *args], capture_output=True, text=True, timeout=60)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".pem": "application/pem-certificate-chain"}

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


class FileServer:
    """``directory`` over HTTP on a loopback port until :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# secsipidx -cert-verify bits (secsipidx README, "Certificate Verification"): 1 time validity,
# 4 custom root CAs (-ca-file), 8 custom intermediate CAs (-ca-inter), 16 the CRL (-crl-file).
VERIFY_TIME = 1
VERIFY_ROOTS = 4
VERIFY_INTERMEDIATES = 8
VERIFY_CRL = 16


class Secsipidx:
    """Signs PASSporTs and runs verification services; :meth:`close` stops every service."""

    def __init__(self) -> None:
        self.tool = require_tool("secsipidx")
        self.processes: list[subprocess.Popen[str]] = []

    def sign(self, key_path: Path, x5u: str, orig: str, dest: str) -> str:
        """An Identity header value (RFC 8224) for a SHAKEN PASSporT (RFC 8588) signed with the key."""
        result = subprocess.run([self.tool, "-sign-full", "-orig-tn", orig, "-dest-tn", dest, "-attest", "A",
                                 "-x5u", x5u, "-k", str(key_path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    def verifier(self, *, mode: int, ca_file: Path, ca_inter: Path, crl_file: Path | None = None) -> str:
        """Start ``secsipidx -http-srv`` with these trust settings; returns its /v1/check URL."""
        port = free_port()
        args = [self.tool, "-http-srv", f"127.0.0.1:{port}", "-expire", "3600", "-timeout", "5",
                "-cert-verify", str(mode), "-ca-file", str(ca_file), "-ca-inter", str(ca_inter)]
        if crl_file is not None:
            args += ["-crl-file", str(crl_file)]
        self.processes.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return f"http://127.0.0.1:{port}/v1/check"
            except OSError:
                time.sleep(0.05)
        raise AssertionError("secsipidx did not start listening")

    @staticmethod
    def check(url: str, identity: str) -> requests.Response:
        return requests.post(url, data=identity, timeout=15)

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=10)


def pem_files(directory: Path, name: str, certificates: Sequence[x509.Certificate]) -> Path:
    path = directory / name
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path
