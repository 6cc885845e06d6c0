"""Plain-GET resources outside the ACME API, for ``x5u`` URLs.

- ``/token-authority.pem``: authority tokens minted by this authority name it in their ``x5u``
  header (RFC 9448 §5.3, RFC 7515 §4.1.5).
- ``/cert-repo/<serial>.pem``: the chain of an issued certificate. RFC 9448 §7: PASSporT ``x5u``
  URLs are fetched with a plain GET, while ACME certificate URLs need POST-as-GET, so a valid
  order carries an ``x5u`` field pointing here. The chain is end-entity first (RFC 9060 §7) and
  may be cached until the certificate expires, for at most a day. A revoked certificate's chain
  is gone (410): most verification services check no CRL (RFC 8226 §10 leaves freshness to
  short lifetimes), so a PASSporT signed with a revoked key must fail at the x5u fetch.
- ``/crl/<issuer>.crl``: the newest CRL of an issuer (``ca/lifecycle/crl.py``), at the distribution point
  the certificates below it carry (``[certificates] crl_distribution_point``), DER as
  ``application/pkix-crl`` (RFC 5280 §4.2.1.13 with RFC 2585 §4.2). Caches may keep it for
  ``[crl] cache_max_age``, never past its nextUpdate; ETag and Last-Modified allow conditional
  GETs.
- ``/audit/checkpoint``: the newest published checkpoint of the audit trail, a C2SP tlog-checkpoint
  signed note (``ca/records/audit_notes.py``, ``text/plain; charset=utf-8``); auditors keep copies
  and later run ``tnca audit verify --against``. ``/audit/checkpoint/<size>``: the one of that size.
  ``/audit/consistency?first=N&second=M``: the RFC 6962 §2.1.2 proof that the tree of M events
  extends the one of N (both sizes of published checkpoints), as ``{"consistency": [base64, …]}``
  (the shape of RFC 6962 §4.4).
  ``/audit/checkpoint-key``: the notes' verifier key, for convenience (pin the one you got
  independently).
"""

from __future__ import annotations

import base64
import json
import re
import threading

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, request
from sqlalchemy import select

from acme_server.acme.chains import PEM_CHAIN_CONTENT_TYPE, pem_chain_of
from acme_server.urls import CERT_REPO_PATH, CRL_PATH
from acme_server.state import current_state, db_session
from ca.lifecycle import crl as crls
from ca.config import TOKEN_AUTHORITY_X5U_PATH
from ca.errors import NotFoundError
from ca.records import audit_keys, audit_notes
from ca.records.models_audit import AuditCheckpoint
from ca.records.models_authority import Certificate, Revocation
from ca.records.statuses import CertificateStage

# RFC 2585 §4.2: the media type of a DER CRL.
CRL_CONTENT_TYPE = "application/pkix-crl"
# Relying parties cache x5u resources (RFC 9448 §7: the chain is fetched by plain GET); the
# certificate changes rarely.
CACHE_SECONDS = 24 * 3600


def token_authority_certificate() -> Response:
    certificate = current_state().home.token_authority().certificate
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    response = Response(pem, status=200, content_type=PEM_CHAIN_CONTENT_TYPE)
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


def certificate_chain(serial: str) -> Response:
    record = db_session().scalars(
        select(Certificate).where(Certificate.serial == serial, Certificate.stage == CertificateStage.ISSUED)
    ).one_or_none()
    if record is None:
        return Response("no such certificate\n", status=404, content_type="text/plain")
    remaining = int((record.not_after - current_state().clock.now()).total_seconds())
    max_age = max(0, min(remaining, CACHE_SECONDS))
    revoked_at = db_session().scalar(select(Revocation.revoked_at).where(Revocation.certificate_id == record.id))
    if revoked_at is not None:
        # 410: the chain will not come back. Cacheable like the chain was, since it is final.
        response = Response(f"certificate {record.serial} was revoked at {revoked_at.isoformat()}\n", status=410,
                            content_type="text/plain")
    else:
        response = Response(pem_chain_of(db_session(), record, issuing=current_state().issuing_ca()), status=200, content_type=PEM_CHAIN_CONTENT_TYPE)
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response


def crl(issuer: str) -> Response:
    """GET the newest CRL of ``issuer`` ("root", "issuing")."""
    state = current_state()
    record = crls.latest(db_session(), issuer)
    if record is None:
        return Response(f"no CRL for issuer {issuer[:64]!r}\n", status=404, content_type="text/plain")
    response = Response(record.der, status=200, content_type=CRL_CONTENT_TYPE)
    response.headers["Cache-Control"] = (
        f"public, max-age={crls.http_max_age(record, now=state.clock.now(), policy=state.policy)}"
    )
    response.last_modified = record.this_update
    response.set_etag(f"{issuer}-{record.number}")
    return response.make_conditional(request)


NOTE_CONTENT_TYPE = "text/plain; charset=utf-8"
MAX_CACHED_PROOFS = 256
_PROOFS: dict[tuple[str, int, int], list[bytes]] = {}  # (home, first, second) -> proof
_PROOFS_LOCK = threading.Lock()
# Query numbers are decimal, as in RFC 6962 §4 (ctlog/app.py reads them the same way).
_DECIMAL = re.compile(r"[0-9]{1,18}")


def audit_checkpoint(size: int | None = None) -> Response:
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.note.is_not(None))
    if size is not None:
        stmt = stmt.where(AuditCheckpoint.seq == size)
    row = db_session().scalars(stmt.order_by(AuditCheckpoint.id.desc()).limit(1)).first()
    if row is None:
        return Response("no published checkpoint" + (f" of size {size}" if size is not None else "") + "\n",
                        status=404, content_type="text/plain")
    response = Response(row.note, status=200, content_type=NOTE_CONTENT_TYPE)
    # The newest one changes with every checkpoint; one of a given size never does.
    response.headers["Cache-Control"] = "no-cache" if size is None else f"public, max-age={CACHE_SECONDS}"
    return response


def audit_checkpoint_of_size(size: str) -> Response:
    if not _DECIMAL.fullmatch(size):
        return Response("the size is a decimal number\n", status=400, content_type="text/plain")
    return audit_checkpoint(int(size))


def audit_consistency() -> Response:
    values = {}
    for name in ("first", "second"):
        raw = request.args.get(name, "")
        if not _DECIMAL.fullmatch(raw):
            return _json_error(f"query parameter '{name}' must be a decimal number", 400)
        values[name] = int(raw)
    published = set(db_session().scalars(select(AuditCheckpoint.seq).where(
        AuditCheckpoint.note.is_not(None), AuditCheckpoint.seq.in_((values["first"], values["second"])))))
    for name in ("first", "second"):
        if values[name] not in published:
            return _json_error(f"no published checkpoint of size {values[name]} ('{name}')", 404)
    key = (str(current_state().home.path), values["first"], values["second"])
    proof = _PROOFS.get(key)
    if proof is None:
        # Reading the trail is linear in its size: proofs between published sizes are cached
        # (they never change), so a public endpoint cannot be made to read it again and again.
        try:
            proof = audit_notes.consistency(db_session(), values["first"], values["second"])
        except ValueError as error:
            return _json_error(str(error), 400)
        with _PROOFS_LOCK:
            if len(_PROOFS) >= MAX_CACHED_PROOFS:
                _PROOFS.pop(next(iter(_PROOFS)))
            _PROOFS[key] = proof
    return Response(json.dumps({"consistency": [base64.b64encode(h).decode() for h in proof]}), status=200,
                    content_type="application/json")


def audit_checkpoint_key() -> Response:
    try:
        key = audit_keys.note_key(current_state().home, create=False)
    except NotFoundError:
        return Response("no checkpoint has been published yet\n", status=404, content_type="text/plain")
    return Response(key.vkey + "\n", status=200, content_type=NOTE_CONTENT_TYPE)


def _json_error(message: str, status: int) -> Response:
    return Response(json.dumps({"error": message}), status=status, content_type="application/json")


def create_blueprint() -> Blueprint:
    blueprint = Blueprint("repository", __name__)
    blueprint.add_url_rule(TOKEN_AUTHORITY_X5U_PATH, view_func=token_authority_certificate, methods=["GET"])
    blueprint.add_url_rule(CERT_REPO_PATH + "/<serial>.pem", view_func=certificate_chain, methods=["GET"])
    blueprint.add_url_rule(CRL_PATH + "/<issuer>.crl", view_func=crl, methods=["GET"])
    blueprint.add_url_rule("/audit/checkpoint", view_func=audit_checkpoint, methods=["GET"])
    blueprint.add_url_rule("/audit/checkpoint/<size>", view_func=audit_checkpoint_of_size, methods=["GET"])
    blueprint.add_url_rule("/audit/consistency", view_func=audit_consistency, methods=["GET"])
    blueprint.add_url_rule("/audit/checkpoint-key", view_func=audit_checkpoint_key, methods=["GET"])
    return blueprint
