"""``tnca delegation``: create, list, show and revoke delegations.

Exit codes (tnca/cli.py): 0 success, 1 a failed operation, 2 bad input. Bad input prints one
line naming the option (``Error: --range: …``, tnca/context.py) and writes nothing: every
command runs in one transaction that is rolled back on any error.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import click

from ca.lifecycle import reasons, revocation
from ca.records import delegations, queries, vetting
from ca.numbers.claims import ClaimConstraints
from ca.home import Home
from ca.errors import ClaimConstraintsError, NotFoundError, RevocationError, TNCAError
from ca.policy import format_duration
from tnca.context import BadInput, cli_actor, pass_home, require_home, transaction
from tnca.options import date_option, duration_option, fail_on, given_scope_options, parse_scope
from tnca.output import echo_json, report_revocation

@click.group("delegation")
def command() -> None:
    """Delegations: grants of a TN scope to a delegate (RFC 9060)."""


@command.command("create")
@click.option("--delegate", required=True, metavar="NAME", help="Who receives the numbers (an enterprise).")
@click.option("--tn", "tns", multiple=True, metavar="N", help="A telephone number, e.g. 12025550100. Repeatable.")
@click.option("--range", "ranges", multiple=True, metavar="START:COUNT", help="COUNT numbers from START. Repeatable.")
@click.option("--spc", "spcs", multiple=True, metavar="CODE", help="A service provider code. Repeatable.")
@click.option("--ca", is_flag=True, help="The delegate may obtain a delegate CA certificate (sub-delegate).")
@click.option("--max-lifetime", metavar="DURATION", help="Longest certificate lifetime, e.g. 24h. Default: the policy's.")
@click.option(
    "--constraints",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help='Claim constraints JSON: {"mustInclude": [...], "permittedValues": {...}, "mustExclude": [...]}.',
)
@click.option("--not-after", metavar="DATE", help="When the delegation ends: 2026-12-31 (midnight UTC) or an RFC 3339 time.")
@click.option("--profile", type=click.Choice(delegations.PROFILES), default=delegations.DELEGATE_PROFILE,
              show_default=True, help="Certificate profile: vesper needs vetting and right-to-use records (docs/identity.md).")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ...} as JSON.')
@pass_home
def create_command(
    home: Home,
    delegate: str,
    tns: tuple[str, ...],
    ranges: tuple[str, ...],
    spcs: tuple[str, ...],
    ca: bool,
    max_lifetime: str | None,
    constraints: Path | None,
    not_after: str | None,
    profile: str,
    as_json: bool,
) -> None:
    """Delegate a TN scope (inside the issuing CA's) to DELEGATE."""
    scope = parse_scope(tns, ranges, spcs)
    lifetime = duration_option(max_lifetime, "--max-lifetime")
    ends = date_option(not_after, "--not-after")
    claim_constraints = _load_constraints(constraints)
    policy = home.policy
    ceiling = max(policy.lifetimes.end_entity, policy.lifetimes.delegate_ca) if ca else policy.lifetimes.end_entity
    with transaction(home) as session:
        try:
            issuer_scope = home.issuing_ca().scope
            if issuer_scope is None:
                raise click.ClickException("the issuing CA has no TNAuthList, so it cannot delegate numbers")
            delegation = delegations.create(
                session,
                delegate=delegate,
                scope=scope,
                issuer_scope=issuer_scope,
                max_lifetime=lifetime if lifetime is not None else ceiling,
                max_lifetime_ceiling=ceiling,
                ca=ca,
                constraints=claim_constraints,
                not_after=ends,
                profile=profile,
                clock=home.clock,
                actor=cli_actor(),
            )
        except TNCAError as error:
            fail_on(error, default_option=given_scope_options(tns, ranges, spcs))
        view = queries.delegation_items(session, [delegation])[0]
    if as_json:
        echo_json({"id": view["id"]})
    else:
        click.echo(f"created delegation {view['id']}: {_summary(view)}")


def _load_constraints(path: Path | None) -> ClaimConstraints | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput("--constraints", f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from error
    try:
        return ClaimConstraints.from_json(text)
    except ClaimConstraintsError as error:
        raise BadInput("--constraints", error.detail) from error


_EVIDENCE_HELP = ("A document the decision rests on, as sha256:<hex>,<uri> (its SHA-256 and where it is kept; the "
                  "document itself is never stored). Repeatable; at least one.")


@command.command("vet")
@click.argument("delegation_id", metavar="ID")
@click.option("--legal-name", required=True, metavar="NAME", help="The delegate's vetted legal name (the certificate's O).")
@click.option("--country", metavar="CC", help="ISO 3166-1 alpha-2 country of registration, e.g. US (the certificate's C).")
@click.option("--lei", metavar="LEI", help="Legal Entity Identifier (ISO 17442), where one exists.")
@click.option("--assurance", required=True, type=click.Choice(vetting.ASSURANCE_LEVELS), help="Level of assurance reached.")
@click.option("--vetted-by", required=True, metavar="WHO", help="Who did the vetting (a person or an agency).")
@click.option("--vetted-at", required=True, metavar="DATE", help="When: 2026-12-31 or an RFC 3339 time.")
@click.option("--evidence", multiple=True, metavar="sha256:HEX,URI", help=_EVIDENCE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the delegation as JSON.")
@pass_home
def vet_command(home: Home, delegation_id: str, legal_name: str, country: str | None, lei: str | None, assurance: str,
                vetted_by: str, vetted_at: str, evidence: tuple[str, ...], as_json: bool) -> None:
    """Record who vetted the delegate of delegation ID (replaces an earlier vetting; audited)."""
    when = date_option(vetted_at, "--vetted-at")
    with transaction(home) as session:
        try:
            vetting.record_vetting(session, delegation_id, legal_name=legal_name, country=country, lei=lei,
                                   assurance=assurance, vetted_by=vetted_by, vetted_at=when, evidence=evidence,
                                   clock=home.clock, actor=cli_actor())
        except NotFoundError as error:
            raise BadInput("ID", error.detail) from error
        except TNCAError as error:
            fail_on(error, default_option="ID")
        view = queries.delegation_items(session, [delegations.get(session, delegation_id)])[0]
    _report(view, as_json, f"recorded the vetting of delegation {delegation_id}")


@command.command("right-to-use")
@click.argument("delegation_id", metavar="ID")
@click.option("--tn", "tns", multiple=True, metavar="N", help="A number the evidence covers. Repeatable.")
@click.option("--range", "ranges", multiple=True, metavar="START:COUNT", help="A range the evidence covers. Repeatable.")
@click.option("--spc", "spcs", multiple=True, metavar="CODE", help="A service provider code the evidence covers. Repeatable.")
@click.option("--source", required=True, metavar="TEXT", help="What the evidence is, e.g. 'number assignment record'.")
@click.option("--verified-by", required=True, metavar="WHO", help="Who checked the evidence.")
@click.option("--verified-at", required=True, metavar="DATE", help="When: 2026-12-31 or an RFC 3339 time.")
@click.option("--evidence", multiple=True, metavar="sha256:HEX,URI", help=_EVIDENCE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the delegation as JSON.")
@pass_home
def right_to_use_command(home: Home, delegation_id: str, tns, ranges, spcs, source: str, verified_by: str,
                         verified_at: str, evidence: tuple[str, ...], as_json: bool) -> None:
    """Record right-to-use evidence for numbers of delegation ID (audited)."""
    scope = parse_scope(tns, ranges, spcs)
    when = date_option(verified_at, "--verified-at")
    with transaction(home) as session:
        try:
            vetting.add_right_to_use(session, delegation_id, scope=scope, source=source, verified_by=verified_by,
                                     verified_at=when, evidence=evidence, clock=home.clock, actor=cli_actor())
        except NotFoundError as error:
            raise BadInput("ID", error.detail) from error
        except TNCAError as error:
            fail_on(error, default_option=given_scope_options(tns, ranges, spcs) if error.field == "scope" else "ID")
        view = queries.delegation_items(session, [delegations.get(session, delegation_id)])[0]
    _report(view, as_json, f"recorded right-to-use evidence for delegation {delegation_id}")


def _report(view: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        echo_json(view)
    else:
        click.echo(f"{line}: {_summary(view)}")


@command.command("list")
@click.option("--status", type=click.Choice([delegations.ACTIVE, delegations.REVOKED]), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_home
def list_command(home: Home, status: str | None, as_json: bool) -> None:
    """List delegations, oldest first."""
    with transaction(home) as session:
        views = queries.delegation_items(session, delegations.list_delegations(session, status=status))
    if as_json:
        echo_json(views)
        return
    if not views:
        click.echo("no delegations")
    for view in views:
        click.echo(f"{view['id']}  {view['status']:<7}  {_summary(view)}")


@command.command("show")
@click.argument("delegation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_home
def show_command(home: Home, delegation_id: str, as_json: bool) -> None:
    """Show one delegation."""
    with transaction(home) as session:
        try:
            view = queries.delegation_items(session, [delegations.get(session, delegation_id)])[0]
        except NotFoundError as error:
            raise BadInput("ID", error.detail) from error
    if as_json:
        echo_json(view)
        return
    for key, value in _text_fields(view):
        click.echo(f"{key + ':':<22}{'' if value is None else value}")


@command.command("revoke")
@click.argument("delegation_id", metavar="ID")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded in the audit log).")
@click.option("--execute", is_flag=True, help="Apply the change. Without it, only print what would change.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (and whether it was applied) as JSON.")
@pass_home
def revoke_command(home: Home, delegation_id: str, reason: str, execute: bool, as_json: bool) -> None:
    """Revoke a delegation and everything under it (dry run unless --execute).

    The same plan as 'tnca revoke --delegation ID --comment TEXT': its unexpired certificates
    are revoked (reason privilegeWithdrawn) and its STAR orders canceled, tokens minted under
    it stop validating, and the CRL is signed again.
    """
    if not reason.strip():
        raise BadInput("--reason", "a revocation reason is required")
    require_home(home)
    with home.sessionmaker() as session:
        try:
            plan = revocation.plan_revoke_delegation(session, delegation_id, reason=reasons.WITHDRAWN,
                                                     comment=reason, clock=home.clock)
            result = revocation.execute(session, plan, actor=cli_actor(), clock=home.clock, home=home) if execute else None
        except NotFoundError as error:
            raise BadInput("ID", error.detail) from error
        except RevocationError as error:
            if error.field in ("reason", "comment"):
                raise BadInput("--reason", error.detail) from error
            raise click.ClickException(error.detail) from error
    report_revocation(plan, result, as_json=as_json)


def _text_fields(view: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The JSON view (ca.records.record_json.delegation_json) as lines for people."""
    for key, value in view.items():
        if key == "scope":
            yield "scope", value["description"]
            yield "tnauthlist", value["tnauthlist"]
            continue
        if key in ("constraints", "vetting", "right_to_use") and value:
            value = json.dumps(value, sort_keys=True)
        elif key in ("create_event", "revoke_event") and value is not None:
            value = f"#{value['seq']} by {value['actor']} at {value['occurred_at']}"
        yield key, value


def _summary(view: dict[str, Any]) -> str:
    parts = [
        f"{view['delegate']}: {view['scope']['description']}",
        f"max lifetime {format_duration(dt.timedelta(seconds=view['max_lifetime_seconds']))}",
        "may sub-delegate" if view["ca"] else "end-entity only",
        f"until {view['not_after']}" if view["not_after"] else "no end date",
    ]
    if view["constraints"]:
        parts.append("claim constraints " + json.dumps(view["constraints"], sort_keys=True))
    if view.get("profile", delegations.DELEGATE_PROFILE) != delegations.DELEGATE_PROFILE:
        parts.append(f"profile {view['profile']}")
    if view.get("vetting"):
        vetted = view["vetting"]
        parts.append(f"vetted as {vetted['legal_name']} ({vetted['assurance']} assurance, by {vetted['vetted_by']})")
    if view.get("right_to_use"):
        parts.append("right to use " + "; ".join(record["scope"] for record in view["right_to_use"]))
    return ", ".join(parts)

