"""The JSON shape of each record an auditor or operator reads: one shape per kind, everywhere.

Certificates, TN scopes, revocations, delegations, audit events and checkpoints are shown by the
audit API (documented in ``acme_server/audit_api/openapi.py``), ``tnca … --json``, the auditor
and operator pages and CSV exports. Each kind has one function here, so every front end shows the
same fields with the same meaning: the items of :mod:`ca.records.queries` pages are built from
them, and so is what the CLI prints for one delegation.

It stands apart from the queries because a shape is needed without a query (the CLI shows the
delegation it just created; audit events record a delegation before and after a change).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.errors import ScopeError
from ca.lifecycle.reasons import CRLReason
from ca.numbers.claims import ClaimConstraints
from ca.numbers.tn_entries import TN, TNRange
from ca.numbers.tnauthlist import TNScope
from ca.records.models_audit import AuditCheckpoint, AuditEvent
from ca.records.models_authority import Certificate, Delegation, DelegationVetting, Revocation, RightToUseEvidence
from ca.encoding import b64url_encode


def certificate_json(
    row: Certificate,
    *,
    issuer: str | None,
    delegation: Delegation | None,
    revocation: Revocation | None,
    issue_event: AuditEvent | None,
    token_jtis: Sequence[str] = (),
) -> dict[str, Any]:
    """The item for one certificate: what it covered, when, under whose delegation, who said so."""
    return {
        "serial": row.serial,
        "kind": row.kind,
        "stage": row.stage,
        "subject": row.subject,
        "issuer": issuer,
        "not_before": _iso(row.not_before),
        "not_after": _iso(row.not_after),
        "issued_at": _iso(row.created_at),
        "scope": scope_json(row.scope_der),
        "delegation": _delegation_ref(delegation),
        "account_id": row.account_id,
        "order_id": row.order_id,
        "authority_token_jtis": list(token_jtis),
        "fingerprint_sha256": row.fingerprint_sha256,
        "sct_count": len(row.scts or []),
        "revocation": revocation_fields(revocation) if revocation is not None else None,
        "issue_event": event_ref(issue_event),
    }


def scope_json(scope_der: bytes) -> dict[str, Any]:
    """A TN scope for people and for machines: description, entries and the DER (base64url)."""
    try:
        scope = TNScope.from_der(scope_der, strict=False)
    except ScopeError:
        # A stored scope always decoded when it was written; say so rather than fail the page.
        return {"description": "unreadable TNAuthList", "tnauthlist": b64url_encode(scope_der), "entries": []}
    entries: list[dict[str, Any]] = []
    for entry in scope.entries:
        if isinstance(entry, TN):
            entries.append({"type": "tn", "number": entry.number})
        elif isinstance(entry, TNRange):
            entries.append({"type": "range", "start": entry.start, "count": entry.count})
        else:
            entries.append({"type": "spc", "code": entry.code})
    return {
        "description": scope.describe(),
        "tnauthlist": b64url_encode(scope_der),
        "entries": entries,
    }


def _delegation_ref(delegation: Delegation | None) -> dict[str, Any] | None:
    if delegation is None:
        return None
    return {
        "id": delegation.id,
        "delegate": delegation.delegate,
        "created_by": delegation.created_by,
        "status": delegation.status,
    }


def revocation_fields(revocation: Revocation) -> dict[str, Any]:
    reason = CRLReason(revocation.reason_code).name.lower().replace("_", "-") if revocation.reason_code is not None else "unspecified"
    return {
        "revoked_at": _iso(revocation.revoked_at),
        "reason_code": revocation.reason_code,
        "reason": reason,
        "source": revocation.source,
        "actor": revocation.actor,
        "comment": revocation.comment,
    }


def event_ref(event: AuditEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"seq": event.seq, "actor": event.actor, "occurred_at": _iso(event.occurred_at), "hash": event.hash}


def vetting_json(vetting: DelegationVetting | None) -> dict[str, Any] | None:
    if vetting is None:
        return None
    return {
        "legal_name": vetting.legal_name,
        "country": vetting.country,
        "lei": vetting.lei,
        "assurance": vetting.assurance,
        "vetted_by": vetting.vetted_by,
        "vetted_at": _iso(vetting.vetted_at),
        "evidence": list(vetting.evidence),
        "recorded_by": vetting.recorded_by,
        "recorded_at": _iso(vetting.recorded_at),
    }


def right_to_use_json(record: RightToUseEvidence) -> dict[str, Any]:
    return {
        "id": record.id,
        "scope": TNScope.from_der(record.scope_der, strict=False).describe(),
        "source": record.source,
        "evidence": list(record.evidence),
        "verified_by": record.verified_by,
        "verified_at": _iso(record.verified_at),
        "recorded_by": record.recorded_by,
        "recorded_at": _iso(record.recorded_at),
    }


def identity_json(delegation: Delegation) -> dict[str, Any]:
    """The vetting and right-to-use records of ``delegation``: what audit events, the auditor
    API and the pages show next to the delegation."""
    return {
        "vetting": vetting_json(delegation.vetting),
        "right_to_use": [right_to_use_json(record) for record in delegation.right_to_use],
    }


def delegation_fields(delegation: Delegation) -> dict[str, Any]:
    """What a delegation grants and its state, in the one shape every front end shows.

    The audit API, ``tnca delegation … --json`` and the operator pages show it inside
    :func:`delegation_json`; ``delegation.*`` audit events record it as ``before``/``after``.
    """
    constraints = None
    if delegation.constraints_der is not None:
        constraints = ClaimConstraints.from_der(delegation.constraints_der, delegation.constraints_kind).to_json()
    return {
        "id": delegation.id,
        "delegate": delegation.delegate,
        "scope": scope_json(delegation.scope_der),
        "ca": delegation.ca_allowed,
        "max_lifetime_seconds": delegation.max_lifetime_seconds,
        "profile": delegation.profile,
        **identity_json(delegation),
        "constraints": constraints,
        "not_before": _iso(delegation.not_before),
        "not_after": _iso(delegation.not_after),
        "status": delegation.status,
        "revoked_at": _iso(delegation.revoked_at),
        "revocation_reason": delegation.revocation_reason,
        "created_by": delegation.created_by,
        "created_at": _iso(delegation.created_at),
    }


def delegation_json(delegation: Delegation, create_event: AuditEvent | None, revoke_event: AuditEvent | None) -> dict[str, Any]:
    """A delegation's fields with the audit events that created and revoked it (who said so)."""
    return {
        **delegation_fields(delegation),
        "create_event": event_ref(create_event),
        "revoke_event": event_ref(revoke_event),
    }


def event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": _iso(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def checkpoint_json(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as stored: the exact signed statement, the signature and the signing certificate."""
    return {
        "id": checkpoint.id,
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "signed_at": _iso(checkpoint.signed_at),
        "statement": checkpoint.statement,
        "signature": base64.b64encode(checkpoint.signature).decode("ascii"),
        "certificate": x509.load_der_x509_certificate(checkpoint.certificate_der)
        .public_bytes(serialization.Encoding.PEM)
        .decode("ascii"),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
