"""How the commands print: JSON for machines, and the revocation plan that ``tnca revoke`` and
``tnca delegation revoke`` both show (dry run, then ``--execute`` of exactly that plan)."""

from __future__ import annotations

import json
from typing import Any

import click

from ca.lifecycle import revocation


def echo_json(value: Any) -> None:
    """Indented, keys sorted (as the JSON API answers), non-ASCII names kept readable."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def report_revocation(plan: revocation.RevocationPlan, result: revocation.RevocationResult | None, *,
                      as_json: bool) -> None:
    """Print the plan, and the result when there is one; exit 1 when a CRL could not be signed."""
    if as_json:
        answer: dict[str, Any] = {"plan": plan.to_json(), "executed": result is not None}
        if result is not None:
            answer["result"] = result.to_json()
        echo_json(answer)
    else:
        if not plan.changes_anything:
            click.echo(f"nothing to revoke: {plan.request.describe()}")
        else:
            click.echo(f"{'would revoke' if result is None else 'revoked'} {plan.request.describe()}")
        click.echo(plan.describe())
        if result is None and plan.changes_anything:
            click.echo("dry run: nothing changed; run again with --execute to apply")
        elif result is not None and plan.changes_anything:
            click.echo(result.describe())
    if result is not None and not result.crls_signed:
        failed = ", ".join(o.issuer for o in result.crls if o.error is not None)
        raise click.ClickException(
            f"the revocation is recorded, but the CRL of {failed} could not be signed; "
            "'tnca crl generate' (or the worker) signs it once the signer is back"
        )
