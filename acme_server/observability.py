"""What operators and their machines see of a running server (``docs/observability.md``):

- **request ids**: every request gets one, a sane ``X-Request-Id`` from the proxy in front or a
  new random one; it goes back in the ``X-Request-Id`` response header, in every problem
  document (the ``requestId`` extension member, RFC 7807 §3.2) and in every log line written
  while the request runs, so a support ticket that quotes it finds the request;
- **the request log**: one JSON line per request on the ``tnca.request`` logger (method, path,
  status, account, order, duration, request id), and ``tnca_http_request_duration_seconds``;
- ``/healthz`` (the process answers; touches nothing), ``/readyz`` (``ca.readiness``: database,
  signing keys, CT logs under one deadline) and ``/metrics`` (Prometheus text, ``ca.metrics``,
  only for the client networks of ``[metrics] allow``).

Handlers name the account and order a request acted for with :func:`note`; the log takes
``g.account`` (set by the JWS check) by itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import sys
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, has_request_context, request
from sqlalchemy.exc import SQLAlchemyError

from acme_server.state import current_state
from ca import metrics
from ca.readiness import ReadinessProbe

REQUEST_ID_HEADER = "X-Request-Id"
# What is accepted from a proxy: a short token of safe characters (nginx's $request_id is 32 hex
# digits, a UUID is 36 characters); anything else is replaced, so nothing odd reaches the logs.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{7,127}")
REQUEST_ID_BYTES = 12
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

request_log = logging.getLogger("tnca.request")


def request_id() -> str | None:
    """The current request's id (None outside a request)."""
    return g.get("request_id") if has_request_context() else None


def note(*, account: str | None = None, order: str | None = None) -> None:
    """Name the account or order this request acted for, in its log line."""
    if account is not None:
        g.log_account = account
    if order is not None:
        g.log_order = order


def _begin() -> None:
    g.request_started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(REQUEST_ID_BYTES)


def _finish(response: Response) -> Response:
    started = g.get("request_started")
    if started is None:  # a request that failed before the first hook ran
        return response
    seconds = time.perf_counter() - started
    response.headers[REQUEST_ID_HEADER] = g.request_id
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.observe_http_request(request.method, route, response.status_code, seconds)
    account = g.get("log_account")
    if account is None and g.get("account") is not None:
        account = g.account.id
    view_args = request.view_args or {}
    request_log.info("request", extra={"fields": {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "account": account,
        "order": g.get("log_order") or view_args.get("order_id"),
        "duration_ms": round(seconds * 1000, 1),
        "remote": request.remote_addr,
    }})
    return response


class JSONLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event (the message), the request id when
    the line was written during a request, the record's ``fields`` and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "request_id": request_id(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(stream: Any = None) -> None:
    """``tnca serve``'s workers: every ``tnca.*`` logger writes JSON lines to stderr, INFO and up."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONLogFormatter())
    logger = logging.getLogger("tnca")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


# -- /healthz, /readyz, /metrics ------------------------------------------------------------------

def healthz() -> Response:
    """The process answers (a load balancer's liveness probe); checks nothing else."""
    return _json({"status": "ok"}, 200)


def readyz() -> Response:
    """Ready to serve: 200 when every check of ``ca.readiness`` passed within the deadline, else 503."""
    readiness = _probe().check()
    return _json(readiness.to_json(), 200 if readiness.ready else 503)


def metrics_page() -> Response:
    settings = current_state().home.config.metrics
    if not settings.allows(_metrics_client()):
        return _json({"type": "about:blank", "title": "Forbidden", "status": 403, "requestId": request_id(),
                      "detail": "/metrics is open to the networks of [metrics] allow in tnca.toml only"},
                     403, content_type="application/problem+json")
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from prometheus_client import REGISTRY

    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry) + generate_latest(_database_registry())
    response = Response(body, 200, content_type=PROMETHEUS_CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _metrics_client() -> str | None:
    """The address /metrics is allowed for: the client as the server sees it. A request that a
    proxy forwarded (it names a client the server was not told to trust) is refused: behind an
    unconfigured proxy on this host, every client would otherwise look like loopback."""
    forwarded = request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For")
    if forwarded and "werkzeug.proxy_fix.orig" not in request.environ:
        return None
    return request.remote_addr


def _database_registry() -> Any:
    """Gauges read from the database at each scrape (the same answer from every worker)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    from ca.records import overview

    state = current_state()

    class DatabaseCollector:
        def collect(self) -> Any:
            try:
                with state.sessionmaker() as session:
                    valid = overview.certificates_valid(session, now=state.clock.now())
            except SQLAlchemyError as error:  # the rest of the scrape still answers; the error is counted
                logging.getLogger("tnca.metrics").warning("tnca_certificates_valid left out: %s", type(error).__name__)
                return
            yield GaugeMetricFamily("tnca_certificates_valid",
                                    "Certificates issued, valid now and not revoked (from the database)", value=valid)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return registry


def _probe() -> ReadinessProbe:
    probe = current_app.extensions.get("tnca.readiness")
    if probe is None:
        home = current_state().home
        probe = current_app.extensions["tnca.readiness"] = ReadinessProbe(
            home, deadline=home.config.health.readiness_deadline_seconds)
    return probe


def _json(document: dict[str, Any], status: int, *, content_type: str = "application/json") -> Response:
    response = Response(json.dumps(document, ensure_ascii=False), status, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def create_blueprint() -> Blueprint:
    blueprint = Blueprint("observability", __name__)
    blueprint.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    blueprint.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    blueprint.add_url_rule("/metrics", "metrics", metrics_page, methods=["GET"])
    return blueprint


def register(app: Flask) -> None:
    """The request id and the request log around every request of ``app`` (first and last hooks)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _begin)
    app.after_request(_finish)
