"""Form text → ``ca`` values, with errors that name the form field they came from.

Each function raises a ``ca`` error whose ``field`` is a key of :data:`FORM_FIELDS`, so the
view can put the message next to the right input (``common.error_to_field``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from acme_server.admin.common import add_error, db, error_to_field, lines
from ca.numbers.claims import ClaimConstraints
from ca.errors import ClaimConstraintsError, PolicyError, TNCAError
from ca.policy import format_duration, parse_duration
from ca.records.query_filters import parse_time
from ca.numbers.tnauthlist import TNScope

T = TypeVar("T")

# ``field`` of a ca error (or its prefix before "[" or ".") → the form field that shows it.
# "@scope" and "@constraints" are the fieldsets: errors about the scope or the constraints as
# a whole are shown at the top of them.
FORM_FIELDS = {
    "delegate": "delegate",
    "delegation": "delegation",
    "expires": "expires",
    "max_lifetime": "max_lifetime",
    "not_after": "not_after",
    "ca": "ca",
    "ttl": "ttl",
    "fingerprint": "fingerprint",
    "tns": "tns",
    "ranges": "ranges",
    "spcs": "spcs",
    "TNAuthList": "@scope",
    "scope": "@scope",
    "mustInclude": "must_include",
    "permittedValues": "permitted_values",
    "mustExclude": "must_exclude",
    "enhanced": "enhanced",
    "constraints": "@constraints",
    "comment": "comment",
    "reason": "crl_reason",
    "name": "name",
    "role": "role",
    "password": "password",
    "profile": "profile",
    "legal_name": "legal_name",
    "country": "country",
    "lei": "lei",
    "assurance": "assurance",
    "vetted_by": "vetted_by",
    "vetted_at": "vetted_at",
    "evidence": "evidence",
    "source": "source",
    "verified_by": "verified_by",
    "verified_at": "verified_at",
}


def scope_from(tns: str | None, ranges: str | None, spcs: str | None) -> TNScope:
    """A TN scope from three textareas (one entry per line); ScopeError names ``tns[i]`` etc."""
    return TNScope.parse(tns=lines(tns), ranges=lines(ranges), spcs=lines(spcs))


def optional_scope_from(tns: str | None, ranges: str | None, spcs: str | None) -> TNScope | None:
    if not (lines(tns) or lines(ranges) or lines(spcs)):
        return None
    return scope_from(tns, ranges, spcs)


def constraints_from(must_include: str | None, permitted_values: str | None, must_exclude: str | None,
                     enhanced: bool) -> ClaimConstraints | None:
    """Claim constraints from the form, through ``ClaimConstraints.from_json`` (the issuance
    rules of RFC 8226 §8 / RFC 9118 apply); None when every field is empty.

    A permitted-values line ``rcd={...}`` (and ``rcdi={...}``) pins Rich Call Data: the JSON is
    read and pinned in its RFC 8785 canonical form (``ca/numbers/rcd.py``), which also puts the
    claim in mustInclude."""
    include = _names(must_include)
    exclude = _names(must_exclude)
    permitted: dict[str, list[str]] = {}
    pinned: dict[str, object] = {}
    for number, line in enumerate(lines(permitted_values), start=1):
        claim, separator, value = line.partition("=")
        if not separator or not claim.strip():
            raise ClaimConstraintsError(
                f"line {number} ({line[:40]!r}) is not claim=value, e.g. orig=12025550100", field="permittedValues"
            )
        if claim.strip() in ("rcd", "rcdi"):
            if claim.strip() in pinned:
                raise ClaimConstraintsError(f"line {number}: {claim.strip()} is pinned once", field="permittedValues")
            try:
                pinned[claim.strip()] = json.loads(value)
            except ValueError:
                raise ClaimConstraintsError(f"line {number}: {claim.strip()}= takes a JSON object, e.g. "
                                            f'rcd={{"nam": "Example Retail"}}', field="permittedValues") from None
            continue
        permitted.setdefault(claim.strip(), []).append(value.strip())
    include = [name for name in include if name not in pinned]
    if not (include or exclude or permitted or pinned):
        if enhanced:
            raise ClaimConstraintsError("the RFC 9118 extension needs at least one constraint", field="enhanced")
        return None
    obj: dict[str, object] = {}
    if include:
        obj["mustInclude"] = include
    if permitted:
        obj["permittedValues"] = permitted
    if exclude:
        obj["mustExclude"] = exclude
    if enhanced and not exclude:
        obj["enhanced"] = True
    obj.update(pinned)
    return ClaimConstraints.from_json(obj)


def constraints_to_fields(constraints: ClaimConstraints | None) -> dict[str, object]:
    """The form's initial values for stored constraints (the inverse of :func:`constraints_from`)."""
    if constraints is None:
        return {"must_include": "", "permitted_values": "", "must_exclude": "", "enhanced": False}
    return {
        "must_include": ", ".join(constraints.must_include),
        "permitted_values": "\n".join(f"{claim}={value}" for claim, values in constraints.permitted_values
                                      for value in values),
        "must_exclude": ", ".join(constraints.must_exclude),
        "enhanced": constraints.enhanced and not constraints.must_exclude,
    }


def duration_from(text: str | None, *, field: str) -> dt.timedelta | None:
    """``24h``, ``1h30m`` … (ca.policy.parse_duration); None when empty."""
    if text is None or not text.strip():
        return None
    try:
        return parse_duration(text.strip())
    except ValueError as error:
        raise PolicyError(str(error), field=field) from None


def time_from(text: str | None, *, field: str) -> dt.datetime | None:
    """An RFC 3339 time or a date (midnight UTC), as the audit searches read them; None when empty."""
    if text is None or not text.strip():
        return None
    return parse_time(text.strip(), field=field)


def duration_text(seconds: int) -> str:
    return format_duration(dt.timedelta(seconds=seconds))


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def show_error(form: object, error: TNCAError) -> None:
    """Put a ``ca`` error next to the form field (or fieldset) it names."""
    add_error(form, error_to_field(error, FORM_FIELDS), error.detail)  # type: ignore[arg-type]


def save(form: object, change: Callable[[Session], T]) -> T | None:
    """Run ``change`` in the request's session and commit it; on a ``ca`` error roll back, show
    the error next to its field and answer None, so the page renders the form again."""
    session = db()
    try:
        result = change(session)
        session.commit()
    except TNCAError as error:
        session.rollback()
        show_error(form, error)
        return None
    return result
