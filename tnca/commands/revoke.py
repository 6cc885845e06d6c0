"""``tnca revoke``: revoke a certificate, a delegation with everything under it, or numbers.

Dry run by default: the plan (``ca.lifecycle.revocation``) is printed and nothing changes;
``--execute`` applies exactly that plan and signs the affected CRLs. Targets, one kind at a time:

- ``--serial S``: one certificate (hex, with or without colons);
- ``--delegation ID``: the delegation, its unexpired certificates, its STAR orders; its unused
  authority tokens stop validating;
- ``--covering TN``, ``--range START:COUNT``, ``--spc CODE`` (repeatable, combined): every
  unexpired certificate whose TNAuthList shares a number (or that SPC) with them.

``--reason`` is an RFC 5280 §5.3.1 reason by name or number; the default is none (no
reasonCode) for one certificate and privilegeWithdrawn for a delegation or numbers.

Exit codes: 0 done (or nothing to do); 1 a failed operation (already revoked, the plan changed
meanwhile, a CRL that could not be signed — the revocation itself is recorded then); 2 bad input,
one line naming the option, nothing written.
"""

from __future__ import annotations

import click

from ca.lifecycle import reasons, revocation
from ca.home import Home
from ca.errors import NotFoundError, RevocationError, ScopeError, TNCAError
from ca.lifecycle.reasons import CRLReason
from tnca.context import BadInput, cli_actor, pass_home, require_home
from tnca.options import parse_scope
from tnca.output import report_revocation

_REASON_HELP = ", ".join(r.asn1_name for r in reasons.OPERATOR_REASONS)


@click.command("revoke")
@click.option("--serial", metavar="S", help="One certificate, by serial number (hex).")
@click.option("--delegation", "delegation_id", metavar="ID", help="A delegation and everything issued under it.")
@click.option("--covering", "tns", multiple=True, metavar="TN", help="Certificates covering this number. Repeatable.")
@click.option("--range", "ranges", multiple=True, metavar="START:COUNT", help="Certificates sharing a number with this range. Repeatable.")
@click.option("--spc", "spcs", multiple=True, metavar="CODE", help="Certificates naming this SPC. Repeatable.")
@click.option("--reason", metavar="REASON", help=f"RFC 5280 reason code, by name or number: {_REASON_HELP}.")
@click.option("--comment", metavar="TEXT", help="Why, in words (audit log; the delegation's recorded reason).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (and the result) as JSON.")
@click.option("--execute", is_flag=True, help="Apply the plan. Without it, only print what would change.")
@pass_home
def command(
    home: Home,
    serial: str | None,
    delegation_id: str | None,
    tns: tuple[str, ...],
    ranges: tuple[str, ...],
    spcs: tuple[str, ...],
    reason: str | None,
    comment: str | None,
    as_json: bool,
    execute: bool,
) -> None:
    """Revoke certificates and delegations (dry run unless --execute)."""
    given = [name for name, value in (("--serial", serial), ("--delegation", delegation_id),
                                      ("--covering/--range/--spc", tns or ranges or spcs)) if value]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --serial, --delegation or --covering/--range/--spc"
                               + (f" (got {' and '.join(given)})" if given else ""))
    scope = parse_scope(tns, ranges, spcs, tn_option="--covering") if (tns or ranges or spcs) else None
    crl_reason = _reason(reason, default=None if serial else reasons.WITHDRAWN)
    require_home(home)

    with home.sessionmaker() as session:
        try:
            if serial is not None:
                plan = revocation.plan_revoke_certificate(session, serial, reason=crl_reason, clock=home.clock,
                                                          comment=comment)
            elif delegation_id is not None:
                plan = revocation.plan_revoke_delegation(session, delegation_id, reason=crl_reason, clock=home.clock,
                                                         comment=comment)
            else:
                assert scope is not None
                plan = revocation.plan_revoke_covering(session, scope, reason=crl_reason, clock=home.clock,
                                                       comment=comment)
            result = revocation.execute(session, plan, actor=cli_actor(), clock=home.clock, home=home) if execute else None
        except TNCAError as error:
            session.rollback()
            _fail(error)
    report_revocation(plan, result, as_json=as_json)


def _reason(text: str | None, *, default: CRLReason | None) -> CRLReason | None:
    if text is None:
        return default
    try:
        return reasons.parse_reason(text)
    except RevocationError as error:
        raise BadInput("--reason", error.detail) from None


_OPTIONS = {"serial": "--serial", "reason": "--reason", "comment": "--comment", "scope": "--covering/--range/--spc"}


def _fail(error: TNCAError) -> None:
    """Bad input (exit 2, naming the option) or a failed operation (exit 1)."""
    if isinstance(error, NotFoundError):
        raise BadInput("--serial" if error.field == "serial" else "--delegation", error.detail) from None
    if isinstance(error, ScopeError) or (isinstance(error, RevocationError) and error.field in _OPTIONS):
        raise BadInput(_OPTIONS.get(error.field or "", "--covering/--range/--spc"), error.detail) from None
    raise click.ClickException(error.detail) from None
