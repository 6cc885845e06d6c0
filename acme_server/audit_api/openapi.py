"""The OpenAPI 3.1 document of the audit API, generated from :data:`routes.ENDPOINTS`.

Parameter descriptions come from the ``ca.records.queries`` tables the parser uses; each parameter's
schema below accepts exactly what the parser accepts (the schemathesis test in
``tests/api/test_openapi_conformance.py`` checks both directions: schema-valid input is
answered, schema-invalid input is refused with 400, and every answer matches its schema).
"""

from __future__ import annotations

from typing import Any

from acme_server.audit_api import routes
from acme_server.audit_api.problems import PROBLEM_CONTENT_TYPE
from ca.records import query_filters, users

API_VERSION = "1.0.0"
OPENAPI_VERSION = "3.1.0"

# Text parameters: no C0/C1 control characters (ca.records.queries refuses them), 1..255 characters.
_TEXT = {"type": "string", "minLength": 1, "maxLength": query_filters.MAX_TEXT_PARAM, "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}
_ID = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}
# RFC 3339 §5.6 date-time ("t"/"z" may be lower case, any fraction, leap second 60), or a
# full-date meaning midnight UTC. The patterns spell out the ranges of each field so that every
# string they allow is a time ca.records.query_filters.parse_time accepts (day 31 of a short month aside,
# which "format" excludes).
_YEAR = r"([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_FULL_DATE = _YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = {
    "type": "string",
    "anyOf": [
        {"format": "date-time",
         "pattern": "^" + _FULL_DATE + r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
                    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"},
        {"format": "date", "pattern": "^" + _FULL_DATE + "$"},
    ],
}
_INT_CURSOR = {"type": "string", "pattern": r"^[0-9]{1,18}$"}
_DELEGATION_CURSOR = {"type": "string", "pattern": r"^[0-9]{1,17}\.[A-Za-z0-9_-]{1,64}$"}
_SERIAL = {"type": "string", "pattern": r"^(0|[1-9a-f][0-9a-f]{0,63})$"}
# A PASSporT or Identity header value is printable ASCII (RFC 8224 §4.1, base64url JWS) and, with
# x5u, well under 1 KiB; in a query string it must stay far below what HTTP servers accept in a
# request line (the page and the CLI take larger input).
MAX_PASSPORT_CHARS = 8 * 1024
PASSPORT_TEXT = r"^[\x20-\x7e\t\r\n]*$"

PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "tn": {"type": "string", "pattern": r"^[0-9*#]{1,15}$"},
    "range": {"type": "string", "pattern": r"^[0-9]{1,15}:[1-9][0-9]{0,15}$"},
    "spc": {"type": "string", "pattern": r"^[!-~]{1,64}$"},
    "at": _TIME,
    "issued_after": _TIME,
    "issued_before": _TIME,
    "revoked_after": _TIME,
    "revoked_before": _TIME,
    "after": _TIME,
    "before": _TIME,
    "delegation": _ID,
    "account": _ID,
    "delegate": _TEXT,
    "actor": _TEXT,
    "subject_id": _TEXT,
    "serial": _SERIAL,
    "stage": {"type": "string", "enum": [*query_filters.STAGES, "any"]},
    "revocation": {"type": "string", "enum": list(query_filters.REVOCATION_STATES)},
    "reason": {"type": "string", "enum": list(query_filters.REASON_NAMES)},
    "source": {"type": "string", "enum": ["acme", "operator", "delegation", "number"]},
    "status": {"type": "string", "enum": list(query_filters.DELEGATION_STATES)},
    "action": {"type": "string", "pattern": r"^[a-z_]{1,32}(\.[a-z_]{1,32})?\.?$"},
    "subject_type": {"type": "string", "pattern": r"^[a-z_]{1,32}$"},
    "limit": {"type": "integer", "minimum": 1, "maximum": query_filters.MAX_LIMIT},
    "cursor": _INT_CURSOR,
    "format": {"type": "string", "enum": list(routes.EXPORT_FORMATS)},
    "passport": {"type": "string", "minLength": 1, "maxLength": MAX_PASSPORT_CHARS, "pattern": PASSPORT_TEXT},
}

# Where one operation reads a parameter differently from the rest.
OPERATION_PARAMETER_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("list_delegations", "cursor"): _DELEGATION_CURSOR,
}


def parameter_schema(operation_id: str, name: str) -> dict[str, Any]:
    return OPERATION_PARAMETER_SCHEMAS.get((operation_id, name), PARAMETER_SCHEMAS[name])


_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(name: str) -> dict[str, Any]:
    return {"anyOf": [_ref(name), {"type": "null"}]}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def _page(item: str) -> dict[str, Any]:
    return _object({
        "items": {"type": "array", "items": _ref(item)},
        "next_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the next page; null on the last."},
        "limit": {"type": "integer", "minimum": 1, "maximum": query_filters.MAX_LIMIT},
    })


_REVOCATION_FIELDS: dict[str, Any] = {
    "revoked_at": _TIMESTAMP,
    "reason_code": {"type": ["integer", "null"], "description": "RFC 5280 §5.3.1 CRLReason; null: none."},
    "reason": {"type": "string", "enum": list(query_filters.REASON_NAMES)},
    "source": {"type": "string"},
    "actor": {"type": "string"},
    "comment": {"type": ["string", "null"]},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "parameter": {"type": "string", "description": "The query or path parameter at fault."},
            "requestId": {"type": "string", "description": "The request's id, also in the X-Request-Id header and the server's log."},
        },
        "required": ["type", "title", "status", "detail"],
    },
    "ScopeEntry": {
        "oneOf": [
            _object({"type": {"const": "tn"}, "number": {"type": "string"}}),
            _object({"type": {"const": "range"}, "start": {"type": "string"}, "count": {"type": "integer"}}),
            _object({"type": {"const": "spc"}, "code": {"type": "string"}}),
        ]
    },
    "Scope": _object({
        "description": {"type": "string", "examples": ["range 12025550000+100, SPC 1234"]},
        "tnauthlist": {"type": "string", "description": "base64url DER TNAuthList (RFC 8226 §9), no padding."},
        "entries": {"type": "array", "items": _ref("ScopeEntry")},
    }),
    "EventRef": _object({
        "seq": {"type": "integer", "minimum": 1},
        "actor": {"type": "string"},
        "occurred_at": _TIMESTAMP,
        "hash": _HASH,
    }),
    "DelegationRef": _object({
        "id": {"type": "string"},
        "delegate": {"type": "string"},
        "created_by": {"type": "string"},
        "status": {"type": "string"},
    }),
    "RevocationFields": _object(_REVOCATION_FIELDS),
    "Certificate": _object({
        "serial": {"type": "string"},
        "kind": {"type": "string", "enum": ["end-entity", "delegate-ca"]},
        "stage": {"type": "string", "enum": list(query_filters.STAGES)},
        "subject": {"type": "string"},
        "issuer": {"type": ["string", "null"]},
        "not_before": _TIMESTAMP,
        "not_after": _TIMESTAMP,
        "issued_at": _TIMESTAMP,
        "scope": _ref("Scope"),
        "delegation": _nullable("DelegationRef"),
        "account_id": {"type": ["string", "null"]},
        "order_id": {"type": ["string", "null"]},
        "authority_token_jtis": {"type": "array", "items": {"type": "string"}},
        "fingerprint_sha256": {"type": ["string", "null"]},
        "sct_count": {"type": "integer", "minimum": 0},
        "revocation": _nullable("RevocationFields"),
        "issue_event": _nullable("EventRef"),
    }),
    "Revocation": _object({
        **_REVOCATION_FIELDS,
        "serial": {"type": "string"},
        "revoke_event": _nullable("EventRef"),
        "certificate": _ref("Certificate"),
    }),
    "Delegation": _object({
        "id": {"type": "string"},
        "delegate": {"type": "string"},
        "scope": _ref("Scope"),
        "ca": {"type": "boolean"},
        "max_lifetime_seconds": {"type": "integer"},
        "profile": {"type": "string", "description": "The certificate profile of its certificates: "
                                                     "delegate or vesper (docs/identity.md)."},
        "vetting": {"type": ["object", "null"],
                    "description": "Who vetted the delegate, when, the level of assurance, the vetted legal name, "
                                   "country and LEI, and evidence references (URI + SHA-256); null: not vetted."},
        "right_to_use": {"type": "array", "items": {"type": "object"},
                         "description": "Right-to-use evidence per number scope (source, who checked it, when, "
                                        "evidence references)."},
        "constraints": {"type": ["object", "null"],
                        "description": "The claim constraints certificates under it carry: JWTClaimConstraints "
                                       "(RFC 8226 §8) or EnhancedJWTClaimConstraints (RFC 9118) as JSON; null: none."},
        "not_before": _TIMESTAMP,
        "not_after": _NULLABLE_TIMESTAMP,
        "status": {"type": "string"},
        "revoked_at": _NULLABLE_TIMESTAMP,
        "revocation_reason": {"type": ["string", "null"]},
        "created_by": {"type": "string"},
        "created_at": _TIMESTAMP,
        "create_event": _nullable("EventRef"),
        "revoke_event": _nullable("EventRef"),
    }),
    "AuditEvent": _object({
        "seq": {"type": "integer", "minimum": 1},
        "occurred_at": _TIMESTAMP,
        "actor": {"type": "string"},
        "action": {"type": "string"},
        "subject_type": {"type": "string"},
        "subject_id": {"type": "string"},
        "details": {"type": "object"},
        "prev_hash": _HASH,
        "hash": _HASH,
    }),
    "Checkpoint": _object({
        "id": {"type": "integer"},
        "seq": {"type": "integer", "minimum": 0},
        "head_hash": _HASH,
        "signed_at": _TIMESTAMP,
        "statement": {"type": "string", "description": "The exact bytes signed (canonical JSON, UTF-8)."},
        "signature": {"type": "string", "contentEncoding": "base64"},
        "certificate": {"type": "string", "description": "PEM certificate of the audit key."},
    }),
    "AuditHead": _object({
        "seq": {"type": "integer", "minimum": 0},
        "hash": _HASH,
        "last_checkpoint": _nullable("Checkpoint"),
    }),
    "Me": _object({
        "name": {"type": "string"},
        "role": {"type": "string", "enum": list(users.ROLES)},
        "via": {"type": "string", "enum": ["session", "api-token"]},
        "token_id": {"type": ["string", "null"]},
    }),
    "PassportCheck": _object({
        "name": {"type": "string", "enum": ["passport", "certificate", "signature", "chain", "tnauthlist",
                                            "claim-constraints", "validity", "revocation", "scts"]},
        "ok": {"type": "boolean"},
        "detail": {"type": "string"},
    }),
    "PassportVerdict": _object({
        "valid": {"type": "boolean", "description": "Every check passed."},
        "at": {**_NULLABLE_TIMESTAMP, "description": "The time judged at; null when there is none."},
        "certificate": _object({
            "serial": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"], "enum": ["records", "x5u", None]},
        }),
        "checks": {"type": "array", "items": _ref("PassportCheck")},
        "reasons": {"type": "array", "items": {"type": "string"}, "description": "'name: detail' of each failed check."},
    }),
    "CertificatePage": _page("Certificate"),
    "RevocationPage": _page("Revocation"),
    "DelegationPage": _page("Delegation"),
    "AuditEventPage": _page("AuditEvent"),
    "CheckpointPage": _page("Checkpoint"),
}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {PROBLEM_CONTENT_TYPE: {"schema": _ref("Problem")}}}
    if headers:
        response["headers"] = headers
    return response


def _operation(endpoint: routes.Endpoint) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "description": description,
         "schema": parameter_schema(endpoint.operation_id, name)}
        for name, description in endpoint.path_parameters.items()
    ] + [
        {"name": name, "in": "query", "required": name in endpoint.required, "description": description,
         "schema": parameter_schema(endpoint.operation_id, name)}
        for name, description in endpoint.query.items()
    ]
    content = {
        media_type: {"schema": _ref(schema) if isinstance(schema, str) else schema}
        for media_type, schema in endpoint.responses.items()
    }
    ok: dict[str, Any] = {"description": "OK", "content": content}
    if endpoint.paged:
        ok["headers"] = {"Link": {"description": "RFC 8288 link to the next page (rel=\"next\").",
                                  "schema": {"type": "string"}}}
    responses: dict[str, Any] = {"200": ok, "400": _problem("A parameter is malformed; 'parameter' names it.")}
    if endpoint.role is not None:
        responses["401"] = _problem(
            "No credentials, or credentials that were not accepted.",
            {"WWW-Authenticate": {"description": "RFC 6750 §3 challenge.", "schema": {"type": "string"}}},
        )
        responses["403"] = _problem(f"The role in effect does not include {endpoint.role}.")
    if endpoint.not_found:
        responses["404"] = _problem("Nothing with this identifier.")
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.role is not None:
        operation["description"] = (operation.get("description", "") + f" Needs the {endpoint.role} role.").strip()
        operation["security"] = [{"bearerToken": []}, {"sessionCookie": []}]
    else:
        operation["security"] = []
    return operation


def document(self_url: str = "/api/v1/openapi.json", cookie_name: str = "tnca-session") -> dict[str, Any]:
    """The OpenAPI document; server URLs are relative to where it is served (OpenAPI 3.1 §4.8.5)."""
    base = self_url.rsplit("/", 1)[0]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tnca audit API",
            "version": API_VERSION,
            "summary": "Read-only answers for auditors: who could sign for which telephone number, when, and who said so.",
            "description": (
                "Every list is newest first and paged with next_cursor (keyset paging: stable while "
                "rows are added). Times are RFC 3339 in UTC. Authentication: an API token "
                "('Authorization: Bearer tnca_…', made with 'tnca user token-create') or a signed-in "
                "session. See docs/auditor-guide.md."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": base}],
        "paths": {endpoint.path: {"get": _operation(endpoint)} for endpoint in routes.ENDPOINTS},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer", "description": "An API token: tnca_<id>_<secret>."},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": cookie_name,
                                  "description": "The session cookie set by /auth/login."},
            },
        },
    }
