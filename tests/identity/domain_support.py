"""A real DNS server (dnslib) and a real HTTP server on loopback, answering what a test puts in
them, for http-01 and dns-01 (RFC 8555 §8.3, §8.4). Nothing here answers "yes" by itself: a
name without a record gets NXDOMAIN, a path without content gets 404."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dnslib import CNAME, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from tests.helpers import free_port


@dataclass
class Zone(BaseResolver):
    """Records by (lower-case name without the final dot, type): A addresses or TXT strings."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, rtype: str, value: str) -> None:
        self.records.setdefault((name.lower(), rtype), []).append(value)

    def resolve(self, request, handler):  # dnslib's resolver interface
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        rtype = QTYPE[request.q.qtype]
        self.queries.append((name, rtype))
        alias = self.records.get((name, "CNAME"))
        if alias:
            # As a recursive resolver answers: the CNAME, then the target's records.
            reply.add_answer(RR(request.q.qname, QTYPE.CNAME, rdata=CNAME(alias[0]), ttl=60))
            for value in self.records.get((alias[0].lower(), rtype), []):
                rdata = A(value) if rtype == "A" else TXT(value)
                reply.add_answer(RR(alias[0], getattr(QTYPE, rtype), rdata=rdata, ttl=60))
            return reply
        values = self.records.get((name, rtype))
        if values is None:
            if not any(key[0] == name for key in self.records):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in values:
            rdata = A(value) if rtype == "A" else TXT(value)
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, rtype), rdata=rdata, ttl=60))
        return reply


class _ClassicHandler(DNSHandler):
    # RFC 1035 §4.2.1: UDP messages are at most 512 octets; longer answers are truncated (TC)
    # and the client asks again over TCP.
    udplen = 512


@contextmanager
def dns_server(zone: Zone) -> Iterator[int]:
    """dnslib's UDP and TCP servers on 127.0.0.1:<port>, answering from ``zone``; yields the port."""
    port = free_port()
    servers = [DNSServer(zone, port=port, address="127.0.0.1", logger=_QuietLogger(), tcp=tcp,
                         handler=_ClassicHandler) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    try:
        yield port
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()


class _QuietLogger:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@dataclass
class Content:
    """What the HTTP server answers per path: (status, body, seconds to wait first)."""

    paths: dict[str, tuple[int, bytes, float]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (Host header, path)


@contextmanager
def http_server(content: Content) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            content.requests.append((self.headers.get("Host", ""), self.path))
            status, body, delay = content.paths.get(self.path, (404, b"not found", 0.0))
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

        def log_message(self, format, *args):  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
