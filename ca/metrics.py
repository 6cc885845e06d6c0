"""The authority's metrics (Prometheus, ``prometheus_client``): defined here once, recorded by
``ca/`` and ``acme_server/`` with one cheap call each, exposed at ``/metrics`` by the server.

``docs/observability.md`` lists every metric and the alerts worth having. Recording is an
increment or a histogram observation: a lock and, under ``tnca serve``, a write into a
memory-mapped file; no I/O, no allocation beyond the first use of a label value.

Several processes: ``prometheus_client`` decides when it is first imported whether values live
in this process's memory or in files under ``PROMETHEUS_MULTIPROC_DIR``, which every gunicorn
worker writes and the scraped worker adds up. ``tnca serve`` creates that directory and sets
the variable before the workers start; so that nothing earlier fixes the choice (the CLI
imports ``ca`` before it knows which command runs), this module imports ``prometheus_client``
on the first recording, not at import. This module is at the bottom of ``ca/``: it imports
nothing of the project.

Label values are always from a small, fixed set (outcomes, reasons, log names from the policy,
route templates), never from a request, so the number of series stays bounded.
"""

from __future__ import annotations

import re
import threading
from typing import Any

# Issuance end to end (a finalize: order claimed, certificate linted, logged, signed, stored):
# tens of milliseconds without CT, up to the CT deadline (seconds) with it.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# One log's answer to add-pre-chain (RFC 6962 §4.2), bounded by [ct] submission_deadline.
CT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# One HTTP request, as the server answered it.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Outcomes of an issuance: issued, or ca.orders.finalize.IssuanceFailure's values.
OUTCOME_ISSUED = "issued"
# A label value that is not a short identifier (it should never happen) is counted as this.
OTHER = "other"
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.:/<>-]{1,80}")


class _Metrics:
    """Every metric object of one process (built on first use, see the module docstring)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.issuance = Histogram(
            "tnca_issuance_duration_seconds",
            "ACME finalize end to end (claim, lint, CT, sign, store), by outcome: issued, csr, refused, transient",
            ["outcome"], buckets=LATENCY_BUCKETS)
        self.ct_submission = Histogram(
            "tnca_ct_submission_duration_seconds",
            "One log's answer to add-pre-chain (RFC 6962 §4.2), by log",
            ["log"], buckets=CT_BUCKETS)
        self.ct_failures = Counter(
            "tnca_ct_submission_failures",
            "Submissions that gave no valid SCT, by log and reason (deadline, unreachable, refused, malformed, invalid_sct)",
            ["log", "reason"])
        self.token_failures = Counter(
            "tnca_token_validation_failures",
            "tkauth-01 answers refused, by reason (the claim or check at fault)",
            ["reason"])
        self.rate_limited = Counter(
            "tnca_rate_limited",
            "Requests refused with rateLimited, by the limit reached",
            ["limit"])
        self.database_errors = Counter(
            "tnca_database_errors",
            "Errors from the database driver, by kind (disconnect, operational, integrity, …)",
            ["kind"])
        self.http_requests = Histogram(
            "tnca_http_request_duration_seconds",
            "HTTP requests, by method, route template and status",
            ["method", "route", "status"], buckets=HTTP_BUCKETS)


_lock = threading.Lock()
_metrics: _Metrics | None = None


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def label(value: Any) -> str:
    """``value`` as a label value: itself when it is a short identifier, else ``other``."""
    text = str(value)
    return text if _LABEL_VALUE.fullmatch(text) else OTHER


def observe_issuance(outcome: str, seconds: float) -> None:
    _get().issuance.labels(outcome=label(outcome)).observe(seconds)


def observe_ct_submission(log: str, seconds: float) -> None:
    _get().ct_submission.labels(log=label(log)).observe(seconds)


def ct_submission_failed(log: str, reason: str) -> None:
    _get().ct_failures.labels(log=label(log), reason=label(reason)).inc()


def token_validation_failed(reason: str) -> None:
    _get().token_failures.labels(reason=label(reason)).inc()


def rate_limited(limit: str) -> None:
    """A request refused with ``rateLimited`` because ``limit`` (the policy's name for it) was reached."""
    _get().rate_limited.labels(limit=label(limit)).inc()


def database_error(kind: str) -> None:
    _get().database_errors.labels(kind=label(kind)).inc()


def observe_http_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    child = _http_children.get(key)
    if child is None:
        # Every request records one: the labelled child is looked up once per (method, route,
        # status), a bounded set (route templates, not paths), instead of on every request.
        child = _http_children[key] = _get().http_requests.labels(
            method=label(method), route=label(route), status=str(status))
    child.observe(seconds)


_http_children: dict[tuple[str, str, int], Any] = {}
