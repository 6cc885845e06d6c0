"""Running a log: the HTTP server plus the integrator thread.

Why a threaded server in this process and not gunicorn: a log must integrate from exactly one
place, and in one process the integrator is simply a thread next to the request threads.
Gunicorn would add a fork (a thread started before it does not survive, so the integrator would
have to start in a worker hook, and a second worker would mean a second integrator). This
service runs development and test logs, starts in well under a second, and is not the production
path: production points the authority at real logs. The HTTP server is ``ctlog/httpserver.py``
(kept-alive HTTP/1.1 connections; its docstring says why not werkzeug's).

:func:`start` runs a log from threads of the calling process and returns a :class:`RunningLog`
to watch and stop it: ``tnca dev`` runs its two logs that way, next to its renewal worker, rather
than as two more processes of ~80 MB each. :func:`serve` is the standalone service (``tnca ctlog
serve``): :func:`start`, then wait for SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from ctlog.app import MAX_REQUEST_BYTES, create_app
from ctlog.httpserver import LogHTTPServer
from ctlog.log import Log, LogConfig

log = logging.getLogger(__name__)


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` at the OS level too (Linux: /proc/self/task/TID/comm, 15
    bytes at most), so that top, py-spy and the benchmark's per-thread CPU split
    (bench/proctree.py) can tell a log's threads from its neighbours' when it shares a process
    (``tnca dev`` runs two logs next to the renewal worker). Threads a named thread starts inherit
    the name: the request threads of a log's server are counted as the log. Python 3.11 names
    threads only for itself; elsewhere this does nothing."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write(name.encode("ascii", "replace")[:15].decode("ascii"))
    except OSError:
        pass


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
        name_os_thread(f"ctlog {self.ct_log.name}")
        while not self.stopped.wait(self.interval):
            try:
                self.ct_log.integrate()
            except Exception:  # a failed round is retried at the next one; the log keeps serving
                log.exception("log %s: integration failed", self.ct_log.name)

    def stop(self) -> None:
        self.stopped.set()


class RunningLog:
    """A log being served from threads of the current process: the HTTP server's thread (which
    starts one thread per connection) and the integrator. :func:`start` makes one; ``stop()``
    ends both and closes the database. Whoever runs it checks :meth:`failure` now and then: a
    log whose threads ended without ``stop()`` no longer keeps its promises."""

    def __init__(self, ct_log: Log, server: LogHTTPServer, integrator: Integrator, host: str) -> None:
        self.log = ct_log
        self.server = server
        self.integrator = integrator
        self.url = f"http://{host}:{server.server_port}/"
        self.serving = threading.Thread(target=self._serve, name=f"ctlog-{ct_log.name}", daemon=True)
        self.error: BaseException | None = None
        self._stopping = False

    def _serve(self) -> None:
        name_os_thread(f"ctlog {self.log.name}")
        try:
            self.server.serve_forever()
        except BaseException as error:  # failure() reports it; the traceback goes to the log
            self.error = error
            log.exception("log %s: its HTTP server failed", self.log.name)

    def failure(self) -> str | None:
        """Why the log stopped serving or integrating without being asked to; None while it runs."""
        if self._stopping:
            return None
        if not self.serving.is_alive():
            cause = f": {self.error!r}" if self.error else ""
            return f"log {self.log.name}: its HTTP server stopped{cause}"
        if not self.integrator.is_alive():
            return f"log {self.log.name}: its integrator thread stopped (entries would wait past the merge delay)"
        return None

    def ready_line(self) -> str:
        return (f"ctlog {self.log.name} listening on {self.url} "
                f"log_id={self.log.log_id.hex()} merge_delay={self.log.merge_delay}s")

    def stop(self) -> None:
        """Stop answering, stop integrating, close the database. Entries already stored and not
        yet integrated stay pending: the next start integrates them."""
        self._stopping = True
        if self.serving.is_alive():
            self.server.shutdown()  # waits for serve_forever() to return
        self.integrator.stop()
        self.integrator.join(timeout=self.log.merge_delay + 5)
        self.server.server_close()  # the kept-alive connections too
        self.log.engine.dispose()


def start(config: LogConfig, *, host: str, port: int, access_log: bool = False) -> RunningLog:
    """Open the log and serve it from threads of this process (``port`` 0 picks a free port;
    ``RunningLog.url`` says which). Used by :func:`serve` (``tnca ctlog serve``) and by a process
    that runs logs next to other work (``tnca dev``)."""
    ct_log = Log.open(config)
    try:
        server = LogHTTPServer((host, port), create_app(ct_log), max_body=MAX_REQUEST_BYTES, access_log=access_log)
    except BaseException:
        ct_log.engine.dispose()
        raise
    running = RunningLog(ct_log, server, Integrator(ct_log, config.merge_delay), host)
    running.integrator.start()
    running.serving.start()
    return running


def serve(config: LogConfig, *, host: str, port: int, access_log: bool = False) -> None:
    """Serve the log until SIGTERM or SIGINT. Prints one line with its URL and ID when ready
    (``port`` 0 picks a free port; the line says which). Raises RuntimeError when the log's
    threads end on their own."""
    running = start(config, host=host, port=port, access_log=access_log)
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(running.ready_line(), flush=True)
    try:
        while not stopping.wait(1.0):
            failure = running.failure()
            if failure:
                raise RuntimeError(failure)
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"ctlog {config.name} stopped", file=sys.stderr, flush=True)
