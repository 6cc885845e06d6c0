"""External account binding keys (operators): ``tnca eab create``, ``list`` and ``revoke`` on a page.

Everything goes through :mod:`ca.records.external_accounts`, which audits each change. The MAC
key is shown once, in the answer to the POST that made it: never in a redirect or a flashed
message (Flask's session cookie is signed, not encrypted), and never on the list.
"""

from __future__ import annotations

from flask import Response, flash, redirect, url_for

from acme_server.admin import inputs
from acme_server.admin.common import actor, db, has_errors, page
from acme_server.admin.forms import ActionForm, ExternalAccountKeyForm
from acme_server.state import current_state
from ca.errors import PolicyError, TNCAError
from ca.records import external_accounts


def _keys_page(form: ExternalAccountKeyForm, *, status: int = 200,
               created: external_accounts.CreatedKey | None = None) -> Response:
    session = db()
    now = current_state().clock.now()
    keys = [external_accounts.describe(session, key, now) for key in external_accounts.list_keys(session)]
    return page("admin/eab.html", status=status, form=form, keys=keys, created=created,
                action_form=ActionForm(formdata=None))


def eab_keys() -> Response:
    form = ExternalAccountKeyForm()
    if not form.validate_on_submit():
        return _keys_page(form, status=400 if has_errors(form) else 200)
    delegate = (form.delegate.data or "").strip() or None
    delegation_id = (form.delegation.data or "").strip() or None
    clock = current_state().clock

    def make(session):  # type: ignore[no-untyped-def]
        if (delegate is None) == (delegation_id is None):
            raise PolicyError("give either a delegate or a delegation id", field="delegate")
        expires_at = inputs.time_from(form.expires.data, field="expires")
        return external_accounts.create(session, delegate=delegate, delegation_id=delegation_id,
                                        expires_at=expires_at, clock=clock, actor=actor())

    created = inputs.save(form, make)
    if created is None:
        return _keys_page(form, status=400)
    flash(f"External account key {created.key_id} was made for {created.delegate}.", "success")
    return _keys_page(ExternalAccountKeyForm(formdata=None), created=created)


def eab_revoke(key_id: str) -> Response:
    if ActionForm().validate_on_submit():
        session = db()
        try:
            external_accounts.revoke(session, key_id, clock=current_state().clock, actor=actor())
            session.commit()
        except TNCAError as error:
            session.rollback()
            flash(error.detail, "error")
        else:
            flash(f"External account key {key_id} is revoked.", "success")
    return redirect(url_for(".eab_keys"))
