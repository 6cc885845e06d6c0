"""``tnca crl``: sign and inspect the CRLs of the root and the issuing CA (RFC 5280 §5).

``generate`` signs a new CRL now (every issuer, or those named with ``--issuer``; with
``--due`` only those ``ca.lifecycle.crl.due`` lists, as the worker does each tick). ``show`` prints the
newest CRL of an issuer, or its PEM with ``--pem`` (for ``openssl crl`` and the like).

Exit codes: 0 done; 1 a CRL could not be signed (the others are), no home, or no CRL yet to
show; 2 an unknown issuer.
"""

from __future__ import annotations

import json

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.lifecycle import crl
from ca.config import ISSUING_ISSUER
from ca.home import Home
from tnca.context import BadInput, cli_actor, pass_home, require_home


def _issuers(home: Home, wanted: tuple[str, ...]) -> list[str]:
    require_home(home)
    with home.sessionmaker() as session:
        known = crl.issuer_names(session)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise BadInput("--issuer", f"no issuer {unknown[0]!r}; this home has {', '.join(known)}")
    return list(wanted) or known


@click.group("crl")
def command() -> None:
    """Certificate revocation lists (RFC 5280)."""


@command.command("generate")
@click.option("--issuer", "issuers", multiple=True, metavar="NAME", help="Only this issuer (root, issuing). Repeatable.")
@click.option("--due", is_flag=True, help="Only CRLs that are due (stale, or older than a revocation).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per CRL attempted.")
@pass_home
def generate_command(home: Home, issuers: tuple[str, ...], due: bool, as_json: bool) -> None:
    """Sign new CRLs now."""
    names = _issuers(home, issuers)
    with home.sessionmaker() as session:
        if due:
            outcomes = [o for o in crl.refresh_due(session, home, home.clock, actor=cli_actor()) if o.issuer in names]
        else:
            outcomes = crl.regenerate(session, home, names, clock=home.clock, trigger=crl.TRIGGER_OPERATOR,
                                      actor=cli_actor())
    for outcome in outcomes:
        if as_json:
            click.echo(json.dumps({
                "issuer": outcome.issuer,
                "number": outcome.crl.number if outcome.crl else None,
                "entries": outcome.crl.entries if outcome.crl else None,
                "this_update": outcome.crl.this_update.isoformat() if outcome.crl else None,
                "next_update": outcome.crl.next_update.isoformat() if outcome.crl else None,
                "error": outcome.error,
            }, sort_keys=True))
        else:
            click.echo(outcome.describe())
    if not outcomes and not as_json:
        click.echo("no CRL was due")
    if not crl.outcomes_ok(outcomes):
        raise click.ClickException("not every CRL could be signed (see above)")


@command.command("show")
@click.option("--issuer", default=ISSUING_ISSUER, show_default=True, metavar="NAME", help="Whose CRL.")
@click.option("--pem", is_flag=True, help="Print the CRL itself, PEM-encoded.")
@pass_home
def show_command(home: Home, issuer: str, pem: bool) -> None:
    """Show the newest CRL of an issuer."""
    _issuers(home, (issuer,))
    with home.sessionmaker() as session:
        record = crl.latest(session, issuer)
        if record is None:
            raise click.ClickException(f"no CRL of {issuer} yet; run 'tnca crl generate'")
        parsed = x509.load_der_x509_crl(record.der)
    if pem:
        click.echo(parsed.public_bytes(serialization.Encoding.PEM).decode("ascii"), nl=False)
        return
    click.echo(f"issuer:      {parsed.issuer.rfc4514_string()}")
    click.echo(f"number:      {record.number}")
    click.echo(f"thisUpdate:  {record.this_update.isoformat()}")
    click.echo(f"nextUpdate:  {record.next_update.isoformat()}")
    click.echo(f"entries:     {record.entries}")
    for entry in parsed:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "-"
        click.echo(f"  {entry.serial_number:x}  {entry.revocation_date_utc.isoformat()}  {reason}")
