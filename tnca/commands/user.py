"""``tnca user``: people who sign in to the operator and auditor pages, and their API tokens.

Roles (ca/records/users.py): ``auditor`` reads; ``operator`` also manages delegations, tokens and
revocations; ``admin`` also manages people. Every change appends an audit event naming the
command-line user (``cli:NAME``). Exit codes: 0 success, 1 a failed operation, 2 bad input.

Passwords are never taken as an argument (it would sit in the shell history and in ``ps``):
``--password-stdin`` reads the first line of standard input, ``--generate-password`` prints a
random one once, and otherwise the command prompts twice without echo.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click
from sqlalchemy.orm import Session

from ca.records import api_tokens, users
from ca.home import Home
from ca.errors import NotFoundError, TNCAError, UserError
from tnca import context
from tnca.context import BadInput, cli_actor, pass_home
from tnca.options import duration_option
from tnca.output import echo_json

_FIELD_OPTIONS = {"name": "NAME", "role": "--role", "password": "--password-stdin", "label": "--label",
                  "expires": "--expires", "token": "TOKEN_ID"}


def fail_on(error: TNCAError) -> NoReturn:
    if isinstance(error, UserError | NotFoundError):
        raise BadInput(_FIELD_OPTIONS.get(error.field or "", "NAME"), error.detail) from error
    raise click.ClickException(error.detail) from error


@contextlib.contextmanager
def transaction(home: Home) -> Iterator[Session]:
    """The command's one transaction (tnca/context.py), its ca errors reported by :func:`fail_on`."""
    try:
        with context.transaction(home) as session:
            yield session
    except TNCAError as error:
        fail_on(error)


def read_new_password(name: str, password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """(password, generated). Checked against the rules before anything else happens."""
    if password_stdin and generate:
        raise click.UsageError("give --password-stdin or --generate-password, not both")
    if generate:
        return users.generate_password(), True
    if password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        if not sys.stdin.isatty():
            raise click.UsageError("no terminal to prompt for a password; use --password-stdin or --generate-password")
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        users.check_password(password, name=name)
    except UserError as error:
        raise BadInput("--password-stdin" if password_stdin else "password", error.detail) from error
    return password, False


_password_options = [
    click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input."),
    click.option("--generate-password", is_flag=True, help="Generate a random password and print it once."),
]


def password_options(function: Any) -> Any:
    for option in reversed(_password_options):
        function = option(function)
    return function


# ------------------------------------------------------------------------------------------


@click.group("user")
def command() -> None:
    """People who use the operator and auditor pages and the audit API."""


@command.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(users.ROLES), help="auditor reads; operator manages "
              "delegations, tokens and revocations; admin also manages people.")
@password_options
@pass_home
def add(home: Home, name: str, role: str, password_stdin: bool, generate_password: bool) -> None:
    """Add the person NAME (lower-case letters, digits, '.', '_', '@', '-')."""
    try:
        users.validate_name(name)
    except UserError as error:
        raise BadInput("NAME", error.detail) from error
    password, generated = read_new_password(name, password_stdin, generate_password)
    with transaction(home) as session:
        users.create_user(session, name=name, role=role, password=password, actor=cli_actor(), clock=home.clock)
    click.echo(f"Added {name} ({role}).")
    if generated:
        click.echo(f"password: {password}")


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_home
def list_(home: Home, as_json: bool) -> None:
    """Everybody, with role and status."""
    with transaction(home) as session:
        people = [users.describe(user) for user in users.list_users(session)]
    if as_json:
        echo_json(people)
        return
    for person in people:
        status = "disabled" if person["disabled"] else "active"
        click.echo(f"{person['name']:<24} {person['role']:<9} {status:<8} last login {person['last_login_at'] or '-'}")


@command.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(users.ROLES))
@pass_home
def set_role(home: Home, name: str, role: str) -> None:
    """Give NAME the role ROLE (refused for the last active admin)."""
    with transaction(home) as session:
        users.set_role(session, name, role, actor=cli_actor(), clock=home.clock)
    click.echo(f"{name} is now {role}.")


@command.command("passwd")
@click.argument("name")
@password_options
@pass_home
def passwd(home: Home, name: str, password_stdin: bool, generate_password: bool) -> None:
    """Set a new password for NAME; their open sessions end."""
    password, generated = read_new_password(name, password_stdin, generate_password)
    with transaction(home) as session:
        users.set_password(session, name, password, actor=cli_actor(), clock=home.clock)
    click.echo(f"Password of {name} changed.")
    if generated:
        click.echo(f"password: {password}")


@command.command("disable")
@click.argument("name")
@pass_home
def disable(home: Home, name: str) -> None:
    """Stop NAME from signing in or using API tokens, at once."""
    with transaction(home) as session:
        users.disable_user(session, name, actor=cli_actor(), clock=home.clock)
    click.echo(f"{name} is disabled.")


@command.command("enable")
@click.argument("name")
@pass_home
def enable(home: Home, name: str) -> None:
    """Let a disabled NAME sign in again."""
    with transaction(home) as session:
        users.enable_user(session, name, actor=cli_actor(), clock=home.clock)
    click.echo(f"{name} is enabled.")


@command.command("token-create")
@click.argument("name")
@click.option("--label", required=True, metavar="TEXT", help="What the token is for, e.g. 'quarterly audit script'.")
@click.option("--role", type=click.Choice(users.ROLES), help="At most this role and the person's (default: auditor; the audit API is read-only).")
@click.option("--expires", metavar="DURATION", help="Lifetime, e.g. 90d. Default: until revoked.")
@pass_home
def token_create(home: Home, name: str, label: str, role: str | None, expires: str | None) -> None:
    """Make an audit-API token for NAME; it is printed once and stored only as a hash."""
    lifetime = duration_option(expires, "--expires")
    expires_at = home.clock.now() + lifetime if lifetime is not None else None
    with transaction(home) as session:
        row, token = api_tokens.create_api_token(session, name, label=label, role=role, expires_at=expires_at,
                                            actor=cli_actor(), clock=home.clock)
        token_id, token_role = row.id, row.role
    click.echo(f"API token {token_id} for {name} ({token_role}); use it as 'Authorization: Bearer <token>':")
    click.echo(token)


@command.command("token-list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_home
def token_list(home: Home, name: str | None, as_json: bool) -> None:
    """API tokens (never their secrets), of NAME or of everybody."""
    with transaction(home) as session:
        tokens = [api_tokens.describe_api_token(token, user_name) for token, user_name in api_tokens.list_api_tokens(session, name)]
    if as_json:
        echo_json(tokens)
        return
    now = home.clock.now()
    for token in tokens:
        state = "revoked" if token["revoked_at"] else (
            "expired" if token["expires_at"] and dt.datetime.fromisoformat(token["expires_at"]) <= now else "active")
        click.echo(f"{token['id']}  {token['user']:<20} {token['role']:<9} {state:<8} {token['label']}")


@command.command("token-revoke")
@click.argument("token_id", metavar="TOKEN_ID")
@pass_home
def token_revoke(home: Home, token_id: str) -> None:
    """Stop the API token TOKEN_ID from working, at once."""
    with transaction(home) as session:
        api_tokens.revoke_api_token(session, token_id, actor=cli_actor(), clock=home.clock)
    click.echo(f"API token {token_id} revoked.")
