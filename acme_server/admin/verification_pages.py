"""The auditor's checks that reach outside the records: a PASSporT (paste or upload a PASSporT or
SIP Identity header value and see each step of ``ca.auditing.passport`` as of a time — what
``tnca verify passport`` prints and ``GET /api/v1/passports/verification`` answers), and a
number's history in the transparency logs (what ``tnca monitor`` found, ``ca.auditing.number_monitor``).
"""

from __future__ import annotations

import re

from flask import Response

from acme_server.admin.common import add_error, db, page, search_parameters
from acme_server.admin.forms import PassportForm
from acme_server.state import current_state
from ca.auditing import number_monitor, passport
from ca.errors import QueryError
from ca.records.query_filters import parse_time

# The same bound as the API's parameter (a PASSporT with an x5c chain is a few KiB).
MAX_UPLOAD_BYTES = 32 * 1024
TN_DIGITS = re.compile(r"[0-9]{1,15}")  # E.164 §6


def passport_check() -> Response:
    form = PassportForm()
    verdict = None
    if form.validate_on_submit():
        text = _submitted_text(form)
        at = None
        if form.at.data and form.at.data.strip():
            try:
                at = parse_time(form.at.data.strip(), field="at")
            except QueryError as error:
                add_error(form, "at", error.detail)
        if text is not None and not form.at.errors:
            state, session = current_state(), db()
            try:
                verdict = passport.verify(
                    text, at=at, finder=passport.finder_of_home(state.home, session, state.x5u_fetcher),
                    trust=passport.trust_of_home(state.home), session=session)
            except passport.PassportInputError as error:
                add_error(form, "passport", error.detail)
    status = 400 if form.errors else 200
    return page("admin/passport.html", status=status, form=form, verdict=verdict)


def _submitted_text(form: PassportForm) -> str | None:
    upload = form.upload.data
    if upload is not None and getattr(upload, "filename", ""):
        raw = upload.stream.read(MAX_UPLOAD_BYTES + 1)
        if len(raw) > MAX_UPLOAD_BYTES:
            add_error(form, "upload", f"the file is larger than {MAX_UPLOAD_BYTES} bytes: not a PASSporT")
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            add_error(form, "upload", "the file is not UTF-8 text")
            return None
    if form.passport.data and form.passport.data.strip():
        return form.passport.data
    add_error(form, "passport", "paste a PASSporT or choose a file")
    return None


def number_history() -> Response:
    """Every certificate or precertificate the monitor found in the followed logs whose TNAuthList
    covers the number (``tnca monitor``), newest first, with how far each log was verified."""
    params = search_parameters()
    unknown = sorted(set(params) - {"tn"})
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0][:40]!r}; this page takes tn", field=unknown[0][:64])
    session, error, entries, tn = db(), None, None, params.get("tn")
    if tn is not None:
        if not TN_DIGITS.fullmatch(tn):
            error = "a telephone number is 1 to 15 digits"
        else:
            entries = number_monitor.history(session, tn)
    configured = {log.url.rstrip("/"): log.name for log in current_state().policy.ct.logs}
    return page("admin/numbers.html", status=400 if error else 200, tn=tn, error=error, entries=entries,
                logs=number_monitor.followed_logs(session), configured=configured)
