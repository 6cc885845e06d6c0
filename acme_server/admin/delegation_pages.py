"""Delegations: the list and its search, one delegation, create, edit, mint an authority token."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from flask import Response, flash, redirect, url_for
from sqlalchemy.orm import Session

from acme_server.admin import inputs, present
from acme_server.admin.common import actor, db, has_errors, lines, now, page, search_parameters
from acme_server.admin.forms import DelegationEditForm, DelegationForm, RightToUseForm, TokenForm, VettingForm
from acme_server.admin.inspect import scope_entry_views
from acme_server.state import current_state
from ca.records import delegations, overview, queries, query_filters, vetting
from ca.records.models_authority import Delegation
from ca.tokens import fingerprints, minting
from ca.errors import PolicyError, QueryError
from ca.numbers.tnauthlist import TNScope

CERTIFICATES_SHOWN = 20


def _lifetime_ceiling(ca: bool) -> dt.timedelta:
    # As `tnca delegation create`: the policy's longest end-entity lifetime, or the delegate CA
    # one when the delegation may sub-delegate.
    lifetimes = current_state().policy.lifetimes
    return max(lifetimes.end_entity, lifetimes.delegate_ca) if ca else lifetimes.end_entity


def delegation_list() -> Response:
    """Delegations, newest first, searchable by number, range, SPC, delegate, status and time."""
    params = search_parameters()
    session = db()
    error: QueryError | None = None
    result = None
    try:
        result = queries.delegations(session, query_filters.parse_delegation_filter(params))
    except QueryError as failure:
        error = failure
    counts = overview.valid_certificate_counts(session, [item["id"] for item in result.items] if result else [], now=now())
    return page(
        "admin/delegations.html",
        status=400 if error else 200,
        params=params,
        error=error,
        result=result,
        valid_counts=counts,
        delegate_names=overview.delegate_names(session),
    )


def delegation_new() -> Response:
    form = DelegationForm()
    issuing = current_state().issuing_ca()

    def create(session: Session) -> Delegation:
        scope = inputs.scope_from(form.tns.data, form.ranges.data, form.spcs.data)
        constraints = inputs.constraints_from(form.must_include.data, form.permitted_values.data,
                                              form.must_exclude.data, form.enhanced.data)
        ceiling = _lifetime_ceiling(form.ca.data)
        lifetime = inputs.duration_from(form.max_lifetime.data, field="max_lifetime") or ceiling
        return delegations.create(
            session,
            delegate=form.delegate.data.strip(),
            scope=scope,
            issuer_scope=issuing.scope,
            max_lifetime=lifetime,
            max_lifetime_ceiling=ceiling,
            ca=form.ca.data,
            constraints=constraints,
            profile=form.profile.data,
            not_after=inputs.time_from(form.not_after.data, field="not_after"),
            clock=current_state().clock,
            actor=actor(),
        )

    if form.validate_on_submit() and (delegation := inputs.save(form, create)) is not None:
        flash(f"Delegation {delegation.id} created for {delegation.delegate}.", "success")
        return redirect(url_for(".delegation_detail", delegation_id=delegation.id))
    return page(
        "admin/delegation_form.html",
        status=400 if has_errors(form) else 200,
        form=form,
        editing=None,
        issuer_scope=issuing.scope.describe() if issuing.scope else None,
        ceiling=_lifetime_ceiling(False),
    )


def delegation_detail(delegation_id: str) -> Response:
    session = db()
    delegation = delegations.get(session, delegation_id)
    view = queries.delegation_items(session, [delegation])[0]
    certificates = queries.certificates(
        session, query_filters.CertificateFilter(delegation_id=delegation.id, stage=None, limit=CERTIFICATES_SHOWN), now=now()
    )
    history = queries.events(session, query_filters.EventFilter(subject_type="delegation", subject_id=delegation.id, limit=100))
    authority = current_state().home.token_authority()
    minted = overview.authority_tokens(session, delegation.id,
                                       token_authority=fingerprints.certificate_issuer_id(authority.certificate))
    constraints = delegations.constraints_of(delegation)
    return page(
        "admin/delegation.html",
        delegation=delegation,
        view=view,
        scope_entries=scope_entry_views(TNScope.from_der(delegation.scope_der)),
        constraints=constraints,
        in_force=delegations.is_active(delegation, now()),
        certificates=certificates,
        history=history.items,
        minted=minted,
    )


def delegation_edit(delegation_id: str) -> Response:
    session = db()
    delegation = delegations.get(session, delegation_id)
    constraints = delegations.constraints_of(delegation)
    form = DelegationEditForm(data={
        "delegate": delegation.delegate,
        "max_lifetime": inputs.duration_text(delegation.max_lifetime_seconds),
        "not_after": present.iso(delegation.not_after),
        **inputs.constraints_to_fields(constraints),
    })
    ceiling = _lifetime_ceiling(delegation.ca_allowed)

    def update(session: Session) -> Delegation:
        return delegations.update(
            session,
            delegation.id,
            delegate=form.delegate.data.strip(),
            max_lifetime=inputs.duration_from(form.max_lifetime.data, field="max_lifetime"),
            not_after=inputs.time_from(form.not_after.data, field="not_after"),
            constraints=inputs.constraints_from(form.must_include.data, form.permitted_values.data,
                                                form.must_exclude.data, form.enhanced.data),
            max_lifetime_ceiling=ceiling,
            clock=current_state().clock,
            actor=actor(),
        )

    if form.validate_on_submit() and inputs.save(form, update) is not None:
        flash("Delegation updated; the audit trail records what changed.", "success")
        return redirect(url_for(".delegation_detail", delegation_id=delegation.id))
    return page(
        "admin/delegation_form.html",
        status=400 if has_errors(form) else 200,
        form=form,
        editing=delegation,
        scope=TNScope.from_der(delegation.scope_der).describe(),
        ceiling=ceiling,
    )


def delegation_vet(delegation_id: str) -> Response:
    """Record (or replace) who vetted the delegate (ca/records/vetting.py; audited)."""
    session = db()
    delegation = delegations.get(session, delegation_id)
    current = delegation.vetting
    form = VettingForm(data={} if current is None else {
        "legal_name": current.legal_name, "country": current.country or "", "lei": current.lei or "",
        "assurance": current.assurance, "vetted_by": current.vetted_by, "vetted_at": present.iso(current.vetted_at),
        "evidence": "\n".join(f"sha256:{item['sha256']},{item['uri']}" for item in current.evidence),
    })

    def record(session: Session) -> object:
        return vetting.record_vetting(
            session, delegation.id, legal_name=form.legal_name.data.strip(), country=form.country.data.strip() or None,
            lei=form.lei.data.strip() or None, assurance=form.assurance.data, vetted_by=form.vetted_by.data.strip(),
            vetted_at=inputs.time_from(form.vetted_at.data, field="vetted_at"),
            evidence=lines(form.evidence.data), clock=current_state().clock, actor=actor(),
        )

    if form.validate_on_submit() and inputs.save(form, record) is not None:
        flash("Vetting recorded; the audit trail keeps the earlier one.", "success")
        return redirect(url_for(".delegation_detail", delegation_id=delegation.id))
    return page("admin/identity_form.html", status=400 if has_errors(form) else 200, form=form,
                delegation=delegation, kind="vetting")


def delegation_right_to_use(delegation_id: str) -> Response:
    """Record right-to-use evidence for numbers of the delegation (ca/records/vetting.py; audited)."""
    session = db()
    delegation = delegations.get(session, delegation_id)
    form = RightToUseForm()

    def record(session: Session) -> object:
        return vetting.add_right_to_use(
            session, delegation.id, scope=inputs.scope_from(form.tns.data, form.ranges.data, form.spcs.data),
            source=form.source.data.strip(), verified_by=form.verified_by.data.strip(),
            verified_at=inputs.time_from(form.verified_at.data, field="verified_at"),
            evidence=lines(form.evidence.data), clock=current_state().clock, actor=actor(),
        )

    if form.validate_on_submit() and inputs.save(form, record) is not None:
        flash("Right-to-use evidence recorded.", "success")
        return redirect(url_for(".delegation_detail", delegation_id=delegation.id))
    return page("admin/identity_form.html", status=400 if has_errors(form) else 200, form=form,
                delegation=delegation, kind="right_to_use",
                scope=TNScope.from_der(delegation.scope_der).describe())


def token_new(delegation_id: str) -> Response:
    """Mint an authority token (RFC 9448 §5) under this delegation for one ACME account key.

    The token is shown once, on the answer to the POST (never stored, never redirected to):
    only its jti, scope, fingerprint and expiry are kept (``authority_tokens``).
    """
    session = db()
    state = current_state()
    delegation = delegations.get(session, delegation_id)
    form = TokenForm()
    max_ttl = state.policy.tokens.max_lifetime

    def mint(session: Session) -> minting.MintedToken:
        subset = inputs.optional_scope_from(form.tns.data, form.ranges.data, form.spcs.data)
        return minting.mint(
            session,
            delegation=delegation,
            fingerprint=form.fingerprint.data,
            scope=subset if subset is not None else TNScope.from_der(delegation.scope_der),
            ca=form.ca.data,
            ttl=inputs.duration_from(form.ttl.data, field="ttl") or max_ttl,
            max_ttl=max_ttl,
            authority=state.home.token_authority(),
            clock=state.clock,
            actor=actor(),
        )

    if form.validate_on_submit() and (minted := inputs.save(form, mint)) is not None:
        return page("admin/token_minted.html", delegation=delegation, minted=minted,
                    directory_url=state.urls.directory())
    return page(
        "admin/token_form.html",
        status=400 if has_errors(form) else 200,
        form=form,
        delegation=delegation,
        scope=TNScope.from_der(delegation.scope_der).describe(),
        max_ttl=max_ttl,
        in_force=delegations.is_active(delegation, now()),
        token_authority_refusal=_token_authority_refusal(state.home.token_authority().certificate, now()),
    )


def _token_authority_refusal(certificate: x509.Certificate, moment: dt.datetime) -> str | None:
    """Why minting is refused whatever the form says (the token authority certificate is not
    valid now), shown before the operator fills the form; None when it is valid."""
    try:
        minting.check_authority_current(certificate, moment)
    except PolicyError as refusal:
        return refusal.detail
    return None
