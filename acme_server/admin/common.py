"""What every page handler shares: the request's session and clock, who is acting, rendering,
search parameters, and putting a ``ca`` error next to the form field it names."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import Response, make_response, render_template, request
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session

from acme_server.auth import current_principal
from acme_server.state import current_state, db_session
from ca.errors import QueryError, TNCAError
from ca.records.users import Principal


def db() -> Session:
    return db_session()


def now() -> dt.datetime:
    return current_state().clock.now()


def principal() -> Principal:
    """The signed-in person; views run behind ``require_role``, so there always is one."""
    who = current_principal()
    if who is None:  # pragma: no cover - require_role raised NotSignedIn before the view ran
        raise RuntimeError("an admin page ran without a signed-in principal")
    return who


def actor() -> str:
    """How the audit trail names the person acting (``user:NAME``)."""
    return principal().actor


def page(template: str, *, status: int = 200, **context: Any) -> Response:
    """A rendered page. Pages show who holds which numbers and fresh authority tokens, so no
    browser or proxy keeps a copy (RFC 9111 §5.2.2.5)."""
    response = make_response(render_template(template, **context), status)
    response.headers["Cache-Control"] = "no-store"
    return response


def search_parameters(allowed_extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The query string of a search form as single values, empty fields left out.

    A browser submits every field of a GET form, filled or not; ``ca.records.queries`` refuses empty
    values ("leave it out instead"), so empty ones are dropped here and only here. A parameter
    given twice is refused, as the audit API refuses it.
    """
    params: dict[str, str] = {}
    for name in request.args:
        values = [value for value in request.args.getlist(name) if value.strip() != ""]
        if len(values) > 1:
            raise QueryError(f"{name[:40]} is given {len(values)} times; give it once", field=name[:64])
        if values:
            params[name] = values[0].strip()
    return params


def add_error(form: FlaskForm, field_name: str | None, detail: str) -> None:
    """Show ``detail`` next to the field, at the top of a fieldset (``"@scope"``), or above the
    form when no field matches."""
    if field_name and field_name.startswith("@"):
        group_errors(form).setdefault(field_name[1:], []).append(detail)
        return
    field = getattr(form, field_name, None) if field_name else None
    if field is None or not hasattr(field, "errors"):
        form.form_errors.append(detail)
        return
    field.errors = [*field.errors, detail]


def group_errors(form: FlaskForm) -> dict[str, list[str]]:
    """Errors about a fieldset as a whole (the TN scope, the claim constraints), by fieldset."""
    if not hasattr(form, "group_errors"):
        form.group_errors = {}  # type: ignore[attr-defined]
    return form.group_errors  # type: ignore[attr-defined,no-any-return]


def has_errors(form: FlaskForm) -> bool:
    return bool(form.errors) or bool(form.form_errors) or any(group_errors(form).values())


def error_to_field(error: TNCAError, fields: Mapping[str, str], default: str | None = None) -> str | None:
    """The form field a ``ca`` error's ``field`` refers to: the longest matching prefix in
    ``fields`` (``"ranges[0]"`` → ``"ranges"``, ``"permittedValues.orig"`` → ``"permittedValues"``)."""
    name = error.field or ""
    for prefix in sorted(fields, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "[") or name.startswith(prefix + "."):
            return fields[prefix]
    return default


def lines(text: str | None) -> list[str]:
    """Non-empty lines of a textarea, trimmed (one number, range or SPC per line)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]
