"""The web front end: a Flask app factory around the authority in ``ca/``.

``create_app(home)`` builds everything; nothing exists at import time. The app serves the ACME
API under ``/acme`` and the token authority's certificate at ``/token-authority.pem``. Further
blueprints (operator UI, auditor API) register themselves the same way: a module in
:data:`OPTIONAL_BLUEPRINT_MODULES` that defines ``create_blueprint()``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from flask import Flask

from acme_server.acme import errors, repository, routes
from acme_server.acme.jws import MAX_JWS_BODY_BYTES
from acme_server.state import EXTENSION_KEY, ServerState, close_db_session
from ca.config import Home

# Front ends written elsewhere; each is registered if its module exists. ``auth`` comes first:
# registering it configures sessions and CSRF for the pages and the API after it.
OPTIONAL_BLUEPRINT_MODULES = ("acme_server.auth", "acme_server.admin", "acme_server.audit_api")

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
    errors.register(app)
    app.register_blueprint(routes.create_blueprint())
    app.register_blueprint(repository.create_blueprint())
    for module_name in OPTIONAL_BLUEPRINT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        app.register_blueprint(module.create_blueprint())
    return app
