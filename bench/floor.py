"""The per-request floor under gunicorn: what a request costs the server before tnca does anything.

Four servers, each gunicorn with one gthread worker (4 threads) on loopback, the same way
``tnca serve`` runs its workers; one kept-alive client connection in this process sends the same
request again and again, and the server's CPU (master and worker, utime + stime from /proc) is
divided by the number of requests:

- ``wsgi``: a bare WSGI callable answering a fixed 15-byte JSON body (gunicorn alone);
- ``flask``: a bare Flask app with one route answering the same (gunicorn and Flask);
- ``tnca /healthz``: the tnca app's liveness probe (its request hooks: request id, JSON log
  line, metrics, headers; no database);
- ``tnca newNonce``: ``HEAD /acme/new-nonce`` (the same, plus a nonce: a MAC, no database).

The difference between these and the ~2 ms of a POST-as-GET (bench/issuance.py's per-step
figures) is JWS, nonce redemption, account and resource lookups. Nothing here asserts on time;
``python -m bench.floor [--requests N] [--json]`` prints the table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import proctree
from bench.issuance import free_port, tnca, wait_http

BARE_APPS = '''
from flask import Flask

BODY = b'{"status":"ok"}'


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


flask_app = Flask(__name__)


@flask_app.get("/healthz")
def healthz():
    return {"status": "ok"}
'''


def _measure(command: list[str], path: str, method: str, requests: int, *, cwd: str | None = None) -> float:
    """Server CPU (ms) per request of ``method path``; ``PORT`` in ``command`` is a free port."""
    port = free_port()
    server = subprocess.Popen([part.replace("PORT", str(port)) for part in command], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}{path}")
        connection = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(200):  # warm: imports, first-request caches
            connection.request(method, path)
            connection.getresponse().read()
        tree = proctree.process_tree([server.pid])
        before = sum(proctree.cpu_by_process(tree).values())
        for _ in range(requests):
            connection.request(method, path)
            connection.getresponse().read()
        after = sum(proctree.cpu_by_process(tree).values())
        connection.close()
        return (after - before) / requests * 1000
    finally:
        server.terminate()
        server.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description="tnca per-request floor under gunicorn (see the module docstring)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gunicorn = [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-k", "gthread",
                "-b", "127.0.0.1:PORT"]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tnca-floor-") as work:
        Path(work, "bare_apps.py").write_text(BARE_APPS)
        results["wsgi"] = _measure([*gunicorn, "bare_apps:wsgi"], "/healthz", "GET", args.requests, cwd=work)
        results["flask"] = _measure([*gunicorn, "bare_apps:flask_app"], "/healthz", "GET", args.requests, cwd=work)
        home = Path(work, "home")
        subprocess.run(tnca(home, "init"), check=True, stdout=subprocess.DEVNULL)
        serve = [*tnca(home, "serve", "--port", "PORT", "--workers", "1", "--threads", "4")]
        results["tnca /healthz"] = _measure(serve, "/healthz", "GET", args.requests)
        results["tnca newNonce"] = _measure(serve, "/acme/new-nonce", "HEAD", args.requests)
    report = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
              "load_average": proctree.load_average(), "requests": args.requests,
              "server_cpu_ms_per_request": {name: round(value, 3) for name, value in results.items()}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"per-request server CPU under gunicorn (1 worker × 4 threads), {args.requests} requests each, "
          f"load {report['load_average']}:")
    for name, value in results.items():
        print(f"  {name:15s} {value:6.3f} ms")


if __name__ == "__main__":
    main()
