"""``tnca audit``: query issuances, revocations, delegations and the audit trail; checkpoints,
export and verification of the hash chain.

``tnca audit query KIND … --json`` prints exactly what ``GET /api/v1/KIND`` answers for the same
parameters: both parse them with ``ca.records.queries`` and render with the same functions. The options
are generated from the parameter tables in ``ca/records/queries.py`` (``--issued-after`` is the API's
``issued_after``).

Exit codes: 0 success (and a chain that verifies), 1 a failed operation or a chain that does
not verify, 2 bad input naming the option.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import click
from cryptography import x509
from sqlalchemy.orm import Session

from ca.records import audit_checkpoints, audit_export, audit_keys, audit_notes, audit_replay, exports, queries, query_filters
from ca.config import ROOT_CERT_FILE
from ca.home import Home
from ca.errors import AuditChainError, AuditExportError, QueryError, TNCAError
from tnca.context import BadInput, pass_home, require_home, transaction
from tnca.options import duration_option
from tnca.output import echo_json


_METAVARS = {
    "tn": "NUMBER", "range": "START:COUNT", "spc": "CODE", "at": "TIME", "issued_after": "TIME",
    "issued_before": "TIME", "revoked_after": "TIME", "revoked_before": "TIME", "after": "TIME", "before": "TIME",
    "delegation": "ID", "account": "ID", "delegate": "NAME", "serial": "HEX", "limit": "N", "cursor": "TEXT",
    "actor": "ACTOR", "subject_id": "ID", "subject_type": "TYPE", "action": "ACTION",
}


def option_name(parameter: str) -> str:
    return "--" + parameter.replace("_", "-")


@contextlib.contextmanager
def read_session(home: Home) -> Iterator[Session]:
    """The command's one transaction (tnca/context.py); a bad query parameter names its option."""
    try:
        with transaction(home) as session:
            yield session
    except QueryError as error:
        raise BadInput(option_name(error.field or "query"), error.detail) from error
    except (AuditChainError, AuditExportError):
        raise  # `tnca audit verify` reports these itself
    except TNCAError as error:
        raise click.ClickException(error.detail) from error


@click.group("audit")
def command() -> None:
    """The audit trail: queries, checkpoints, export and verification."""


# ------------------------------------------------------------------------------------------
# tnca audit query KIND
# ------------------------------------------------------------------------------------------


@command.group("query")
def query() -> None:
    """Answer audit questions (the same answers as the /api/v1 API)."""


def _query_command(
    name: str,
    parameters: Mapping[str, str],
    parse: Callable[[Mapping[str, str]], Any],
    run: Callable[[Session, Any, Home], queries.Page],
    line: Callable[[dict[str, Any]], str],
    csv_columns: Any = None,
    help_text: str = "",
) -> None:
    def callback(home: Home, as_json: bool, all_pages: bool, as_csv: bool, **options: str | None) -> None:
        params = {key: value for key, value in options.items() if value is not None}
        try:
            flt = parse(params)
        except QueryError as error:
            raise BadInput(option_name(error.field or "query"), error.detail) from error
        if as_csv and as_json:
            raise click.UsageError("give --csv or --json, not both")
        with read_session(home) as session:
            fetch = functools.partial(run, session, home=home)
            if as_csv:
                for text in exports.csv_lines(exports.iter_all(fetch, flt), csv_columns):
                    click.echo(text, nl=False)
                return
            if all_pages:
                items = list(exports.iter_all(fetch, flt))
                if as_json:
                    echo_json(items)
                else:
                    for item in items:
                        click.echo(line(item))
                return
            page = fetch(flt)
        if as_json:
            echo_json(page.to_json())
            return
        for item in page.items:
            click.echo(line(item))
        if not page.items:
            click.echo("(nothing matches)")
        if page.next_cursor is not None:
            click.echo(f"(more: add --cursor {page.next_cursor})")

    options = [
        click.option(option_name(parameter), parameter, metavar=_METAVARS.get(parameter, parameter.upper()),
                     help=description)
        for parameter, description in parameters.items()
    ]
    options += [
        click.option("--json", "as_json", is_flag=True, help="Print JSON, exactly as the API answers."),
        click.option("--all", "all_pages", is_flag=True, help="Every page (JSON: one array of items)."),
    ]
    if csv_columns is not None:
        options.append(click.option("--csv", "as_csv", is_flag=True, help="Every match as CSV (RFC 4180)."))
    else:
        options.append(click.option("--csv", "as_csv", is_flag=True, hidden=True))
    function: Any = pass_home(callback)
    for option in reversed(options):
        function = option(function)
    query.command(name, help=help_text)(function)


def _certificate_line(item: dict[str, Any]) -> str:
    delegation = item["delegation"] or {}
    revoked = item["revocation"]
    status = f"revoked {revoked['revoked_at']} ({revoked['reason']})" if revoked else item["stage"]
    return (f"{item['serial']}  {item['not_before']} .. {item['not_after']}  {item['scope']['description']}  "
            f"delegate={delegation.get('delegate', '-')}  {status}")


def _revocation_line(item: dict[str, Any]) -> str:
    return (f"{item['serial']}  revoked {item['revoked_at']}  {item['reason']}  by {item['actor']} ({item['source']})  "
            f"{item['certificate']['scope']['description']}")


def _delegation_line(item: dict[str, Any]) -> str:
    return (f"{item['id']}  {item['delegate']}  {item['scope']['description']}  {item['status']}  "
            f"{item['not_before']} .. {item['not_after'] or 'open'}  by {item['created_by']}")


def _event_line(item: dict[str, Any]) -> str:
    return f"{item['seq']:>8}  {item['occurred_at']}  {item['actor']}  {item['action']}  {item['subject_type']}:{item['subject_id']}"


def _checkpoint_line(item: dict[str, Any]) -> str:
    return f"{item['id']:>6}  event {item['seq']}  head {item['head_hash']}  signed {item['signed_at']}"


_query_command("certificates", query_filters.CERTIFICATE_PARAMETERS, query_filters.parse_certificate_filter,
               lambda session, flt, home: queries.certificates(session, flt, now=home.clock.now()),
               _certificate_line, exports.CERTIFICATE_CSV_COLUMNS,
               "Certificates: e.g. --tn 12025550100 --at 2026-03-01T12:00:00Z for every certificate that covered "
               "that number then.")
_query_command("revocations", query_filters.REVOCATION_PARAMETERS, query_filters.parse_revocation_filter,
               lambda session, flt, home: queries.revocations(session, flt),
               _revocation_line, exports.REVOCATION_CSV_COLUMNS, "Revocations, newest first.")
_query_command("delegations", query_filters.DELEGATION_PARAMETERS, query_filters.parse_delegation_filter,
               lambda session, flt, home: queries.delegations(session, flt),
               _delegation_line, None, "Delegations: --tn N --at T for those in force for N at T.")
_query_command("events", query_filters.EVENT_PARAMETERS, query_filters.parse_event_filter,
               lambda session, flt, home: queries.events(session, flt),
               _event_line, None, "Audit events, newest first.")
_query_command("checkpoints", query_filters.CHECKPOINT_PARAMETERS, query_filters.parse_checkpoint_filter,
               lambda session, flt, home: queries.checkpoints(session, flt),
               _checkpoint_line, None, "Signed checkpoints of the chain head, newest first.")


# ------------------------------------------------------------------------------------------
# verify, checkpoint, export
# ------------------------------------------------------------------------------------------


def _load_root(path: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as error:
        raise BadInput("--root", f"cannot read {path}: {error.strerror}") from error
    except ValueError as error:
        raise BadInput("--root", f"{path} is not a PEM certificate") from error


def _report(result: audit_checkpoints.Verification, as_json: bool, source: str) -> None:
    if as_json:
        echo_json({"ok": True, **result.to_json()})
        return
    click.echo(f"OK: {source}: events 1..{result.events} link up; head {result.head_hash}")
    if result.checkpoints:
        anchored = "signed under the trust anchor" if result.anchored else "signatures valid (no trust anchor given)"
        click.echo(f"    {result.checkpoints} checkpoint(s), the last at event {result.last_checkpoint_seq}; {anchored}")
    else:
        click.echo("    no checkpoints: a truncated tail could not be detected")


def _verify_against(home: Home, against: str, vkey: str | None, as_json: bool) -> None:
    """``--against``: the trail a kept checkpoint note signed is still a prefix of today's."""
    try:
        text = Path(against).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput("--against", f"cannot read {against} as UTF-8 text: {error}") from error
    try:
        if vkey is not None:
            name, public_key = audit_notes.parse_verifier_key(Path(vkey).read_text() if Path(vkey).is_file() else vkey)
        else:
            key = audit_keys.note_key(home, create=False)
            name, public_key = key.name, key.public_key
        seen = audit_notes.open_note(text, name=name, public_key=public_key)
    except AuditExportError as error:
        raise BadInput("--vkey" if "verifier key" in error.detail else "--against", error.detail) from error
    except TNCAError as error:
        raise click.ClickException(f"no checkpoint note key: {error.detail}") from error
    with read_session(home) as session:
        report = audit_notes.verify_against(session, seen, name=name, public_key=public_key)
    if as_json:
        echo_json({"ok": True, "against": seen.to_json(), **report.to_json()})
        return
    click.echo(f"OK: the trail of {report.seen} events the checkpoint signed ({seen.origin}) is a prefix of today's "
               f"{report.today} events; consistency proof of {report.proof_hashes} hash(es) verified")


@command.command("verify")
@click.option("--export", "export_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Verify an export file offline (no database, no home) instead of the home's database.")
@click.option("--against", metavar="FILE", type=click.Path(dir_okay=False),
              help="A checkpoint note kept earlier (GET /audit/checkpoint): prove the trail it signed is still a "
                   "prefix of today's, or name the first event that differs.")
@click.option("--vkey", metavar="KEY", help="With --against: the note key you pinned (name+id+base64, or a file "
              "holding it; 'tnca audit note-key' prints it). Default: the home's.")
@click.option("--root", metavar="PEM", help="Trust anchor for checkpoint certificates. Default for the database: "
              "the home's root; for --export: none (signatures are checked, their certificates are not anchored).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_home
def verify(home: Home, export_file: str | None, against: str | None, vkey: str | None, root: str | None,
           as_json: bool) -> None:
    """Recompute the hash chain and check every signed checkpoint; name the first broken link."""
    try:
        if against is not None:
            _verify_against(home, against, vkey, as_json)
            return
        if export_file is not None:
            trust_anchor = _load_root(root) if root else None
            try:
                with open(export_file, "rb") as fh:
                    result = audit_export.verify_export(fh, trust_anchor=trust_anchor)
            except OSError as error:
                raise BadInput("--export", f"cannot read {export_file}: {error.strerror}") from error
            _report(result, as_json, export_file)
            return
        home_root = home.path / ROOT_CERT_FILE
        trust_anchor = _load_root(root) if root else (_load_root(str(home_root)) if home_root.is_file() else None)
        with read_session(home) as session:
            result = audit_checkpoints.verify_all(session, trust_anchor=trust_anchor)
            disagreements = audit_replay.compare(session)
        if disagreements:
            if as_json:
                echo_json({"ok": False, "chain": result.to_json(),
                           "records": [item.to_json() for item in disagreements]})
            raise click.ClickException(
                f"the records disagree with the audit trail ({len(disagreements)} finding(s); the chain itself "
                f"verifies):\n{audit_replay.describe(disagreements)}")
        _report(result, as_json, "database")
        if not as_json:
            click.echo("    the records agree with the trail (certificates, revocations, delegations, tokens, people)")
    except AuditChainError as error:
        if as_json:
            echo_json({"ok": False, "first_broken_seq": error.seq, "error": error.detail})
        raise click.ClickException(f"the audit chain does not verify: {error.detail}") from error
    except AuditExportError as error:
        if as_json:
            echo_json({"ok": False, "line": error.line, "error": error.detail})
        raise click.ClickException(f"not a valid audit export: {error.detail}") from error


@command.command("checkpoint")
@click.option("--if-due", is_flag=True, help="Only when the chain moved and --interval passed or --max-events "
              "events were added since the last checkpoint (for cron).")
@click.option("--interval", default="1h", show_default=True, metavar="DURATION", help="With --if-due.")
@click.option("--max-events", default=1000, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="With --if-due.")
@pass_home
def checkpoint(home: Home, if_due: bool, interval: str, max_events: int) -> None:
    """Sign the chain head with the audit key (created, certified by the root, on first use)."""
    interval_delta = duration_option(interval, "--interval")
    assert interval_delta is not None  # the option has a default
    require_home(home)
    try:
        signer, created = audit_keys.ensure_checkpoint_signer(home, clock=home.clock)
    except TNCAError as error:
        raise click.ClickException(f"no audit key: {error.detail}") from error
    if created:
        click.echo(f"Created the audit key certificate {audit_keys.settings(home)[1]} (issued by the root).")
    try:
        note_key = audit_keys.note_key(home)
    except TNCAError as error:
        raise click.ClickException(f"no checkpoint note key: {error.detail}") from error
    with read_session(home) as session:
        if if_due:
            row = audit_checkpoints.checkpoint_if_due(session, signer=signer, clock=home.clock, interval=interval_delta,
                                                      max_events=max_events, note_key=note_key)
        else:
            row = audit_checkpoints.checkpoint(session, signer=signer, clock=home.clock, note_key=note_key)
        summary = None if row is None else (row.id, row.seq, row.head_hash)
    if summary is None:
        click.echo("No checkpoint due.")
    else:
        click.echo(f"Checkpoint {summary[0]}: event {summary[1]}, head {summary[2]}")


@command.command("note-key")
@pass_home
def note_key(home: Home) -> None:
    """Print the verifier key of the published checkpoint notes (name+keyid+base64), to pin."""
    require_home(home)
    try:
        click.echo(audit_keys.note_key(home).vkey)
    except TNCAError as error:
        raise click.ClickException(f"no checkpoint note key: {error.detail}") from error


@command.command("export")
@click.option("--out", metavar="FILE", type=click.Path(dir_okay=False), help="Write here (default: standard output).")
@pass_home
def export(home: Home, out: str | None) -> None:
    """Write the audit trail for offline verification (JSON lines; docs/auditor-guide.md)."""
    with read_session(home) as session:
        if out is None:
            _write_export(session, home, sys.stdout)
        else:
            with open(out, "w", encoding="utf-8", newline="\n") as fh:
                _write_export(session, home, fh)
    if out is not None:
        click.echo(f"Wrote {out}", err=True)


def _write_export(session: Session, home: Home, fh: TextIO) -> None:
    for line in audit_export.export_lines(session, clock=home.clock):
        fh.write(line + "\n")
