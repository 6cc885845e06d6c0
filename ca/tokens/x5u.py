"""Fetch the certificate chain an authority token's ``x5u`` header points at.

RFC 9448 §6 step 2: the CA verifies that ``x5u`` "is an HTTPS URL referencing a certificate" of a
trusted token authority. Fetching a URL chosen by the client is a server-side request forgery
vector (RFC 8555 §10.4 discusses the same risk for validation requests), so this fetcher is
deliberately narrow:

- ``https`` only; plain ``http`` only to a loopback address, and only when the deployment says
  so (``allow_http_loopback``, meant for the dev stack).
- The host is resolved once; every address it resolves to must be globally routable (no private,
  loopback, link-local, multicast, reserved or unspecified ranges) unless
  ``allow_private_addresses`` is set. The connection then goes to the address that was checked,
  with TLS SNI and hostname verification for the name in the URL, so a second DNS answer
  ("DNS rebinding") cannot redirect it.
- Redirects are refused, not followed: the URL must serve the chain itself, and a redirect would
  lead past the address checks above.
- The body is limited in size and the whole exchange in time.
- Chains are cached by URL until the earliest ``notAfter`` in the chain or ``max_cache_age``,
  whichever comes first.
- ``overrides`` maps URLs to chains held in memory: the server's own token-authority URL must
  resolve without a request, because a one-worker server fetching itself would deadlock.

What is *not* checked here: whether the chain is trusted. That is ``ca.tokens.authority_tokens``' job; this
module only turns a URL into certificates.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence

from cryptography import x509

from ca.clock import Clock, SystemClock
from ca.errors import PolicyError, TNCAError
from ca.policy import parse_duration
from ca.x509util import MALFORMED_X509_ERRORS, with_names_decoded

# A token authority chain is one to a few certificates of well under 2 KiB each.
DEFAULT_MAX_BYTES = 64 * 1024
# The whole fetch (connect, TLS, request, body) must finish within this many seconds.
DEFAULT_TIMEOUT_SECONDS = 5.0
# x5u resources are cached (SHAKEN verifiers keep them a day when the server sends no cache
# directives); a token authority certificate changes rarely, so a day is the default upper bound.
DEFAULT_MAX_CACHE_AGE = dt.timedelta(hours=24)
# Bounded so that a client cycling through URLs cannot grow the cache without limit.
DEFAULT_CACHE_ENTRIES = 256
_READ_CHUNK_BYTES = 16 * 1024
_PEM_MARKER = b"-----BEGIN"


class X5UError(TNCAError):
    """The ``x5u`` URL is refused by policy, could not be fetched, or holds no certificates."""


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """What the fetcher may do. The defaults are the production settings."""

    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_cache_age: dt.timedelta = DEFAULT_MAX_CACHE_AGE
    cache_entries: int = DEFAULT_CACHE_ENTRIES
    # Dev stack only: allow http:// when the host resolves to loopback addresses only.
    allow_http_loopback: bool = False
    # Allow hosts resolving to private, loopback or link-local ranges (over https).
    allow_private_addresses: bool = False
    # Trust store for the TLS server certificate: a PEM file; None means the system store.
    tls_ca_file: str | None = None


    @classmethod
    def from_config(cls, section: Mapping[str, object]) -> FetchPolicy:
        """From ``tnca.toml`` ``[x5u]``: strict, so a misspelt key is an error, not a default.

        Raises :class:`~ca.errors.PolicyError` naming ``[x5u] key``.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key, value in section.items():
            if key not in fields:
                raise PolicyError(f"unknown key [x5u] {key}; known: {', '.join(fields)}", field=f"[x5u] {key}")
            default = fields[key].default
            if key == "max_cache_age":
                if not isinstance(value, str):
                    raise PolicyError(f"[x5u] {key} must be a duration such as '24h'", field=f"[x5u] {key}")
                try:
                    value = parse_duration(value)
                except ValueError as exc:
                    raise PolicyError(f"[x5u] {key}: {exc}", field=f"[x5u] {key}") from None
            elif key == "tls_ca_file":
                if not isinstance(value, str):
                    raise PolicyError(f"[x5u] {key} must be a path string", field=f"[x5u] {key}")
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise PolicyError(f"[x5u] {key} must be true or false, got {value!r}", field=f"[x5u] {key}")
            else:
                kinds = int if isinstance(default, int) else int | float
                if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
                    what = "a positive integer" if kinds is int else "a positive number"
                    raise PolicyError(f"[x5u] {key} must be {what}, got {value!r}", field=f"[x5u] {key}")
            values[key] = value
        return cls(**values)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class _CacheEntry:
    chain: tuple[x509.Certificate, ...]
    expires_at: dt.datetime


class X5UFetcher:
    """Turns an ``x5u`` URL into the certificates it holds, first certificate first.

    Thread-safe: gunicorn threads may share one instance. ``requests_made`` counts network
    requests (cache hits and overrides do not count).
    """

    def __init__(
        self,
        policy: FetchPolicy = FetchPolicy(),
        *,
        overrides: Mapping[str, Sequence[x509.Certificate]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.policy = policy
        self._overrides = {url: tuple(chain) for url, chain in (overrides or {}).items()}
        self._clock = clock or SystemClock()
        self._cache: collections.OrderedDict[str, _CacheEntry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.requests_made = 0

    def fetch(self, url: str) -> tuple[x509.Certificate, ...]:
        """The chain at ``url``. Raises :class:`X5UError` naming what was refused or failed."""
        override = self._overrides.get(url)
        if override is not None:
            return override
        now = self._clock.now()
        with self._lock:
            entry = self._cache.get(url)
            if entry is not None and entry.expires_at > now:
                self._cache.move_to_end(url)
                return entry.chain
        chain = self._fetch_uncached(url)
        expires_at = min([now + self.policy.max_cache_age] + [c.not_valid_after_utc for c in chain])
        with self._lock:
            self._cache[url] = _CacheEntry(chain, expires_at)
            self._cache.move_to_end(url)
            while len(self._cache) > self.policy.cache_entries:
                self._cache.popitem(last=False)
        return chain

    # ---------------------------------------------------------------------------------------

    def _fetch_uncached(self, url: str) -> tuple[x509.Certificate, ...]:
        scheme, host, port, target = _split_url(url)
        if scheme == "http" and not self.policy.allow_http_loopback:
            # Refused before any DNS query: the URL alone decides it (RFC 9448 §6 step 2).
            raise X5UError(f"x5u must be an https URL (RFC 9448 §6), got scheme 'http' for host {host!r}")
        addresses = _resolve(host, port)
        address = self._check_destination(scheme, host, addresses)
        deadline = time.monotonic() + self.policy.timeout_seconds
        body = self._get(scheme, host, port, address, target, deadline)
        return parse_chain(body)

    def _check_destination(
        self, scheme: str, host: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
    ) -> str:
        all_loopback = all(a.is_loopback for a in addresses)
        if scheme == "http":
            # RFC 9448 §6 step 2: x5u MUST be an HTTPS URL. The loopback exception exists only
            # so the dev stack can run without TLS, and only when configured.
            if not (self.policy.allow_http_loopback and all_loopback):
                raise X5UError(f"x5u must be an https URL (RFC 9448 §6), got scheme 'http' for host {host!r}")
        elif not self.policy.allow_private_addresses:
            refused = [a for a in addresses if not a.is_global and not (self.policy.allow_http_loopback and a.is_loopback)]
            if refused:
                raise X5UError(
                    f"x5u host {host!r} resolves to non-public address {refused[0]}; "
                    "fetching it is refused (set allow_private_addresses to permit)"
                )
        return str(addresses[0])

    def _get(self, scheme: str, host: str, port: int, address: str, target: str, deadline: float) -> bytes:
        timeout = max(deadline - time.monotonic(), 0.001)
        if scheme == "https":
            context = ssl.create_default_context(cafile=self.policy.tls_ca_file)
            conn: http.client.HTTPConnection = _PinnedHTTPSConnection(host, port, address, context, timeout)
        else:
            conn = _PinnedHTTPConnection(host, port, address, timeout)
        try:
            try:
                conn.request("GET", target, headers={"Accept": "application/pem-certificate-chain"})
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise X5UError(f"x5u {host}: request failed ({_describe_os_error(exc)})") from exc
            with self._lock:
                self.requests_made += 1
            if 300 <= response.status < 400:
                # No redirects: following one would bypass the address checks.
                raise X5UError(f"x5u {host}: redirect (HTTP {response.status}) refused; the URL must serve the chain itself")
            if response.status != 200:
                raise X5UError(f"x5u {host}: expected HTTP 200, got {response.status}")
            declared = response.getheader("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > self.policy.max_bytes:
                raise X5UError(f"x5u {host}: body of {declared} bytes exceeds the limit of {self.policy.max_bytes}")
            return self._read_limited(conn, response, host, deadline)
        finally:
            conn.close()

    def _read_limited(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, host: str, deadline: float
    ) -> bytes:
        chunks: list[bytes] = []
        received = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise X5UError(f"x5u {host}: no complete answer within {self.policy.timeout_seconds} s")
            if conn.sock is not None:
                # Each read may block only until the overall deadline, so a server that drips
                # one byte at a time cannot stretch the fetch.
                conn.sock.settimeout(remaining)
            try:
                chunk = response.read1(_READ_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, TimeoutError | socket.timeout):
                    raise X5UError(f"x5u {host}: no complete answer within {self.policy.timeout_seconds} s") from exc
                raise X5UError(f"x5u {host}: reading the body failed ({_describe_os_error(exc)})") from exc
            if not chunk:
                return b"".join(chunks)
            received += len(chunk)
            if received > self.policy.max_bytes:
                raise X5UError(f"x5u {host}: body exceeds the limit of {self.policy.max_bytes} bytes")
            chunks.append(chunk)


def parse_chain(body: bytes) -> tuple[x509.Certificate, ...]:
    """Certificates from an ``application/pem-certificate-chain`` body or one DER certificate."""
    try:
        if body.lstrip().startswith(_PEM_MARKER):
            chain = tuple(with_names_decoded(c) for c in x509.load_pem_x509_certificates(body))
        else:
            chain = (with_names_decoded(x509.load_der_x509_certificate(body)),)
    except MALFORMED_X509_ERRORS as exc:
        raise X5UError(f"x5u resource is not a PEM certificate chain or a DER certificate ({exc})") from exc
    if not chain:
        raise X5UError("x5u resource holds no certificate")
    return chain


def _split_url(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise X5UError(f"x5u is not a valid URL ({exc})") from exc
    if parts.scheme not in ("https", "http"):
        raise X5UError(f"x5u must be an https URL (RFC 9448 §6), got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise X5UError("x5u URL has no host")
    if parts.username is not None or parts.password is not None:
        raise X5UError("x5u URL must not carry credentials")
    default_port = 443 if parts.scheme == "https" else 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.scheme, parts.hostname, port or default_port, target


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # Not production-grade in one respect: getaddrinfo() has no timeout of its own, so name
    # resolution is bounded by the system resolver's settings (resolv.conf), not by
    # FetchPolicy.timeout_seconds, which starts counting at the connection.
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise X5UError(f"x5u host {host!r} does not resolve ({_describe_os_error(exc)})") from exc
    addresses = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # ::ffff:10.0.0.1 is 10.0.0.1 for the purpose of the range checks.
            address = address.ipv4_mapped
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise X5UError(f"x5u host {host!r} does not resolve")
    return addresses


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address that was already checked, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address that was already checked; SNI and hostname check use the URL's host."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls_context.wrap_socket(sock, server_hostname=self.host)
