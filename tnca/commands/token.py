"""``tnca token mint``: an authority token from this authority's token authority (RFC 9448 §5).

The token binds a TN scope inside one delegation to one ACME account key fingerprint; the
delegate's ACME client presents it in the ``tkauth-01`` challenge. Bad input exits with 2 and a
line naming the option; nothing is written (the token row and its audit event share one
transaction with the checks).

``--count N`` mints N tokens in one process and one transaction (a carrier preparing a batch, or
the benchmark preparing its run, pays one process start, not N): all bound to ``--fingerprint``,
or one per line of ``--fingerprints-from FILE`` (``-`` reads stdin). With ``--json`` each token is
one JSON object on its own line, in order; without it, one token per line. Any bad input refuses
the whole batch and writes nothing.
"""

from __future__ import annotations

import json
from typing import TextIO

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

# One transaction holds the whole batch (its rows and audit events); keep it bounded.
MAX_COUNT = 100_000


@click.group("token")
def command() -> None:
    """Authority tokens (RFC 9447/9448) signed by this authority's token authority."""


@command.command("mint")
@click.option("--delegation", "delegation_id", required=True, metavar="ID", help="The delegation the token is under.")
@click.option(
    "--fingerprint",
    metavar='"SHA256 AA:…"',
    help="The delegate's ACME account key fingerprint: RFC 7638 thumbprint as colon-separated hex (RFC 9448 §5.4).",
)
@click.option("--fingerprints-from", "fingerprints_file", type=click.File("r"), metavar="FILE",
              help="Mint one token per line of FILE (one fingerprint a line; - reads stdin) instead of --fingerprint.")
@click.option("--count", type=click.IntRange(1, MAX_COUNT), metavar="N",
              help=f"Mint N single-use tokens in one transaction (at most {MAX_COUNT}); with --json one object a line.")
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
    fingerprint: str | None,
    fingerprints_file: TextIO | None,
    count: int | None,
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
    batch = _fingerprints(fingerprint, fingerprints_file, count)
    subset = _subset(tns, ranges, spcs)
    max_ttl = home.policy.tokens.max_lifetime
    lifetime = duration_option(ttl, "--ttl") if ttl is not None else max_ttl
    minted_tokens: list[minting.MintedToken] = []
    with transaction(home) as session:
        try:
            delegation = delegations.get(session, delegation_id)
            scope = subset if subset is not None else TNScope.from_der(delegation.scope_der)
            authority = home.token_authority()
            for each in batch:
                minted_tokens.append(minting.mint(
                    session,
                    delegation=delegation,
                    fingerprint=each,
                    scope=scope,
                    ca=ca,
                    ttl=lifetime,
                    max_ttl=max_ttl,
                    authority=authority,
                    clock=home.clock,
                    actor=cli_actor(),
                ))
        except NotFoundError as error:
            if error.field == "delegation":
                raise BadInput("--delegation", error.detail) from error
            raise click.ClickException(error.detail) from error
        except DelegationError as error:
            raise BadInput("--delegation", error.detail) from error
        except TokenError as error:
            raise BadInput("--fingerprint" if fingerprints_file is None else "--fingerprints-from",
                           error.detail) from error
        except TNCAError as error:
            fail_on(error, default_option=given_scope_options(tns, ranges, spcs))
    if count is None and fingerprints_file is None:
        minted = minted_tokens[0]
        expires = rfc3339(minted.expires)
        if as_json:
            echo_json({"token": minted.token, "jti": minted.jti, "expires": expires})
            return
        click.echo(minted.token)
        click.echo(f"jti {minted.jti}, expires {expires}, {minted.scope.describe()}", err=True)
        return
    for minted in minted_tokens:
        if as_json:
            click.echo(json.dumps({"token": minted.token, "jti": minted.jti, "expires": rfc3339(minted.expires),
                                   "fingerprint": minted.fingerprint}, sort_keys=True))
        else:
            click.echo(minted.token)
    if not as_json:
        click.echo(f"{len(minted_tokens)} tokens, {minted_tokens[0].scope.describe()}", err=True)


def _fingerprints(fingerprint: str | None, fingerprints_file: TextIO | None, count: int | None) -> list[str]:
    """The fingerprint of each token to mint, in order."""
    if (fingerprint is None) == (fingerprints_file is None):
        raise BadInput("--fingerprint", "give exactly one of --fingerprint and --fingerprints-from")
    if fingerprint is not None:
        return [fingerprint] * (count or 1)
    assert fingerprints_file is not None
    lines = [line.strip() for line in fingerprints_file.read().splitlines() if line.strip()]
    if not lines:
        raise BadInput("--fingerprints-from", "the file names no fingerprint")
    if len(lines) > MAX_COUNT:
        raise BadInput("--fingerprints-from", f"{len(lines)} fingerprints, at most {MAX_COUNT} in one batch")
    if count is not None and count != len(lines):
        raise BadInput("--count", f"{count} tokens asked for, but the file names {len(lines)} fingerprints")
    return lines


def _subset(tns: tuple[str, ...], ranges: tuple[str, ...], spcs: tuple[str, ...]) -> TNScope | None:
    if not (tns or ranges or spcs):
        return None
    return parse_scope(tns, ranges, spcs)
