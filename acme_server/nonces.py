"""RFC 8555 §6.5 anti-replay nonces: issued without touching the database, spent in it.

A nonce is 32 bytes in base64url (43 characters): the time it was issued (milliseconds since
the epoch, 6 bytes), 10 random bytes, and the first 16 bytes of an HMAC-SHA256 of those 16
under a key every server process shares. Handing one out (``Replay-Nonce`` on every response,
``newNonce``) is a clock read, a random draw and a MAC: no row, no statement. The MAC is what
makes a nonce one this authority issued; 80 random bits keep it unpredictable (RFC 8555 §6.5:
"unique to each message", and an attacker must not guess the next one).

Redeeming is one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` into ``spent_nonces``: a nonce
whose MAC holds and which has not expired is spent when its row goes in, and the returned row
says whether this request was the first to present it. Because the insert is the check, two processes racing
to redeem the same nonce cannot both succeed (RFC 8555 §6.5.2: "the server MUST ... invalidate
it"). A spent row is kept until the nonce would have expired, after which the time check alone
refuses it; expired rows are deleted at most once per :data:`PURGE_INTERVAL_SECONDS` per
process, in the same transaction as a redeem.

Redeeming is committed before the request's own work begins (in one short transaction with the
account's lookup, ``acme_server.acme.jws``), so that a request that fails later (and rolls back)
has still spent its nonce; otherwise a rejected request could be replayed with the same nonce.

The MAC key is made by the first process that needs one and kept in ``server_secrets``
(``NONCE_KEY_NAME``): every worker and every host on the same database shares it, as they share
the spent nonces. Whoever can read the database can make nonces; a nonce only guards against
replay, and every request still needs the account key's signature.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ca.clock import Clock
from ca.records.models_acme import ServerSecret, SpentNonce

# RFC 8555 §6.5: nonces must be unpredictable; 80 random bits beside the time, and the MAC.
RANDOM_BYTES = 10
TIME_BYTES = 6
MAC_BYTES = 16
NONCE_BYTES = TIME_BYTES + RANDOM_BYTES + MAC_BYTES
NONCE_LENGTH = 43  # NONCE_BYTES in unpadded base64url
KEY_BYTES = 32
NONCE_KEY_NAME = "acme-nonce-mac"
# A nonce stamped later than this ahead of our clock (another host's clock runs ahead) is refused.
CLOCK_SKEW = dt.timedelta(minutes=1)
# Expired spent nonces are swept this often (seconds, per process): cheap, and bounded table growth.
PURGE_INTERVAL_SECONDS = 60.0

_SPENT = SpentNonce.__table__
_SECRETS = ServerSecret.__table__
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class NonceStore:
    """Issues and redeems nonces. Thread-safe; one per app."""

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
        self._key: bytes | None = None
        dialect = {"postgresql": postgresql, "sqlite": sqlite}[engine.dialect.name]
        # Built once: the statement's compiled form is cached by the engine under this object.
        # RETURNING says whether the row went in (psycopg reports no row count for an upsert).
        self._spend = dialect.insert(_SPENT).on_conflict_do_nothing(index_elements=["value"]).returning(_SPENT.c.value)
        self._add_key = dialect.insert(_SECRETS).on_conflict_do_nothing(index_elements=["name"])
        # The first redeem in a fresh process sweeps, so restarts do not postpone the cleanup.
        self._next_purge = time.monotonic()

    def issue(self) -> str:
        """A fresh nonce (no database work once the process has the key)."""
        millis = int((self._clock.now() - _EPOCH) / dt.timedelta(milliseconds=1))
        body = millis.to_bytes(TIME_BYTES, "big") + secrets.token_bytes(RANDOM_BYTES)
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode("ascii")

    def redeem_and_issue(self, presented: str, connection: Connection | None = None) -> tuple[bool, str]:
        """Spend ``presented``; returns (whether it was a nonce of ours, unexpired and unused;
        the next nonce). The next nonce is issued either way: RFC 8555 §6.5 wants a fresh one
        on a badNonce error too.

        With ``connection`` the spend is written in the caller's transaction, which the caller
        must commit before anything can fail (``acme_server.acme.jws``: with the account's
        lookup, one transaction per request instead of two); without, in one of its own."""
        expires_at = self._expiry(presented)
        if expires_at is None:
            return False, self.issue()
        if connection is not None:
            return self._spend_on(connection, presented, expires_at), self.issue()
        with self._engine.begin() as own:
            return self._spend_on(own, presented, expires_at), self.issue()

    def _spend_on(self, connection: Connection, presented: str, expires_at: dt.datetime) -> bool:
        self._purge_if_due(connection, self._clock.now())
        return connection.execute(self._spend, {"value": presented, "expires_at": expires_at}).first() is not None

    def _expiry(self, presented: str) -> dt.datetime | None:
        """When ``presented`` expires, if it is a nonce this authority issued and it has not yet."""
        if len(presented) != NONCE_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(presented + "=")
        except ValueError:
            return None
        body, tag = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(tag, self._mac(body)):
            return None
        issued = _EPOCH + dt.timedelta(milliseconds=int.from_bytes(body[:TIME_BYTES], "big"))
        now = self._clock.now()
        expires_at = issued + self._lifetime
        if expires_at <= now or issued > now + CLOCK_SKEW:
            return None
        return expires_at

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key or self._load_key(), body, hashlib.sha256).digest()[:MAC_BYTES]

    def _load_key(self) -> bytes:
        """The shared MAC key: read, or made (whoever inserts first wins) and read back."""
        with self._lock:
            if self._key is None:
                with self._engine.begin() as connection:
                    connection.execute(self._add_key, {"name": NONCE_KEY_NAME, "value": secrets.token_bytes(KEY_BYTES)})
                    key = connection.execute(
                        select(_SECRETS.c.value).where(_SECRETS.c.name == NONCE_KEY_NAME)).scalar_one()
                if len(key) < KEY_BYTES:
                    raise RuntimeError(f"server_secrets {NONCE_KEY_NAME!r} holds fewer than {KEY_BYTES} bytes")
                self._key = key
            return self._key

    def _purge_if_due(self, connection: Connection, now: dt.datetime) -> None:
        with self._lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + self._purge_interval
        connection.execute(delete(_SPENT).where(_SPENT.c.expires_at <= now))

