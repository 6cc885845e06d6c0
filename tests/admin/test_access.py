"""Every page in the routing table, for every role: the server decides, not the navigation.

The rule (acme_server.admin.PAGES): a page needs its role or a higher one (auditor < operator <
admin). Nobody signed in is sent to the login page and back; a role too low gets 403 and a page
that names the role needed. Pages are not cached (RFC 9111 §5.2.2.5 no-store: they show fresh
authority tokens and who holds which numbers) and load nothing from elsewhere, with no inline
script or style: the Content-Security-Policy ``default-src 'self'`` would refuse it.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from acme_server.admin import PAGES
from ca.numbers.tnauthlist import TNScope
from ca.records import external_accounts
from ca.records.users import role_allows
from tests.admin.support import PASSWORD, PageClient, counts, csrf_token_of, issue_certificate, make_delegation, text_of

SCOPE = TNScope.parse(ranges=["12025550100:100"])
ROLES = ("auditor", "operator", "admin")


@pytest.fixture
def objects(home) -> dict[str, str]:  # type: ignore[no-untyped-def]
    delegation_id = make_delegation(home, SCOPE)
    serial = issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550123"]))
    with home.sessionmaker() as session:
        key = external_accounts.create(session, delegation_id=delegation_id, clock=home.clock, actor="test")
        session.commit()
    return {"delegation_id": delegation_id, "serial": serial, "name": "audrey", "key_id": key.key_id}


def concrete(path: str, objects: dict[str, str]) -> str:
    return "/admin" + re.sub(r"<(\w+)>", lambda m: objects[m.group(1)], path)


def get_pages(objects: dict[str, str]) -> list[tuple[str, str]]:
    return [(concrete(page.path, objects), page.role) for page in PAGES if "GET" in page.methods]


def test_every_page_sends_a_visitor_who_is_not_signed_in_to_the_login_page(app, objects):
    client = app.test_client()
    for path, _role in get_pages(objects):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == f"/auth/login?next={quote(path, safe='/')}", path


def test_every_page_needs_its_role_or_a_higher_one(app, people, objects):
    for role in ROLES:
        visitor = PageClient(app, people[role])
        for path, needed in get_pages(objects):
            response = visitor.get(path)
            if role_allows(role, needed):
                assert response.status_code == 200, (role, path, response.status_code)
            else:
                assert response.status_code == 403, (role, path)
                assert f"This needs the {needed} role; you are signed in as {people[role]} ({role})" in text_of(response)


def test_changes_need_their_role_even_with_a_valid_csrf_token(app, people, objects, session_factory):
    """A forged POST from a signed-in person whose role is too low: 403, nothing written."""
    visitors = {role: PageClient(app, people[role]) for role in ("auditor", "operator")}
    before = counts(session_factory)
    for role, visitor in visitors.items():
        for page in PAGES:
            if "POST" not in page.methods or role_allows(role, page.role):
                continue
            response = visitor.post(concrete(page.path, objects), {"role": "admin", "comment": "forged",
                                                                   "crl_reason": "keyCompromise", "tns": "12025550123",
                                                                   "delegate": "Mallory", "name": "mallory"})
            assert response.status_code == 403, (role, page.path)
    assert counts(session_factory) == before


def test_a_post_without_the_csrf_token_is_refused_before_any_role_check(operator, objects, session_factory):
    before = counts(session_factory)
    response = operator.post("/admin/delegations/new", {"delegate": "Example", "tns": "12025550199"}, csrf=False)
    assert response.status_code == 400
    assert "The CSRF token is missing." in text_of(response)
    assert "Nothing was changed." in text_of(response)
    assert counts(session_factory) == before


def test_pages_are_not_stored_and_load_nothing_from_elsewhere(admin, home, objects):
    for path, _role in get_pages(objects):
        response = admin.get(path)
        assert response.headers["Cache-Control"] == "no-store", path
        # acme_server.auth's headers: this page cannot be framed and loads only from this origin.
        assert "default-src 'self'" in response.headers["Content-Security-Policy"], path
        html = text_of(response)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
        assert not re.search(r"\sstyle=", html), f"inline style on {path}"
        assert not re.search(r"\son[a-z]+=", html), f"inline event handler on {path}"
        for url in re.findall(r'(?:src|href|action)="([^"]*)"', html):
            assert url.startswith(("/", "#", home.base_url)), f"{path} refers to {url}"


def test_static_files_are_served_from_the_blueprint_and_may_be_cached(app):
    client = app.test_client()
    for name, media_type in (("tnca.css", "text/css"), ("tnca.js", "text/javascript"), ("tnca.svg", "image/svg+xml")):
        response = client.get(f"/admin/static/{name}")
        assert response.status_code == 200
        assert response.mimetype == media_type
        assert "no-store" not in response.headers.get("Cache-Control", "")


def test_unknown_pages_get_a_404_page_and_the_root_leads_to_the_dashboard(admin):
    response = admin.get("/admin/no-such-page")
    assert response.status_code == 404
    assert "There is no page at this address." in text_of(response)
    assert admin.get("/admin/delegations/no-such-id").status_code == 404
    assert admin.get("/admin/certificates/ffff").status_code == 404
    response = admin.get("/admin/certificates/NOT-HEX")
    assert response.status_code == 404
    assert "lower-case hex" in text_of(response)
    response = admin.get("/")
    assert (response.status_code, response.headers["Location"]) == (302, "/admin/")


def test_navigation_shows_only_what_the_role_may_use(app, people):
    expected = {
        "auditor": ["Dashboard", "Delegations", "Certificates", "Revocations", "Audit trail", "Check a PASSporT",
                    "Numbers in CT logs"],
        "operator": ["Dashboard", "Delegations", "Certificates", "Revocations", "Audit trail", "Check a PASSporT",
                     "Numbers in CT logs", "Revoke by number", "Account keys"],
        "admin": ["Dashboard", "Delegations", "Certificates", "Revocations", "Audit trail", "Check a PASSporT",
                  "Numbers in CT logs", "Revoke by number", "Account keys", "People"],
    }
    for role, labels in expected.items():
        html = text_of(PageClient(app, people[role]).get("/admin/"))
        nav = re.search(r'<nav class="nav" aria-label="Main">(.*?)</nav>', html, re.S).group(1)
        assert [label.strip() for label in re.findall(r">([^<]+)</a>", nav)] == labels, role


def test_a_login_without_a_target_lands_on_the_dashboard(app, people):
    client = PageClient(app)
    token = csrf_token_of(text_of(client.get("/auth/login")))
    response = client.client.post("/auth/login", data={"csrf_token": token, "name": people["auditor"],
                                                       "password": PASSWORD})
    assert (response.status_code, response.headers["Location"]) == (302, "/admin/")
