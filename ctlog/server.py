"""Running a log: the HTTP server plus the integrator thread.

Why werkzeug's threaded server and not gunicorn: a log must integrate from exactly one place, and
in one process the integrator is simply a thread next to the request threads. Gunicorn would
add a fork (a thread started before it does not survive, so the integrator would have to start
in a worker hook, and a second worker would mean a second integrator). This service runs
development and test logs, starts in well under a second, and is not the production path:
production points the authority at real logs. Should it ever face real load, run
``ctlog.app.create_app`` under gunicorn with ``--workers 1 --threads N`` and start the
:class:`Integrator` from a ``post_worker_init`` hook.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from ctlog.app import create_app
from ctlog.log import Log, LogConfig

log = logging.getLogger(__name__)


class Integrator(threading.Thread):
    """Calls :meth:`Log.integrate` every ``interval`` seconds until stopped.

    The interval is the log's maximum merge delay (RFC 6962 §3): an entry waits at most one
    interval (plus the integration itself) before it is in a signed tree head."""

    def __init__(self, ct_log: Log, interval: float) -> None:
        super().__init__(name=f"ctlog-integrator-{ct_log.name}", daemon=True)
        self.ct_log = ct_log
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.ct_log.integrate()
            except Exception:  # a failed round is retried at the next one; the log keeps serving
                log.exception("log %s: integration failed", self.ct_log.name)

    def stop(self) -> None:
        self.stopped.set()


class _KeepAliveRequestHandler(WSGIRequestHandler):
    """HTTP/1.1, so a submitter's kept-alive connection serves many submissions (werkzeug's
    default, HTTP/1.0, closes each connection after one response: a new TCP connection and a new
    thread for every precertificate). Every response of the log's app has a Content-Length."""

    protocol_version = "HTTP/1.1"


class _QuietRequestHandler(_KeepAliveRequestHandler):
    """No access-log line per request (werkzeug's default writes one to stderr)."""

    def log_request(self, code="-", size="-") -> None:  # noqa: ARG002
        pass


def serve(config: LogConfig, *, host: str, port: int, access_log: bool = False) -> None:
    """Serve the log until SIGTERM or SIGINT. Prints one line with its URL and ID when ready
    (``port`` 0 picks a free port; the line says which)."""
    ct_log = Log.open(config)
    app = create_app(ct_log)
    handler = _KeepAliveRequestHandler if access_log else _QuietRequestHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    integrator = Integrator(ct_log, config.merge_delay)
    integrator.start()

    def _stop(signum, _frame) -> None:
        # shutdown() waits for serve_forever() to return, so it must run off the main thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"ctlog {ct_log.name} listening on http://{host}:{server.server_port}/ "
        f"log_id={ct_log.log_id.hex()} merge_delay={config.merge_delay}s",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        integrator.stop()
        integrator.join(timeout=config.merge_delay + 5)
        server.server_close()
        ct_log.engine.dispose()
        print(f"ctlog {ct_log.name} stopped", file=sys.stderr, flush=True)
