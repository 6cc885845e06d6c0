"""A small HTTP/1.1 server for the log's WSGI app: kept-alive connections, a thread for each.

Why not werkzeug's development server (``werkzeug.serving.make_server``, which served the logs
before): it answers every request with ``Connection: close`` (werkzeug 3.1: its ``http.server``
base cannot skip a request body the app left unread before it parses the next request line). Every submission then cost the submitter a new TCP connection and the log a new
connection and a new thread, started and ended: in a profile of ``make bench`` that was about a
quarter of a dev log's CPU (docs/performance.md). Here the server reads a request's whole body
(by its Content-Length, at most ``max_body`` bytes) before it calls the app, so the connection is
always ready for the next request; a request whose body is not read (too large, chunked, a bad
length) is answered and its connection closed.

The app is called as WSGI (PEP 3333) with the body in memory and answers in one write, status
line, headers and body together. Not a general-purpose server: no chunked request bodies (411),
no HTTP/1.0 keep-alive, no TLS; it serves development and test logs (``ctlog/server.py``).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from email.utils import formatdate

log = logging.getLogger(__name__)

# An idle kept-alive connection is closed after this long, and its thread ends; a submitter's
# pool notices the close before it reuses the connection (urllib3 checks the socket first).
IDLE_TIMEOUT_SECONDS = 60
MAX_LINE_BYTES = 8192  # request line and each header line
MAX_HEADERS = 100
LISTEN_BACKLOG = 128
SERVER_HEADER = "tnca-ctlog"

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class _Refused(Exception):
    """A request the server itself answers (it never reaches the app), then closes the connection."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LogHTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Serves ``app`` on ``address``; ``serve_forever()`` in one thread, a thread per connection.
    ``server_close()`` also closes the kept-alive connections, so their threads end."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], app: WSGIApp, *, max_body: int, access_log: bool = False) -> None:
        self.app = app
        self.max_body = max_body
        self.access_log = access_log
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Connection)

    @property
    def server_port(self) -> int:
        return self.server_address[1]

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)  # its thread's next read sees the end
            except OSError:
                pass


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header's value (RFC 9110 §6.6.1), formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class _Connection(socketserver.StreamRequestHandler):
    """One client connection: requests one after another until the client closes it, asks to
    (``Connection: close``), stays idle for IDLE_TIMEOUT_SECONDS, or sends what cannot be read."""

    timeout = IDLE_TIMEOUT_SECONDS  # applies to every read on the socket
    server: LogHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        try:
            super().finish()
        except OSError:  # the client went away with a response unsent
            pass

    def handle(self) -> None:
        try:
            while self._serve_one():
                pass
        except (TimeoutError, ConnectionError, OSError):
            pass  # idle too long, reset by the client, or closed by server_close()

    def _readline(self) -> bytes:
        line = self.rfile.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            raise _Refused("431 Request Header Fields Too Large", "a request or header line is longer than 8 KiB")
        return line

    def _serve_one(self) -> bool:
        """Read one request, answer it; True when the connection may carry another."""
        line = self.rfile.readline(MAX_LINE_BYTES + 1)
        if not line:
            return False  # the client closed the connection between requests
        try:
            if len(line) > MAX_LINE_BYTES:
                raise _Refused("414 URI Too Long", "the request line is longer than 8 KiB")
            environ, keep_alive = self._read_request(line)
        except _Refused as refused:
            self._send(refused.status, [("Content-Type", "application/json")], _json_error(refused.message),
                       keep_alive=False, request_line=line, head=False)
            return False
        if environ is None:
            return False  # the client went away in the middle of its request
        status, headers, body = self._call_app(environ)
        if status.startswith("500"):
            keep_alive = False
        self._send(status, headers, body, keep_alive=keep_alive, request_line=line,
                   head=environ["REQUEST_METHOD"] == "HEAD")
        return keep_alive

    def _read_request(self, line: bytes) -> tuple[dict | None, bool]:
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
            raise _Refused("400 Bad Request", "malformed request line")
        method, target, version = parts
        path, _, query = target.partition("?")
        if path.startswith(("http://", "https://")):  # absolute form (RFC 9112 §3.2.2)
            path = urllib.parse.urlsplit(path).path or "/"
        environ: dict = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
            "SERVER_NAME": self.server.server_address[0], "SERVER_PORT": str(self.server.server_port),
            "SERVER_PROTOCOL": version, "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]), "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for count in range(MAX_HEADERS + 1):
            header = self._readline()
            if header in (b"\r\n", b"\n"):
                break
            if not header:
                return None, False
            if count == MAX_HEADERS:
                raise _Refused("431 Request Header Fields Too Large", f"more than {MAX_HEADERS} header fields")
            name, colon, value = header.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise _Refused("400 Bad Request", "malformed header field")
            if "_" in name:  # CONTENT_LENGTH and Content-Length would be one WSGI key: drop the ambiguous one
                continue
            key = name.upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
            value = value.strip()
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        if "HTTP_TRANSFER_ENCODING" in environ:
            raise _Refused("411 Length Required", "send the request body with a Content-Length, not chunked")
        raw_length = environ.get("CONTENT_LENGTH", "0") or "0"
        if not (raw_length.isascii() and raw_length.isdigit() and len(raw_length) <= 18):
            raise _Refused("400 Bad Request", "malformed Content-Length")
        length = int(raw_length)
        connection = environ.get("HTTP_CONNECTION", "").lower()
        keep_alive = version == "HTTP/1.1" and "close" not in connection
        if length > self.server.max_body:
            # The app refuses it from CONTENT_LENGTH alone (413); the unread body ends the connection.
            environ["wsgi.input"] = io.BytesIO()
            return environ, False
        if length and environ.get("HTTP_EXPECT", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            return None, False
        environ["wsgi.input"] = io.BytesIO(body)
        return environ, keep_alive

    def _call_app(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):  # noqa: ANN001
            started[:] = [status, headers]
            return written.append

        try:
            result = self.server.app(environ, start_response)
            try:
                body = b"".join([*written, *result])
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:  # the app handles its own errors; this is a bug in it
            log.exception("log HTTP server: the app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return "500 Internal Server Error", [("Content-Type", "application/json")], _json_error("internal error")
        return started[0], started[1], body

    def _send(self, status: str, headers: list[tuple[str, str]], body: bytes, *, keep_alive: bool,
              request_line: bytes, head: bool) -> None:
        lines = [f"HTTP/1.1 {status}", f"Server: {SERVER_HEADER}", f"Date: {_http_date()}"]
        length = len(body)
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                if head:  # a HEAD answer carries the length the GET would have
                    length = int(value)
                continue
            if lowered not in ("connection", "transfer-encoding", "server", "date"):
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {length}")
        if not keep_alive:
            lines.append("Connection: close")
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(message if head else message + body)
        if self.server.access_log:
            sys.stderr.write(f'{self.client_address[0]} - - [{_http_date()}] '
                             f'"{request_line.decode("latin-1").rstrip()}" {status.split(" ", 1)[0]} {len(body)}\n')


def _json_error(message: str) -> bytes:
    """The log's refusal shape (ctlog/app.py) for what the server refuses itself."""
    return json.dumps({"success": False, "error_message": message}, separators=(",", ":")).encode()
