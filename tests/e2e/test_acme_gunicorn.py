"""``tnca serve`` (gunicorn, two worker processes) driven by certbot's client over HTTP, and a
PASSporT signed with the ACME-issued key verified by secsipidx with x5u chain checking.

Two workers share nothing but the database: a nonce issued by one is redeemed by the other, and
a token's ``jti`` is single use across both.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from acme import messages
from cryptography.hazmat.primitives import serialization

from ca.config import POLICY_FILE
from ca.policy import DEFAULT_POLICY_PATH
from tests.e2e.devhome import SECSIPIDX_VERIFY_TIME_ROOT_INTERMEDIATE
from protocol.support import TN_SCOPE, LiveServer, Subscriber, authority, free_port, home, make_csr, port  # noqa: F401
from tnca.commands.dev import configure_dev_logs

pytestmark = pytest.mark.e2e

TNCA = Path(sys.executable).with_name("tnca")


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {process.stdout.read() if process.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def gunicorn_server(home, port) -> Iterator[LiveServer]:
    process = subprocess.Popen(
        [str(TNCA), "--home", str(home.path), "serve", "--port", str(port), "--workers", "2", "--threads", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )
    try:
        wait_for_port(port, process)
        yield LiveServer(home=home, app=None, base_url=home.base_url)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def secsipidx(home) -> Iterator[str]:
    """A secsipidx verification service trusting the home's root and issuing CA; yields its URL."""
    tool = shutil.which("secsipidx")
    if tool is None:
        pytest.fail("secsipidx is not installed: run scripts/system-packages.sh")
    service_port = free_port()
    process = subprocess.Popen(
        [tool, "-http-srv", f"127.0.0.1:{service_port}", "-expire", "3600", "-timeout", "5",
         "-cert-verify", str(SECSIPIDX_VERIFY_TIME_ROOT_INTERMEDIATE),
         "-ca-file", str(home.path / "certs" / "root.pem"), "-ca-inter", str(home.path / "certs" / "issuing.pem")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for_port(service_port, process)
        yield f"http://127.0.0.1:{service_port}/v1/check"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_issuance_through_tnca_serve_and_a_passport_verified_by_secsipidx(gunicorn_server, authority, secsipidx, tmp_path):
    subscriber = Subscriber(gunicorn_server)
    subscriber.register(email="noc@enterprise.example")
    delegation_id = authority.delegate()
    # Several orders so requests land on both workers; every nonce is redeemed where it lands.
    for _ in range(3):
        orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    token = authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE)
    assert subscriber.answer(orderr, token).body.status == messages.STATUS_VALID
    csr_pem, key = make_csr()
    finished = subscriber.finalize(orderr, csr_pem)
    assert finished.body.status == messages.STATUS_VALID

    # RFC 9448 §7: the valid order names a plain-GET URL of the chain, for PASSporT x5u; it
    # serves what the ACME download gave (RFC 9060 §7: end-entity first).
    x5u = subscriber.acme._post_as_get(orderr.uri).json()["x5u"]
    published = requests.get(x5u, timeout=10)
    assert published.headers["Content-Type"] == "application/pem-certificate-chain"
    assert published.text == finished.fullchain_pem
    key_path = tmp_path / "delegate.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    signed = subprocess.run(
        [shutil.which("secsipidx"), "-sign-full", "-orig-tn", "12025550100", "-dest-tn", "13035550100", "-attest", "A",
         "-x5u", x5u, "-k", str(key_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert signed.returncode == 0, signed.stderr
    identity = signed.stdout.strip()
    response = requests.post(secsipidx, data=identity, timeout=15)
    assert (response.status_code, response.text.strip()) == (200, "OK")



def test_serve_without_an_initialised_home_exits_1_with_one_line(tmp_path):
    result = subprocess.run([str(TNCA), "--home", str(tmp_path / "nowhere"), "serve", "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'nowhere'} is not an authority home; run 'tnca --home {tmp_path / 'nowhere'} init' first"
    ]


def test_serve_bad_port_is_a_usage_error(tmp_path):
    result = subprocess.run([str(TNCA), "--home", str(tmp_path), "serve", "--port", "70000"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--port" in result.stderr


def _policy_naming_a_missing_log_key(home) -> str:
    """Point the home's policy at one CT log whose public key file does not exist."""
    missing = home.path / "ctlog" / "gone" / "key.pem"
    assert configure_dev_logs(home.path / POLICY_FILE, [("gone", "http://127.0.0.1:9", missing)])
    return f"Error: log gone: cannot read its public key {missing}: No such file or directory"


@pytest.mark.parametrize("command", [("serve", "--port", "{port}"), ("worker", "--once")], ids=["serve", "worker"])
def test_serve_and_worker_refuse_to_start_when_a_ct_log_key_is_unreadable(home, command):
    """A configuration error is the operator's to fix before anything listens: found at startup,
    not as a serverInternal problem at every finalize."""
    expected = _policy_naming_a_missing_log_key(home)
    command = [part.format(port=free_port()) for part in command]
    result = subprocess.run([str(TNCA), "--home", str(home.path), *command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [expected]


def test_dev_log_keys_in_the_policy_resolve_whatever_the_home_was_called(tmp_path, monkeypatch):
    """configure_dev_logs writes each key relative to the home, so ``--home ./relative`` (as in
    ``make bench`` and ``make run``) and a moved home both find them."""
    monkeypatch.chdir(tmp_path)
    relative_home = Path("relative-home")
    (relative_home / "ctlog" / "dev1").mkdir(parents=True)
    policy = relative_home / POLICY_FILE
    shutil.copy(DEFAULT_POLICY_PATH, policy)
    assert configure_dev_logs(policy, [("dev1", "http://127.0.0.1:9", relative_home / "ctlog" / "dev1" / "key.pem")])
    assert 'public_key = "ctlog/dev1/key.pem"' in policy.read_text()
