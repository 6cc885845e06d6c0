"""Is this server process able to issue? What ``/readyz`` answers (``docs/observability.md``).

Three checks, run at once under one deadline (``[health] readiness_deadline_seconds``):

- **database**: a connection from the pool runs ``SELECT 1``;
- **signing keys**: the issuing CA's and the token authority's signers each sign a probe, and the
  signature verifies with the public key of the certificate (a key that does not match its
  certificate, or an HSM that stopped answering, fails here);
- **CT logs**: each log of the policy's ``[ct] logs`` answers ``get-sth`` (RFC 6962 §4.3) with a
  tree head, and at least ``required_scts`` of them do; with ``required_scts = 0`` the check
  passes and says that transparency is off.

A check that has not answered by the deadline fails. It keeps running in its thread, and the next
probe waits for that same run instead of starting another, so a hung database or log never
piles up threads: at most one thread per check per process.

Details are short and name no file, URI or host beyond the log URLs of the public policy; the
cause of a failure goes to the ``tnca.readiness`` log.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from ca.x509util import verify_signature

if TYPE_CHECKING:
    from ca.home import Home

log = logging.getLogger("tnca.readiness")

PROBE_MESSAGE = b"tnca readiness probe"
LOG_SHARE_OF_DEADLINE = 0.9
DATABASE, ISSUING_KEY, TOKEN_AUTHORITY_KEY, CT_LOGS = "database", "issuing_key", "token_authority_key", "ct_logs"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]
    seconds: float

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "seconds": round(self.seconds, 3),
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in self.checks},
        }


def transparency_off_reason(home: "Home") -> str | None:
    """Why transparency is off, when the policy requires no SCT (``tnca serve`` prints it at
    start, the dashboard shows it); None when it is on."""
    if home.policy.ct.required_scts > 0:
        return None
    return (f"The policy requires no SCTs ([ct] required_scts = 0 in {home.policy_path.name}), "
            "so certificates are issued without any log seeing them")


class ReadinessProbe:
    """The checks of one server process; :meth:`check` is safe to call from any thread."""

    def __init__(self, home: "Home", *, deadline: float) -> None:
        self.home = home
        self.deadline = deadline
        self._lock = threading.Lock()
        self._running: dict[str, concurrent.futures.Future[Check]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def _checks(self) -> dict[str, Callable[[], Check]]:
        return {
            DATABASE: self._database,
            ISSUING_KEY: lambda: self._signer(ISSUING_KEY, "issuing CA", self.home.issuing_ca),
            TOKEN_AUTHORITY_KEY: lambda: self._signer(TOKEN_AUTHORITY_KEY, "token authority", self.home.token_authority),
            CT_LOGS: self._ct_logs,
        }

    def check(self) -> Readiness:
        started = time.monotonic()
        checks = self._checks()
        futures = {name: self._start(name, run) for name, run in checks.items()}
        concurrent.futures.wait(futures.values(), timeout=self.deadline)
        results = []
        for name, future in futures.items():
            if future.done():
                results.append(future.result())
            else:
                results.append(Check(name, False, f"no answer within the deadline of {self.deadline:g} s"))
        return Readiness(tuple(results), time.monotonic() - started)

    def _start(self, name: str, run: Callable[[], Check]) -> concurrent.futures.Future[Check]:
        with self._lock:
            running = self._running.get(name)
            if running is not None and not running.done():
                return running  # the previous probe's run of this check is still waiting
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=len(self._checks()), thread_name_prefix="readyz")
            future = self._running[name] = self._executor.submit(_guarded, name, run)
            return future

    def _database(self) -> Check:
        with self.home.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return Check(DATABASE, True, "SELECT 1 answered")

    def _signer(self, name: str, what: str, handle: Callable[[], Any]) -> Check:
        loaded = handle()
        signer = loaded.signer
        verify_signature(loaded.certificate.public_key(), signer.sign(PROBE_MESSAGE), PROBE_MESSAGE,
                         signer.hash_algorithm)
        return Check(name, True, f"the {what} key signs, and its certificate verifies the signature")

    def _ct_logs(self) -> Check:
        required = self.home.policy.ct.required_scts
        submitter = self.home.transparency()
        if required == 0 or submitter is None:
            return Check(CT_LOGS, True, "transparency is off: the policy requires no SCTs")
        answered = []
        # A little inside the probe's deadline, so the answer says how many logs answered.
        timeout = self.deadline * LOG_SHARE_OF_DEADLINE
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(submitter.logs), thread_name_prefix="readyz-ct")
        try:
            futures = {pool.submit(_tree_head, log, timeout): log for log in submitter.logs}
            done, _ = concurrent.futures.wait(futures, timeout=timeout)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for future in done:
            if future.exception() is None:
                answered.append(futures[future].name)
            else:
                log.warning("readiness: CT log %s: %s", futures[future].name, future.exception())
        detail = (f"{len(answered)} of {len(submitter.logs)} log(s) answered get-sth"
                  f"{' (' + ', '.join(sorted(answered)) + ')' if answered else ''}; {required} required")
        return Check(CT_LOGS, len(answered) >= required, detail)


def _tree_head(ct_log: Any, timeout: float) -> None:
    """RFC 6962 §4.3 get-sth: the log answers with a tree head (its signature is the monitors' job)."""
    response = ct_log.session.get(f"{ct_log.url}/ct/v1/get-sth", timeout=timeout)
    response.raise_for_status()
    head = response.json()
    if not isinstance(head, dict) or not isinstance(head.get("tree_size"), int):
        raise ValueError("the answer is not a signed tree head")


_FAILURE_DETAILS = {
    DATABASE: "the database cannot be reached",
    ISSUING_KEY: "the issuing CA key cannot sign",
    TOKEN_AUTHORITY_KEY: "the token authority key cannot sign",
    CT_LOGS: "the CT logs cannot be checked",
}


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the cause is logged
        log.warning("readiness: %s failed: %s: %s", name, type(exc).__name__, exc)
        return Check(name, False, _FAILURE_DETAILS[name])
