"""HTTP front end of a log: the RFC 6962 §4 API under ``/ct/v1/`` and, for STIR certificate
transparency clients, the same API under ``/stict/v1/`` (the formats are identical).

Every refusal is a JSON body ``{"success": false, "error_message": "..."}`` (the shape of the
original certificate-transparency log server) with status 400, or 404/405/413 for routing and
size problems: bad input never produces a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from ctlog import merkle
from ctlog.log import Log, LogError

log = logging.getLogger(__name__)

API_PREFIXES = ("/ct/v1", "/stict/v1")  # RFC 6962 §4; the second for STIR CT clients
# A chain of MAX_CHAIN_LENGTH certificates of a few KiB each, base64-encoded, fits easily.
MAX_REQUEST_BYTES = 256 * 1024
# RFC 6962 §4 parameters are decimal numbers; refuse signs, spaces and absurd sizes up front.
_DECIMAL = re.compile(r"[0-9]{1,19}")
MAX_TREE_INDEX = 2**63 - 1


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")


def _error(message: str, status: int) -> Response:
    return _json({"success": False, "error_message": message}, status)


def _decimal(name: str) -> int:
    raw = request.args.get(name)
    if raw is None:
        raise LogError(f"query parameter '{name}' is missing")
    if not _DECIMAL.fullmatch(raw) or int(raw) > MAX_TREE_INDEX:
        raise LogError(f"query parameter '{name}' must be a decimal number of at most 2^63-1, got {raw[:40]!r}")
    return int(raw)


def _chain_from_body() -> list[bytes]:
    """The ``chain`` of an add-chain / add-pre-chain body (RFC 6962 §4.1): base64 DER strings."""
    try:
        # RFC 8259 §8.1: JSON exchanged between systems "MUST be encoded using UTF-8" (json.loads
        # would also guess UTF-16 and UTF-32 from bytes).
        raw = request.get_data(cache=False).decode("utf-8")
    except UnicodeDecodeError:
        raise LogError("request body is not UTF-8 text") from None
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LogError(f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise LogError("request body is not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise LogError(f"request body must be a JSON object with a 'chain' member, got {type(body).__name__}")
    chain = body.get("chain")
    if not isinstance(chain, list):
        raise LogError("'chain' must be an array of base64-encoded DER certificates")
    ders = []
    for position, item in enumerate(chain):
        if not isinstance(item, str):
            raise LogError(f"chain[{position}] must be a base64 string, got {type(item).__name__}")
        try:
            ders.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise LogError(f"chain[{position}] is not valid base64") from None
    return ders


# -- RFC 6962 §4 handlers, named after the resource ------------------------------------------------

def add_chain(ct_log: Log) -> Response:  # RFC 6962 §4.1
    return _json(ct_log.add_chain(_chain_from_body()).to_json())


def add_pre_chain(ct_log: Log) -> Response:  # RFC 6962 §4.2
    return _json(ct_log.add_pre_chain(_chain_from_body()).to_json())


def get_sth(ct_log: Log) -> Response:  # RFC 6962 §4.3
    return _json(ct_log.get_sth().to_json())


def get_sth_consistency(ct_log: Log) -> Response:  # RFC 6962 §4.4
    proof = ct_log.get_sth_consistency(_decimal("first"), _decimal("second"))
    return _json({"consistency": [base64.b64encode(h).decode() for h in proof]})


def get_proof_by_hash(ct_log: Log) -> Response:  # RFC 6962 §4.5
    raw = request.args.get("hash")
    if raw is None:
        raise LogError("query parameter 'hash' is missing")
    try:
        leaf_hash = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise LogError("query parameter 'hash' is not valid base64") from None
    if len(leaf_hash) != merkle.HASH_SIZE:
        raise LogError(f"query parameter 'hash' must be a {merkle.HASH_SIZE}-byte SHA-256 leaf hash, got {len(leaf_hash)} bytes")
    index, path = ct_log.get_proof_by_hash(leaf_hash, _decimal("tree_size"))
    return _json({"leaf_index": index, "audit_path": [base64.b64encode(h).decode() for h in path]})


def get_entries(ct_log: Log) -> Response:  # RFC 6962 §4.6
    found = ct_log.get_entries(_decimal("start"), _decimal("end"))
    return _json({"entries": [
        {"leaf_input": base64.b64encode(leaf).decode(), "extra_data": base64.b64encode(extra).decode()}
        for leaf, extra in found
    ]})


def get_entry_and_proof(ct_log: Log) -> Response:  # RFC 6962 §4.8
    leaf, extra, path = ct_log.get_entry_and_proof(_decimal("leaf_index"), _decimal("tree_size"))
    return _json({"leaf_input": base64.b64encode(leaf).decode(), "extra_data": base64.b64encode(extra).decode(),
                  "audit_path": [base64.b64encode(h).decode() for h in path]})


def get_roots(ct_log: Log) -> Response:  # RFC 6962 §4.7
    return _json({"certificates": [base64.b64encode(der).decode() for der in ct_log.get_roots()]})


ROUTES = (
    # path               method  handler
    ("add-chain",           "POST", add_chain),
    ("add-pre-chain",       "POST", add_pre_chain),
    ("get-sth",             "GET",  get_sth),
    ("get-sth-consistency", "GET",  get_sth_consistency),
    ("get-proof-by-hash",   "GET",  get_proof_by_hash),
    ("get-entries",         "GET",  get_entries),
    ("get-roots",           "GET",  get_roots),
    ("get-entry-and-proof", "GET",  get_entry_and_proof),
)


def create_app(ct_log: Log) -> Flask:
    app = Flask(f"ctlog.{ct_log.name}")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.extensions["ctlog"] = ct_log

    for prefix in API_PREFIXES:
        for path, method, handler in ROUTES:
            app.add_url_rule(
                f"{prefix}/{path}",
                endpoint=f"{prefix}/{path}",
                view_func=lambda handler=handler: handler(ct_log),
                methods=[method],
            )

    @app.errorhandler(LogError)
    def _log_error(exc: LogError) -> Response:
        return _error(exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # Unknown paths, wrong methods and oversized bodies answer in the same JSON shape.
        response = _error(f"{exc.name}: {exc.description}", exc.code or 400)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        incident = uuid.uuid4().hex[:12]
        log.exception("log %s: unexpected error, incident %s", ct_log.name, incident)
        return _error(f"internal error (incident {incident})", 500)

    return app
