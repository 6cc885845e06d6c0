"""Revocation: of a delegation (with its certificates), of one certificate, of numbers.

Every revocation is the same three steps, whatever is revoked (:func:`_preview_then_execute`):

1. **Form** (GET): what to revoke, the RFC 5280 §5.3.1 reason code, why.
2. **Preview** (POST without a digest): :mod:`ca.lifecycle.revocation` plans it, writing nothing, and the
   page lists every certificate, delegation, STAR order and token the plan touches. The confirm
   form repeats the inputs and adds the plan's digest.
3. **Execute** (POST with the digest): the plan is made again from the same inputs. Only if its
   digest equals the one the operator saw is it executed (``ca.lifecycle.revocation.execute``, which
   checks once more under lock and appends the audit events naming the operator); otherwise the
   new plan is shown for another look (409). What was confirmed is what happens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, flash, redirect, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session

from acme_server.admin import inputs
from acme_server.admin.common import actor, db, page
from acme_server.admin.forms import RevokeCertificateForm, RevokeDelegationForm, RevokeNumberForm, crl_reason
from acme_server.state import current_state
from ca.lifecycle import revocation
from ca.records import delegations, queries, query_filters
from ca.errors import NotFoundError, QueryError, RevocationError, TNCAError
from ca.lifecycle.revocation import RevocationPlan, RevocationResult


def revoke_delegation(delegation_id: str) -> Response:
    delegation = delegations.get(db(), delegation_id)
    form = RevokeDelegationForm()
    return _preview_then_execute(
        form,
        lambda session: revocation.plan_revoke_delegation(
            session, delegation.id, reason=crl_reason(form.crl_reason.data), comment=form.comment.data,
            clock=current_state().clock),
        done=lambda _result: url_for(".delegation_detail", delegation_id=delegation.id),
        cancel=url_for(".delegation_detail", delegation_id=delegation.id),
        heading=f"Revoke the delegation to {delegation.delegate}",
        delegation=delegation,
    )


def revoke_certificate(serial: str) -> Response:
    try:
        serial = query_filters.parse_certificate_filter({"serial": serial}).serial or ""
    except QueryError as error:
        raise NotFoundError(error.detail, field="serial") from None
    item = queries.certificate_by_serial(db(), serial)
    if item is None:
        raise NotFoundError(f"There is no certificate with serial {serial}.", field="serial")
    form = RevokeCertificateForm()
    return _preview_then_execute(
        form,
        lambda session: revocation.plan_revoke_certificate(
            session, serial, reason=crl_reason(form.crl_reason.data), comment=form.comment.data or None,
            clock=current_state().clock),
        done=lambda _result: url_for(".certificate_detail", serial=serial),
        cancel=url_for(".certificate_detail", serial=serial),
        heading=f"Revoke certificate {serial}",
        certificate=item,
    )


def revoke_numbers() -> Response:
    form = RevokeNumberForm()
    return _preview_then_execute(
        form,
        lambda session: revocation.plan_revoke_covering(
            session, inputs.scope_from(form.tns.data, form.ranges.data, form.spcs.data),
            reason=crl_reason(form.crl_reason.data), comment=form.comment.data, clock=current_state().clock),
        done=lambda _result: url_for(".revocation_search"),
        cancel=url_for(".dashboard"),
        heading="Revoke the certificates for numbers",
    )


def _preview_then_execute(
    form: FlaskForm,
    make_plan: Callable[[Session], RevocationPlan],
    *,
    done: Callable[[RevocationResult], str],
    cancel: str,
    heading: str,
    **context: Any,
) -> Response:
    context = {"form": form, "heading": heading, "cancel": cancel, **context}
    if request.method == "GET":
        return page("admin/revoke_form.html", **context)
    if not form.validate_on_submit():
        return page("admin/revoke_form.html", status=400, **context)
    session = db()
    try:
        plan = make_plan(session)
    except TNCAError as error:
        session.rollback()
        inputs.show_error(form, error)
        return page("admin/revoke_form.html", status=400, **context)
    shown_digest = form.plan_digest.data
    if not shown_digest:
        return page("admin/revoke_preview.html", plan=plan, changed=False, **context)
    if shown_digest != plan.digest:
        # Something was issued, revoked, used or expired since the preview: show the new plan.
        return page("admin/revoke_preview.html", status=409, plan=plan, changed=True, **context)
    if not plan.changes_anything:
        return page("admin/revoke_preview.html", plan=plan, changed=False, **context)
    state = current_state()
    try:
        result = revocation.execute(session, plan, actor=actor(), clock=state.clock, home=state.home)
    except RevocationError as error:
        session.rollback()
        if error.field != "plan":
            inputs.show_error(form, error)
            return page("admin/revoke_form.html", status=409, **context)
        return page("admin/revoke_preview.html", status=409, plan=make_plan(session), changed=True, **context)
    _report(result)
    return redirect(done(result))


def _report(result: RevocationResult) -> None:
    parts = [f"Revoked {len(result.revoked)} certificate{'s' if len(result.revoked) != 1 else ''}"]
    if result.delegations:
        parts.append(f"{len(result.delegations)} delegation{'s' if len(result.delegations) != 1 else ''}")
    if result.canceled_orders:
        parts.append(f"canceled {len(result.canceled_orders)} STAR order{'s' if len(result.canceled_orders) != 1 else ''}")
    summary = ", ".join(parts) + (f" (audit event {result.audit_seq})." if result.audit_seq is not None else ".")
    flash(summary, "success")
    for outcome in result.crls:
        flash(outcome.describe(), "success" if outcome.crl is not None else "warning")
