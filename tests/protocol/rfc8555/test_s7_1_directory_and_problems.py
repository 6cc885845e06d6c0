"""RFC 8555 §7.1.1 directory, §6.3 GET rules, §6.7 problem documents, §7.1 Link headers."""

from __future__ import annotations

import json

import pytest
from acme import messages

from acme_server import create_app
from protocol.support import assert_problem


def test_s7_1_1_directory_lists_the_resources_and_meta(client, home):
    response = client.get("/acme/directory")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    directory = messages.Directory.from_json(response.get_json())
    base = home.base_url + "/acme/"
    assert directory["newNonce"] == base + "new-nonce"
    assert directory["newAccount"] == base + "new-account"
    assert directory["newOrder"] == base + "new-order"
    assert directory["revokeCert"] == base + "revoke-cert"
    assert directory["keyChange"] == base + "key-change"
    assert directory.meta.external_account_required is False


def test_s7_1_1_new_authz_is_absent_without_pre_authorization(client):
    """RFC 8555 §7.1.1: "If the ACME server does not implement pre-authorization ... it MUST
    omit the 'newAuthz' field of the directory"."""
    assert "newAuthz" not in client.get("/acme/directory").get_json()


def test_s7_1_directory_has_no_index_link_other_resources_do(client, home):
    """RFC 8555 §7.1: Link rel="index" to the directory on every resource but the directory."""
    assert "Link" not in client.get("/acme/directory").headers
    link = client.head("/acme/new-nonce").headers["Link"]
    assert link == f'<{home.base_url}/acme/directory>;rel="index"'


@pytest.mark.parametrize("path", ["/acme/new-account", "/acme/new-order", "/acme/order/x", "/acme/cert/ab", "/acme/revoke-cert"])
def test_s6_3_get_on_a_post_resource_is_405_malformed_with_allow(client, path):
    """RFC 8555 §6.3: "... the server MUST return ... 405 (Method Not Allowed) ... type 'malformed'"."""
    response = client.get(path)
    assert_problem(response, "malformed", 405, "POST-as-GET")
    assert response.headers["Allow"] == "POST"


def test_s6_7_unknown_url_under_acme_is_a_404_problem(client):
    assert_problem(client.get("/acme/nothing-here"), "malformed", 404, "no ACME resource")


def test_s6_7_post_to_the_directory_is_405_with_allow_get(client):
    response = client.post("/acme/directory", data="{}", content_type="application/jose+json")
    assert_problem(response, "malformed", 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_s6_7_problem_document_shape(client):
    """RFC 7807 / RFC 8555 §6.7: application/problem+json with type, detail and status, and the
    request id as an extension member (RFC 7807 §3.2), the one in the X-Request-Id header."""
    response = client.get("/acme/new-order")
    body = json.loads(response.get_data())
    assert set(body) == {"type", "detail", "status", "requestId"}
    assert body["type"].startswith("urn:ietf:params:acme:error:")
    assert body["requestId"] == response.headers["X-Request-Id"]


def test_unexpected_exception_is_server_internal_with_an_incident_id_and_no_internals(home, caplog):
    """An internal failure never leaks its message: generic detail plus an id the operator can find."""
    app = create_app(home)

    def explode():
        raise RuntimeError("secret: /etc/tnca/keys/issuing.key is unreadable")

    app.add_url_rule("/acme/explode", view_func=explode)
    response = app.test_client().get("/acme/explode")
    error = assert_problem(response, "serverInternal", 500, "incident")
    assert "secret" not in response.get_data(as_text=True)
    incident = error.detail.rsplit(" ", 1)[-1]
    assert any(incident in record.getMessage() and record.exc_info for record in caplog.records)


def test_token_authority_certificate_is_served_for_x5u(client, home):
    """Tokens minted here carry x5u {base_url}/token-authority.pem (RFC 9448 §5.3)."""
    response = client.get("/token-authority.pem")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pem-certificate-chain"
    assert response.get_data() == (home.path / "certs" / "token-authority.pem").read_bytes()
