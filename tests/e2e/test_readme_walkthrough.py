"""The README's "Issue a certificate" walk-through, run verbatim against a real `tnca dev` stack.

The shell block is read from README.md, so the README cannot drift from what works: only the
directory URL is rewritten to the port this test's server listens on.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from cryptography import x509

from ca.tnauthlist import TNScope
from tests.e2e.devhome import require_tool
from tests.protocol.support import free_port, free_port_pair

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def walkthrough_block() -> str:
    text = README.read_text()
    section = text.split("## Issue a certificate", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README has no shell block under 'Issue a certificate'"
    return match.group(1)


def wait_for(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "tnca dev exited early"
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or listening but still starting (a loaded machine: CI)
        time.sleep(0.2)
    raise AssertionError(f"{url} not up after {timeout}s")


def test_readme_walkthrough_issues_a_verifiable_certificate(tmp_path, session_factory, database_url):
    require_tool("openssl")
    port = free_port()
    ct_port = free_port_pair(avoid=port)
    # The walk-through runs from a checkout: give it one whose outputs land in tmp_path.
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {**os.environ, "TNCA_DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    tnca = [sys.executable, "-m", "tnca", "--home", str(tmp_path / "tnca-home")]
    subprocess.run([*tnca, "init", "--base-url", f"http://127.0.0.1:{port}"], check=True, env=env,
                   capture_output=True, cwd=tmp_path)
    dev = subprocess.Popen([*tnca, "dev", "--ct-port", str(ct_port), "--workers", "1"], env=env, cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/acme/directory", dev)
        script = walkthrough_block().replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=30)

    assert "chain.pem: OK" in result.stdout
    leaf = x509.load_pem_x509_certificates((tmp_path / "chain.pem").read_bytes())[0]
    assert TNScope.from_certificate(leaf) == TNScope.parse(tns=["12025550123"])
    # Two SCTs, one from each dev log, embedded (the dev stack requires both).
    scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert len(list(scts)) == 2
