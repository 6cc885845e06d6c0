"""``tnca eab``: external account binding keys (RFC 8555 §7.3.4) that bind an ACME account to a delegate.

``create`` prints the key id and the MAC key once (the delegate's ACME client needs both:
``certbot --eab-kid KID --eab-hmac-key KEY``); ``list`` shows ids, delegates and states, never a
key; ``revoke`` stops an unused key from creating an account, and a used one's account from
obtaining tokens or answering challenges. Bad input exits with 2 naming the option; nothing is
written (the row and its audit event share one transaction with the checks).
"""

from __future__ import annotations

import click

from ca.errors import DelegationError, NotFoundError, PolicyError, RevocationError
from ca.home import Home
from ca.records import external_accounts
from tnca.context import BadInput, cli_actor, pass_home, transaction
from tnca.options import date_option, duration_option
from tnca.output import echo_json


@click.group("eab")
def command() -> None:
    """External account binding keys (RFC 8555 §7.3.4): one per delegate's ACME account."""


@command.command("create")
@click.option("--delegate", metavar="NAME", help="The delegate the account will act for (its delegations only).")
@click.option("--delegation", "delegation_id", metavar="ID", help="Or: the delegation whose delegate it is.")
@click.option("--expires", metavar="WHEN",
              help="Unused after this: a duration from now (7d) or a date (2026-12-31, RFC 3339). Default: never.")
@click.option("--json", "as_json", is_flag=True, help='Print {"kid", "hmac_key", ...} as JSON.')
@pass_home
def create_command(home: Home, delegate: str | None, delegation_id: str | None, expires: str | None, as_json: bool) -> None:
    """Make a single-use key. The MAC key is printed now and never again: hand it to the delegate."""
    if (delegate is None) == (delegation_id is None):
        raise BadInput("--delegate", "give either --delegate NAME or --delegation ID")
    expires_at = None
    if expires is not None:
        if expires[:1].isdigit() and expires[-1:] in "smhd" and "-" not in expires:
            expires_at = home.clock.now() + duration_option(expires, "--expires")
        else:
            expires_at = date_option(expires, "--expires")
    with transaction(home) as session:
        try:
            created = external_accounts.create(session, delegate=delegate, delegation_id=delegation_id,
                                               expires_at=expires_at, clock=home.clock, actor=cli_actor())
        except NotFoundError as error:
            raise BadInput("--delegation", error.detail) from error
        except DelegationError as error:
            raise BadInput("--delegate", error.detail) from error
        except PolicyError as error:
            raise BadInput("--expires" if error.field == "expires" else "--delegate", error.detail) from error
    if as_json:
        echo_json(created.to_json())
        return
    click.echo(f"kid      {created.key_id}")
    click.echo(f"hmac_key {created.hmac_key}")
    click.echo(f"for delegate {created.delegate!r}; single use"
               + (f", until {created.expires_at.isoformat()}" if created.expires_at else "")
               + ". The MAC key is not shown again.", err=True)


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as a JSON array.")
@pass_home
def list_command(home: Home, as_json: bool) -> None:
    """Every key, newest first: id, delegate, state (unused, bound, expired, revoked), account."""
    with transaction(home) as session:
        now = home.clock.now()
        rows = [external_accounts.describe(session, key, now) for key in external_accounts.list_keys(session)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['kid']}  {row['status']:8}  {row['delegate']}  "
                   f"account={row['account_id'] or '-'}  expires={row['expires'] or 'never'}")


@command.command("revoke")
@click.argument("kid", metavar="KID")
@pass_home
def revoke_command(home: Home, kid: str) -> None:
    """Revoke a key: unused, it creates no account; used, its account obtains no more tokens or
    validations (revoke its certificates with 'tnca revoke')."""
    with transaction(home) as session:
        try:
            key = external_accounts.revoke(session, kid, clock=home.clock, actor=cli_actor())
        except NotFoundError as error:
            raise BadInput("KID", error.detail) from error
        except RevocationError as error:
            raise click.ClickException(error.detail) from error
        click.echo(f"revoked external account key {key.key_id}")
