"""Request ids, the request log, /healthz, /readyz and who may read /metrics, in process (the
Flask test client and real loopback sockets). tests/e2e/test_observability_gunicorn.py scrapes a
real two-worker server."""

from __future__ import annotations

import json
import logging
import re
import socket
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acme_server import create_app
from acme_server.observability import JSONLogFormatter
from ca.home import Home
from protocol.support import app, client, home, port  # noqa: F401

GENERATED_ID = re.compile(r"[0-9a-f]{24}")


@pytest.mark.parametrize("incoming, kept", [
    ("0123456789abcdef0123456789abcdef", True),  # nginx $request_id
    ("5f0c4a7e-1c2b-4a8e-9d3f-2b7a1c9e8d70", True),  # a UUID
    ("short", False),
    ("has space inside it", False),
    ("<script>alert(1)</script>", False),
    ("x" * 200, False),
])
def test_request_id_from_a_proxy_is_kept_when_sane_else_generated(client, incoming, kept):
    response = client.get("/healthz", headers={"X-Request-Id": incoming})
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    if kept:
        assert response.headers["X-Request-Id"] == incoming
    else:
        assert GENERATED_ID.fullmatch(response.headers["X-Request-Id"])


def test_every_response_has_its_own_request_id(client):
    ids = {client.get("/healthz").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5 and all(GENERATED_ID.fullmatch(i) for i in ids)


def test_rfc7807_s3_2_audit_api_problem_carries_the_request_id_as_an_extension_member(client):
    """RFC 7807 §3.2: problem type definitions MAY extend the problem details object with
    additional members; the audit API's problems carry the request id like the ACME ones."""
    response = client.get("/api/v1/no-such-endpoint", headers={"X-Request-Id": "ticket-00004711"})
    assert response.content_type == "application/problem+json"
    assert response.get_json()["requestId"] == "ticket-00004711" == response.headers["X-Request-Id"]


def test_one_log_record_per_request_with_method_path_status_duration_and_request_id(client, caplog):
    caplog.set_level(logging.INFO, logger="tnca.request")
    response = client.post("/acme/new-order", data=b"{}", content_type="application/jose+json",
                           headers={"X-Request-Id": "ticket-00004712"})
    assert response.status_code == 400
    records = [r for r in caplog.records if r.name == "tnca.request"]
    assert len(records) == 1
    fields = records[0].fields
    assert fields["method"] == "POST" and fields["path"] == "/acme/new-order" and fields["status"] == 400
    assert fields["duration_ms"] >= 0 and fields["account"] is None and fields["order"] is None
    line = json.loads(JSONLogFormatter().format(records[0]))
    assert line["event"] == "request" and line["status"] == 400 and line["logger"] == "tnca.request"


def test_metrics_is_open_to_loopback_by_default(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    assert re.search(r"^tnca_certificates_valid 0\.0$", response.get_data(as_text=True), re.M)


def test_metrics_refused_to_other_addresses_and_to_requests_forwarded_by_an_untrusted_proxy(client):
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert outside.status_code == 403 and outside.content_type == "application/problem+json"
    assert "[metrics] allow" in outside.get_json()["detail"]
    assert outside.get_json()["requestId"] == outside.headers["X-Request-Id"]
    # A proxy on this host forwarding the world's requests: the peer is loopback, the client is not.
    forwarded = client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.4"})
    assert forwarded.status_code == 403
    assert b"tnca_" not in outside.get_data() + forwarded.get_data()


def test_metrics_allow_names_the_networks_that_may_scrape(home):
    with home.config_path.open("a") as config:
        config.write('\n[metrics]\nallow = ["203.0.113.0/24"]\n')
    client = create_app(Home(home.path)).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer listed


def test_readyz_names_each_check_and_says_transparency_is_off(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True, "issuing_key": True, "token_authority_key": True, "ct_logs": True}
    assert body["checks"]["ct_logs"]["detail"] == "transparency is off: the policy requires no SCTs"


def test_readyz_is_503_when_the_database_cannot_be_reached(home, monkeypatch, tmp_path):
    monkeypatch.setenv("TNCA_DATABASE_URL", f"sqlite:///{tmp_path / 'no-such-directory' / 'tnca.db'}")
    response = create_app(Home(home.path)).test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == {"ok": False, "detail": "the database cannot be reached"}
    assert "no-such-directory" not in response.get_data(as_text=True)  # causes go to the log only
    client = create_app(Home(home.path)).test_client()
    assert client.get("/healthz").status_code == 200
    # /metrics still answers, without the gauge it could not read, and counts the error.
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    text = scraped.get_data(as_text=True)
    assert "tnca_certificates_valid" not in text and 'tnca_database_errors_total{kind="operational"}' in text


def test_readyz_answers_within_its_one_deadline_when_a_log_never_answers(home):
    """A log that accepts the connection and never answers: /readyz is 503 after the deadline
    (1 s here), not after the HTTP client's own timeouts."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    try:
        key = home.path / "silent-log.pem"
        key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        entry = f'{{ name = "silent", url = "http://127.0.0.1:{silent.getsockname()[1]}", public_key = "{key}" }}'
        policy = home.policy_path.read_text().replace("\nlogs = []\n", f"\nlogs = [{entry}]\n")
        home.policy_path.write_text(policy.replace("\nrequired_scts = 0\n", "\nrequired_scts = 1\n"))
        with home.config_path.open("a") as config:
            config.write("\n[health]\nreadiness_deadline_seconds = 1\n")
        client = create_app(Home(home.path)).test_client()
        for _ in range(2):  # the second probe waits on the first one's check, starting no other
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started
            assert response.status_code == 503 and elapsed < 1.8, elapsed
            assert response.get_json()["checks"]["ct_logs"] == {
                "ok": False, "detail": "0 of 1 log(s) answered get-sth; 1 required"}
            assert response.get_json()["checks"]["database"]["ok"] is True
    finally:
        silent.close()
