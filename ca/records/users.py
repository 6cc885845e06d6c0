"""People: accounts of the operator and auditor pages and of the audit API, with roles.

Three roles, each including the one below it:

============  ==========================================================================
``auditor``   reads: certificates, revocations, delegations, the audit trail and its exports
``operator``  also manages delegations, authority tokens and revocations
``admin``     also manages people (accounts, roles, passwords, API tokens of others)
============  ==========================================================================

The web layer asks :meth:`Principal.allows` (``acme_server.auth.require_role``); nothing here
knows about Flask. Every function takes the caller's ``Session``; the caller commits, and every
change appends an audit event (``user.*``, ``api_token.*``) in that same transaction.

Sessions of the pages are :mod:`ca.records.web_sessions`, API tokens :mod:`ca.records.api_tokens`;
this module is the people themselves, their passwords and logging in.

Secrets:

- Passwords are hashed with argon2id (RFC 9106) through argon2-cffi's default parameters, the
  RFC 9106 §4 "second recommended option" (t=3, m=64 MiB, p=4). The PHC string keeps the
  parameters, so raising them later re-hashes each password at its next login.
- Session tokens and API-token secrets are 256-bit random values; only their SHA-256 is stored.
  A fast hash is enough for secrets that cannot be guessed; a memory-hard one is for passwords.
- Nothing here ever logs, returns or audits a password, a hash or a token secret.

Login throttling lives in the ``login_attempts`` table, so it holds across any number of server
processes: :data:`MAX_FAILURES_PER_NAME` failures for one name, or
:data:`MAX_FAILURES_PER_ADDRESS` from one client address, within :data:`THROTTLE_WINDOW` refuse
further attempts (without checking the password) until the oldest of them leaves the window. A
successful login clears the name's count, not the address's. Two processes checking at the same
instant may each allow one more attempt; the bound is then the number of processes, not unbounded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import re
import secrets
import string
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, text, true
from sqlalchemy.orm import Session

from ca.records import audit
from ca.clock import Clock
from ca.errors import AuthenticationError, LoginThrottledError, NotFoundError, UserError
from ca.records.models_people import LoginAttempt, User, UserSession

AUDITOR = "auditor"
OPERATOR = "operator"
ADMIN = "admin"
# Lowest to highest: a role may do everything the roles before it may.
ROLES = (AUDITOR, OPERATOR, ADMIN)
_RANK = {role: rank for rank, role in enumerate(ROLES)}

# Names are what people type and what audit events show: lower-case, no spaces, no look-alikes.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
# NIST SP 800-63B §3.1.1.2: at least 8 characters; we ask for 12 because these accounts can
# revoke delegations. The upper bound only stops absurd input.
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
GENERATED_PASSWORD_CHARS = 24  # 24 characters of 62 symbols: about 143 bits
MAX_LABEL_CHARS = 128

THROTTLE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_ADDRESS = 30
# Attempts older than this are only history; prune() deletes them.
LOGIN_ATTEMPT_RETENTION = dt.timedelta(days=30)


DEV_ADMIN_NAME = "admin"

# What a failed login says, whatever failed: it must not tell names that exist from those that
# do not.
LOGIN_FAILED_DETAIL = "unknown name or wrong password"

_password_hasher = PasswordHasher()


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is making a request, as the web layer sees it after authentication."""

    user_id: int
    name: str
    role: str
    via: str  # "session" | "api-token"
    token_id: str | None = None  # the API token, when via == "api-token"

    @property
    def actor(self) -> str:
        """How audit events name this person."""
        return f"user:{self.name}"

    def allows(self, required_role: str) -> bool:
        return role_allows(self.role, required_role)


@dataclasses.dataclass(frozen=True)
class LoginResult:
    """The outcome of :func:`authenticate`. Failed attempts are recorded too, so the caller
    commits in both cases, then calls :meth:`raise_for_failure` (or reads ``user``)."""

    user: User | None
    failure: AuthenticationError | None = None

    def raise_for_failure(self) -> User:
        if self.failure is not None:
            raise self.failure
        assert self.user is not None
        return self.user


# ------------------------------------------------------------------------------------------
# Roles, names, passwords
# ------------------------------------------------------------------------------------------


def role_allows(role: str, required_role: str) -> bool:
    """Does ``role`` include ``required_role``? Unknown roles allow nothing."""
    if required_role not in _RANK:
        raise ValueError(f"unknown role {required_role!r}; roles are {', '.join(ROLES)}")
    return role in _RANK and _RANK[role] >= _RANK[required_role]


def validate_role(role: object) -> str:
    if not isinstance(role, str) or role not in _RANK:
        raise UserError(f"role must be one of {', '.join(ROLES)} (got {role!r})", field="role")
    return role


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        shown = repr(name)[:80]
        raise UserError(
            f"name {shown} is not allowed: 1-64 characters of a-z, 0-9, '.', '_', '@', '-', "
            "starting with a letter or digit",
            field="name",
        )
    return name


def check_password(password: object, *, name: str) -> str:
    """A new password's rules; raises UserError(field="password") naming the rule broken."""
    if not isinstance(password, str):
        raise UserError("password must be text", field="password")
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"password has {len(password)} characters; at least {MIN_PASSWORD_CHARS} are required",
                        field="password")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"password has {len(password)} characters; at most {MAX_PASSWORD_CHARS} are allowed",
                        field="password")
    if password.strip() != password:
        raise UserError("password must not start or end with white space", field="password")
    if password.lower() == name.lower():
        raise UserError("password must not be the name", field="password")
    return password


def generate_password() -> str:
    """A random password of :data:`GENERATED_PASSWORD_CHARS` letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(GENERATED_PASSWORD_CHARS))


def hash_password(password: str) -> str:
    """argon2id PHC string of ``password`` (fresh random salt)."""
    return _password_hasher.hash(password)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the name is unknown, so that a missing name costs as much time as
    # a wrong password and response times do not reveal which names exist.
    return _password_hasher.hash(secrets.token_urlsafe(16))


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def sha256_hex(value: str) -> str:
    """How session tokens and API-token secrets are stored: unguessable values need no slow hash."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------
# People
# ------------------------------------------------------------------------------------------


def describe(user: User) -> dict[str, Any]:
    """A JSON-ready view of a person (never the password hash)."""
    return {
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled_at is not None,
        "disabled_at": iso(user.disabled_at),
        "created_by": user.created_by,
        "created_at": iso(user.created_at),
        "password_changed_at": iso(user.password_changed_at),
        "last_login_at": iso(user.last_login_at),
    }


def get_user(session: Session, name: str) -> User:
    user = session.scalars(select(User).where(User.name == name)).one_or_none() if isinstance(name, str) else None
    if user is None:
        raise NotFoundError(f"no person named {name!r}", field="name")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def create_user(session: Session, *, name: str, role: str, password: str, actor: str, clock: Clock) -> User:
    """Add a person. Refuses (UserError, nothing written) a malformed name or role, a weak
    password or a name that exists. Appends ``user.create``."""
    validate_name(name)
    validate_role(role)
    check_password(password, name=name)
    if session.scalars(select(User.id).where(User.name == name)).first() is not None:
        raise UserError(f"a person named {name!r} exists already", field="name")
    now = clock.now()
    user = User(name=name, role=role, password_hash=hash_password(password), created_by=actor, created_at=now,
                password_changed_at=now)
    session.add(user)
    session.flush()
    _audit(session, actor, "user.create", user.name, {"after": describe(user)}, clock)
    return user


def set_role(session: Session, name: str, role: str, *, actor: str, clock: Clock) -> User:
    """Change a person's role; refuses to demote the last active admin. Appends ``user.update``."""
    validate_role(role)
    user = get_user(session, name)
    if user.role == role:
        raise UserError(f"{name} is {role} already", field="role")
    if user.role == ADMIN:
        _refuse_removing_last_admin(session, user, f"demote {name}")
    before = describe(user)
    user.role = role
    session.flush()
    _audit(session, actor, "user.update", user.name, {"before": before, "after": describe(user)}, clock)
    return user


def set_password(session: Session, name: str, password: str, *, actor: str, clock: Clock) -> User:
    """Replace a person's password and end all their sessions. Appends ``user.password``."""
    user = get_user(session, name)
    check_password(password, name=name)
    user.password_hash = hash_password(password)
    user.password_changed_at = clock.now()
    ended = _end_all_sessions(session, user)
    session.flush()
    _audit(session, actor, "user.password", user.name, {"sessions_ended": ended}, clock)
    return user


def disable_user(session: Session, name: str, *, actor: str, clock: Clock) -> User:
    """Stop a person from signing in or using API tokens; ends their sessions at once.
    Refuses to disable the last active admin. Appends ``user.disable``."""
    user = get_user(session, name)
    if user.disabled_at is not None:
        raise UserError(f"{name} is disabled already", field="name")
    if user.role == ADMIN:
        _refuse_removing_last_admin(session, user, f"disable {name}")
    before = describe(user)
    user.disabled_at = clock.now()
    ended = _end_all_sessions(session, user)
    session.flush()
    _audit(session, actor, "user.disable", user.name,
           {"before": before, "after": describe(user), "sessions_ended": ended}, clock)
    return user


def enable_user(session: Session, name: str, *, actor: str, clock: Clock) -> User:
    """Undo :func:`disable_user`. Appends ``user.enable``."""
    user = get_user(session, name)
    if user.disabled_at is None:
        raise UserError(f"{name} is not disabled", field="name")
    before = describe(user)
    user.disabled_at = None
    session.flush()
    _audit(session, actor, "user.enable", user.name, {"before": before, "after": describe(user)}, clock)
    return user


def ensure_dev_admin(session: Session, clock: Clock) -> tuple[str, str | None]:
    """For the development stack (``tnca dev`` / ``make run``): an admin to sign in with.

    Creates the person ``admin`` with a generated password when nobody has the admin role yet
    and returns ``("admin", password)``; otherwise returns the name of the first active admin and
    None (its password is not known; ``tnca user passwd NAME`` sets a new one). The caller commits.
    """
    existing = session.scalars(
        select(User).where(User.role == ADMIN, User.disabled_at.is_(None)).order_by(User.id)
    ).first()
    if existing is not None:
        return existing.name, None
    name = DEV_ADMIN_NAME
    if session.scalars(select(User.id).where(User.name == name)).first() is not None:
        raise UserError(f"a person named {name!r} exists but is not an active admin; "
                        f"use 'tnca user' to make an admin", field="name")
    password = generate_password()
    create_user(session, name=name, role=ADMIN, password=password, actor="dev", clock=clock)
    return name, password


def _refuse_removing_last_admin(session: Session, user: User, what: str) -> None:
    # Lock the active admins so two concurrent demotions cannot both see "another admin is left".
    admins = session.scalars(
        select(User.id).where(User.role == ADMIN, User.disabled_at.is_(None)).with_for_update()
    ).all()
    if set(admins) <= {user.id}:
        raise UserError(f"cannot {what}: nobody else would be an active admin to manage people", field="role")


def _end_all_sessions(session: Session, user: User) -> int:
    result = session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    return result.rowcount or 0


# ------------------------------------------------------------------------------------------
# Logging in
# ------------------------------------------------------------------------------------------


def normalize_login_name(name: object) -> str:
    """What a login form's name field is compared as: trimmed, lower-case, at most 64 characters."""
    if not isinstance(name, str):
        return ""
    return name.strip().lower()[:64]


def check_throttle(session: Session, *, name: str, remote_addr: str, clock: Clock, reserved: int | None = None) -> None:
    """Raise LoginThrottledError when the name or the address has too many recent failures.

    ``reserved`` is the id of the caller's own attempt, recorded (as a failure) before the check
    (:func:`authenticate`): it is not counted against itself, but every other attempt is,
    including those of concurrent logins that are not decided yet.
    """
    now = clock.now()
    since = now - THROTTLE_WINDOW
    last_success = session.scalar(
        select(func.max(LoginAttempt.attempted_at)).where(LoginAttempt.username == name, LoginAttempt.succeeded)
    )
    name_since = max(since, last_success) if last_success is not None else since
    checks = (
        (LoginAttempt.username == name, name_since, MAX_FAILURES_PER_NAME, "this name"),
        (LoginAttempt.remote_addr == remote_addr, since, MAX_FAILURES_PER_ADDRESS, "this address"),
    )
    for condition, window_start, limit, what in checks:
        recent = session.scalars(
            select(LoginAttempt.attempted_at)
            .where(condition, ~LoginAttempt.succeeded, LoginAttempt.attempted_at > window_start,
                   LoginAttempt.id != reserved if reserved is not None else true())
            .order_by(LoginAttempt.attempted_at.desc())
            .limit(limit)
        ).all()
        if len(recent) >= limit:
            # Allowed again when the oldest of the last `limit` failures leaves the window.
            retry_after = max(1, int((recent[-1] + THROTTLE_WINDOW - now).total_seconds()) + 1)
            raise LoginThrottledError(
                f"too many failed logins for {what}; try again in {retry_after} seconds", retry_after=retry_after
            )


def begin_attempt(session: Session, *, name: str, remote_addr: str, clock: Clock) -> LoginAttempt:
    """Record a password check as failed and commit it, then apply the throttle.

    What every login does before it looks at a password (:func:`authenticate`, and the STI-PA
    API's logins, ``ca/tokens/stipa.py``, whose names are ``stipa:<userId>``): recorded first,
    attempts on one name or address are recorded and counted one after another
    (:func:`_serialize_attempts`), so no more than the limit reach the password check however many
    arrive at once, and the first ones always do. Raises LoginThrottledError when throttled, the
    attempt rolled back. The caller sets ``succeeded`` and commits.
    """
    session.commit()  # whatever the caller had open, as before: the attempt gets a transaction of its own
    attempt = LoginAttempt(username=name[:64], remote_addr=(remote_addr or "unknown")[:64],
                           attempted_at=clock.now(), succeeded=False)
    _serialize_attempts(session, attempt.username, attempt.remote_addr)
    session.add(attempt)
    session.flush()
    try:
        check_throttle(session, name=attempt.username, remote_addr=attempt.remote_addr, clock=clock, reserved=attempt.id)
    except LoginThrottledError:
        session.rollback()  # the attempt was never committed: a refused attempt leaves nothing behind
        raise
    session.commit()
    return attempt


def _serialize_attempts(session: Session, name: str, remote_addr: str) -> None:
    """Make concurrent attempts on one name or one address record-and-count one after another,
    so the k-th sees exactly the k-1 before it: no more than the limit reach the password check,
    and the first ones always do. (Each recorded, committed, then counted, 24 concurrent wrong
    passwords could all see 23 others and none be checked.) On PostgreSQL a transaction-scoped
    advisory lock per key, taken in a fixed order; on SQLite the attempt's INSERT takes the
    database's write lock, held until the commit."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({"login-name:" + name, "login-address:" + remote_addr}):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def verify_password(password_hash: str | None, password: object) -> bool:
    """Whether ``password`` matches ``password_hash``; None (no such login) costs as much as a
    wrong password, so response times do not reveal which names exist."""
    return _password_matches(password_hash if password_hash is not None else _dummy_hash(),
                             password if isinstance(password, str) else "")


def authenticate(session: Session, *, name: str, password: str, remote_addr: str, clock: Clock) -> LoginResult:
    """Check a name and password, recording the attempt and appending ``user.login`` or
    ``user.login_failed``. Commit afterwards whatever the result: failures must be counted.

    The attempt is recorded, as a failure, and committed *before* the throttle counts (the
    session's open transaction is committed with it): checking and then recording let 24
    concurrent wrong passwords through 8 checks against a limit of 5. Recorded first, the attempt
    committed k-th sees at least k-1 others, so no more than the limit reach the password check
    however many arrive at once.

    Raises LoginThrottledError when throttled: the password is not checked and the recorded
    attempt is deleted again (committed), so a refused attempt leaves nothing behind.
    """
    login_name = normalize_login_name(name)
    now = clock.now()
    attempt = begin_attempt(session, name=login_name, remote_addr=remote_addr, clock=clock)
    remote_addr = attempt.remote_addr
    user = session.scalars(select(User).where(User.name == login_name)).one_or_none() if login_name else None
    password_text = password if isinstance(password, str) else ""
    matches = verify_password(user.password_hash if user is not None else None, password_text)
    if user is None:
        reason = "unknown name"
    elif not matches:
        reason = "wrong password"
    elif user.disabled_at is not None:
        reason = "disabled"
    else:
        reason = None
    attempt.succeeded = reason is None
    if reason is not None:
        _audit(session, "anonymous", "user.login_failed", login_name or "-",
               {"remote_addr": remote_addr, "reason": reason}, clock)
        session.flush()
        return LoginResult(None, AuthenticationError(LOGIN_FAILED_DETAIL, field="login"))
    assert user is not None
    rehashed = _password_hasher.check_needs_rehash(user.password_hash)
    if rehashed:
        user.password_hash = hash_password(password_text)
    user.last_login_at = now
    session.flush()
    _audit(session, f"user:{user.name}", "user.login", user.name,
           {"remote_addr": remote_addr, "rehashed": rehashed}, clock)
    return LoginResult(user)


# ------------------------------------------------------------------------------------------
# Housekeeping
# ------------------------------------------------------------------------------------------


def prune(session: Session, *, clock: Clock) -> dict[str, int]:
    """Delete expired sessions and login attempts older than :data:`LOGIN_ATTEMPT_RETENTION`.

    Neither is audited state (logins are in the audit trail already); this only bounds the
    tables. Safe to run from any process at any time.
    """
    now = clock.now()
    sessions = session.execute(delete(UserSession).where(UserSession.expires_at <= now)).rowcount or 0
    attempts = session.execute(
        delete(LoginAttempt).where(LoginAttempt.attempted_at < now - LOGIN_ATTEMPT_RETENTION)
    ).rowcount or 0
    return {"sessions": sessions, "login_attempts": attempts}


def _audit(session: Session, actor: str, action: str, subject_id: str, details: dict[str, Any], clock: Clock) -> None:
    audit.append(session, actor=actor, action=action, subject_type="user", subject_id=subject_id,
                 details=details, clock=clock)


def iso(value: dt.datetime | None) -> str | None:
    """A stored time as ISO 8601 text for JSON views; None stays None."""
    return value.isoformat() if value is not None else None
