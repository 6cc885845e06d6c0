"""``tnca serve`` (gunicorn, two worker processes) seen as an operator's tools see it:
``/metrics`` scraped over HTTP moves with what the server did, whichever worker answers the
scrape (prometheus_client's multiprocess mode, the directory ``tnca serve`` made); ``/readyz``
follows the CT logs the policy needs; every request is one JSON log line whose request id is the
``X-Request-Id`` header and the problem document's ``requestId``.

The policy names two logs and requires one SCT: ``good`` (a running RFC 6962 log, ``tnca ctlog
serve``) and ``dead`` (nothing listens at its URL), so one issuance moves the CT latency of one
log and the failures of the other.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from acme import messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.support import TN_SCOPE, LiveServer, Subscriber, authority, free_port, home, make_csr, port  # noqa: F401
from tests.ct.ct_helpers import start_log, stop_log
from tests.e2e.test_acme_gunicorn import TNCA, wait_for_port

pytestmark = pytest.mark.e2e

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(base_url: str) -> dict[str, float]:
    """``/metrics`` as {'name{label="v",…}': value}, labels sorted."""
    response = requests.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            name, labels, value = match.groups()
            pairs = sorted(re.findall(r'(\w+)="([^"]*)"', labels or ""))
            key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else "")
            samples[key] = float(value)
    return samples


def moved(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def served(home, port, tmp_path) -> Iterator[tuple[LiveServer, dict, Path, Path]]:
    """The home with two logs in its policy, served by ``tnca serve --workers 2``; yields the
    server, the running good log, the server's log file and its TMPDIR."""
    good = start_log(home.path, "good", home.path / "certs" / "root.pem")
    dead_key = home.path / "dead-log.pem"
    dead_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    policy = home.policy_path.read_text()
    logs = (f'{{ name = "good", url = "{good.url}", public_key = "{good.public_key_file}" }}, '
            f'{{ name = "dead", url = "http://127.0.0.1:{free_port()}", public_key = "{dead_key}" }}')
    policy = policy.replace("\nlogs = []\n", f"\nlogs = [{logs}]\n").replace("\nrequired_scts = 0\n", "\nrequired_scts = 1\n")
    home.policy_path.write_text(policy.replace('\nsubmission_deadline = "10s"\n', '\nsubmission_deadline = "2s"\n'))
    with home.config_path.open("a") as config:
        config.write("\n[health]\nreadiness_deadline_seconds = 1.5\n")
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as output:
        process = subprocess.Popen(
            [str(TNCA), "--home", str(home.path), "serve", "--port", str(port), "--workers", "2", "--threads", "2"],
            stdout=output, stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": str(server_tmp)},
        )
    try:
        wait_for_port(port, process)
        yield LiveServer(home=home, app=None, base_url=home.base_url), good, log_file, server_tmp
    finally:
        process.terminate()
        process.wait(timeout=20)
        stop_log(good)
    # The metrics directory of the server is gone with it.
    assert not list(server_tmp.glob("tnca-metrics-*"))


def wait_ready(base_url: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{base_url}/readyz", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response.json() | {"http_status": response.status_code}
        time.sleep(0.2)


def test_metrics_move_under_two_workers_and_every_request_is_a_json_line(served, authority):
    server, good, log_file, _tmp = served
    base = server.base_url
    ready = wait_ready(base)
    assert ready["http_status"] == 200 and ready["status"] == "ready", ready
    assert ready["checks"]["ct_logs"] == {"ok": True, "detail": "1 of 2 log(s) answered get-sth (good); 1 required"}
    assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
    before = scrape(base)

    subscriber = Subscriber(server)
    subscriber.register(terms_of_service_agreed=True)
    delegation_id = authority.delegate()
    # A token bound to another account key: tkauth-01 refuses it (RFC 9448 §5.4 fingerprint).
    refused = subscriber.new_order(TN_SCOPE.to_identifier_value())
    other_key = Subscriber(server).public_jwk
    answered = subscriber.answer(refused, authority.token(delegation_id, other_key, TN_SCOPE))
    assert answered.body.status == messages.STATUS_INVALID
    # One issuance; the good log gives its SCT, the dead one cannot be reached.
    orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    assert subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE)).body.status \
        == messages.STATUS_VALID
    csr_pem, _key = make_csr()
    assert subscriber.finalize(orderr, csr_pem).body.status == messages.STATUS_VALID

    # Every scrape, whichever of the two workers answers it, adds up both workers' values.
    for _ in range(4):
        after = scrape(base)
        assert moved(before, after, 'tnca_issuance_duration_seconds_count{outcome="issued"}') == 1
        assert moved(before, after, 'tnca_ct_submission_duration_seconds_count{log="good"}') == 1
        assert moved(before, after, 'tnca_ct_submission_failures_total{log="dead",reason="unreachable"}') == 1
        assert moved(before, after, 'tnca_token_validation_failures_total{reason="atc.fingerprint"}') == 1
        assert moved(before, after, 'tnca_http_request_duration_seconds_count'
                                    '{method="POST",route="/acme/order/<order_id>/finalize",status="200"}') == 1
        assert after["tnca_certificates_valid"] == 1

    # A worker that dies takes nothing with it: gunicorn starts another, the counts stay.
    workers = re.findall(r"Booting worker with pid: (\d+)", log_file.read_text())
    assert len(workers) == 2
    os.kill(int(workers[0]), signal.SIGKILL)
    for _ in range(100):  # gunicorn notices and boots a third worker
        if len(re.findall(r"Booting worker with pid", log_file.read_text())) == 3:
            break
        time.sleep(0.1)
    assert moved(before, scrape(base), 'tnca_issuance_duration_seconds_count{outcome="issued"}') == 1

    # A request id from a proxy comes back in the header, the problem document and the log.
    response = requests.post(f"{base}/acme/new-order", data=b"{}", headers={"X-Request-Id": "support-ticket-4711"},
                             timeout=10)
    assert response.headers["X-Request-Id"] == "support-ticket-4711"
    assert response.json()["requestId"] == "support-ticket-4711"

    # With the good log down, no log can give the one SCT required: not ready, within the deadline.
    stop_log(good)
    started = time.monotonic()
    response = requests.get(f"{base}/readyz", timeout=10)
    assert response.status_code == 503 and time.monotonic() - started < 1.5 + 1.0
    assert response.json()["checks"]["ct_logs"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200

    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if line["logger"] == "tnca.request"]
    finalize = [line for line in requests_logged if line["path"].endswith("/finalize")]
    assert len(finalize) == 1
    assert finalize[0]["status"] == 200 and finalize[0]["method"] == "POST" and finalize[0]["duration_ms"] > 0
    assert finalize[0]["account"] and finalize[0]["order"] == orderr.uri.rsplit("/", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{24}", finalize[0]["request_id"])
    assert {line["request_id"] for line in requests_logged if line["path"] == "/acme/new-order"} >= {"support-ticket-4711"}
    # The line a problem writes during that request carries its id too.
    assert any(line["logger"] == "tnca.acme" and line["request_id"] == "support-ticket-4711" for line in lines)
    assert len({line["request_id"] for line in requests_logged}) == len(requests_logged)


def test_serve_says_transparency_is_off_when_the_policy_requires_no_scts(home, port, tmp_path):
    """What ``tnca init`` writes requires no SCT; ``tnca serve`` says so before it serves. Stopped
    that early, it still removes its metrics directory."""
    process = subprocess.Popen([str(TNCA), "--home", str(home.path), "serve", "--port", str(port), "--workers", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        lines = [process.stdout.readline() for _ in range(2)]
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert not list(tmp_path.glob("tnca-metrics-*"))
    assert lines[0].startswith("Serving ")
    assert lines[1] == ("Warning: transparency is off. The policy requires no SCTs ([ct] required_scts = 0 in "
                        "policy.toml), so certificates are issued without any log seeing them.\n")
