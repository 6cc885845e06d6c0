"""``tnca star``: STAR (RFC 8739) orders for operators: list them, cancel one.

``cancel`` is dry-run by default: it prints what would change and changes nothing; ``--execute``
applies it through ``ca.lifecycle.renewal.cancel`` (the function the ACME cancellation and the worker use),
which records the reason in the order's ``error`` (the client sees it as ``autoRenewalCanceled``)
and appends an ``order.cancel`` audit event naming the operator.

Exit codes (tnca/cli.py): 0 success, 1 a failed operation (the order is not a valid STAR order),
2 bad input (no such order, an empty reason).
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ca.lifecycle import renewal
from ca.lifecycle.star_schedule import auto_renewal_of
from ca.home import Home
from ca.encoding import isoformat_or_none
from ca.errors import AutoRenewalError
from ca.records.models_acme import Order
from ca.records.models_authority import Certificate
from ca.numbers.tnauthlist import TNScope
from ca.records.statuses import CertificateStage
from tnca.context import BadInput, cli_actor, pass_home, transaction
from tnca.output import echo_json

STATUSES = ("valid", "canceled", "all")


@click.group("star")
def command() -> None:
    """STAR auto-renewal orders (RFC 8739): list, cancel."""


def describe(session: Session, order: Order) -> dict[str, Any]:
    auto = auto_renewal_of(order)
    current = renewal.current_certificate(session, order.id)
    authz = order.authorizations[0] if order.authorizations else None
    return {
        "id": order.id,
        "status": order.status,
        "account_id": order.account_id,
        "delegation_id": authz.delegation_id if authz is not None else None,
        "scope": TNScope.from_der(order.scope_der, strict=False).describe(),
        "auto_renewal": auto.to_json() if auto is not None else None,
        "certificates_issued": session.scalar(
            select(func.count()).select_from(Certificate).where(
                Certificate.order_id == order.id, Certificate.stage == CertificateStage.ISSUED
            )
        ),
        "current_serial": current.serial if current is not None else None,
        "current_not_after": isoformat_or_none(current.not_after if current is not None else None),
        "next_renewal_at": isoformat_or_none(order.next_renewal_at),
        "error": order.error,
    }


@command.command("list")
@click.option("--status", type=click.Choice(STATUSES), default="valid", show_default=True,
              help="Which STAR orders to show.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_home
def list_command(home: Home, status: str, as_json: bool) -> None:
    """List STAR orders, the next renewal first."""
    with transaction(home) as session:
        query = (
            select(Order).where(Order.auto_renewal.is_not(None))
            .options(selectinload(Order.authorizations))
            .order_by(Order.next_renewal_at.is_(None), Order.next_renewal_at, Order.created_at)
        )
        if status != "all":
            query = query.where(Order.status == status)
        views = [describe(session, order) for order in session.scalars(query)]
    if as_json:
        echo_json(views)
        return
    if not views:
        click.echo("no STAR orders")
    for view in views:
        click.echo(
            f"{view['id']}  {view['status']:<8}  {view['scope']}  ends {view['auto_renewal']['end-date']}  "
            f"{view['certificates_issued']} certificate(s), next renewal {view['next_renewal_at'] or 'none'}"
        )


@command.command("cancel")
@click.argument("order_id", metavar="ORDER")
@click.option("--reason", required=True, metavar="TEXT", help="Why (shown to the client and in the audit log).")
@click.option("--execute", is_flag=True, help="Apply the change. Without it, only print what would change.")
@click.option("--json", "as_json", is_flag=True, help="Print the order (and whether it was canceled) as JSON.")
@pass_home
def cancel_command(home: Home, order_id: str, reason: str, execute: bool, as_json: bool) -> None:
    """Stop the auto-renewal of a STAR order (dry run unless --execute).

    No certificate is issued for it afterwards; the one it serves now stays valid until its
    notAfter (RFC 8739 §3.3), and its star-certificate URL answers autoRenewalCanceled.
    """
    if not reason.strip():
        raise BadInput("--reason", "a reason is required")
    with transaction(home) as session:
        order = session.get(Order, order_id, options=[selectinload(Order.authorizations)])
        if order is None:
            raise BadInput("ORDER", f"no order {order_id!r}")
        if not order.auto_renewal or order.status != "valid":
            what = "not an auto-renewal (STAR) order" if not order.auto_renewal else f"{order.status}, not valid"
            raise click.ClickException(f"order {order.id} is {what}; only a valid STAR order can be canceled")
        before = describe(session, order)
        if execute:
            try:
                renewal.cancel(session, order, actor=cli_actor(), by=renewal.CANCELED_BY_OPERATOR, clock=home.clock,
                               reason=f"canceled by the operator: {reason.strip()}")
            except AutoRenewalError as error:
                raise click.ClickException(error.detail) from error
    if as_json:
        echo_json({"order": before, "executed": execute})
        return
    verb = "canceled" if execute else "would cancel"
    click.echo(f"{verb} STAR order {before['id']} ({before['scope']}, account {before['account_id']}): "
               f"status valid -> canceled, reason {reason.strip()!r}")
    click.echo(f"  {before['certificates_issued']} certificate(s) issued; the current one ({before['current_serial']}) "
               f"stays valid until {before['current_not_after']}")
    if not execute:
        click.echo("dry run: nothing changed; run again with --execute to apply")
