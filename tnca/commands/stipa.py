"""``tnca stipa``: logins of the STI-PA-compatible token API (``ca/tokens/stipa.py``, docs/shaken.md).

``tnca stipa credentials --delegation ID`` makes a login for the delegate of one delegation and
prints its password once (only a hash is kept); ``tnca stipa revoke USER_ID`` ends one;
``tnca stipa list`` shows them. Every change is audited. Exit codes: 0 success, 1 a failed
operation, 2 bad input.
"""

from __future__ import annotations

import click

from ca.errors import AuthenticationError, DelegationError, NotFoundError, PolicyError
from ca.home import Home
from ca.records.users import iso
from ca.tokens import stipa
from tnca.context import BadInput, cli_actor, pass_home, transaction
from tnca.output import echo_json


@click.group("stipa")
def command() -> None:
    """Logins of the STI-PA-compatible token API under /stipa ([stipa] enabled)."""


@command.command("credentials")
@click.option("--delegation", "delegation_id", required=True, metavar="ID", help="The delegation the login may mint tokens under.")
@click.option("--json", "as_json", is_flag=True, help='Print {"userId", "password", "sp_id", "crl"} as JSON.')
@pass_home
def credentials_command(home: Home, delegation_id: str, as_json: bool) -> None:
    """Make a login for the delegate of a delegation; the password is shown this once."""
    crl = home.issuing_ca().crl_url
    with transaction(home) as session:
        try:
            made = stipa.create_credentials(session, delegation_id=delegation_id, actor=cli_actor(), clock=home.clock)
        except (NotFoundError, DelegationError) as error:
            raise BadInput("--delegation", error.detail) from error
    if as_json:
        echo_json({"userId": made.user_id, "password": made.password, "sp_id": made.sp_id, "crl": crl})
        return
    click.echo(f"userId:   {made.user_id}")
    click.echo(f"password: {made.password}   (shown this once)")
    click.echo(f"sp_id:    {made.sp_id}")
    click.echo(f"crl:      {crl}")
    if not home.config.stipa.enabled:
        click.echo("note: [stipa] enabled is false in tnca.toml, so the server does not serve /stipa yet", err=True)


@command.command("revoke")
@click.argument("user_id")
@pass_home
def revoke_command(home: Home, user_id: str) -> None:
    """End a login: it can no longer log in, and its access tokens stop working."""
    with transaction(home) as session:
        try:
            stipa.revoke_credentials(session, user_id, actor=cli_actor(), clock=home.clock)
        except (AuthenticationError, PolicyError) as error:
            raise BadInput("USER_ID", error.detail) from error
    click.echo(f"revoked {user_id}")


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the logins as a JSON array.")
@pass_home
def list_command(home: Home, as_json: bool) -> None:
    """The logins, oldest first (never their passwords)."""
    with transaction(home) as session:
        rows = [{"userId": c.user_id, "delegation": c.delegation_id, "sp_id": c.sp_id, "created_at": iso(c.created_at),
                 "last_login_at": iso(c.last_login_at), "revoked_at": iso(c.revoked_at)}
                for c in stipa.list_credentials(session)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(f"{row['userId']}  delegation {row['delegation']}  sp_id {row['sp_id']}  {state}")
