"""The audit API's routing table: one row per GET endpoint under ``/api/v1``.

Each row says everything the OpenAPI document needs (``openapi.py`` is generated from these
rows) and everything the blueprint needs (path, role, the name of its handler in
``endpoints.py``), so the two cannot drift. The table names handlers rather than importing them,
so that the handlers (one of which serves the OpenAPI document) and the document both read this
table without importing each other; ``acme_server/audit_api/__init__.py`` binds the names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ca.records import query_filters

JSON = "application/json"
CSV = "text/csv"
JSON_LINES = "application/x-ndjson"
PAGINATION_PARAMETERS = ("limit", "cursor")
EXPORT_FORMATS = ("json", "csv")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One GET endpoint under ``/api/v1``."""

    path: str  # OpenAPI template, e.g. "/certificates/{serial}"
    operation_id: str  # the handler's name in acme_server.audit_api.endpoints, and the Flask endpoint
    summary: str
    description: str
    role: str | None  # None: no authentication (the OpenAPI document itself)
    query: Mapping[str, str] = dataclasses.field(default_factory=dict)  # name -> description
    path_parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # media type -> schema name in openapi.SCHEMAS (or an inline schema)
    responses: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] = ()  # query parameters that must be given
    not_found: bool = False  # may answer 404
    paged: bool = False  # sends Link: rel="next"

    @property
    def flask_rule(self) -> str:
        rule = self.path
        for name in self.path_parameters:
            rule = rule.replace("{" + name + "}", f"<{name}>")
        return rule


def _export_query(parameters: Mapping[str, str]) -> dict[str, str]:
    """A list endpoint's filters without paging, plus ``format``: an export returns every match."""
    return {**{name: text for name, text in parameters.items() if name not in PAGINATION_PARAMETERS},
            "format": "json (default): one JSON array; csv: RFC 4180 with a header line."}


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/certificates", "list_certificates",
        "Certificates: which covered a number, range or SPC, when, under whose delegation",
        "Newest first. With tn and at: every certificate whose TNAuthList covered that number at "
        "that time (RFC 5280 §4.1.2.5, both ends inclusive), with its delegation, account, "
        "authority tokens, revocation and the audit event that recorded its issuance.",
        "auditor", query_filters.CERTIFICATE_PARAMETERS, responses={JSON: "CertificatePage"}, paged=True,
    ),
    Endpoint(
        "/certificates/{serial}", "get_certificate",
        "One certificate by serial number", "Any stage (precertificate, issued, failed).",
        "auditor", path_parameters={"serial": "Serial number, lower-case hex without leading zeros."},
        responses={JSON: "Certificate"}, not_found=True,
    ),
    Endpoint(
        "/revocations", "list_revocations", "Revocations, newest first",
        "Each with the revoked certificate and the audit event that recorded the revocation.",
        "auditor", query_filters.REVOCATION_PARAMETERS, responses={JSON: "RevocationPage"}, paged=True,
    ),
    Endpoint(
        "/delegations", "list_delegations", "Delegations: who was granted which numbers, when, by whom",
        "With tn and at: the delegations in force for that number at that time.",
        "auditor", query_filters.DELEGATION_PARAMETERS, responses={JSON: "DelegationPage"}, paged=True,
    ),
    Endpoint(
        "/audit/events", "list_audit_events", "Audit events, newest first",
        "Every state change with actor, time and before/after details, with its hash-chain links.",
        "auditor", query_filters.EVENT_PARAMETERS, responses={JSON: "AuditEventPage"}, paged=True,
    ),
    Endpoint(
        "/audit/checkpoints", "list_audit_checkpoints", "Signed checkpoints of the audit chain head",
        "Each signs (seq, head hash, time); keep copies outside this authority to detect truncation.",
        "auditor", query_filters.CHECKPOINT_PARAMETERS, responses={JSON: "CheckpointPage"}, paged=True,
    ),
    Endpoint(
        "/audit/head", "get_audit_head", "The audit chain head and the last checkpoint", "",
        "auditor", responses={JSON: "AuditHead"},
    ),
    Endpoint(
        "/audit/export", "export_audit_trail", "The audit trail for offline verification",
        "JSON lines: a header, the checkpoints, every event, an end record. Verify with "
        "'tnca audit verify --export FILE' or the commands in docs/auditor-guide.md.",
        "auditor", responses={JSON_LINES: {"type": "string"}},
    ),
    Endpoint(
        "/export/certificates", "export_certificates", "Every matching certificate, as JSON or CSV",
        "The filters of /certificates, without paging.",
        "auditor", _export_query(query_filters.CERTIFICATE_PARAMETERS),
        responses={JSON: {"type": "array", "items": {"$ref": "#/components/schemas/Certificate"}},
                   CSV: {"type": "string"}},
    ),
    Endpoint(
        "/export/revocations", "export_revocations", "Every matching revocation, as JSON or CSV",
        "The filters of /revocations, without paging.",
        "auditor", _export_query(query_filters.REVOCATION_PARAMETERS),
        responses={JSON: {"type": "array", "items": {"$ref": "#/components/schemas/Revocation"}},
                   CSV: {"type": "string"}},
    ),
    Endpoint(
        "/passports/verification", "verify_passport", "Was this PASSporT valid when the call was placed?",
        "passport: a PASSporT (JWS compact serialization, RFC 8225) or a SIP Identity header value "
        "(RFC 8224 §4.1); at: judge as of this time (default: the PASSporT's iat). Each step is a "
        "check: passport, certificate (from the records when x5u names this authority's repository, "
        "else fetched), signature, chain, tnauthlist, claim-constraints, validity, revocation, scts. "
        "Input that is not a PASSporT is a verdict with one failed 'passport' check, not an error. "
        "'tnca verify passport FILE --json' prints the same object.",
        "auditor", {"passport": "The PASSporT or Identity header value.",
                    "at": "RFC 3339 time to judge at; default the PASSporT's iat."},
        responses={JSON: "PassportVerdict"}, required=("passport",),
    ),
    Endpoint(
        "/me", "get_me", "Who is asking", "The person behind the session or API token, and the role in effect.",
        "auditor", responses={JSON: "Me"},
    ),
    Endpoint(
        "/openapi.json", "get_openapi", "This document", "OpenAPI 3.1, generated from the routing table.",
        None, responses={JSON: {"type": "object"}},
    ),
)
