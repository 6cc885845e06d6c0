"""The authority's fail-closed submission (STI-CT §3.1: call-signing certificates carry SCTs at
issuance): every log is asked at once with one deadline; a dead or slow log costs at most the
deadline; fewer valid SCTs than the policy requires is a TransparencyError naming each failed log.
"""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ca.errors import TransparencyError
from ca.issuing.transparency import CTSubmitter, LogClient, submit_precertificate
from ct_helpers import make_delegate, tampering_proxy  # noqa: F401 (a fixture)

DEADLINE_SECONDS = 1.0
SLOW_LOG_DELAY_SECONDS = 5.0


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        time.sleep(SLOW_LOG_DELAY_SECONDS)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slow_log_url():
    """A real HTTP server that accepts the submission and answers only after SLOW_LOG_DELAY_SECONDS."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url():
    """A loopback port nobody listens on: connection refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def throwaway_key():
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_one_of_two_required_succeeds_within_the_deadline_when_a_log_hangs(log_factory, pki, slow_log_url):
    dev1 = log_factory("dev1")
    slow = LogClient("slow", slow_log_url, throwaway_key())  # it never answers
    started = time.monotonic()
    scts = submit_precertificate([dev1.client(), slow], make_delegate(pki.issuing).precert_der, [pki.issuing.der],
                                 deadline_per_log=DEADLINE_SECONDS, required=1)
    elapsed = time.monotonic() - started
    assert [sct.log_id.hex() for sct in scts] == [dev1.log_id_hex]
    assert DEADLINE_SECONDS <= elapsed < SLOW_LOG_DELAY_SECONDS  # waited out the deadline, not the slow log


def test_two_of_two_required_fails_naming_the_hung_log(log_factory, pki, slow_log_url):
    dev1 = log_factory("dev1")
    slow = LogClient("slow", slow_log_url, throwaway_key())
    with pytest.raises(TransparencyError) as failure:
        submit_precertificate([dev1.client(), slow], make_delegate(pki.issuing).precert_der, [pki.issuing.der],
                              deadline_per_log=DEADLINE_SECONDS, required=2)
    assert failure.value.field == "ct"
    assert failure.value.detail.startswith("1 valid SCT(s) from distinct logs after ")
    assert failure.value.detail.endswith(f"2 required; slow ({slow_log_url}): no SCT within the deadline of 1 s")


def test_two_of_two_required_fails_naming_the_down_log(log_factory, pki, closed_port_url):
    dev1 = log_factory("dev1")
    down = LogClient("down", closed_port_url, throwaway_key())
    with pytest.raises(TransparencyError) as failure:
        submit_precertificate([down, dev1.client()], make_delegate(pki.issuing).precert_der, [pki.issuing.der],
                              deadline_per_log=DEADLINE_SECONDS, required=2)
    assert failure.value.detail.endswith(f"2 required; down ({closed_port_url}): cannot reach the log: connection refused")


def test_one_of_two_required_succeeds_when_a_log_is_down(log_factory, pki, closed_port_url):
    dev1 = log_factory("dev1")
    down = LogClient("down", closed_port_url, throwaway_key())
    long_deadline = 10.0  # long enough that a loaded CI machine answers well within it
    started = time.monotonic()
    scts = submit_precertificate([down, dev1.client()], make_delegate(pki.issuing).precert_der, [pki.issuing.der],
                                 deadline_per_log=long_deadline, required=1)
    assert [sct.log_id.hex() for sct in scts] == [dev1.log_id_hex]
    assert time.monotonic() - started < long_deadline  # a refused connection does not wait for the deadline


def test_sct_signed_by_another_key_does_not_count(two_logs, pki):
    """An SCT is valid only under the key the policy configured for that log (RFC 6962 §3.2 LogID)."""
    dev1, dev2 = two_logs
    misconfigured = LogClient("dev2", dev2.url, throwaway_key())  # dev2's URL with a key that is not dev2's
    with pytest.raises(TransparencyError) as failure:
        submit_precertificate([dev1.client(), misconfigured], make_delegate(pki.issuing).precert_der, [pki.issuing.der],
                              deadline_per_log=5, required=2)
    assert f"dev2 ({dev2.url}): SCT log ID " in failure.value.detail
    assert "is not this log's" in failure.value.detail


def test_two_logs_with_one_key_are_not_distinct_logs(two_logs, pki):
    """Policies count SCTs "from distinct logs": two entries sharing a key would count one log twice."""
    dev1, dev2 = two_logs
    twin = LogClient("dev1-again", dev2.url, dev1.client().public_key)
    with pytest.raises(TransparencyError, match="two configured logs have the same key"):
        submit_precertificate([dev1.client(), twin], make_delegate(pki.issuing).precert_der, [pki.issuing.der],
                              deadline_per_log=5, required=2)


def test_log_refusal_is_quoted(log_factory, pki):
    """A log's 400 reason reaches the operator (here: the log does not accept this CA's root)."""
    from ct_helpers import make_root

    dev1 = log_factory("dev1")
    foreign = make_root("Foreign Root").issue_ca("Foreign CA")
    with pytest.raises(TransparencyError) as failure:
        submit_precertificate([dev1.client()], make_delegate(foreign).precert_der, [foreign.der],
                              deadline_per_log=5, required=1)
    assert failure.value.detail.endswith(
        f"dev1 ({dev1.url}): HTTP 400: chain does not end at an accepted root: no root of this log issued "
        "chain[1] (issuer 'CN=Foreign Root,C=US')"
    )


@pytest.mark.parametrize(
    ("precert", "message"),
    [
        ("final", "the precertificate has no poison extension 1.3.6.1.4.1.11129.2.4.3"),
        ("garbage", "the precertificate is not a DER certificate"),
        ("non-critical", "the precertificate's poison extension must be critical (RFC 6962 §3.1)"),
    ],
)
def test_malformed_precertificate_is_refused_before_any_log_sees_it(pki, closed_port_url, precert, message):
    from cryptography.hazmat.primitives import hashes, serialization

    delegate = make_delegate(pki.issuing, poison_critical=precert != "non-critical")
    der = {
        "final": delegate.builder.sign(pki.issuing.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER),
        "garbage": b"\x30\x03\x02\x01\x01",
        "non-critical": delegate.precert_der,
    }[precert]
    log = LogClient("down", closed_port_url, pki.root.key.public_key())
    with pytest.raises(TransparencyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        submit_precertificate([log], der, [pki.issuing.der], deadline_per_log=1, required=1)


def test_policy_requiring_more_scts_than_logs_is_refused(pki):
    log = LogClient("only", "http://127.0.0.1:9", pki.root.key.public_key())
    with pytest.raises(TransparencyError, match="2 SCTs are required but only 1 log"):
        CTSubmitter([log], required=2, deadline=1)


def test_ct_submitter_sends_the_issuer_chain(two_logs, pki):
    """The issuance pipeline's seam: submit(precertificate DER, issuer) with an IssuerHandle-like issuer."""
    dev1, dev2 = two_logs

    class Issuer:
        certificate = pki.issuing.certificate
        chain = (pki.issuing.certificate,)

    submitter = CTSubmitter([dev1.client(), dev2.client()], required=2, deadline=5)
    scts = submitter.submit(make_delegate(pki.issuing).precert_der, Issuer())
    assert [sct.log_id.hex() for sct in scts] == [dev1.log_id_hex, dev2.log_id_hex]


# -- a log answering bad SCTs (RFC 6962 §4.1-§4.2): a proxy in front of a real log changes its answer


def _flip_last_signature_byte(body: dict) -> dict:
    signature = bytearray(base64.b64decode(body["signature"]))
    signature[-1] ^= 0x01
    return {**body, "signature": base64.b64encode(bytes(signature)).decode()}


BAD_SCTS = {
    # A well-formed SCT whose signature is not the log's over this precertificate entry (§3.2).
    "wrong-signature": (_flip_last_signature_byte, "SCT signature does not verify over the precertificate entry"),
    "other-timestamp": (lambda body: {**body, "timestamp": body["timestamp"] - 1},
                        "SCT signature does not verify over the precertificate entry"),
    # Malformed SCTs: refused while parsing, before any verification.
    "truncated-signature": (lambda body: {**body, "signature": base64.b64encode(base64.b64decode(body["signature"])[:-3]).decode()},
                            "'signature'"),
    "signature-not-base64": (lambda body: {**body, "signature": "%%%"}, "'signature'"),
    "short-log-id": (lambda body: {**body, "id": base64.b64encode(base64.b64decode(body["id"])[:16]).decode()},
                     "'id' is 16 bytes, expected 32"),
    "unknown-version": (lambda body: {**body, "sct_version": 1}, "'sct_version' is 1, expected 0 (v1)"),
    "timestamp-not-a-number": (lambda body: {**body, "timestamp": str(body["timestamp"])}, "'timestamp' is '"),
    "not-json": (lambda body: "<html>teapot</html>", "the response is not JSON"),
}


def test_rfc6962_s3_2_a_bad_sct_does_not_count_and_the_log_is_named(two_logs, pki, tampering_proxy):
    """Fail closed: a log's SCT with a wrong signature, or one that is malformed, is no SCT; with
    both logs required the submission fails naming that log and why (RFC 6962 §3.2, §4.1). One
    pair of real logs serves every case (starting logs is what costs time)."""
    dev1, dev2 = two_logs
    for case, (mutate, reason) in sorted(BAD_SCTS.items()):
        url = tampering_proxy(dev2.url, mutate)
        tampered = LogClient("tampered", url, dev2.client().public_key)
        with pytest.raises(TransparencyError) as failure:
            submit_precertificate([dev1.client(), tampered], make_delegate(pki.issuing).precert_der,
                                  [pki.issuing.der], deadline_per_log=5, required=2)
        detail = failure.value.detail
        assert detail.startswith("1 valid SCT(s) from distinct logs after "), (case, detail)
        assert f"2 required; tampered ({url}): " in detail and reason in detail, (case, detail)
        assert dev1.url not in detail, case  # the good log is not blamed
