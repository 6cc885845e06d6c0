"""``tnca ct logs``: the certificate-transparency logs of the home's policy (``[ct] logs``).

For each log: name, URL, log ID (base64 SHA-256 of its DER SubjectPublicKeyInfo, RFC 6962 §3.2)
and public key (base64 DER), i.e. what a verifier must be configured with to check the SCTs this
authority embeds.
"""

from __future__ import annotations

import json

import click

from ca.home import Home
from ca.errors import TNCAError
from ca.issuing.transparency import LogClient
from tnca.context import pass_home


@click.group("ct")
def command() -> None:
    """Certificate transparency (RFC 6962) as this authority's policy configures it."""


@command.command("logs")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {name, url, log_id, public_key}.")
@pass_home
def logs_command(home: Home, as_json: bool) -> None:
    """List the configured logs and the number of SCTs the policy requires."""
    try:
        ct_policy = home.policy.ct
        clients = [LogClient.from_policy(log) for log in ct_policy.logs]
    except TNCAError as exc:
        raise click.ClickException(exc.detail) from None
    described = [client.describe() for client in clients]
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    click.echo(f"{ct_policy.required_scts} SCT(s) required from distinct logs; "
               f"submission deadline {ct_policy.submission_deadline.total_seconds():g} s")
    if not described:
        click.echo("no logs configured ([ct] logs in policy.toml)")
    for entry in described:
        click.echo(f"{entry['name']}  {entry['url']}  log ID {entry['log_id']}")
