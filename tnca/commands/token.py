"""``tnca token mint``: an authority token from this authority's token authority (RFC 9448 §5).

The token binds a TN scope inside one delegation to one ACME account key fingerprint; the
delegate's ACME client presents it in the ``tkauth-01`` challenge. Bad input exits with 2 and a
line naming the option; nothing is written (the token row and its audit event share one
transaction with the checks).
"""

from __future__ import annotations

import click

from ca.records import delegations
from ca.tokens import minting
from ca.home import Home
from ca.encoding import rfc3339
from ca.errors import DelegationError, NotFoundError, TNCAError, TokenError
from ca.numbers.tnauthlist import TNScope
from tnca.context import BadInput, cli_actor, pass_home, transaction
from tnca.options import duration_option, fail_on, given_scope_options, parse_scope
from tnca.output import echo_json


@click.group("token")
def command() -> None:
    """Authority tokens (RFC 9447/9448) signed by this authority's token authority."""


@command.command("mint")
@click.option("--delegation", "delegation_id", required=True, metavar="ID", help="The delegation the token is under.")
@click.option(
    "--fingerprint",
    required=True,
    metavar='"SHA256 AA:…"',
    help="The delegate's ACME account key fingerprint: RFC 7638 thumbprint as colon-separated hex (RFC 9448 §5.4).",
)
@click.option("--tn", "tns", multiple=True, metavar="N", help="Limit the token to this number. Repeatable.")
@click.option("--range", "ranges", multiple=True, metavar="START:COUNT", help="Limit the token to this range. Repeatable.")
@click.option("--spc", "spcs", multiple=True, metavar="CODE", help="Limit the token to this SPC. Repeatable.")
@click.option("--ttl", metavar="DURATION", help="Token lifetime, e.g. 10m. Default and maximum: the policy's.")
@click.option("--ca", is_flag=True, help="Allow a delegate CA certificate (only if the delegation allows it).")
@click.option("--json", "as_json", is_flag=True, help='Print {"token", "jti", "expires"} as JSON.')
@pass_home
def mint_command(
    home: Home,
    delegation_id: str,
    fingerprint: str,
    tns: tuple[str, ...],
    ranges: tuple[str, ...],
    spcs: tuple[str, ...],
    ttl: str | None,
    ca: bool,
    as_json: bool,
) -> None:
    """Mint a token for the delegation's scope (or the subset given) and one account key.

    Without --json the token alone goes to stdout (for TOKEN=$(tnca token mint ...)) and its
    jti and expiry to stderr.
    """
    subset = _subset(tns, ranges, spcs)
    max_ttl = home.policy.tokens.max_lifetime
    lifetime = duration_option(ttl, "--ttl") if ttl is not None else max_ttl
    with transaction(home) as session:
        try:
            delegation = delegations.get(session, delegation_id)
            minted = minting.mint(
                session,
                delegation=delegation,
                fingerprint=fingerprint,
                scope=subset if subset is not None else TNScope.from_der(delegation.scope_der),
                ca=ca,
                ttl=lifetime,
                max_ttl=max_ttl,
                authority=home.token_authority(),
                clock=home.clock,
                actor=cli_actor(),
            )
        except NotFoundError as error:
            if error.field == "delegation":
                raise BadInput("--delegation", error.detail) from error
            raise click.ClickException(error.detail) from error
        except DelegationError as error:
            raise BadInput("--delegation", error.detail) from error
        except TokenError as error:
            raise BadInput("--fingerprint", error.detail) from error
        except TNCAError as error:
            fail_on(error, default_option=given_scope_options(tns, ranges, spcs))
    expires = rfc3339(minted.expires)
    if as_json:
        echo_json({"token": minted.token, "jti": minted.jti, "expires": expires})
        return
    click.echo(minted.token)
    click.echo(f"jti {minted.jti}, expires {expires}, {minted.scope.describe()}", err=True)


def _subset(tns: tuple[str, ...], ranges: tuple[str, ...], spcs: tuple[str, ...]) -> TNScope | None:
    if not (tns or ranges or spcs):
        return None
    return parse_scope(tns, ranges, spcs)
