"""``tnca verify passport FILE``: was a PASSporT valid when the call was placed?

FILE (``-`` for standard input) holds a PASSporT or a SIP ``Identity`` header value; the checks
are those of ``ca/auditing/passport.py``, as of ``--at`` (default: the PASSporT's ``iat``).

Exit codes: 0 valid, 1 not valid (every failed check is printed), 2 unreadable input.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from cryptography import x509

from ca.auditing import passport
from ca.encoding import EncodingError, parse_rfc3339
from ca.home import Home
from tnca.context import BadInput, pass_home, transaction
from tnca.output import echo_json

# A PASSporT with an x5c chain is a few KiB; a call record line is not more than this.
MAX_INPUT_BYTES = 64 * 1024


@click.group("verify")
def command() -> None:
    """Verify what others signed: PASSporTs, as of a time."""


def parse_at(value: str | None, *, clock_now: dt.datetime) -> dt.datetime | None:
    """``--at``: an RFC 3339 time, or ``now``; None keeps the PASSporT's iat."""
    if value is None:
        return None
    if value.strip().lower() == "now":
        return clock_now
    try:
        return parse_rfc3339(value, field="--at")
    except EncodingError as error:
        raise BadInput("--at", str(error)) from None


def read_input(file: str) -> str:
    try:
        raw = click.get_binary_stream("stdin").read(MAX_INPUT_BYTES + 1) if file == "-" else _read_file(Path(file))
    except OSError as error:
        raise BadInput("FILE", f"cannot read {file}: {error.strerror or error}") from None
    if len(raw) > MAX_INPUT_BYTES:
        raise BadInput("FILE", f"{file} is larger than {MAX_INPUT_BYTES} bytes: not a PASSporT")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("FILE", f"{file} is not UTF-8 text") from None


def _read_file(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(MAX_INPUT_BYTES + 1)


@command.command("passport")
@click.argument("file", metavar="FILE")
@click.option("--at", "at", metavar="TIME", help="Judge as of this RFC 3339 time, or 'now' (default: the PASSporT's iat).")
@click.option("--roots", "roots_file", metavar="PEM", type=click.Path(dir_okay=False),
              help="More trusted roots (PEM), besides this authority's root.")
@click.option("--json", "as_json", is_flag=True, help="Print {valid, at, certificate, checks, reasons} as JSON.")
@pass_home
def verify_passport(home: Home, file: str, at: str | None, roots_file: str | None, as_json: bool) -> None:
    """Check a PASSporT (or SIP Identity header value) step by step: signature, chain, TNAuthList,
    claim constraints, validity, revocation and SCTs, as of --at."""
    text = read_input(file)
    when = parse_at(at, clock_now=home.clock.now())
    extra_roots: list[x509.Certificate] = []
    if roots_file is not None:
        try:
            extra_roots = x509.load_pem_x509_certificates(Path(roots_file).read_bytes())
        except (OSError, ValueError) as error:
            raise BadInput("--roots", f"{roots_file} holds no PEM certificates: {error}") from None
    with transaction(home) as session:
        try:
            verdict = passport.verify(text, at=when, finder=passport.finder_of_home(home, session),
                                      trust=passport.trust_of_home(home, extra_roots=extra_roots), session=session)
        except passport.PassportInputError as error:
            raise BadInput("FILE", error.detail) from None
    if as_json:
        echo_json(verdict.to_json())
    else:
        _print(verdict)
    raise SystemExit(0 if verdict.valid else 1)


def _print(verdict: passport.Verdict) -> None:
    at = verdict.at.isoformat() if verdict.at else "an unknown time"
    click.echo(f"{'VALID' if verdict.valid else 'NOT VALID'} at {at}"
               + (f": certificate {verdict.serial}" if verdict.serial else ""))
    for check in verdict.checks:
        click.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
