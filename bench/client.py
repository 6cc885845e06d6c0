"""One benchmark client process: a delegate's ACME client running the whole flow, one issuance after another.

    python -m bench.client JOBS.json        (started by bench/issuance.py, not by hand)

JOBS.json: ``{"directory": URL, "jobs": [{"key": PEM, "token": JWT, "identifier": VALUE}, …]}``,
one job per issuance, each with its own account key and single-use authority token. Before the
timed window it registers every account (newAccount) and makes one CSR, with its own key, per
issuance; then it prints ``ready`` and waits for a line on stdin. In the window it runs, per job,
the steps a client such as certbot takes (RFC 8555 §7.4, RFC 9448):

    new-order      POST newOrder (one TNAuthList identifier)
    authorization  POST-as-GET the order's authorization
    challenge      POST the tkauth-01 challenge with the authority token
    poll-authz     POST-as-GET the authorization until it is valid
    finalize       POST finalize with the CSR
    poll-order     POST-as-GET the order until it is valid
    download       POST-as-GET the certificate chain

and prints one JSON line: per issuance the seconds of each step and end to end, the errors, and
the CPU seconds this process spent in the window.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import josepy as jose
from acme import client as acme_client
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tnca.acme_client import ReplacingNewOrder, TKAuth01, TKAuth01Response, tnauthlist_identifier

STEPS = ("new-order", "authorization", "challenge", "poll-authz", "finalize", "poll-order", "download")
POLL_LIMIT = 50  # polls of one resource before the issuance counts as failed
POLL_INTERVAL = 0.05


class Flow:
    """One account (its own ``ClientNetwork``: kept-alive connection, nonce) and its issuance."""

    def __init__(self, directory: messages.Directory, key_pem: bytes, token: str, identifier: str) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.net = acme_client.ClientNetwork(jose.JWKEC(key=key), alg=jose.ES256, user_agent="tnca-bench")
        self.acme = acme_client.ClientV2(directory, self.net)
        self.token = token
        self.identifier = identifier
        csr_key = ec.generate_private_key(ec.SECP256R1())
        self.csr_pem = (x509.CertificateSigningRequestBuilder()
                        .subject_name(x509.Name.from_rfc4514_string("CN=Bench Enterprise"))
                        .sign(csr_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))

    def register(self) -> None:
        self.acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    def issue(self, on_step: Callable[[str], None] | None = None) -> dict[str, float]:
        """The whole flow; the seconds each step took. ``on_step(name)`` is called as each step ends."""
        timings: dict[str, float] = {}
        mark = time.perf_counter()

        def step(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            timings[name] = now - mark
            mark = now
            if on_step is not None:
                on_step(name)

        acme = self.acme
        response = acme._post(acme.directory["newOrder"],
                              ReplacingNewOrder(identifiers=(tnauthlist_identifier(self.identifier),)))
        order = messages.Order.from_json(response.json())
        order_url = response.headers["Location"]
        step("new-order")
        (authz_url,) = order.authorizations
        authzr = acme._authzr_from_response(acme._post_as_get(authz_url), uri=authz_url)
        (challb,) = [c for c in authzr.body.challenges if isinstance(c.chall, TKAuth01)]
        step("authorization")
        acme.answer_challenge(challb, TKAuth01Response(tkauth=self.token))
        step("challenge")
        self._poll(authz_url, messages.Authorization, "authorization")
        step("poll-authz")
        orderr = messages.OrderResource(body=order, uri=order_url, csr_pem=self.csr_pem)
        acme.begin_finalization(orderr)
        step("finalize")
        final = self._poll(order_url, messages.Order, "order")
        step("poll-order")
        chain = acme._post_as_get(final.certificate).text
        step("download")
        if chain.count("BEGIN CERTIFICATE") != 2:
            raise AssertionError(f"expected a chain of 2 certificates, got {chain.count('BEGIN CERTIFICATE')}")
        timings["total"] = sum(timings.values())
        return timings

    def _poll(self, url: str, kind: Any, what: str) -> Any:
        for _ in range(POLL_LIMIT):
            body = kind.from_json(self.acme._post_as_get(url).json())
            if body.status == messages.STATUS_VALID:
                return body
            if body.status == messages.STATUS_INVALID:
                raise AssertionError(f"{what} {url} is invalid: {body.error}")
            time.sleep(POLL_INTERVAL)
        raise AssertionError(f"{what} {url} not valid after {POLL_LIMIT} polls")


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, messages.Error):
        return exc.typ.rsplit(":", 1)[-1] if exc.typ else f"HTTP {exc.code}"
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())  # noqa: SIM115 (read once)
    net = acme_client.ClientNetwork(None, user_agent="tnca-bench")  # type: ignore[arg-type]
    directory = messages.Directory.from_json(net.get(spec["directory"]).json())
    flows = [Flow(directory, job["key"].encode(), job["token"], job["identifier"]) for job in spec["jobs"]]
    for flow in flows:
        flow.register()
    print("ready", flush=True)
    sys.stdin.readline()
    results: list[dict[str, float]] = []
    errors: list[str] = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    for flow in flows:
        try:
            results.append(flow.issue())
        except Exception as exc:  # noqa: BLE001 (every failure is counted by kind)
            errors.append(error_kind(exc))
        finally:
            flow.net.session.close()
    print(json.dumps({"results": results, "errors": errors, "seconds": time.perf_counter() - started,
                      "cpu_seconds": time.process_time() - cpu_started}), flush=True)


if __name__ == "__main__":
    main()
