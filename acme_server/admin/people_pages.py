"""People (admin only): add a person, change a role, disable or enable, set a new password.

Everything goes through :mod:`ca.records.users`, which audits each change and refuses to leave the
authority without an active admin. A generated password is shown once, in the answer to the
POST that made it: never in a redirect or a flashed message (Flask's session cookie is signed,
not encrypted).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, flash, redirect, url_for
from sqlalchemy.orm import Session

from acme_server.admin import inputs
from acme_server.admin.common import actor, db, has_errors, page, principal
from acme_server.admin.forms import ActionForm, AddPersonForm, RoleForm
from acme_server.state import current_state
from ca.records import users
from ca.errors import TNCAError


def _people_page(form: AddPersonForm, *, status: int = 200, new_password: tuple[str, str] | None = None) -> Response:
    session = db()
    people = users.list_users(session)
    return page(
        "admin/people.html",
        status=status,
        form=form,
        people=people,
        role_forms={person.name: RoleForm(formdata=None, role=person.role) for person in people},
        action_form=ActionForm(formdata=None),
        new_password=new_password,
        me=principal().name,
    )


def people() -> Response:
    form = AddPersonForm()
    if not form.validate_on_submit():
        return _people_page(form, status=400 if has_errors(form) else 200)
    name = (form.name.data or "").strip()
    generated = not form.password.data
    password = users.generate_password() if generated else form.password.data
    added = inputs.save(form, lambda session: users.create_user(session, name=name, role=form.role.data,
                                                                 password=password, actor=actor(),
                                                                 clock=current_state().clock))
    if added is None:
        return _people_page(form, status=400)
    flash(f"{name} was added as {form.role.data}.", "success")
    return _people_page(AddPersonForm(formdata=None), new_password=(name, password) if generated else None)


def person_role(name: str) -> Response:
    form = RoleForm()
    if form.validate_on_submit():
        _change(lambda session: users.set_role(session, name, form.role.data, actor=actor(),
                                               clock=current_state().clock),
                f"{name} is now {form.role.data}.")
    else:
        flash("Choose one of the roles.", "error")
    return redirect(url_for(".people"))


def person_disable(name: str) -> Response:
    if ActionForm().validate_on_submit():
        _change(lambda session: users.disable_user(session, name, actor=actor(), clock=current_state().clock),
                f"{name} is disabled; their sessions and API tokens stopped working.")
    return redirect(url_for(".people"))


def person_enable(name: str) -> Response:
    if ActionForm().validate_on_submit():
        _change(lambda session: users.enable_user(session, name, actor=actor(), clock=current_state().clock),
                f"{name} can sign in again.")
    return redirect(url_for(".people"))


def person_password(name: str) -> Response:
    """A new generated password, shown once; the person's sessions end (ca.records.users.set_password)."""
    if not ActionForm().validate_on_submit():
        return redirect(url_for(".people"))
    session = db()
    password = users.generate_password()
    try:
        users.set_password(session, name, password, actor=actor(), clock=current_state().clock)
        session.commit()
    except TNCAError as error:
        session.rollback()
        flash(error.detail, "error")
        return redirect(url_for(".people"))
    return _people_page(AddPersonForm(formdata=None), new_password=(name, password))


def _change(change: Callable[[Session], object], message: str) -> None:
    session = db()
    try:
        change(session)
        session.commit()
    except TNCAError as error:
        session.rollback()
        flash(error.detail, "error")
    else:
        flash(message, "success")
