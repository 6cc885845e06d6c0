"""Sign-in for people (acme_server/auth): login and logout pages, CSRF, cookies, throttling,
role checks, and the exemptions for ACME and bearer-token requests.

Through Flask's test client on the real app (CSRF on, as in production), plus one real HTTP
round trip over loopback for the cookie attributes a browser sees.
"""

from __future__ import annotations

import re

import pytest
import requests
from flask import Blueprint, url_for
from sqlalchemy import func, select

from acme_server import create_app
from acme_server.auth import register_page_handlers, require_role
from ca.records import users
from ca.records.models_audit import AuditEvent
from ca.records.models_people import LoginAttempt, UserSession
from tests.audit.support import PASSWORD, Authority
from tests.helpers import row_counts


def _test_pages() -> Blueprint:
    """A stand-in for the operator pages: one page per role and one form."""
    blueprint = Blueprint("test_pages", __name__, url_prefix="/test")
    for role in users.ROLES:
        blueprint.add_url_rule(f"/{role}", endpoint=role, view_func=require_role(role)(lambda role=role: f"{role} page"))
    blueprint.add_url_rule("/form", endpoint="form", view_func=lambda: "accepted", methods=["POST"])
    register_page_handlers(blueprint)
    return blueprint


@pytest.fixture
def app(authority: Authority):
    app = create_app(authority.home)
    app.register_blueprint(_test_pages())
    authority.add_user("alice", "operator")
    authority.add_user("dana", "auditor")
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def _landing(app) -> str:
    """Where a login without ``next`` lands: the operator pages may choose (AUTH_LANDING_ENDPOINT)."""
    with app.test_request_context():
        return url_for(app.config.get("AUTH_LANDING_ENDPOINT", "auth.whoami"))


def _csrf(client, path: str = "/auth/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def _login(client, name: str = "alice", password: str = PASSWORD, **extra):
    return client.post("/auth/login", data={"csrf_token": _csrf(client), "name": name, "password": password, **extra})


def _count(authority: Authority, model, *where) -> int:
    with authority.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


# ---- login and logout ------------------------------------------------------------------------------


def test_login_page_is_a_csrf_protected_form_that_is_not_cached_or_framed(client):
    response = client.get("/auth/login")
    assert response.status_code == 200
    assert 'name="csrf_token"' in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_login_sets_a_session_and_records_the_login(authority, app, client):
    response = _login(client)
    assert response.status_code == 302 and response.headers["Location"] == _landing(app)
    me = client.get("/api/v1/me").get_json()
    assert me == {"name": "alice", "role": "operator", "via": "session", "token_id": None}
    assert _count(authority, UserSession) == 1
    assert _count(authority, AuditEvent, AuditEvent.action == "user.login") == 1


def test_login_without_csrf_token_is_refused_and_writes_nothing(authority, client):
    with authority.session() as session:
        before = row_counts(session)
    response = client.post("/auth/login", data={"name": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert "The CSRF token is missing" in response.get_data(as_text=True)
    with authority.session() as session:
        assert row_counts(session) == before


def test_wrong_password_is_401_with_a_generic_message_and_counts(authority, client):
    response = _login(client, password="not the password at all")
    assert response.status_code == 401
    assert "Unknown name or wrong password." in response.get_data(as_text=True)
    assert _count(authority, LoginAttempt, ~LoginAttempt.succeeded) == 1
    assert client.get("/api/v1/me").status_code == 401


def test_throttled_login_is_429_with_retry_after_rfc6585_4(authority, client):
    for _ in range(users.MAX_FAILURES_PER_NAME):
        assert _login(client, password="not the password at all").status_code == 401
    response = _login(client)  # the right password, but too late
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) == 15 * 60 + 1
    assert "too many failed logins" in response.get_data(as_text=True)


def test_login_replaces_any_session_the_browser_brought_session_fixation(client):
    with client.session_transaction() as flask_session:
        flask_session["sid"] = "chosen-by-an-attacker"
    _login(client)
    with client.session_transaction() as flask_session:
        assert flask_session["sid"] != "chosen-by-an-attacker"
    assert client.get("/api/v1/me").get_json()["name"] == "alice"


@pytest.mark.parametrize(("target", "safe"), [
    ("/test/auditor", True),
    ("//evil.example/", False),
    ("https://evil.example/", False),
    ("/\\evil.example", False),
])
def test_login_returns_only_to_paths_on_this_site(app, client, target, safe):
    assert _login(client, next=target).headers["Location"] == (target if safe else _landing(app))


def test_logout_needs_the_csrf_token_and_ends_the_session_server_side(authority, client):
    _login(client)
    with client.session_transaction() as flask_session:
        stolen = dict(flask_session)
    assert client.post("/auth/logout").status_code == 400  # no token: refused, still signed in
    assert client.get("/api/v1/me").status_code == 200
    response = client.post("/auth/logout", data={"csrf_token": _csrf(client, "/auth/me")})
    assert response.status_code == 302
    assert client.get("/api/v1/me").status_code == 401
    assert _count(authority, UserSession) == 0
    assert _count(authority, AuditEvent, AuditEvent.action == "user.logout") == 1
    # A copy of the old cookie is worth nothing: the session row is gone.
    with client.session_transaction() as flask_session:
        flask_session.update(stolen)
    assert client.get("/api/v1/me").status_code == 401


def test_disabling_a_person_ends_their_browser_session_at_once(authority, client):
    _login(client)
    authority.add_user("root", "admin")
    result = authority.run("user", "disable", "alice")
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/me").status_code == 401


# ---- roles -----------------------------------------------------------------------------------------


def test_pages_send_the_signed_out_to_login_and_back(client):
    response = client.get("/test/operator")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/test/operator"


@pytest.mark.parametrize(("name", "allowed"), [("dana", {"auditor"}), ("alice", {"auditor", "operator"})])
def test_server_side_role_checks(client, name, allowed):
    _login(client, name=name)
    for role in users.ROLES:
        response = client.get(f"/test/{role}")
        if role in allowed:
            assert (response.status_code, response.get_data(as_text=True)) == (200, f"{role} page")
        else:
            assert response.status_code == 403
            assert f"This page needs the <strong>{role}</strong> role" in response.get_data(as_text=True)


# ---- CSRF exemptions ---------------------------------------------------------------------------------


def test_every_other_form_post_needs_the_csrf_token(client):
    _login(client)
    assert client.post("/test/form").status_code == 400
    token = _csrf(client, "/auth/me")
    assert client.post("/test/form", headers={"X-CSRFToken": token}).get_data(as_text=True) == "accepted"


def test_an_authorization_header_on_a_page_is_refused_not_exempt_from_csrf(client):
    """Only the audit API takes bearer tokens (RFC 6750 §5.2 is why it may skip CSRF there)."""
    response = client.post("/test/form", headers={"Authorization": "Bearer tnca_0000000000000000_x"})
    assert response.status_code == 401
    assert "audit API (/api/v1) only" in response.get_data(as_text=True)


def test_api_tokens_do_not_open_the_pages_whatever_their_role(client, authority):
    """An admin's audit-script token alone once created a new admin on the operator pages."""
    authority.add_user("root", "admin")
    headers = {"Authorization": f"Bearer {authority.api_token('root', role='admin')}"}
    assert client.get("/test/admin", headers=headers).status_code == 401
    assert client.get("/admin/people", headers=headers).status_code == 401
    with authority.session() as session:
        before = row_counts(session)
    response = client.post("/admin/people", headers=headers, data={"name": "mallory", "role": "admin", "password": ""})
    assert response.status_code in (400, 401)
    with authority.session() as session:
        assert row_counts(session) == before
    # The audit API still takes it.
    assert client.get("/api/v1/certificates", headers=headers).status_code == 200


def test_acme_posts_are_authenticated_by_their_jws_not_csrf_rfc8555_6_2(client):
    response = client.post("/acme/new-account", data=b"{}", headers={"Content-Type": "application/jose+json"})
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json()["type"].startswith("urn:ietf:params:acme:error:")
    assert "CSRF" not in response.get_data(as_text=True)


# ---- cookies as a browser sees them ----------------------------------------------------------------------


def test_session_cookie_over_real_http_is_httponly_samesite_lax(authority, live_server):
    authority.add_user("alice", "operator")
    with requests.Session() as browser:
        page = browser.get(f"{live_server.base_url}/auth/login", timeout=10)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        response = browser.post(f"{live_server.base_url}/auth/login", allow_redirects=False, timeout=10,
                                data={"csrf_token": token, "name": "alice", "password": PASSWORD})
        assert response.status_code == 302
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("tnca-session=")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain-http development server: browsers would drop a Secure cookie
        assert browser.get(f"{live_server.base_url}/api/v1/me", timeout=10).json()["name"] == "alice"


def test_https_base_url_gives_a_secure_host_prefixed_cookie(authority, monkeypatch):
    """RFC 6265bis §4.1.3.2: a __Host- cookie is Secure, has Path=/ and no Domain."""
    monkeypatch.setenv("TNCA_BASE_URL", "https://ca.example")
    from ca.home import Home

    home = Home(authority.path)
    home.clock = authority.clock
    client = create_app(home).test_client()
    response = client.get("/auth/login")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-tnca-session=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
    home.close()


def test_the_session_secret_is_made_once_per_home_and_kept_private(authority, client):
    client.get("/auth/login")
    secret_file = authority.path / "keys" / "web-session.key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    first = secret_file.read_text()
    assert create_app(authority.home).secret_key == first.strip()


def test_the_operator_pages_choose_where_a_plain_login_lands(app, client):
    app.config["AUTH_LANDING_ENDPOINT"] = "test_pages.auditor"
    assert _login(client).headers["Location"] == "/test/auditor"
