"""RFC 8555 §6.5 anti-replay nonces, kept in the database so every server process shares them.

A nonce is 128 random bits in base64url. It is recorded when handed out (``Replay-Nonce``) and
redeemed by ``DELETE ... WHERE value = :nonce AND expires_at > :now``: the row count says whether
it was valid, and because the delete is the check, two processes racing to redeem the same nonce
cannot both succeed (RFC 8555 §6.5.2: "the server MUST ... invalidate it", a used nonce counts
as never issued).

Redeeming and issuing the next nonce happen in one short transaction of their own, before the
request's own work begins, so that a request that fails later (and rolls back) has still spent
its nonce; otherwise a rejected request could be replayed with the same nonce.

Unused nonces expire after the policy's ``nonce_lifetime``; expired rows are deleted at most
once per :data:`PURGE_INTERVAL` per process, in the same transaction as an issue.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.engine import Engine

from ca.clock import Clock
from ca.records.models_acme import Nonce

# RFC 8555 §6.5: nonces must be unpredictable; 128 bits is what RFC 8555's examples carry.
NONCE_BYTES = 16
# Expired nonces are swept this often (seconds, per process): cheap, and bounded table growth.
PURGE_INTERVAL_SECONDS = 60.0

_NONCES = Nonce.__table__


class NonceStore:
    """Issues and redeems nonces in the ``nonces`` table. Thread-safe; one per app."""

    def __init__(
        self,
        engine: Engine,
        *,
        lifetime: dt.timedelta,
        clock: Clock,
        purge_interval_seconds: float = PURGE_INTERVAL_SECONDS,
    ) -> None:
        if lifetime <= dt.timedelta(0):
            raise ValueError("nonce lifetime must be positive")
        self._engine = engine
        self._lifetime = lifetime
        self._clock = clock
        self._purge_interval = purge_interval_seconds
        self._lock = threading.Lock()
        self._one_statement = engine.dialect.name == "postgresql"
        # The first issue in a fresh process sweeps, so restarts do not postpone the cleanup.
        self._next_purge = time.monotonic()

    def issue(self) -> str:
        """A fresh nonce, recorded before it is returned."""
        value = _new_nonce()
        now = self._clock.now()
        with self._engine.begin() as connection:
            self._purge_if_due(connection, now)
            connection.execute(insert(_NONCES).values(value=value, expires_at=now + self._lifetime))
        return value

    def redeem_and_issue(self, presented: str) -> tuple[bool, str]:
        """Spend ``presented`` and record its successor, in one transaction.

        Returns (whether ``presented`` was an unexpired, unused nonce; the next nonce). The next
        nonce is issued either way: RFC 8555 §6.5 wants a fresh one on a badNonce error too.
        """
        value = _new_nonce()
        now = self._clock.now()
        spend = delete(_NONCES).where(_NONCES.c.value == presented, _NONCES.c.expires_at > now)
        with self._engine.begin() as connection:
            self._purge_if_due(connection, now)
            if self._one_statement:
                # PostgreSQL: one round trip. The DELETE in the WITH runs exactly once whatever
                # the INSERT does, and the INSERT reports how many rows it deleted.
                spent = spend.returning(_NONCES.c.value).cte("spent")
                redeemed = connection.execute(
                    insert(_NONCES)
                    .from_select(["value", "expires_at"],
                                 select(literal(value), literal(now + self._lifetime, _NONCES.c.expires_at.type)))
                    .returning(select(func.count()).select_from(spent).scalar_subquery())
                ).scalar_one()
            else:
                redeemed = connection.execute(spend).rowcount
                connection.execute(insert(_NONCES).values(value=value, expires_at=now + self._lifetime))
        return redeemed == 1, value

    def _purge_if_due(self, connection, now: dt.datetime) -> None:
        with self._lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + self._purge_interval
        connection.execute(delete(_NONCES).where(_NONCES.c.expires_at <= now))


def _new_nonce() -> str:
    # base64url without padding (RFC 8555 §6.5.1), as token_urlsafe writes it.
    return secrets.token_urlsafe(NONCE_BYTES)
