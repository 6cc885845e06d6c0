"""The log's HTTP/1.1 server (ctlog/httpserver.py): kept-alive connections, whatever the app read
of a request's body; what it refuses itself, in the log's JSON shape; and closing every
connection when it stops."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from ctlog.httpserver import LogHTTPServer

MAX_BODY = 1024


def app(environ, start_response):
    """Echoes what it was asked; ``/ignore`` answers without reading the body, ``/fail`` raises."""
    path = environ["PATH_INFO"]
    if path == "/fail":
        raise RuntimeError("a bug")
    if path == "/ignore":
        body = b""
    else:
        body = environ["wsgi.input"].read()
    payload = json.dumps({"method": environ["REQUEST_METHOD"], "path": path, "query": environ["QUERY_STRING"],
                          "body": body.decode(), "length": environ.get("CONTENT_LENGTH", ""),
                          "agent": environ.get("HTTP_USER_AGENT", "")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


@pytest.fixture
def server() -> Iterator[LogHTTPServer]:
    running = LogHTTPServer(("127.0.0.1", 0), app, max_body=MAX_BODY)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()
    thread.join()


def connect(server: LogHTTPServer) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    connection.connect()
    connection.auto_open = 0  # a closed connection must fail the test, not be reopened quietly
    return connection


def ask(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
        headers: dict | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def test_requests_one_after_another_share_one_connection(server):
    connection = connect(server)
    first_socket = connection.sock
    for number in range(3):
        response, body = ask(connection, "POST", f"/ct/v1/add-chain?n={number}", b'{"chain": []}',
                             {"User-Agent": "test"})
        assert response.status == 200 and not response.will_close
        assert json.loads(body) == {"method": "POST", "path": "/ct/v1/add-chain", "query": f"n={number}",
                                    "body": '{"chain": []}', "length": "13", "agent": "test"}
    assert connection.sock is first_socket
    connection.close()


def test_a_body_the_app_did_not_read_does_not_spoil_the_next_request(server):
    connection = connect(server)
    response, _ = ask(connection, "POST", "/ignore", b"x" * 500)
    assert response.status == 200 and not response.will_close
    response, body = ask(connection, "GET", "/after")
    assert response.status == 200 and json.loads(body)["path"] == "/after"
    connection.close()


def test_head_carries_the_length_without_the_body(server):
    connection = connect(server)
    response, body = ask(connection, "HEAD", "/x")
    assert response.status == 200 and body == b"" and int(response.headers["Content-Length"]) > 0
    response, body = ask(connection, "GET", "/x")
    assert json.loads(body)["method"] == "GET"
    connection.close()


def test_a_body_over_the_limit_reaches_the_app_unread_and_closes_the_connection(server):
    connection = connect(server)
    response, body = ask(connection, "POST", "/big", b"y" * (MAX_BODY + 1))
    # The app decides what to answer from CONTENT_LENGTH alone (ctlog/app.py answers 413).
    assert response.status == 200 and json.loads(body)["body"] == "" and json.loads(body)["length"] == str(MAX_BODY + 1)
    assert response.will_close and response.headers["Connection"] == "close"
    connection.close()


def test_connection_close_and_http_1_0_are_honoured(server):
    connection = connect(server)
    response, _ = ask(connection, "GET", "/x", headers={"Connection": "close"})
    assert response.will_close
    connection.close()
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as raw:
        raw.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        answer = b"".join(iter(lambda: raw.recv(4096), b""))  # the server closes after answering
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in answer


@pytest.mark.parametrize("request_bytes, status, message", [
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 411,
     "send the request body with a Content-Length, not chunked"),
    (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
    (b"GET /x HTTP/2.0\r\n\r\n", 400, "malformed request line"),
    (b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header field"),
    (b"POST /x HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "malformed Content-Length"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "the request line is longer than 8 KiB"),
    (b"GET /x HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431, "more than 100 header fields"),
])
def test_what_the_server_refuses_itself_is_answered_in_the_logs_shape_and_closed(server, request_bytes, status,
                                                                                 message):
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as raw:
        raw.sendall(request_bytes)
        answer = b"".join(iter(lambda: raw.recv(4096), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()) and b"\r\nConnection: close" in head
    assert json.loads(body) == {"success": False, "error_message": message}


def test_an_app_that_raises_gets_a_500_and_the_connection_closes(server):
    connection = connect(server)
    response, body = ask(connection, "GET", "/fail")
    assert response.status == 500 and response.will_close
    assert json.loads(body) == {"success": False, "error_message": "internal error"}
    connection.close()


def test_closing_the_server_closes_its_kept_alive_connections():
    running = LogHTTPServer(("127.0.0.1", 0), app, max_body=MAX_BODY)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    connection = connect(running)
    response, _ = ask(connection, "GET", "/x")
    assert not response.will_close
    running.shutdown()
    running.server_close()
    thread.join()
    connection.sock.settimeout(10)
    assert connection.sock.recv(1) == b""  # the server's end is closed: no thread left waiting on it
    connection.close()
