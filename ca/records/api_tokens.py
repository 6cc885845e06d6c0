"""API tokens of the audit API: bearer tokens a person creates for scripts, capped at a role.

A token is ``tnca_<id>_<secret>``: the 16 hex characters of the id are the public, indexed part
(shown in lists and audit events), the 256-bit secret is stored only as its SHA-256 and compared
in constant time. A token acts as its person with the lower of the token's and the person's role,
and stops working when revoked, expired, or when its person is disabled. Creating and revoking
one appends ``api_token.*`` audit events, without the secret. It stands apart from the people
and the page sessions because scripts authenticate with it on every API request.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import string
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import AuthenticationError, NotFoundError, UserError
from ca.records import audit
from ca.records.models_people import APIToken, User
from ca.records.users import AUDITOR, MAX_LABEL_CHARS, Principal, get_user, iso, role_allows, sha256_hex, validate_role
from ca.records.web_sessions import SESSION_TOUCH_INTERVAL

API_TOKEN_PREFIX = "tnca_"
API_TOKEN_ID_BYTES = 8  # 16 hex characters: the public, indexed part of the token
API_TOKEN_SECRET_BYTES = 32
MAX_API_TOKEN_CHARS = 128


def describe_api_token(token: APIToken, user_name: str) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": user_name,
        "label": token.label,
        "role": token.role,
        "created_by": token.created_by,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "last_used_at": iso(token.last_used_at),
        "revoked_at": iso(token.revoked_at),
    }


def create_api_token(session: Session, name: str, *, label: str, actor: str, clock: Clock,
                     role: str | None = None, expires_at: dt.datetime | None = None) -> tuple[APIToken, str]:
    """A new API token for person ``name``; returns the row and the token text, shown once.

    ``role`` caps what the token may do; it may not exceed the person's. The default is auditor
    whatever the person's role: API tokens are accepted by the read-only audit API only
    (``acme_server/auth``), so a script's token needs no more, and a leaked one can do no more.
    Appends ``api_token.create`` (without the secret).
    """
    user = get_user(session, name)
    if user.disabled_at is not None:
        raise UserError(f"{name} is disabled", field="name")
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
        raise UserError(f"a token label of 1-{MAX_LABEL_CHARS} characters is required", field="label")
    token_role = validate_role(role) if role is not None else AUDITOR
    if not role_allows(user.role, token_role):
        raise UserError(f"{name} is {user.role}; a token cannot have the higher role {token_role}", field="role")
    now = clock.now()
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise UserError("expiry must carry a time zone (UTC)", field="expires")
        if expires_at <= now:
            raise UserError(f"expiry {expires_at.isoformat()} is not in the future", field="expires")
    token_id = secrets.token_hex(API_TOKEN_ID_BYTES)
    secret = secrets.token_urlsafe(API_TOKEN_SECRET_BYTES)
    row = APIToken(id=token_id, user_id=user.id, label=label.strip(), role=token_role, secret_sha256=sha256_hex(secret),
                   created_by=actor, created_at=now, expires_at=expires_at)
    session.add(row)
    session.flush()
    _audit(session, actor, "api_token.create", token_id, {"after": describe_api_token(row, user.name)}, clock)
    return row, f"{API_TOKEN_PREFIX}{token_id}_{secret}"


def list_api_tokens(session: Session, name: str | None = None) -> list[tuple[APIToken, str]]:
    """(token, person name) pairs, newest first; only ``name``'s when given."""
    query = select(APIToken, User.name).join(User, User.id == APIToken.user_id).order_by(
        APIToken.created_at.desc(), APIToken.id)
    if name is not None:
        query = query.where(User.name == get_user(session, name).name)
    return [(token, user_name) for token, user_name in session.execute(query)]


def revoke_api_token(session: Session, token_id: str, *, actor: str, clock: Clock) -> APIToken:
    """Stop a token from working. Appends ``api_token.revoke``."""
    row = session.get(APIToken, token_id) if isinstance(token_id, str) else None
    if row is None:
        raise NotFoundError(f"no API token with id {token_id!r}", field="token")
    if row.revoked_at is not None:
        raise UserError(f"API token {token_id} was revoked already at {iso(row.revoked_at)}", field="token")
    user = session.get(User, row.user_id)
    before = describe_api_token(row, user.name)
    row.revoked_at = clock.now()
    session.flush()
    _audit(session, actor, "api_token.revoke", row.id, {"before": before, "after": describe_api_token(row, user.name)},
           clock)
    return row


def authenticate_api_token(session: Session, token: object, *, clock: Clock) -> Principal:
    """The person behind a bearer token (``tnca_<id>_<secret>``), with the lower of the token's
    and the person's role. AuthenticationError when malformed, unknown, revoked, expired or
    when the person is disabled. Updates ``last_used_at`` at most once a minute."""
    failure = AuthenticationError("invalid API token", field="token")
    if not isinstance(token, str) or len(token) > MAX_API_TOKEN_CHARS or not token.startswith(API_TOKEN_PREFIX):
        raise failure
    body = token[len(API_TOKEN_PREFIX):]
    id_chars = 2 * API_TOKEN_ID_BYTES
    token_id, separator, secret = body[:id_chars], body[id_chars:id_chars + 1], body[id_chars + 1:]
    if separator != "_" or not secret or not all(c in string.hexdigits for c in token_id):
        raise failure
    row = session.get(APIToken, token_id)
    # Compared in constant time so the stored hash cannot be found byte by byte.
    if row is None or not hmac.compare_digest(row.secret_sha256, sha256_hex(secret)):
        raise failure
    now = clock.now()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise failure
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        raise failure
    if row.last_used_at is None or now - row.last_used_at >= SESSION_TOUCH_INTERVAL:
        row.last_used_at = now
        session.flush()
    role = row.role if role_allows(user.role, row.role) else user.role
    return Principal(user_id=user.id, name=user.name, role=role, via="api-token", token_id=row.id)


def _audit(session: Session, actor: str, action: str, token_id: str, details: dict[str, Any], clock: Clock) -> None:
    audit.append(session, actor=actor, action=action, subject_type="api_token", subject_id=token_id,
                 details=details, clock=clock)
