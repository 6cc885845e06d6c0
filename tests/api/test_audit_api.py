"""The audit API under /api/v1 (acme_server/audit_api): authentication, answers, paging,
exports, errors — and that ``tnca audit query … --json`` gives the same answers.

Requests go through the real app (Flask's test client) over a home made by ``tnca init``.
"""

from __future__ import annotations

import csv
import io
import json

from urllib.parse import urlsplit

import pytest

from acme_server import create_app
from ca.records import audit, audit_export, exports
from ca.numbers.tnauthlist import TNScope
from tests.audit.support import Authority


@pytest.fixture
def data(authority: Authority) -> dict[str, str]:
    delegation = authority.delegate()
    serials = {f"tn{i}": authority.issue(TNScope.parse(tns=[f"1202555010{i}"]), delegation_id=delegation)
               for i in range(3)}
    authority.revoke(serials["tn0"])
    authority.add_user("dana", "auditor")
    authority.add_user("olivia", "operator")
    return {"delegation": delegation, **serials, "token": authority.api_token("dana")}


@pytest.fixture
def client(authority: Authority):
    return create_app(authority.home).test_client()


def _get(client, path: str, token: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers, **kwargs)


def _problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.get_json(force=True)
    assert body["type"] == f"urn:tnca:problem:{kind}" and body["status"] == status
    return body


# ---- authentication and roles ------------------------------------------------------------------


def test_no_credentials_is_401_with_a_bearer_challenge_rfc6750_3(client, data):
    response = _get(client, "/api/v1/certificates")
    _problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="tnca audit API"'


@pytest.mark.parametrize("header", ["Bearer tnca_0000000000000000_nope", "Basic ZGFuYTpwdw==", "Bearer", "tnca_x"])
def test_bad_credentials_are_401_and_never_fall_back_to_anonymous(client, data, header):
    response = client.get("/api/v1/me", headers={"Authorization": header})
    body = _problem(response, 401, "unauthenticated")
    assert "tnca_" in body["detail"] or "invalid" in body["detail"]


def test_revoked_token_stops_working_at_once(authority, client, data):
    assert _get(client, "/api/v1/me", data["token"]).status_code == 200
    authority.run("user", "token-revoke", data["token"][5:21])
    _problem(_get(client, "/api/v1/me", data["token"]), 401, "unauthenticated")


def test_me_tells_who_is_asking_with_which_role(client, data):
    body = _get(client, "/api/v1/me", data["token"]).get_json()
    assert body == {"name": "dana", "role": "auditor", "via": "api-token", "token_id": data["token"][5:21]}


def test_openapi_document_needs_no_credentials_and_lists_every_route(client, authority):
    from acme_server.audit_api.routes import ENDPOINTS

    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {endpoint.path for endpoint in ENDPOINTS}
    assert document["servers"] == [{"url": "/api/v1"}]
    flask_rules = {rule.rule for rule in client.application.url_map.iter_rules() if rule.rule.startswith("/api/v1")}
    assert flask_rules == {"/api/v1" + endpoint.flask_rule for endpoint in ENDPOINTS}


# ---- answers ------------------------------------------------------------------------------------


def test_who_covered_a_number_at_a_time_with_revocation_as_of_then(authority, client, data):
    at = authority.clock.now().isoformat().replace("+00:00", "Z")
    body = _get(client, f"/api/v1/certificates?tn=12025550100&at={at}", data["token"]).get_json()
    assert [i["serial"] for i in body["items"]] == [data["tn0"]]
    assert body["items"][0]["revocation"]["reason"] == "key-compromise"
    assert body["next_cursor"] is None


def test_the_cli_gives_exactly_the_api_answer(authority, client, data):
    """tnca audit query … --json and GET /api/v1/… share parser, query and rendering."""
    cases = [
        ("certificates", {"range": "12025550100:3", "limit": "2"}),
        ("revocations", {"tn": "12025550100"}),
        ("delegations", {"tn": "12025550101", "at": "2026-01-01"}),
        ("events", {"action": "certificate.", "limit": "3"}),
    ]
    for kind, params in cases:
        path = "/api/v1/" + ("audit/events" if kind == "events" else kind)
        api = _get(client, path, data["token"], query_string=params).get_json()
        options = [token for name, value in params.items() for token in (f"--{name.replace('_', '-')}", value)]
        result = authority.run("audit", "query", kind, *options, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == api, kind


def test_pages_link_to_the_next_one_rfc8288(authority, client, data):
    first = _get(client, "/api/v1/certificates?range=12025550100:3&limit=2", data["token"])
    body = first.get_json()
    assert len(body["items"]) == 2 and body["next_cursor"]
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"') and f"cursor={body['next_cursor']}" in link and "limit=2" in link
    target = urlsplit(link[1:link.index(">")])
    assert f"{target.scheme}://{target.netloc}" == authority.base_url  # the external URL, not the forwarded one
    second = _get(client, f"{target.path}?{target.query}", data["token"]).get_json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    assert not {i["serial"] for i in second["items"]} & {i["serial"] for i in body["items"]}


def test_one_certificate_by_serial_or_404(client, data):
    assert _get(client, f"/api/v1/certificates/{data['tn1']}", data["token"]).get_json()["serial"] == data["tn1"]
    _problem(_get(client, "/api/v1/certificates/abc123", data["token"]), 404, "not-found")
    body = _problem(_get(client, "/api/v1/certificates/00ab", data["token"]), 400, "bad-parameter")
    assert body["parameter"] == "serial"


def test_audit_head_and_checkpoints(authority, client, data):
    assert authority.run("audit", "checkpoint").exit_code == 0
    head = _get(client, "/api/v1/audit/head", data["token"]).get_json()
    with authority.session() as session:
        assert (head["seq"], head["hash"]) == audit.head(session)
    assert head["last_checkpoint"]["seq"] == head["seq"]
    page = _get(client, "/api/v1/audit/checkpoints", data["token"]).get_json()
    assert page["items"] == [head["last_checkpoint"]]


def test_audit_export_endpoint_verifies_offline(authority, client, data):
    assert authority.run("audit", "checkpoint").exit_code == 0
    response = _get(client, "/api/v1/audit/export", data["token"])
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    result = audit_export.verify_export(response.get_data(as_text=True).splitlines(),
                                 trust_anchor=authority.home.root_certificate())
    assert result.checkpoints == 1 and result.anchored


# ---- exports ------------------------------------------------------------------------------------


def test_csv_export_has_a_header_every_match_and_defuses_formulas(authority, client, data):
    formula = authority.delegate(TNScope.parse(tns=["12025550900"]), delegate='=HYPERLINK("http://evil.example")')
    authority.issue(TNScope.parse(tns=["12025550900"]), delegation_id=formula)
    response = _get(client, "/api/v1/export/certificates?format=csv", data["token"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8; header=present"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 4
    assert [name for name, _ in exports.CERTIFICATE_CSV_COLUMNS] == list(rows[0])
    (evil,) = [row for row in rows if row["tnauthlist"] == TNScope.parse(tns=["12025550900"]).to_identifier_value()]
    assert evil["delegate"] == "'" + '=HYPERLINK("http://evil.example")'
    assert {row["serial"]: row["revocation_reason"] for row in rows}[data["tn0"]] == "key-compromise"


def test_json_export_is_every_item_of_the_paged_query(authority, client, data):
    exported = _get(client, "/api/v1/export/revocations?format=json", data["token"]).get_json()
    paged = _get(client, "/api/v1/revocations", data["token"]).get_json()["items"]
    assert exported == paged and len(exported) == 1


def test_exports_refuse_paging_parameters(client, data):
    body = _problem(_get(client, "/api/v1/export/certificates?limit=5", data["token"]), 400, "bad-parameter")
    assert body["parameter"] == "limit"


# ---- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "parameter"), [
    ("tn=%2B12025550100", "tn"),
    ("at=yesterday", "at"),
    ("limit=0", "limit"),
    ("colour=blue", "colour"),
    ("tn=12025550100&tn=12025550101", "tn"),
])
def test_malformed_parameters_are_400_problems_naming_the_parameter(client, data, query, parameter):
    body = _problem(_get(client, f"/api/v1/certificates?{query}", data["token"]), 400, "bad-parameter")
    assert body["parameter"] == parameter


def test_unknown_urls_and_methods_under_api_v1_are_problem_documents(client, data):
    _problem(_get(client, "/api/v1/nothing-here", data["token"]), 404, "not-found")
    response = client.post("/api/v1/certificates", headers={"Authorization": f"Bearer {data['token']}"})
    _problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["Allow"]
    # Outside /api/v1 the app's own handlers still answer (the ACME ones under /acme).
    acme = client.get("/acme/nothing-here")
    assert acme.headers["Content-Type"] == "application/problem+json"
    assert acme.get_json()["type"] == "urn:ietf:params:acme:error:malformed"


def test_answers_are_not_cached_by_shared_caches(client, data):
    response = _get(client, "/api/v1/certificates", data["token"])
    assert response.headers["Cache-Control"] == "no-store"
    assert "Authorization" in response.headers["Vary"]
