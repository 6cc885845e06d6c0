"""Sign-in for people: sessions, the login and logout pages, CSRF, role checks, API tokens.

What other blueprints use (the operator pages, the auditor pages, the audit API)::

    from acme_server.auth import require_role, current_principal, register_page_handlers

    @bp.get("/delegations")
    @require_role("operator")            # 401 when nobody is signed in, 403 when the role is too low
    def delegations(): ...               # current_principal().actor is what audit events name

    register_page_handlers(bp)           # pages: 401 redirects to the login page, 403 renders a page

- **Who is asking** (:func:`current_principal`): a request to the audit API with an
  ``Authorization`` header is authenticated by that header alone (``Bearer tnca_…``, RFC 6750
  §2.1), never by a cookie as well; any other request by its session cookie. API tokens are made
  for scripts that read the audit API (:data:`BEARER_BLUEPRINTS`): anywhere else, and on every
  page that changes state, an ``Authorization`` header is refused (401), so a leaked audit
  script's token cannot act on the operator pages whatever its holder's role. The role comes from the database on every
  request (:mod:`ca.records.users`), so a demotion or a disabled person takes effect at once.
- **Sessions**: Flask's signed cookie holds only a random session token (and flask-wtf's CSRF
  secret); the ``user_sessions`` row behind it ends at logout, after
  :data:`ca.records.web_sessions.SESSION_IDLE_TIMEOUT` without requests, and :data:`ca.records.web_sessions.SESSION_LIFETIME`
  after login. The cookie is ``HttpOnly``, ``SameSite=Lax`` and, when the authority's base URL
  is https, ``Secure`` with the ``__Host-`` prefix (RFC 6265bis §4.1.3.2: no Domain, Path=/).
- **CSRF** (flask-wtf ``CSRFProtect``): every POST/PUT/PATCH/DELETE needs the form's
  ``csrf_token`` (or an ``X-CSRFToken`` header), except ACME requests (RFC 8555 §6.2: each is a
  JWS signed by the account key, and no cookie authenticates them) and audit API requests
  carrying an ``Authorization`` header (a bearer token is not sent by browsers on their own,
  RFC 6750 §5.2).
- **Login throttling** is in the database (:func:`ca.records.users.check_throttle`), shared by every
  process; a throttled login answers 429 with ``Retry-After`` (RFC 6585 §4).

After a login without a ``next`` target the browser lands on the endpoint named by
``app.config["AUTH_LANDING_ENDPOINT"]`` (default ``auth.whoami``, a page saying who is signed in);
the operator pages set it to their start page.

The session secret (``SECRET_KEY``) is ``TNCA_SECRET_KEY`` when set, else the file
``HOME/keys/web-session.key``, created with 256 random bits on first use and shared by every
worker of the home.

Client addresses are ``acme_server.client_address.client_address()``: the socket's peer, or,
behind a reverse proxy listed in ``tnca.toml [server] trusted_proxies``, the address that proxy
names in X-Forwarded-For (docs/deployment.md). Without the setting, behind a proxy, the
per-address login limit counts everybody together.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Request, Response, current_app, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import Forbidden, Unauthorized
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from acme_server.client_address import client_address
from acme_server.state import current_state, db_session
from ca.records import api_tokens, users, web_sessions
from ca.errors import AuthenticationError, LoginThrottledError
from ca.records.users import Principal

BLUEPRINT_NAME = "auth"
URL_PREFIX = "/auth"
# Blueprints whose POSTs are authenticated by a JWS, not by ambient credentials (RFC 8555 §6.2),
# or, for the STI-PA token API (acme_server/stipa.py), by a password in the body or the access
# token it returned in the Authorization header: never by a cookie, so there is nothing to forge.
CSRF_EXEMPT_BLUEPRINTS = frozenset({"acme", "stipa"})
# The blueprints that accept API tokens (Authorization: Bearer): the read-only audit API.
BEARER_BLUEPRINTS = frozenset({"audit_api"})
CSRF_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECRET_KEY_FILE = "keys/web-session.key"
SECRET_KEY_BYTES = 32
SESSION_TOKEN_KEY = "sid"  # the key in Flask's session that holds the user_sessions token
COOKIE_NAME = "tnca-session"
SECURE_COOKIE_NAME = "__Host-tnca-session"

# Sent with every page that is not part of the ACME API (which sets its own headers).
PAGE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Clickjacking: no page of this authority may be framed (CSP frame-ancestors, X-Frame-Options
    # for older browsers).
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "Referrer-Policy": "same-origin",
}

csrf = CSRFProtect()

F = TypeVar("F", bound=Callable[..., Any])


class NotSignedIn(Unauthorized):
    """Nobody is signed in (or the credentials were not accepted)."""

    description = "sign in first"


class RoleRequired(Forbidden):
    """Signed in, but the role does not allow this."""

    def __init__(self, required_role: str, principal: Principal) -> None:
        super().__init__(f"this needs the {required_role} role; {principal.name} is {principal.role}")
        self.required_role = required_role
        self.principal = principal


class InvalidBearerToken(Unauthorized):
    """An ``Authorization`` header was sent and was not accepted (RFC 6750 §3.1 invalid_token)."""

    description = "the bearer token is invalid, expired or revoked"


# ------------------------------------------------------------------------------------------
# Who is asking
# ------------------------------------------------------------------------------------------


def current_principal() -> Principal | None:
    """The signed-in person or API-token holder of this request, or None.

    Raises :class:`InvalidBearerToken` when an ``Authorization`` header is present but wrong: a
    client that sends credentials must learn they failed rather than be served as anonymous.
    """
    if "tnca_principal" in g:
        return g.tnca_principal
    principal: Principal | None = None
    header = request.headers.get("Authorization")
    db = db_session()
    clock = current_state().clock
    if header is not None and request.blueprint in BEARER_BLUEPRINTS:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidBearerToken("the Authorization header must be 'Bearer tnca_…' (RFC 6750 §2.1)")
        try:
            principal = api_tokens.authenticate_api_token(db, token.strip(), clock=clock)
        except AuthenticationError:
            db.rollback()
            raise InvalidBearerToken() from None
    elif header is None:
        token = session.get(SESSION_TOKEN_KEY)
        if token is not None:
            try:
                principal = web_sessions.resolve_session(db, token, clock=clock)
            except AuthenticationError:
                session.pop(SESSION_TOKEN_KEY, None)
    # resolve_session/authenticate_api_token may have touched last_seen_at / last_used_at.
    db.commit()
    g.tnca_principal = principal
    return principal


def require_role(role: str) -> Callable[[F], F]:
    """Decorator: the view runs only for a principal whose role includes ``role``.

    Raises :class:`NotSignedIn` (401) or :class:`RoleRequired` (403); each blueprint renders
    them its own way (:func:`register_page_handlers` for pages, JSON problems for the API).
    """
    if role not in users.ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(users.ROLES)}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal is None:
                raise NotSignedIn()
            if not principal.allows(role):
                raise RoleRequired(role, principal)
            return view(*args, **kwargs)

        wrapped.required_role = role  # type: ignore[attr-defined]  # read by the OpenAPI generator
        return wrapped  # type: ignore[return-value]

    return decorator


def register_page_handlers(blueprint: Blueprint) -> None:
    """For server-rendered pages: 401 sends the browser to the login page (and back after it),
    403 renders a page naming the role that is needed, a CSRF failure explains itself."""

    @blueprint.errorhandler(NotSignedIn)
    def _not_signed_in(_error: NotSignedIn) -> Response:
        return redirect(url_for(f"{BLUEPRINT_NAME}.login", next=request.full_path.rstrip("?")))

    @blueprint.errorhandler(RoleRequired)
    def _role_required(error: RoleRequired) -> tuple[str, int]:
        return render_template("auth/forbidden.html", error=error), 403

    @blueprint.errorhandler(CSRFError)
    def _csrf_failed(error: CSRFError) -> tuple[str, int]:
        return render_template("auth/csrf.html", reason=error.description), 400


# ------------------------------------------------------------------------------------------
# Pages
# ------------------------------------------------------------------------------------------


class LoginForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=users.MAX_PASSWORD_CHARS)])


class LogoutForm(FlaskForm):
    pass


def safe_next(target: str | None) -> str | None:
    """A redirect target after login only if it is a path on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def login() -> Any:
    form = LoginForm()
    next_target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("auth/login.html", form=form, next=next_target, error=None)
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form, next=next_target, error="Enter a name and a password."), 400
    db = db_session()
    clock = current_state().clock
    try:
        result = users.authenticate(db, name=form.name.data, password=form.password.data,
                                    remote_addr=client_address(), clock=clock)
    except LoginThrottledError as error:
        db.rollback()
        response = Response(render_template("auth/login.html", form=form, next=next_target, error=error.detail), 429)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    if result.user is None:
        db.commit()  # the failed attempt counts towards the throttle and is in the audit trail
        return render_template("auth/login.html", form=form, next=next_target, error="Unknown name or wrong password."), 401
    # Session fixation: whatever the browser held before login is dropped, CSRF secret included.
    session.clear()
    session[SESSION_TOKEN_KEY] = web_sessions.start_session(db, result.user, remote_addr=client_address(), clock=clock)
    db.commit()
    return redirect(next_target or url_for(current_app.config.get("AUTH_LANDING_ENDPOINT", f"{BLUEPRINT_NAME}.whoami")))


def logout() -> Any:
    form = LogoutForm()
    if form.validate_on_submit():
        token = session.get(SESSION_TOKEN_KEY)
        db = db_session()
        web_sessions.end_session(db, token, clock=current_state().clock)
        db.commit()
    session.clear()
    return redirect(url_for(f"{BLUEPRINT_NAME}.login"))


def whoami() -> Any:
    """Where a login lands when it has nowhere else to go: who you are, and a logout button."""
    principal = current_principal()
    if principal is None:
        raise NotSignedIn()
    return render_template("auth/whoami.html", principal=principal, logout_form=LogoutForm())


# ------------------------------------------------------------------------------------------
# App setup
# ------------------------------------------------------------------------------------------


def create_blueprint() -> Blueprint:
    """The login/logout pages; registering it also configures sessions and CSRF on the app."""
    blueprint = Blueprint(BLUEPRINT_NAME, __name__, url_prefix=URL_PREFIX, template_folder="templates")
    blueprint.add_url_rule("/login", view_func=login, methods=["GET", "POST"])
    blueprint.add_url_rule("/logout", view_func=logout, methods=["POST"])
    blueprint.add_url_rule("/me", view_func=whoami, endpoint="whoami", methods=["GET"])
    register_page_handlers(blueprint)
    blueprint.record_once(lambda state: init_app(state.app))
    return blueprint


def init_app(app: Flask) -> None:
    """Session cookie settings, the session secret, CSRF protection and page security headers."""
    state = app.extensions["tnca"]
    https = state.home.base_url.startswith("https://")
    cookie_settings = {
        "SESSION_COOKIE_NAME": SECURE_COOKIE_NAME if https else COOKIE_NAME,
        # Plain-http development servers cannot set Secure cookies (browsers refuse them).
        "SESSION_COOKIE_SECURE": https,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_REFRESH_EACH_REQUEST": False,
    }
    for key, value in cookie_settings.items():
        # Flask's defaults are already in app.config; a value someone set (TNCA_* or the test
        # config) differs from them and is kept.
        if app.config.get(key) == Flask.default_config.get(key):
            app.config[key] = value
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.session_interface = _CookieSessionInterface()
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_or_create_secret_key(state.home.path / SECRET_KEY_FILE)
    # CSRFProtect's own before_request would run for every POST; ours adds the exemptions above.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.before_request(_refuse_bearer_outside_the_api)
    app.before_request(_csrf_guard)
    app.after_request(_page_security_headers)


class _CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building the cookie's signer for a request that
    carries no session cookie (every ACME client request): Flask made one per request."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def _refuse_bearer_outside_the_api() -> None:
    """An ``Authorization`` header anywhere but the audit API is refused before anything runs:
    an API token never stands in for a signed-in person (and never skips CSRF)."""
    if "Authorization" not in request.headers or request.blueprint in BEARER_BLUEPRINTS | CSRF_EXEMPT_BLUEPRINTS:
        return
    if request.endpoint is None:
        return  # 404/405: nothing would run
    raise InvalidBearerToken("API tokens are accepted by the audit API (/api/v1) only; sign in to use the pages")


def _csrf_guard() -> None:
    if request.method not in CSRF_METHODS or request.endpoint is None:
        return
    if request.blueprint in CSRF_EXEMPT_BLUEPRINTS:
        return
    if "Authorization" in request.headers and request.blueprint in BEARER_BLUEPRINTS:
        return
    csrf.protect()


def _page_security_headers(response: Response) -> Response:
    if request.blueprint in CSRF_EXEMPT_BLUEPRINTS or request.path.startswith("/acme"):
        return response
    for name, value in PAGE_SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.blueprint == BLUEPRINT_NAME:
        response.headers["Cache-Control"] = "no-store"
    return response


def load_or_create_secret_key(path: Path) -> str:
    """The session-signing secret shared by all workers of a home (created once, mode 0600).

    Written to a temporary file and hard-linked into place, so a worker never reads a file
    another worker has created but not yet filled.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(SECRET_KEY_BYTES) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:  # another worker won the race; its secret is the one
            pass
        finally:
            temporary.unlink()
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 2 * SECRET_KEY_BYTES:
        raise RuntimeError(f"{path} holds fewer than {SECRET_KEY_BYTES} bytes of secret; delete it to make a new one")
    return text
