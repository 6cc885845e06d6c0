"""What every request of one server process shares, built once by :func:`acme_server.create_app`.

:class:`ServerState` lives in ``app.extensions["tnca"]``; handlers reach it through
:func:`current_state` and their request's database session through :func:`db_session`. Things
that are expensive to load (the issuing CA, the token trust list, the x5u fetcher with its cache)
are loaded on first use and kept for the life of the process. ``ServerState.authority`` hands
them to ``ca.orders`` (:class:`ca.orders.authority.Authority`) as parameters, so the order
functions never reach for Flask globals.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from flask import current_app, g
from sqlalchemy import event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from acme_server.nonces import NonceStore
from acme_server.urls import Urls
from ca.tokens import trust_config
from ca.home import Home
from ca.orders.authority import Authority
from ca.tokens.x5u import X5UFetcher

log = logging.getLogger("tnca.acme")

if TYPE_CHECKING:
    from ca.issuing.issuance import IssuerHandle, Transparency

EXTENSION_KEY = "tnca"
# Session.info key: the rows a request's session loaded, referenced for the session's life.
LOADED_ROWS = "loaded_rows"


class ServerState:
    """Configuration and long-lived helpers of one ACME server process."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.clock = home.clock
        self.policy = home.policy
        self.urls = Urls(home.base_url)
        self.sessionmaker = home.sessionmaker
        # One listener for every request's session (db_session); one added per session cost
        # ~20 µs of event-registry bookkeeping on each request. Apps sharing a home share it.
        if not event.contains(self.sessionmaker, "loaded_as_persistent", _keep_loaded_row):
            event.listen(self.sessionmaker, "loaded_as_persistent", _keep_loaded_row)
        self.engine = home.engine
        self.nonces = NonceStore(self.engine, lifetime=self.policy.acme.nonce_lifetime, clock=self.clock)
        # RFC 9447 §3 "token-authority": where a client can acquire tokens. Defaults to the
        # origin of this authority's own token authority (the "iss" of the tokens it mints).
        self.token_authority_url: str | None = home.token_authority_url
        self.website: str | None = home.config.server.website
        # tnca.toml [compat]: documented switches, all off by default (ca.tokens.trust_config.TokenCompat),
        # read when the home's settings load, so a misspelt switch stops the server at start-up.
        self.compat = home.token_compat
        # tnca.toml [server] trusted_proxies: whose X-Forwarded-For names the client (client_address.py).
        self.trusted_proxies = home.config.server.trusted_proxies
        # What the order functions of ca.orders need; its providers load on first use.
        self.authority = Authority.of_home(
            home, token_trust=lambda: self.token_trust, x5u_fetcher=lambda: self.x5u_fetcher
        )

    @functools.cached_property
    def token_trust(self) -> trust_config.TokenTrust:
        return trust_config.trust_from_policy(
            self.policy.tokens,
            local_authority=self.home.token_authority().certificate,
            # tnca.toml [compat]: documented switches, all off by default (ca.tokens.trust_config.TokenCompat).
            compat=self.home.token_compat,
        )

    @functools.cached_property
    def x5u_fetcher(self) -> X5UFetcher:
        # The server's own token-authority URL resolves from memory: a one-worker server
        # fetching itself would deadlock (ca/tokens/x5u.py).
        authority = self.home.token_authority()
        # tnca.toml [x5u] (Home.fetch_policy): strict, so a misspelt key is an error, not a default.
        return X5UFetcher(
            self.home.fetch_policy,
            overrides={authority.x5u: (authority.certificate,)},
            clock=self.clock,
        )

    def issuing_ca(self) -> "IssuerHandle":
        return self.home.issuing_ca()

    def transparency(self) -> "Transparency | None":
        """The CT client issuance submits precertificates through; None when no SCTs are required."""
        return self.home.transparency()


def current_state() -> ServerState:
    return current_app.extensions[EXTENSION_KEY]


def db_session() -> Session:
    """The request's session, opened on first use and closed (rolled back if open) at teardown.

    Every row the request loads is kept referenced until the session closes. SQLAlchemy's
    identity map holds rows weakly, so a row that ``ca`` code loaded and dropped (a delegation
    looked up while checking a token) would otherwise be selected again by the next
    ``session.get`` for it; with the reference, a second lookup of the same row in one request
    costs no query.
    """
    session = g.get("db_session")
    if session is None:
        session = g.db_session = current_state().sessionmaker(info={LOADED_ROWS: []})
    return session


def _keep_loaded_row(session: Session, instance: object) -> None:
    loaded = session.info.get(LOADED_ROWS)
    if loaded is not None:
        loaded.append(instance)


def close_db_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is None:
        return
    try:
        session.close()
    except (OperationalError, InterfaceError):
        # The database went away under this request (a restart, a failover): the answer is
        # already made (a 503 with Retry-After, or the result), and a teardown that raised would
        # replace it with a bodiless 500. The dead connection is dropped from the pool instead.
        log.warning("database connection lost while closing the request's session; discarded", exc_info=True)
        session.invalidate()
