"""The web front end: a Flask app factory around the authority in ``ca/``.

``create_app(home)`` builds everything; nothing exists at import time. The app serves the ACME
API under ``/acme``, the repository (x5u certificates, CRLs, ``/token-authority.pem``), the
sign-in pages, the operator and auditor pages under ``/admin``, the auditor API under
``/api/v1``, ``/healthz``, ``/readyz`` and ``/metrics`` (``acme_server/observability.py``) and, with
``[stipa] enabled``, the STI-PA-compatible token API under ``/stipa``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from acme_server import admin, audit_api, auth, observability, stipa
from acme_server.acme import errors, repository, routes
from acme_server.admin.present import visible
from acme_server.acme.jws import MAX_JWS_BODY_BYTES
from acme_server.state import EXTENSION_KEY, ServerState, close_db_session
from ca.home import Home

DEFAULTS: dict[str, Any] = {
    # Werkzeug refuses larger bodies with 413 (rendered as a problem under /acme/) even when a
    # client sends no Content-Length.
    "MAX_CONTENT_LENGTH": MAX_JWS_BODY_BYTES,
    "JSON_SORT_KEYS": False,
}


def create_app(home_or_path: Home | str | os.PathLike[str], config: dict[str, Any] | None = None) -> Flask:
    """The WSGI app for the authority at ``home_or_path``.

    Settings: Flask defaults, then :data:`DEFAULTS`, then ``config`` (tests), then ``TNCA_*``
    environment variables (``Flask.config.from_prefixed_env``). The authority's own settings
    (base URL, database, policy) come from the home.
    """
    home = home_or_path if isinstance(home_or_path, Home) else Home(home_or_path)
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    if config:
        app.config.from_mapping(config)
    app.config.from_prefixed_env("TNCA")

    app.extensions[EXTENSION_KEY] = ServerState(home)
    app.teardown_appcontext(close_db_session)
    observability.register(app)
    errors.register(app)
    app.register_blueprint(observability.create_blueprint())
    app.register_blueprint(routes.create_blueprint())
    app.register_blueprint(repository.create_blueprint())
    if home.config.stipa.enabled:
        # tnca.toml [stipa] enabled: the STI-PA-compatible token API (docs/shaken.md).
        app.register_blueprint(stipa.create_blueprint())
    # ``auth`` comes first: registering it configures sessions and CSRF for the pages and the
    # API after it.
    for front_end in (auth, admin, audit_api):
        app.register_blueprint(front_end.create_blueprint())
    # Every {{ expression }} of every page: control and bidi characters shown, never obeyed.
    app.jinja_env.finalize = visible
    return app
