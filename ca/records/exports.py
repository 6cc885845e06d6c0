"""Exports of audit query results: every page of a query, and CSV for spreadsheets.

``tnca audit query --all``/``--csv`` and the audit API's export endpoints stream a whole query with
:func:`iter_all` (keyset pages, so rows added meanwhile are not read twice) and write it with
:func:`csv_lines`: RFC 4180 text, a fixed set of columns per kind, and cells that a spreadsheet
would take for a formula defused. It stands apart from the queries because it only reads their
items, never the database.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ca.records.queries import Page
from ca.records.query_filters import MAX_LIMIT


def iter_all(fetch: Callable[[Any], Page], flt: Any, *, batch: int = MAX_LIMIT) -> Iterator[dict[str, Any]]:
    """Every item of a query, page by page: ``fetch`` is e.g. ``functools.partial(certificates, session)``."""
    flt = dataclasses.replace(flt, limit=batch, cursor=None)
    while True:
        page = fetch(flt)
        yield from page.items
        if page.next_cursor is None:
            return
        flt = dataclasses.replace(flt, cursor=page.next_key)


# One row per certificate: the columns an auditor's spreadsheet needs, in a fixed order.
CERTIFICATE_CSV_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("serial", lambda i: i["serial"]),
    ("kind", lambda i: i["kind"]),
    ("stage", lambda i: i["stage"]),
    ("subject", lambda i: i["subject"]),
    ("issuer", lambda i: i["issuer"]),
    ("not_before", lambda i: i["not_before"]),
    ("not_after", lambda i: i["not_after"]),
    ("issued_at", lambda i: i["issued_at"]),
    ("scope", lambda i: i["scope"]["description"]),
    ("tnauthlist", lambda i: i["scope"]["tnauthlist"]),
    ("delegation_id", lambda i: (i["delegation"] or {}).get("id")),
    ("delegate", lambda i: (i["delegation"] or {}).get("delegate")),
    ("delegation_created_by", lambda i: (i["delegation"] or {}).get("created_by")),
    ("account_id", lambda i: i["account_id"]),
    ("order_id", lambda i: i["order_id"]),
    ("authority_token_jtis", lambda i: " ".join(i["authority_token_jtis"])),
    ("fingerprint_sha256", lambda i: i["fingerprint_sha256"]),
    ("sct_count", lambda i: i["sct_count"]),
    ("revoked_at", lambda i: (i["revocation"] or {}).get("revoked_at")),
    ("revocation_reason", lambda i: (i["revocation"] or {}).get("reason")),
    ("revoked_by", lambda i: (i["revocation"] or {}).get("actor")),
    ("issue_event_seq", lambda i: (i["issue_event"] or {}).get("seq")),
    ("issued_by", lambda i: (i["issue_event"] or {}).get("actor")),
)
REVOCATION_CSV_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("serial", lambda i: i["serial"]),
    ("revoked_at", lambda i: i["revoked_at"]),
    ("reason", lambda i: i["reason"]),
    ("reason_code", lambda i: i["reason_code"]),
    ("source", lambda i: i["source"]),
    ("actor", lambda i: i["actor"]),
    ("comment", lambda i: i["comment"]),
    ("revoke_event_seq", lambda i: (i["revoke_event"] or {}).get("seq")),
    ("scope", lambda i: i["certificate"]["scope"]["description"]),
    ("delegation_id", lambda i: (i["certificate"]["delegation"] or {}).get("id")),
    ("delegate", lambda i: (i["certificate"]["delegation"] or {}).get("delegate")),
    ("account_id", lambda i: i["certificate"]["account_id"]),
    ("not_before", lambda i: i["certificate"]["not_before"]),
    ("not_after", lambda i: i["certificate"]["not_after"]),
)

# OWASP "CSV injection": a cell starting with one of these is a formula to a spreadsheet. The
# subject DN comes from a CSR, i.e. from outside; such cells get a leading apostrophe.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_lines(items: Iterable[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]) -> Iterator[str]:
    """CSV text (RFC 4180, CRLF line ends), header first, one line per item, streamable."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([name for name, _ in columns])
    yield flush()
    for item in items:
        writer.writerow([_csv_cell(get(item)) for _, get in columns])
        yield flush()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
