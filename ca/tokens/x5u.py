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
- The body is limited in size. One deadline (``timeout_seconds``) covers the whole fetch: name
  resolution, connect, TLS handshake, sending the request, the status line, the headers and the
  body. Every blocking socket call may wait only for what is left of it, so a host that sends
  one byte at a time cannot stretch the fetch; running out of time in any phase is reported in
  the same words.
- Chains are cached by URL until the earliest ``notAfter`` in the chain or ``max_cache_age``,
  whichever comes first. A failed fetch is remembered for ``failure_cache_seconds``: the same
  URL is refused from memory meanwhile, so repeating a slow or broken URL costs one fetch.
- The fetch runs on a request thread, so slow hosts must not be able to hold them all: requests
  for a URL that is being fetched wait for that one fetch (bounded by its deadline) instead of
  opening connections of their own, and at most ``max_concurrent_fetches`` request threads per
  process fetch or wait at a time; the next one is refused at once as busy.
- A failure that may pass by itself (the fetcher was busy, or the host gave no complete answer
  in time) carries ``retry_after``; the caller can let the client try again rather than treat
  the URL as refused for good.
- ``overrides`` maps URLs to chains held in memory: the server's own token-authority URL must
  resolve without a request, because a one-worker server fetching itself would deadlock.

What is *not* checked here: whether the chain is trusted. That is ``ca.tokens.verification``' job; this
module only turns a URL into certificates.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import http.client
import ipaddress
import logging
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
from ca.tokens.deadline_http import (
    Deadline,
    PinnedHTTPConnection,
    PinnedHTTPSConnection,
    describe_os_error,
    getaddrinfo_by,
)
from ca.x509util import MALFORMED_X509_ERRORS, with_names_decoded

log = logging.getLogger("tnca.x5u")

# A token authority chain is one to a few certificates of well under 2 KiB each.
DEFAULT_MAX_BYTES = 64 * 1024
# The whole fetch (DNS, connect, TLS, request, status line, headers, body) must finish within
# this many seconds.
DEFAULT_TIMEOUT_SECONDS = 5.0
# x5u resources are cached (SHAKEN verifiers keep them a day when the server sends no cache
# directives); a token authority certificate changes rarely, so a day is the default upper bound.
DEFAULT_MAX_CACHE_AGE = dt.timedelta(hours=24)
# Bounded so that a client cycling through URLs cannot grow the cache without limit.
DEFAULT_CACHE_ENTRIES = 256
# Request threads of one process that may be fetching (or waiting for a fetch of) x5u URLs at
# once. Below `tnca serve --threads` (4 by default), so slow hosts never hold every thread.
DEFAULT_MAX_CONCURRENT_FETCHES = 2
# How long a failed fetch is answered from memory before the URL is fetched again.
DEFAULT_FAILURE_CACHE_SECONDS = 30.0
# A request waiting for another thread's fetch of the same URL waits until that fetch's
# deadline, plus this much for it to hand over its result.
_WAIT_GRACE_SECONDS = 0.5
_READ_CHUNK_BYTES = 16 * 1024
_PEM_MARKER = b"-----BEGIN"


class X5UError(TNCAError):
    """The ``x5u`` URL is refused by policy, could not be fetched, or holds no certificates.

    ``retry_after`` (seconds) is set when the same fetch may well succeed later without anything
    changing at the URL: the fetcher was busy, or the host gave no complete answer in time.
    It is None when the refusal is final as far as this fetcher can tell.

    ``cause`` is the precise reason for the operator's log. Where the client must not learn it
    (why a host could not be reached: which address it resolved to, refused or reset, which TLS
    failure), ``detail`` says only :data:`UNREACHABLE`, so the fetcher is no oracle for what
    answers where from this authority's network.
    """

    def __init__(self, detail: str, *, retry_after: float | None = None, cause: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.cause = cause or detail


# What the client is told for every failure to reach a host: unresolvable, an address refused by
# policy, refused or reset connections, TLS failures. The cause goes to the log only.
UNREACHABLE = "could not be fetched: no answer over HTTPS from a publicly routable address"


def _unreachable(host: str, cause: str) -> X5UError:
    log.warning("x5u host %r not fetched: %s", host, cause)
    return X5UError(f"x5u {host}: {UNREACHABLE}", cause=cause)


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
    # Request threads per process that may fetch, or wait for a fetch, at once; more are busy.
    max_concurrent_fetches: int = DEFAULT_MAX_CONCURRENT_FETCHES
    # Seconds a failed fetch of a URL is answered from memory instead of fetching again.
    failure_cache_seconds: float = DEFAULT_FAILURE_CACHE_SECONDS

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


@dataclasses.dataclass(frozen=True)
class _Failure:
    """A failed fetch, remembered: each caller gets a new X5UError with the same words."""

    detail: str
    retryable: bool
    expires_at: dt.datetime
    cause: str | None = None

    def error(self, now: dt.datetime) -> X5UError:
        retry_after = max((self.expires_at - now).total_seconds(), 0.0) if self.retryable else None
        return X5UError(self.detail, retry_after=retry_after, cause=self.cause)


@dataclasses.dataclass
class _Flight:
    """One network fetch of a URL under way; requests for the same URL wait for its outcome."""

    deadline: Deadline
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    chain: tuple[x509.Certificate, ...] | None = None
    failure: _Failure | None = None


class X5UFetcher:
    """Turns an ``x5u`` URL into the certificates it holds, first certificate first.

    Thread-safe: gunicorn threads may share one instance. ``requests_made`` counts network
    requests (cache hits and overrides do not count).

    One process-wide view per instance: the chain cache, the failure cache, the fetches under
    way (one per URL) and the count of request threads busy with them, all under one lock that
    is never held while the network is used.
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
        self._failures: collections.OrderedDict[str, _Failure] = collections.OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._busy = 0  # request threads fetching or waiting for a fetch
        self._lock = threading.Lock()
        self.requests_made = 0

    def fetch(self, url: str) -> tuple[x509.Certificate, ...]:
        """The chain at ``url``. Raises :class:`X5UError` naming what was refused or failed."""
        override = self._overrides.get(url)
        if override is not None:
            return override
        scheme, host, port, target = _split_url(url)
        if scheme == "http" and not self.policy.allow_http_loopback:
            # Refused before any DNS query: the URL alone decides it (RFC 9448 §6 step 2).
            raise X5UError(f"x5u must be an https URL (RFC 9448 §6), got scheme 'http' for host {host!r}")
        now = self._clock.now()
        with self._lock:
            entry = self._cache.get(url)
            if entry is not None and entry.expires_at > now:
                self._cache.move_to_end(url)
                return entry.chain
            failure = self._failures.get(url)
            if failure is not None:
                if failure.expires_at > now:
                    raise failure.error(now)
                del self._failures[url]
            if self._busy >= self.policy.max_concurrent_fetches:
                # Refused at once: waiting for a slot would hold this request thread as well.
                raise X5UError(
                    f"x5u {host}: the fetcher is busy with other x5u fetches; try again shortly",
                    retry_after=self.policy.timeout_seconds,
                )
            self._busy += 1
            flight = self._flights.get(url)
            leading = flight is None
            if flight is None:
                flight = self._flights[url] = _Flight(Deadline(self.policy.timeout_seconds))
        try:
            if leading:
                return self._lead(url, flight, scheme, host, port, target)
            return self._follow(flight, host)
        finally:
            with self._lock:
                self._busy -= 1

    # ---------------------------------------------------------------------------------------

    def _lead(
        self, url: str, flight: _Flight, scheme: str, host: str, port: int, target: str
    ) -> tuple[x509.Certificate, ...]:
        """Fetch ``url`` over the network for this request and any that wait on ``flight``."""
        try:
            chain = self._fetch_uncached(scheme, host, port, target, flight.deadline)
        except X5UError as exc:
            failure = _Failure(
                exc.detail,
                retryable=exc.retry_after is not None,
                expires_at=self._clock.now() + dt.timedelta(seconds=self.policy.failure_cache_seconds),
                cause=exc.cause,
            )
            with self._lock:
                self._failures[url] = flight.failure = failure
                self._failures.move_to_end(url)
                while len(self._failures) > self.policy.cache_entries:
                    self._failures.popitem(last=False)
                del self._flights[url]
            flight.done.set()
            raise
        except BaseException:
            # Not a refusal but a bug: nothing is remembered; the waiters are told it failed.
            with self._lock:
                del self._flights[url]
            flight.done.set()
            raise
        now = self._clock.now()
        expires_at = min([now + self.policy.max_cache_age] + [c.not_valid_after_utc for c in chain])
        with self._lock:
            # In the same critical section as dropping the flight: a request arriving now
            # finds either the flight or the cached chain, never neither.
            self._cache[url] = _CacheEntry(chain, expires_at)
            self._cache.move_to_end(url)
            while len(self._cache) > self.policy.cache_entries:
                self._cache.popitem(last=False)
            flight.chain = chain
            del self._flights[url]
        flight.done.set()
        return chain

    def _follow(self, flight: _Flight, host: str) -> tuple[x509.Certificate, ...]:
        """The outcome of another request's fetch of the same URL, waited for until its deadline."""
        wait = max(flight.deadline.at - time.monotonic(), 0.0) + _WAIT_GRACE_SECONDS
        if not flight.done.wait(wait):
            raise X5UError(
                f"x5u {host}: no complete answer within {self.policy.timeout_seconds} s",
                retry_after=self.policy.failure_cache_seconds,
            )
        if flight.chain is not None:
            return flight.chain
        if flight.failure is not None:
            raise flight.failure.error(self._clock.now())
        raise X5UError(f"x5u {host}: the fetch this request waited for failed")

    def _fetch_uncached(
        self, scheme: str, host: str, port: int, target: str, deadline: Deadline
    ) -> tuple[x509.Certificate, ...]:
        try:
            addresses = _resolve(host, port, deadline)
            address = self._check_destination(scheme, host, addresses)
            body = self._get(scheme, host, port, address, target, deadline)
        except TimeoutError as exc:
            # Whichever phase ran out of time (DNS, connect, TLS, request, status line, headers,
            # body), the client is told the same thing.
            raise X5UError(
                f"x5u {host}: no complete answer within {self.policy.timeout_seconds} s",
                # A slow host may be slow only now; it is asked again once the failure is forgotten.
                retry_after=self.policy.failure_cache_seconds,
            ) from exc
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
            for address in addresses:
                if self.policy.allow_http_loopback and address.is_loopback:
                    continue
                inner = [a for a in _routed_as(address) if not a.is_global]
                if inner:
                    raise _unreachable(
                        host,
                        f"resolves to non-public address {inner[0]}"
                        + (f" (inside {address})" if inner[0] != address else "")
                        + "; fetching it is refused (set allow_private_addresses to permit)",
                    )
        return str(addresses[0])

    def _get(self, scheme: str, host: str, port: int, address: str, target: str, deadline: Deadline) -> bytes:
        """The body of a GET; raises TimeoutError once ``deadline`` has passed, in any phase."""
        if scheme == "https":
            context = ssl.create_default_context(cafile=self.policy.tls_ca_file)
            conn: http.client.HTTPConnection = PinnedHTTPSConnection(host, port, address, context, deadline)
        else:
            conn = PinnedHTTPConnection(host, port, address, deadline)
        response: http.client.HTTPResponse | None = None
        try:
            try:
                conn.request("GET", target, headers={"Accept": "application/pem-certificate-chain"})
                response = conn.getresponse()
            except TimeoutError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                raise _unreachable(host, f"request failed ({describe_os_error(exc)})") from exc
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
            return self._read_limited(response, host)
        finally:
            if response is not None:
                response.close()
            conn.close()

    def _read_limited(self, response: http.client.HTTPResponse, host: str) -> bytes:
        # The connection's socket enforces the deadline on every read (DeadlineSocket), also
        # after http.client has handed the socket over to the response (Connection: close).
        chunks: list[bytes] = []
        received = 0
        while True:
            try:
                chunk = response.read1(_READ_CHUNK_BYTES)
            except TimeoutError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                raise X5UError(f"x5u {host}: reading the body failed ({describe_os_error(exc)})") from exc
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


def _resolve(host: str, port: int, deadline: Deadline) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` resolves to; raises TimeoutError if that takes past ``deadline``."""
    try:
        try:
            # An address literal needs no resolver (AI_NUMERICHOST never sends a query).
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            infos = getaddrinfo_by(host, port, deadline)
    except TimeoutError:
        raise
    except (OSError, UnicodeError) as exc:
        raise _unreachable(host, f"does not resolve ({describe_os_error(exc)})") from exc
    addresses = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # ::ffff:10.0.0.1 is 10.0.0.1 for the purpose of the range checks.
            address = address.ipv4_mapped
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _unreachable(host, "does not resolve")
    return addresses


# IPv6 prefixes that carry an IPv4 destination in their bits: a host that resolves to one reaches
# that IPv4 address through a translator or tunnel, so the IPv4 address must pass the range
# checks too. NAT64 well-known prefix (RFC 6052 §2.1) and its local-use block (RFC 8215, embedded
# at /96 in every deployment this fetcher can be pointed at; the block itself is not global).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 §2.5.5.1, deprecated but routable by some stacks


def _routed_as(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """``address`` and every IPv4 address it carries: IPv4-mapped, NAT64, 6to4 (RFC 3056),
    Teredo (RFC 4380: server and client) and IPv4-compatible. Each must be globally routable."""
    routed: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            routed.append(address.ipv4_mapped)
        if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
            routed.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            routed.append(address.sixtofour)
        if address.teredo is not None:
            routed.extend(address.teredo)
    return routed
