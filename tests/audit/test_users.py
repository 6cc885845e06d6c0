"""People, roles, passwords, sessions, API tokens and login throttling (ca/records/users.py).

Runs on the test database (SQLite or PostgreSQL). Negative tests assert the exact error, the
field it names, and that nothing was written (row counts), except where the rule is that the
failure itself is recorded (failed logins).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type
from sqlalchemy import func, select

from ca.records import api_tokens, audit, users, web_sessions
from ca.clock import FixedClock
from ca.errors import AuthenticationError, LoginThrottledError, NotFoundError, UserError
from ca.records.models_audit import AuditEvent
from ca.records.models_people import APIToken, LoginAttempt, User, UserSession
from tests.helpers import row_counts

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def _add(session, clock, name="alice", role="operator", password=PASSWORD):
    user = users.create_user(session, name=name, role=role, password=password, actor="cli:root", clock=clock)
    session.commit()
    return user


def _events(session, action):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)).all()


# ---- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "required", "allowed"),
    [
        ("auditor", "auditor", True), ("auditor", "operator", False), ("auditor", "admin", False),
        ("operator", "auditor", True), ("operator", "operator", True), ("operator", "admin", False),
        ("admin", "auditor", True), ("admin", "operator", True), ("admin", "admin", True),
        ("retired", "auditor", False),
    ],
)
def test_each_role_includes_the_roles_below_it_and_nothing_above(role, required, allowed):
    assert users.role_allows(role, required) is allowed


def test_asking_for_an_unknown_role_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown role 'superuser'"):
        users.role_allows("admin", "superuser")


# ---- people ----------------------------------------------------------------------------------


def test_password_is_stored_as_argon2id_phc_string_with_rfc9106_parameters(session, clock):
    user = _add(session, clock)
    assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in user.password_hash
    # An independent verifier (argon2-cffi's low-level API through a fresh hasher) accepts it.
    assert PasswordHasher(type=Type.ID).verify(user.password_hash, PASSWORD)


def test_create_user_appends_user_create_without_any_secret(session, clock):
    user = _add(session, clock)
    (event,) = _events(session, "user.create")
    assert (event.actor, event.subject_type, event.subject_id) == ("cli:root", "user", "alice")
    assert event.details["after"]["role"] == "operator"
    text = str(event.details)
    assert PASSWORD not in text and user.password_hash not in text and "argon2" not in text


@pytest.mark.parametrize(
    ("name", "role", "password", "field", "detail"),
    [
        ("Alice", "operator", PASSWORD, "name", "is not allowed"),
        ("", "operator", PASSWORD, "name", "is not allowed"),
        ("a" * 65, "operator", PASSWORD, "name", "is not allowed"),
        ("alice bob", "operator", PASSWORD, "name", "is not allowed"),
        ("alice", "root", PASSWORD, "role", "role must be one of auditor, operator, admin"),
        ("alice", "operator", "short", "password", "at least 12 are required"),
        ("alice", "operator", " " + PASSWORD, "password", "white space"),
        ("alicealice12", "operator", "alicealice12", "password", "must not be the name"),
        ("alice", "operator", "x" * 1025, "password", "at most 1024"),
    ],
)
def test_create_user_refuses_bad_input_and_writes_nothing(session, clock, name, role, password, field, detail):
    before = row_counts(session)
    with pytest.raises(UserError, match=detail) as caught:
        users.create_user(session, name=name, role=role, password=password, actor="cli:root", clock=clock)
    session.rollback()
    assert caught.value.field == field
    assert row_counts(session) == before


def test_names_are_unique(session, clock):
    _add(session, clock)
    before = row_counts(session)
    with pytest.raises(UserError, match="a person named 'alice' exists already"):
        users.create_user(session, name="alice", role="auditor", password=PASSWORD, actor="cli:root", clock=clock)
    session.rollback()
    assert row_counts(session) == before


def test_role_change_records_before_and_after(session, clock):
    _add(session, clock, role="auditor")
    users.set_role(session, "alice", "operator", actor="user:root", clock=clock)
    session.commit()
    (event,) = _events(session, "user.update")
    assert event.details["before"]["role"] == "auditor"
    assert event.details["after"]["role"] == "operator"
    assert event.actor == "user:root"


def test_the_last_active_admin_cannot_be_demoted_or_disabled(session, clock):
    _add(session, clock, name="root", role="admin")
    before = row_counts(session)
    with pytest.raises(UserError, match="nobody else would be an active admin"):
        users.set_role(session, "root", "operator", actor="cli:root", clock=clock)
    session.rollback()
    with pytest.raises(UserError, match="nobody else would be an active admin"):
        users.disable_user(session, "root", actor="cli:root", clock=clock)
    session.rollback()
    assert row_counts(session) == before
    # With a second active admin, either change is allowed.
    _add(session, clock, name="second", role="admin")
    users.set_role(session, "root", "operator", actor="cli:root", clock=clock)
    session.commit()


def test_unknown_person_is_not_found(session, clock):
    with pytest.raises(NotFoundError, match="no person named 'nobody'") as caught:
        users.set_role(session, "nobody", "admin", actor="cli:root", clock=clock)
    assert caught.value.field == "name"


def test_ensure_dev_admin_creates_admin_once_and_returns_its_password(session, clock):
    name, password = users.ensure_dev_admin(session, clock)
    session.commit()
    assert name == "admin" and password is not None and len(password) == users.GENERATED_PASSWORD_CHARS
    result = users.authenticate(session, name="admin", password=password, remote_addr="127.0.0.1", clock=clock)
    assert result.raise_for_failure().role == "admin"
    session.commit()
    # A second run finds the admin and cannot know its password.
    assert users.ensure_dev_admin(session, clock) == ("admin", None)


# ---- logins and throttling --------------------------------------------------------------------


def test_successful_login_records_attempt_and_user_login_event(session, clock):
    _add(session, clock)
    result = users.authenticate(session, name=" Alice ", password=PASSWORD, remote_addr="192.0.2.7", clock=clock)
    session.commit()
    assert result.user is not None and result.user.name == "alice"
    assert result.user.last_login_at == T0
    (event,) = _events(session, "user.login")
    assert (event.actor, event.subject_id, event.details["remote_addr"]) == ("user:alice", "alice", "192.0.2.7")
    attempt = session.scalars(select(LoginAttempt)).one()
    assert attempt.succeeded and attempt.username == "alice"


@pytest.mark.parametrize(("name", "password", "reason"), [
    ("alice", "wrong password 123", "wrong password"),
    ("mallory", PASSWORD, "unknown name"),
])
def test_failed_login_says_the_same_for_unknown_name_and_wrong_password_and_is_audited(
        session, clock, name, password, reason):
    _add(session, clock)
    result = users.authenticate(session, name=name, password=password, remote_addr="192.0.2.7", clock=clock)
    session.commit()
    assert result.user is None
    assert result.failure.detail == "unknown name or wrong password"
    with pytest.raises(AuthenticationError, match="unknown name or wrong password"):
        result.raise_for_failure()
    (event,) = _events(session, "user.login_failed")
    assert event.details == {"remote_addr": "192.0.2.7", "reason": reason}
    assert event.actor == "anonymous"


def test_disabled_person_cannot_log_in_even_with_the_right_password(session, clock):
    _add(session, clock, name="root", role="admin")
    _add(session, clock)
    users.disable_user(session, "alice", actor="user:root", clock=clock)
    session.commit()
    result = users.authenticate(session, name="alice", password=PASSWORD, remote_addr="192.0.2.7", clock=clock)
    assert result.user is None
    assert _events(session, "user.login_failed")[0].details["reason"] == "disabled"


def _fail(session, clock, name="alice", addr="192.0.2.7"):
    result = users.authenticate(session, name=name, password="not the password", remote_addr=addr, clock=clock)
    session.commit()
    assert result.user is None


def test_five_failures_for_a_name_lock_it_for_the_window_without_checking_the_password(session, clock):
    _add(session, clock)
    for _ in range(users.MAX_FAILURES_PER_NAME):
        _fail(session, clock)
        clock.advance(dt.timedelta(seconds=10))
    before = row_counts(session)
    with pytest.raises(LoginThrottledError, match="too many failed logins for this name") as caught:
        # Even the right password is refused: the throttle is checked before the password.
        users.authenticate(session, name="alice", password=PASSWORD, remote_addr="198.51.100.1", clock=clock)
    session.rollback()
    assert row_counts(session) == before  # a refused attempt writes nothing
    # The first failure was at T0; the window is 15 minutes; now is T0 + 50 s.
    assert caught.value.retry_after == 15 * 60 - 50 + 1
    # Once the oldest failure leaves the window, the right password works again.
    clock.advance(dt.timedelta(seconds=caught.value.retry_after))
    result = users.authenticate(session, name="alice", password=PASSWORD, remote_addr="198.51.100.1", clock=clock)
    assert result.user is not None


def test_a_successful_login_clears_the_count_for_the_name(session, clock):
    _add(session, clock)
    for _ in range(users.MAX_FAILURES_PER_NAME - 1):
        _fail(session, clock)
    assert users.authenticate(session, name="alice", password=PASSWORD, remote_addr="192.0.2.7",
                              clock=clock).user is not None
    session.commit()
    clock.advance(dt.timedelta(seconds=1))
    for _ in range(users.MAX_FAILURES_PER_NAME - 1):
        _fail(session, clock)
    users.check_throttle(session, name="alice", remote_addr="192.0.2.7", clock=clock)  # not throttled


def test_one_address_guessing_many_names_is_throttled(session, clock):
    for index in range(users.MAX_FAILURES_PER_ADDRESS):
        _fail(session, clock, name=f"guess{index}", addr="203.0.113.9")
    with pytest.raises(LoginThrottledError, match="too many failed logins for this address"):
        users.authenticate(session, name="other", password=PASSWORD, remote_addr="203.0.113.9", clock=clock)
    # Another address is not affected.
    users.check_throttle(session, name="other", remote_addr="203.0.113.10", clock=clock)


def test_throttle_is_shared_by_every_process_through_the_database(session_factory, clock):
    """Failures recorded through one connection throttle a login checked through another."""
    with session_factory() as first:
        _add(first, clock)
        for _ in range(users.MAX_FAILURES_PER_NAME):
            _fail(first, clock)
    with session_factory() as second, pytest.raises(LoginThrottledError):
        users.authenticate(second, name="alice", password=PASSWORD, remote_addr="192.0.2.99", clock=clock)


def test_concurrent_wrong_passwords_get_no_more_checks_than_the_limit(session_factory, clock):
    """24 logins at once for one name with a wrong password: at most MAX_FAILURES_PER_NAME of
    them reach the password check; the rest are throttled (the check and the record were not
    atomic: 8 got through against a limit of 5)."""
    with session_factory() as setup:
        _add(setup, clock)
    barrier = threading.Barrier(24)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        with session_factory() as own:
            barrier.wait()
            try:
                result = users.authenticate(own, name="alice", password="not the password", remote_addr="192.0.2.7",
                                            clock=clock)
                own.commit()
                outcome = "checked" if result.user is None else "in"
            except LoginThrottledError:
                own.rollback()
                outcome = "throttled"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == 24
    assert "in" not in outcomes
    assert 1 <= outcomes.count("checked") <= users.MAX_FAILURES_PER_NAME, outcomes
    with session_factory() as check:
        failures = check.scalar(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.username == "alice"))
        assert failures == outcomes.count("checked")  # throttled attempts left no row


def test_prune_deletes_only_old_attempts_and_expired_sessions(session, clock):
    user = _add(session, clock)
    _fail(session, clock)
    token = web_sessions.start_session(session, user, remote_addr="192.0.2.7", clock=clock)
    session.commit()
    clock.advance(users.LOGIN_ATTEMPT_RETENTION + dt.timedelta(seconds=1))
    assert users.prune(session, clock=clock) == {"sessions": 1, "login_attempts": 1}
    session.commit()
    with pytest.raises(AuthenticationError):
        web_sessions.resolve_session(session, token, clock=clock)


# ---- sessions ----------------------------------------------------------------------------------


def test_session_token_is_stored_only_as_sha256(session, clock):
    user = _add(session, clock)
    token = web_sessions.start_session(session, user, remote_addr="192.0.2.7", clock=clock)
    session.commit()
    row = session.scalars(select(UserSession)).one()
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_sha256,)
    principal = web_sessions.resolve_session(session, token, clock=clock)
    assert (principal.name, principal.role, principal.via, principal.actor) == ("alice", "operator", "session",
                                                                               "user:alice")


def test_session_ends_after_idle_timeout_and_after_absolute_lifetime(session, clock):
    user = _add(session, clock)
    token = web_sessions.start_session(session, user, remote_addr=None, clock=clock)
    session.commit()
    clock.advance(web_sessions.SESSION_IDLE_TIMEOUT)
    with pytest.raises(AuthenticationError, match="the session has expired"):
        web_sessions.resolve_session(session, token, clock=clock)
    session.commit()
    # Busy but old: requests every 20 minutes keep it alive only up to the lifetime.
    token = web_sessions.start_session(session, user, remote_addr=None, clock=clock)
    session.commit()
    started = clock.now()
    while clock.now() - started < web_sessions.SESSION_LIFETIME - dt.timedelta(minutes=20):
        clock.advance(dt.timedelta(minutes=20))
        web_sessions.resolve_session(session, token, clock=clock)
        session.commit()
    clock.advance(dt.timedelta(minutes=20))
    with pytest.raises(AuthenticationError, match="expired"):
        web_sessions.resolve_session(session, token, clock=clock)


@pytest.mark.parametrize("change", ["password", "disable"])
def test_password_change_and_disabling_end_open_sessions_at_once(session, clock, change):
    _add(session, clock, name="root", role="admin")
    user = _add(session, clock)
    token = web_sessions.start_session(session, user, remote_addr=None, clock=clock)
    session.commit()
    if change == "password":
        users.set_password(session, "alice", "another long passphrase", actor="user:root", clock=clock)
    else:
        users.disable_user(session, "alice", actor="user:root", clock=clock)
    session.commit()
    with pytest.raises(AuthenticationError):
        web_sessions.resolve_session(session, token, clock=clock)


def test_role_is_read_from_the_database_on_every_request(session, clock):
    _add(session, clock, name="root", role="admin")
    user = _add(session, clock)
    token = web_sessions.start_session(session, user, remote_addr=None, clock=clock)
    session.commit()
    users.set_role(session, "alice", "auditor", actor="user:root", clock=clock)
    session.commit()
    assert web_sessions.resolve_session(session, token, clock=clock).role == "auditor"


def test_logout_deletes_the_session_and_appends_user_logout(session, clock):
    user = _add(session, clock)
    token = web_sessions.start_session(session, user, remote_addr=None, clock=clock)
    session.commit()
    assert web_sessions.end_session(session, token, clock=clock) == "alice"
    session.commit()
    assert session.scalar(select(func.count()).select_from(UserSession)) == 0
    assert [e.actor for e in _events(session, "user.logout")] == ["user:alice"]
    assert web_sessions.end_session(session, token, clock=clock) is None  # nothing to end, nothing written


# ---- API tokens ----------------------------------------------------------------------------------


def test_api_token_secret_is_stored_only_as_sha256_and_authenticates_its_person(session, clock):
    _add(session, clock)
    row, token = api_tokens.create_api_token(session, "alice", label="audit script", actor="user:alice", clock=clock)
    session.commit()
    assert token.startswith(f"tnca_{row.id}_")
    secret = token.split("_", 2)[2]
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    principal = api_tokens.authenticate_api_token(session, token, clock=clock)
    # An operator's token is an auditor's unless asked otherwise: the audit API is all it opens.
    assert (principal.name, principal.role, principal.via, principal.token_id) == ("alice", "auditor", "api-token",
                                                                                  row.id)
    (event,) = _events(session, "api_token.create")
    assert secret not in str(event.details)


def test_api_token_role_is_the_lower_of_token_and_person(session, clock):
    _add(session, clock, name="root", role="admin")
    _add(session, clock)
    _, auditor_token = api_tokens.create_api_token(session, "alice", label="read only", role="auditor",
                                              actor="user:alice", clock=clock)
    session.commit()
    assert api_tokens.authenticate_api_token(session, auditor_token, clock=clock).role == "auditor"
    with pytest.raises(UserError, match="cannot have the higher role admin") as caught:
        api_tokens.create_api_token(session, "alice", label="x", role="admin", actor="user:alice", clock=clock)
    assert caught.value.field == "role"
    session.rollback()
    # Demoting the person demotes the token too.
    _, operator_token = api_tokens.create_api_token(session, "alice", label="ops", role="operator",
                                                    actor="user:alice", clock=clock)
    users.set_role(session, "alice", "auditor", actor="user:root", clock=clock)
    session.commit()
    assert api_tokens.authenticate_api_token(session, operator_token, clock=clock).role == "auditor"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
    lambda t: "tnca_" + "0" * 16 + t[21:],  # unknown id
    lambda t: t.replace("tnca_", "tnca-"),  # wrong prefix
    lambda t: t[:21],  # no secret
    lambda t: "",
    lambda t: t + "x" * 200,  # too long
])
def test_malformed_or_wrong_api_tokens_are_refused_with_one_generic_error(session, clock, mangle):
    _add(session, clock)
    _, token = api_tokens.create_api_token(session, "alice", label="x", actor="user:alice", clock=clock)
    session.commit()
    with pytest.raises(AuthenticationError, match="^invalid API token$"):
        api_tokens.authenticate_api_token(session, mangle(token), clock=clock)


def test_revoked_expired_and_disabled_person_tokens_stop_working(session, clock):
    _add(session, clock, name="root", role="admin")
    _add(session, clock)
    revoked, revoked_token = api_tokens.create_api_token(session, "alice", label="a", actor="user:alice", clock=clock)
    _, expiring_token = api_tokens.create_api_token(session, "alice", label="b", actor="user:alice", clock=clock,
                                               expires_at=T0 + dt.timedelta(days=1))
    session.commit()
    api_tokens.revoke_api_token(session, revoked.id, actor="user:root", clock=clock)
    session.commit()
    with pytest.raises(AuthenticationError):
        api_tokens.authenticate_api_token(session, revoked_token, clock=clock)
    assert _events(session, "api_token.revoke")[0].subject_id == revoked.id
    clock.advance(dt.timedelta(days=1))
    with pytest.raises(AuthenticationError):
        api_tokens.authenticate_api_token(session, expiring_token, clock=clock)
    _, fresh = api_tokens.create_api_token(session, "alice", label="c", actor="user:alice", clock=clock)
    users.disable_user(session, "alice", actor="user:root", clock=clock)
    session.commit()
    with pytest.raises(AuthenticationError):
        api_tokens.authenticate_api_token(session, fresh, clock=clock)


def test_people_changes_keep_the_audit_chain_verifiable(session, clock):
    _add(session, clock, name="root", role="admin")
    _add(session, clock)
    users.set_role(session, "alice", "auditor", actor="user:root", clock=clock)
    row, _ = api_tokens.create_api_token(session, "alice", label="x", actor="user:root", clock=clock)
    api_tokens.revoke_api_token(session, row.id, actor="user:root", clock=clock)
    users.authenticate(session, name="alice", password="nope nope nope", remote_addr="192.0.2.1", clock=clock)
    session.commit()
    assert audit.verify(session) == 6
    assert session.scalar(select(func.count()).select_from(APIToken)) == 1
    assert session.scalar(select(func.count()).select_from(User)) == 2
