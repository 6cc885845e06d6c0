"""The x5u fetcher against real loopback HTTP and HTTPS servers (http.server in a thread).

RFC 9448 §6 step 2 wants an https URL; fetching a client-chosen URL is an SSRF risk (RFC 8555
§10.4), so every refusal here is checked to have made no request (the server's hit counter).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.clock import FixedClock
from ca.errors import PolicyError
from ca.tokens.x5u import UNREACHABLE, FetchPolicy, X5UError, X5UFetcher, parse_chain
from tests.helpers import free_port

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DEV = FetchPolicy(allow_http_loopback=True, timeout_seconds=2.0)


def certificate(name: str, *, days: int = 30, key: ec.EllipticCurvePrivateKey | None = None,
                issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None, ca: bool = False,
                san: x509.SubjectAlternativeName | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


TA, _ = certificate("Token Authority")
ROOT, _ = certificate("TA Root", days=10)


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves whatever the test put in ``server.routes``: path -> (status, headers, body, delay)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        status, headers, body, delay = self.server.routes.get(self.path, (404, {}, b"not found", 0))  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and headers.get("Connection") != "close":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if delay:
                for byte in body:
                    time.sleep(delay)
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


class Server:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.routes = {}  # type: ignore[attr-defined]
        self.httpd.hits = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def hits(self) -> list[str]:
        return self.httpd.hits  # type: ignore[attr-defined]

    def route(self, path: str, body: bytes, *, status: int = 200, headers: dict | None = None, delay: float = 0) -> None:
        self.httpd.routes[path] = (status, headers or {"Content-Type": "application/pem-certificate-chain"}, body, delay)  # type: ignore[attr-defined]

    def url(self, path: str, scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


class DripServer:
    """A raw loopback TCP server: each accepted connection gets ``script(connection, stop)``.

    http.server cannot send a status line slowly, so the slow-host tests talk TCP themselves.
    ``accepted`` counts connections. ``close`` sets ``stop`` (every script returns promptly when
    it is set) and joins every thread it started, so nothing outlives the test.
    """

    def __init__(self, script: Callable[[socket.socket, threading.Event], None]) -> None:
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.05)
        self.script = script
        self.stop = threading.Event()
        self.accepted = 0
        self.handlers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            handler = threading.Thread(target=self._handle, args=(connection,), daemon=True)
            self.handlers.append(handler)
            handler.start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            try:
                self.script(connection, self.stop)
            except OSError:  # the fetcher hung up, as it should
                pass

    def url(self, path: str = "/ta.pem", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
        for handler in self.handlers:
            handler.join(5)
        assert not self.thread.is_alive() and not any(h.is_alive() for h in self.handlers)


def send_nothing(connection: socket.socket, stop: threading.Event) -> None:
    stop.wait()


def drip(data: bytes, interval: float) -> Callable[[socket.socket, threading.Event], None]:
    """A script sending ``data`` one byte every ``interval`` seconds."""

    def script(connection: socket.socket, stop: threading.Event) -> None:
        for byte in data:
            if stop.wait(interval):
                return
            connection.sendall(bytes([byte]))
        stop.wait()

    return script


def answer_after(seconds: float, body: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """A script sending a complete 200 response with ``body`` after ``seconds``."""

    def script(connection: socket.socket, stop: threading.Event) -> None:
        if stop.wait(seconds):
            return
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        connection.sendall(head + body)
        stop.wait()

    return script


def send_then_drip(head: bytes, data: bytes, interval: float) -> Callable[[socket.socket, threading.Event], None]:
    """A script sending ``head`` at once, then ``data`` one byte every ``interval`` seconds."""
    rest = drip(data, interval)

    def script(connection: socket.socket, stop: threading.Event) -> None:
        connection.sendall(head)
        rest(connection, stop)

    return script


@pytest.fixture
def drip_server() -> Iterator[Callable[[Callable[[socket.socket, threading.Event], None]], DripServer]]:
    started: list[DripServer] = []

    def start(script: Callable[[socket.socket, threading.Event], None]) -> DripServer:
        started.append(DripServer(script))
        return started[-1]

    yield start
    for srv in started:
        srv.close()


# One second for the whole fetch; the slow hosts below would take 12 s or more if let.
ONE_SECOND = FetchPolicy(allow_http_loopback=True, allow_private_addresses=True, timeout_seconds=1.0)
# Generous for a loaded CI machine, and far below what any drip below would take.
UPPER_BOUND_SECONDS = 3.5
STATUS_AND_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Length: 600\r\nX-Pad: 0123456789\r\n\r\n"  # 60 bytes


def refused(fragment: str, fetch: Callable[[], object]) -> X5UError:
    with pytest.raises(X5UError) as info:
        fetch()
    assert fragment in info.value.detail, info.value.detail
    return info.value


def unreachable(cause: str, fetch: Callable[[], object]) -> X5UError:
    """Refused with the one detail every unreachable host gets (the client learns nothing about
    what answers where from here); the precise cause is kept for the operator's log."""
    error = refused(UNREACHABLE, fetch)
    assert cause in error.cause, error.cause
    return error


class TestDestinationRules:
    def test_rfc9448_s6_plain_http_is_refused_without_a_request(self, server: Server) -> None:
        server.route("/ta.pem", pem(TA))
        refused("must be an https URL (RFC 9448 §6)", lambda: X5UFetcher().fetch(server.url("/ta.pem")))
        assert server.hits == []

    def test_rfc8555_s10_4_https_to_loopback_is_refused_by_default(self, server: Server) -> None:
        unreachable("resolves to non-public address 127.0.0.1", lambda: X5UFetcher().fetch(server.url("/ta.pem", "https")))
        assert server.hits == []

    def test_host_name_resolving_to_loopback_is_refused(self) -> None:
        unreachable("resolves to non-public address", lambda: X5UFetcher().fetch("https://localhost/ta.pem"))

    @pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.1", "169.254.169.254", "[::1]", "[fe80::1]", "100.64.0.1", "0.0.0.0"])
    def test_private_link_local_and_reserved_ranges_are_refused(self, host: str) -> None:
        expected = str(ipaddress.ip_address(host.strip("[]")))
        unreachable(f"non-public address {expected}", lambda: X5UFetcher().fetch(f"https://{host}/ta.pem"))

    @pytest.mark.parametrize(
        "host, inner",
        [
            ("[64:ff9b::a00:1]", "10.0.0.1"),  # NAT64 well-known prefix (RFC 6052)
            ("[64:ff9b::7f00:1]", "127.0.0.1"),
            ("[2002:a9fe:a9fe::1]", "169.254.169.254"),  # 6to4 (RFC 3056): cloud metadata
            ("[2002:c0a8:101::1]", "192.168.1.1"),
            ("[::a00:1]", "10.0.0.1"),  # IPv4-compatible (RFC 4291 §2.5.5.1)
        ],
    )
    def test_ipv6_addresses_carrying_a_private_ipv4_destination_are_refused(self, host: str, inner: str) -> None:
        error = unreachable(f"non-public address {inner}", lambda: X5UFetcher().fetch(f"https://{host}/ta.pem"))
        assert f"inside {ipaddress.ip_address(host.strip('[]'))}" in error.cause

    def test_teredo_is_refused(self) -> None:
        """RFC 4380 tunnels (2001::/32) are not globally routable destinations in themselves."""
        unreachable("non-public address 2001:0:4136:e378:8000:63bf:f5ff:fffe",
                    lambda: X5UFetcher().fetch("https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/ta.pem"))

    def test_the_refusal_names_no_address_to_the_client(self) -> None:
        """The detail is the same for a private address, a name that does not resolve and a refused
        connection, so answers cannot be used to map what is reachable from the authority."""
        details = set()
        for url in ("https://10.0.0.1/ta.pem", "https://ta.invalid/ta.pem", "https://[64:ff9b::a00:1]/ta.pem"):
            with pytest.raises(X5UError) as info:
                X5UFetcher().fetch(url)
            details.add(info.value.detail.split(": ", 1)[1])
        assert details == {UNREACHABLE}

    def test_ipv4_mapped_ipv6_is_checked_as_ipv4(self) -> None:
        unreachable("non-public address 10.0.0.1", lambda: X5UFetcher().fetch("https://[::ffff:10.0.0.1]/ta.pem"))

    @pytest.mark.parametrize(
        "url, fragment",
        [
            ("ftp://ta.example.net/ta.pem", "scheme 'ftp'"),
            ("file:///etc/passwd", "scheme 'file'"),
            ("https:///ta.pem", "has no host"),
            ("https://user:pw@ta.example.net/ta.pem", "must not carry credentials"),
            ("https://ta.example.net:99999/ta.pem", "not a valid URL"),
        ],
    )
    def test_malformed_or_other_scheme_urls_are_refused(self, url: str, fragment: str) -> None:
        refused(fragment, lambda: X5UFetcher().fetch(url))

    def test_http_to_a_public_host_is_refused_even_in_dev_mode(self) -> None:
        refused("must be an https URL", lambda: X5UFetcher(DEV).fetch("http://192.0.2.10/ta.pem"))

    def test_unresolvable_host_is_reported(self) -> None:
        unreachable("does not resolve", lambda: X5UFetcher().fetch("https://ta.invalid/ta.pem"))


class TestFetch:
    def test_dev_mode_fetches_a_pem_chain_over_loopback_http(self, server: Server) -> None:
        server.route("/ta.pem", pem(TA, ROOT))
        assert X5UFetcher(DEV).fetch(server.url("/ta.pem")) == (TA, ROOT)
        assert server.hits == ["/ta.pem"]

    def test_a_single_der_certificate_is_accepted(self, server: Server) -> None:
        server.route("/ta.der", TA.public_bytes(serialization.Encoding.DER), headers={"Content-Type": "application/pkix-cert"})
        assert X5UFetcher(DEV).fetch(server.url("/ta.der")) == (TA,)

    def test_ats_redirect_is_refused_and_not_followed(self, server: Server) -> None:
        """No redirects: the URL must serve the chain, and following one would skip the address checks."""
        server.route("/moved", b"", status=302, headers={"Location": server.url("/ta.pem")})
        server.route("/ta.pem", pem(TA))
        refused("redirect (HTTP 302) refused", lambda: X5UFetcher(DEV).fetch(server.url("/moved")))
        assert server.hits == ["/moved"]

    def test_non_200_status_is_refused(self, server: Server) -> None:
        refused("expected HTTP 200, got 404", lambda: X5UFetcher(DEV).fetch(server.url("/missing")))

    def test_declared_oversize_body_is_refused(self, server: Server) -> None:
        server.route("/big", b"x" * 2048)
        policy = FetchPolicy(allow_http_loopback=True, max_bytes=1024)
        refused("body of 2048 bytes exceeds the limit of 1024", lambda: X5UFetcher(policy).fetch(server.url("/big")))

    def test_undeclared_oversize_body_is_cut_off_while_reading(self, server: Server) -> None:
        server.route("/big", b"x" * 100_000, headers={"Connection": "close"})
        policy = FetchPolicy(allow_http_loopback=True, max_bytes=1024)
        refused("body exceeds the limit of 1024 bytes", lambda: X5UFetcher(policy).fetch(server.url("/big")))

    def test_slow_server_hits_the_overall_deadline(self, server: Server) -> None:
        """A server dripping bytes cannot stretch the fetch past its deadline."""
        server.route("/slow", pem(TA), delay=0.05)  # ~600 bytes at 20 bytes/s: 30 s if allowed
        policy = FetchPolicy(allow_http_loopback=True, timeout_seconds=0.5)
        started = time.monotonic()
        refused("no complete answer within 0.5 s", lambda: X5UFetcher(policy).fetch(server.url("/slow")))
        assert time.monotonic() - started < 2.0

    def test_body_that_is_not_a_certificate_is_refused(self, server: Server) -> None:
        server.route("/junk", b"<html>hello</html>")
        refused("not a PEM certificate chain or a DER certificate", lambda: X5UFetcher(DEV).fetch(server.url("/junk")))

    def test_pem_without_certificates_is_refused(self) -> None:
        with pytest.raises(X5UError, match="not a PEM certificate chain"):
            parse_chain(b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n")

    def test_connection_refused_is_reported(self) -> None:
        with socket.socket() as unused:  # a port nothing listens on
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        unreachable("request failed (ConnectionRefusedError", lambda: X5UFetcher(DEV).fetch(f"http://127.0.0.1:{port}/ta.pem"))


class TestDeadline:
    """One deadline over the whole fetch: resolution, connect, TLS, request, status, headers, body.

    Each slow host here keeps every single read under the 1 s limit, so only a deadline over the
    whole exchange cuts it. Every phase reports the same words.
    """

    def timed_out(self, url: str, policy: FetchPolicy = ONE_SECOND) -> float:
        started = time.monotonic()
        refused(f"no complete answer within {policy.timeout_seconds} s", lambda: X5UFetcher(policy).fetch(url))
        return time.monotonic() - started

    @pytest.mark.parametrize("scheme", ["http", "https"])
    def test_host_that_accepts_and_sends_nothing(self, drip_server, scheme: str) -> None:
        """https: the TLS handshake never completes; http: the status line never comes."""
        srv = drip_server(send_nothing)
        assert self.timed_out(srv.url(scheme=scheme)) < UPPER_BOUND_SECONDS
        assert srv.accepted == 1

    def test_status_line_and_headers_dripped(self, drip_server) -> None:
        """The security review's case: one byte every 0.3 s would take 18 s for these 60 bytes."""
        srv = drip_server(drip(STATUS_AND_HEADERS, 0.3))
        assert self.timed_out(srv.url()) < UPPER_BOUND_SECONDS

    def test_chunked_body_dripped(self, drip_server) -> None:
        """A chunk-size line read byte by byte: 40 bytes at 0.3 s would take 12 s."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        srv = drip_server(send_then_drip(head, b"0" * 36 + b"10\r\n", 0.3))
        assert self.timed_out(srv.url()) < UPPER_BOUND_SECONDS

    def test_body_dripped_after_headers_that_took_most_of_the_time(self, drip_server) -> None:
        """The deadline is not restarted for the body: headers at 0.9 s leave 0.1 s for it."""
        def script(connection: socket.socket, stop: threading.Event) -> None:
            for part in (STATUS_AND_HEADERS[:20], STATUS_AND_HEADERS[20:40], STATUS_AND_HEADERS[40:]):
                if stop.wait(0.3):
                    return
                connection.sendall(part)
            drip(pem(TA), 0.3)(connection, stop)

        srv = drip_server(script)
        assert self.timed_out(srv.url()) < UPPER_BOUND_SECONDS

    def test_name_resolution_is_bounded_too(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """getaddrinfo has no timeout of its own; the caller is released at the deadline."""
        release = threading.Event()
        real_getaddrinfo = socket.getaddrinfo

        def stuck_resolver(host: str, *args: object, **kwargs: object) -> object:
            if host != "slow-dns.test" or int(kwargs.get("flags", 0)) & socket.AI_NUMERICHOST:  # type: ignore[call-overload]
                return real_getaddrinfo(host, *args, **kwargs)  # no query is sent for AI_NUMERICHOST
            release.wait(30)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", stuck_resolver)
        try:
            assert self.timed_out("http://slow-dns.test/ta.pem") < UPPER_BOUND_SECONDS
        finally:
            release.set()  # the resolver thread finishes now instead of outliving the test


class TestSlowHostsCannotHoldEveryThread:
    """Single flight per URL, a cap on request threads busy with fetches, failures remembered."""

    def test_concurrent_fetches_of_one_url_share_one_connection(self, drip_server) -> None:
        srv = drip_server(answer_after(0.5, pem(TA)))
        fetcher = X5UFetcher(FetchPolicy(allow_http_loopback=True, timeout_seconds=2.0, max_concurrent_fetches=4))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: fetcher.fetch(srv.url()), range(4)))
        assert results == [(TA,)] * 4
        assert srv.accepted == 1 and fetcher.requests_made == 1

    def test_concurrent_fetches_of_one_slow_url_share_one_connection_and_its_deadline(self, drip_server) -> None:
        srv = drip_server(drip(STATUS_AND_HEADERS, 0.3))
        fetcher = X5UFetcher(dataclasses.replace(ONE_SECOND, max_concurrent_fetches=4))

        def fetch(_: int) -> str:
            with pytest.raises(X5UError) as info:
                fetcher.fetch(srv.url())
            return info.value.detail

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            details = list(pool.map(fetch, range(4)))
        assert time.monotonic() - started < UPPER_BOUND_SECONDS
        assert details == ["x5u 127.0.0.1: no complete answer within 1.0 s"] * 4
        assert srv.accepted == 1

    def test_a_full_fetcher_refuses_at_once_and_frees_its_slot_afterwards(self, drip_server) -> None:
        srv = drip_server(send_nothing)
        fetcher = X5UFetcher(dataclasses.replace(ONE_SECOND, max_concurrent_fetches=1))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(fetcher.fetch, srv.url("/a.pem"))
            deadline = time.monotonic() + 2
            while srv.accepted == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert srv.accepted == 1
            started = time.monotonic()
            for path in ("/b.pem", "/a.pem"):  # another URL, and a second wait for the same one
                busy = refused("the fetcher is busy", lambda: fetcher.fetch(srv.url(path)))
                assert busy.retry_after is not None
            assert time.monotonic() - started < 0.5
            with pytest.raises(X5UError, match="no complete answer"):
                first.result(timeout=UPPER_BOUND_SECONDS)
        assert srv.accepted == 1
        refused("no complete answer", lambda: fetcher.fetch(srv.url("/c.pem")))  # the slot is free again
        assert srv.accepted == 2

    def test_a_slow_url_is_fetched_once_per_failure_cache_period(self, drip_server) -> None:
        srv = drip_server(drip(STATUS_AND_HEADERS, 0.3))
        clock = FixedClock(NOW)
        fetcher = X5UFetcher(dataclasses.replace(ONE_SECOND, failure_cache_seconds=30), clock=clock)
        first = refused("no complete answer within 1.0 s", lambda: fetcher.fetch(srv.url()))
        assert first.retry_after == 30
        clock.advance(dt.timedelta(seconds=20))
        started = time.monotonic()
        again = refused("no complete answer within 1.0 s", lambda: fetcher.fetch(srv.url()))
        assert time.monotonic() - started < 0.5
        assert again.detail == first.detail and again.retry_after == 10
        assert srv.accepted == 1
        clock.advance(dt.timedelta(seconds=10))
        refused("no complete answer within 1.0 s", lambda: fetcher.fetch(srv.url()))
        assert srv.accepted == 2

    def test_a_final_refusal_is_not_marked_retryable(self, server: Server) -> None:
        assert refused("expected HTTP 200, got 404", lambda: X5UFetcher(DEV).fetch(server.url("/no.pem"))).retry_after is None


class TestCache:
    def test_second_fetch_is_a_cache_hit(self, server: Server) -> None:
        server.route("/ta.pem", pem(TA))
        fetcher = X5UFetcher(DEV)
        assert fetcher.fetch(server.url("/ta.pem")) == fetcher.fetch(server.url("/ta.pem")) == (TA,)
        assert server.hits == ["/ta.pem"]
        assert fetcher.requests_made == 1

    def test_cache_expires_after_max_age(self, server: Server) -> None:
        server.route("/ta.pem", pem(TA))
        clock = FixedClock(NOW)
        fetcher = X5UFetcher(FetchPolicy(allow_http_loopback=True, max_cache_age=dt.timedelta(hours=1)), clock=clock)
        fetcher.fetch(server.url("/ta.pem"))
        clock.advance(dt.timedelta(minutes=59))
        fetcher.fetch(server.url("/ta.pem"))
        assert len(server.hits) == 1
        clock.advance(dt.timedelta(minutes=1))
        fetcher.fetch(server.url("/ta.pem"))
        assert len(server.hits) == 2

    def test_cache_never_outlives_a_certificate_in_the_chain(self, server: Server) -> None:
        server.route("/chain.pem", pem(TA, ROOT))  # ROOT expires in 10 days; max age 30 days
        clock = FixedClock(NOW)
        fetcher = X5UFetcher(FetchPolicy(allow_http_loopback=True, max_cache_age=dt.timedelta(days=30)), clock=clock)
        fetcher.fetch(server.url("/chain.pem"))
        clock.advance(dt.timedelta(days=10, seconds=1))
        fetcher.fetch(server.url("/chain.pem"))
        assert len(server.hits) == 2

    def test_failures_are_remembered_only_for_failure_cache_seconds(self, server: Server) -> None:
        clock = FixedClock(NOW)
        fetcher = X5UFetcher(FetchPolicy(allow_http_loopback=True, failure_cache_seconds=30), clock=clock)
        refused("expected HTTP 200, got 404", lambda: fetcher.fetch(server.url("/later.pem")))
        server.route("/later.pem", pem(TA))
        clock.advance(dt.timedelta(seconds=29))
        refused("expected HTTP 200, got 404", lambda: fetcher.fetch(server.url("/later.pem")))
        assert server.hits == ["/later.pem"]
        clock.advance(dt.timedelta(seconds=1))
        assert fetcher.fetch(server.url("/later.pem")) == (TA,)
        assert server.hits == ["/later.pem", "/later.pem"]

    def test_cache_is_bounded(self, server: Server) -> None:
        for index in range(3):
            server.route(f"/{index}.pem", pem(TA))
        fetcher = X5UFetcher(FetchPolicy(allow_http_loopback=True, cache_entries=2))
        for index in (0, 1, 2, 0):
            fetcher.fetch(server.url(f"/{index}.pem"))
        assert server.hits == ["/0.pem", "/1.pem", "/2.pem", "/0.pem"]

    def test_override_answers_from_memory_without_any_request(self, server: Server) -> None:
        """A one-worker server must never fetch its own token-authority URL."""
        url = server.url("/token-authority.pem", "https")
        fetcher = X5UFetcher(overrides={url: [TA]})
        assert fetcher.fetch(url) == (TA,)
        assert server.hits == [] and fetcher.requests_made == 0


class TestHTTPS:
    @pytest.fixture
    def tls_server(self, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
        ca_cert, ca_key = certificate("Loopback Test CA", ca=True)
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
        server_cert, server_key = certificate("127.0.0.1", issuer=(ca_cert.subject, ca_key), san=san)
        (tmp_path / "server.pem").write_bytes(pem(server_cert))
        (tmp_path / "server.key").write_bytes(server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / "ca.pem").write_bytes(pem(ca_cert))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
        srv = Server(tls=context)
        yield srv, tmp_path / "ca.pem"
        srv.close()

    def test_https_fetch_verifies_the_server_certificate(self, tls_server: tuple[Server, Path]) -> None:
        server, ca_file = tls_server
        server.route("/ta.pem", pem(TA))
        policy = FetchPolicy(allow_private_addresses=True, tls_ca_file=str(ca_file))
        assert X5UFetcher(policy).fetch(server.url("/ta.pem", "https")) == (TA,)
        assert X5UFetcher(policy).fetch(server.url("/ta.pem", "https", host="localhost")) == (TA,)

    def test_untrusted_tls_server_is_refused(self, tls_server: tuple[Server, Path]) -> None:
        server, _ = tls_server
        server.route("/ta.pem", pem(TA))
        policy = FetchPolicy(allow_private_addresses=True)  # system trust store: our test CA is not in it
        unreachable("TLS certificate not trusted", lambda: X5UFetcher(policy).fetch(server.url("/ta.pem", "https")))
        assert server.hits == []


class TestFetchPolicyFromConfig:
    """tnca.toml [x5u]: strict, so a misspelt key never silently keeps the production default."""

    def test_empty_section_is_the_production_default(self) -> None:
        assert FetchPolicy.from_config({}) == FetchPolicy()

    def test_values_are_read_with_their_types(self) -> None:
        policy = FetchPolicy.from_config({"allow_http_loopback": True, "max_cache_age": "1h", "timeout_seconds": 2.5,
                                          "max_bytes": 4096, "tls_ca_file": "/etc/ssl/ca.pem",
                                          "max_concurrent_fetches": 3, "failure_cache_seconds": 10})
        assert policy == FetchPolicy(allow_http_loopback=True, max_cache_age=dt.timedelta(hours=1), timeout_seconds=2.5,
                                     max_bytes=4096, tls_ca_file="/etc/ssl/ca.pem", max_concurrent_fetches=3,
                                     failure_cache_seconds=10)

    @pytest.mark.parametrize(
        "section, field, fragment",
        [
            ({"allow_http": True}, "[x5u] allow_http", "unknown key"),
            ({"allow_http_loopback": "true"}, "[x5u] allow_http_loopback", "true or false"),
            ({"max_bytes": 1.5}, "[x5u] max_bytes", "positive integer"),
            ({"timeout_seconds": 0}, "[x5u] timeout_seconds", "positive number"),
            ({"max_cache_age": "a day"}, "[x5u] max_cache_age", "expected a duration"),
            ({"tls_ca_file": 7}, "[x5u] tls_ca_file", "path string"),
            ({"max_concurrent_fetches": 0}, "[x5u] max_concurrent_fetches", "positive integer"),
            ({"max_concurrent_fetches": 2.0}, "[x5u] max_concurrent_fetches", "positive integer"),
            ({"failure_cache_seconds": -1}, "[x5u] failure_cache_seconds", "positive number"),
            ({"failure_cache_seconds": "30s"}, "[x5u] failure_cache_seconds", "positive number"),
        ],
    )
    def test_bad_values_are_refused_naming_the_key(self, section: dict, field: str, fragment: str) -> None:
        with pytest.raises(PolicyError) as info:
            FetchPolicy.from_config(section)
        assert info.value.field == field
        assert fragment in info.value.detail
