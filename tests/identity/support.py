"""Helpers shared by the identity tests: PASSporTs signed and checked by secsipidx, an
independent STIR implementation (its HTTP verification service fetches the x5u chain and
builds it to the given root)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from tests.e2e.devhome import require_tool, run_tool
from tests.helpers import free_port

# secsipidx -cert-verify bits: 1 time validity, 4 custom root CAs, 8 custom intermediates.
SECSIPIDX_VERIFY_TIME_ROOT_INTERMEDIATE = 1 | 4 | 8


def sign_passport(key: Any, workdir: Path, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """The compact JWS secsipidx makes for ``header`` and ``payload`` with ``key`` (the
    certificate's key, written as SEC1 PEM as secsipidx reads it)."""
    key_path = workdir / "passport.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    result = run_tool([require_tool("secsipidx"), "-sign", "-header", json.dumps(header),
                       "-payload", json.dumps(payload), "-k", str(key_path)])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@contextmanager
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


def identity_header(jws: str, x5u: str, ppt: str = "shaken") -> str:
    """RFC 8224 §4.1 Identity header value."""
    return f"{jws};info=<{x5u}>;alg=ES256;ppt={ppt}"
