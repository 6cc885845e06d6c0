"""HTTP under one deadline, to an address that was already checked: the plumbing of the ``x5u``
fetcher (``ca/tokens/x5u.py``), apart so that the fetcher reads as its policy.

- :class:`Deadline` is the one point in time by which a whole fetch must be over.
- :func:`getaddrinfo_by` bounds name resolution, which has no timeout of its own.
- :class:`PinnedHTTPConnection` / :class:`PinnedHTTPSConnection` connect to the checked address
  (TLS SNI and hostname verification for the URL's host), through a socket whose every call
  (connect, handshake, send, each read of the status line, headers and body) waits only for what
  is left of the deadline and raises ``TimeoutError`` once it has passed.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import socket
import ssl
import threading
import time

# Threads that run getaddrinfo() for host names, shared by every fetcher in the process.
_RESOLVER_THREADS = 4


_resolver_pool: concurrent.futures.ThreadPoolExecutor | None = None
_resolver_pool_lock = threading.Lock()


def getaddrinfo_by(host: str, port: int, deadline: Deadline) -> list[tuple]:  # type: ignore[type-arg]
    """getaddrinfo() for a host name, waited for no longer than ``deadline``.

    getaddrinfo() has no timeout of its own (the system resolver's, from resolv.conf, can be tens
    of seconds), so it runs on a small shared pool and the caller waits for its result only
    until the deadline. A lookup that overruns keeps its pool thread until the resolver gives up,
    but the caller (a request thread) is released on time; while every pool thread is stuck
    that way, further lookups queue and time out, which is the right answer when DNS hangs.
    """
    global _resolver_pool
    with _resolver_pool_lock:
        if _resolver_pool is None:
            # Created on first use, in the process that resolves (gunicorn forks its workers).
            _resolver_pool = concurrent.futures.ThreadPoolExecutor(_RESOLVER_THREADS, thread_name_prefix="x5u-resolve")
        future = _resolver_pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return future.result(timeout=deadline.remaining())
    except concurrent.futures.TimeoutError:
        future.cancel()  # still queued: never runs; already running: finishes unobserved
        raise TimeoutError(f"resolving {host!r} did not finish in time") from None




def describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


class Deadline:
    """The one point in time (``time.monotonic()``) by which a whole fetch must be over."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, always positive; raises TimeoutError once there are none."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline of the x5u fetch has passed")
        return left


class DeadlineSocket:
    """A connected socket (plain or TLS) on which no blocking call outlasts the fetch's deadline.

    A socket timeout alone bounds each call, not their sum: a host that sends one byte per call,
    each just inside the timeout, could make reading the status line and headers last forever.
    So every call here first sets the timeout to what is left of the deadline (and fails at once
    when nothing is). http.client uses only ``sendall``, ``makefile("rb")`` and ``close`` of its
    connection's socket; the reader ``makefile`` returns reads through :meth:`recv_into`.
    """

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self._readers = 0
        self._closed = False

    def sendall(self, data: bytes) -> None:
        # socket.sendall on a TLS socket loops over send() with a fresh timeout per call, so
        # the loop is here, with the deadline checked before each send.
        view = memoryview(data).cast("B")
        while view:
            self._sock.settimeout(self._deadline.remaining())
            sent = self._sock.send(view)
            view = view[sent:]

    def recv_into(self, buffer: memoryview | bytearray) -> int:
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"only binary reading is supported, not mode {mode!r}")
        self._readers += 1
        return io.BufferedReader(DeadlineReader(self))

    def close(self) -> None:
        # As socket.close(): the descriptor stays open while a reader from makefile() does, since
        # http.client closes the connection but keeps reading the response (Connection: close).
        self._closed = True
        if self._readers == 0:
            self._sock.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers == 0:
            self._sock.close()


class DeadlineReader(io.RawIOBase):
    """What ``DeadlineSocket.makefile`` buffers: reads through the deadline-checking socket."""

    def __init__(self, sock: DeadlineSocket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._sock._reader_closed()


def connect(address: str, port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to an address literal (already checked), made within ``deadline``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.remaining())
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address that was already checked, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int, address: str, deadline: Deadline) -> None:
        super().__init__(host, port)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = DeadlineSocket(connect(self._address, self.port, self._deadline), self._deadline)  # type: ignore[assignment]


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address that was already checked; SNI and hostname check use the URL's host."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext, deadline: Deadline) -> None:
        super().__init__(host, port, context=context)
        self._address = address
        self._tls_context = context
        self._deadline = deadline

    def connect(self) -> None:
        sock = connect(self._address, self.port, self._deadline)
        try:
            tls = self._tls_context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
            # With a timeout set, the ssl module bounds the whole handshake by it (one deadline
            # across its reads and writes), so the handshake too ends by the fetch's deadline.
            tls.settimeout(self._deadline.remaining())
            tls.do_handshake()
        except BaseException:
            sock.close()
            raise
        self.sock = DeadlineSocket(tls, self._deadline)  # type: ignore[assignment]
