"""``tnca monitor``: follow RFC 6962 logs and report every certificate or precertificate whose
TNAuthList covers the watched numbers, whoever issued it (``ca/auditing/number_monitor.py``).

Each log is read from where the last run stopped (the home's database remembers it), the tree is
verified as it goes (consistency with the last verified head, the entries hashing to the new
root), and what it found is kept for the auditor pages (``/admin/numbers``). Run it from cron.

Exit codes: 0 every log followed (matches or not), 1 a log failed or misbehaved (the others are
still followed and kept), 2 bad input.
"""

from __future__ import annotations

import click

from ca.auditing import number_monitor
from ca.home import Home
from tnca.context import BadInput, pass_home, transaction
from tnca.options import parse_scope
from tnca.output import echo_json


@click.command("monitor")
@click.option("--log", "logs", multiple=True, required=True, metavar="URL",
              help="An RFC 6962 log (its base URL, before /ct/v1). Repeatable.")
@click.option("--tn", "tns", multiple=True, metavar="NUMBER", help="Watch this telephone number. Repeatable.")
@click.option("--range", "ranges", multiple=True, metavar="START:COUNT", help="Watch this range. Repeatable.")
@click.option("--spc", "spcs", multiple=True, metavar="CODE", help="Watch this service provider code. Repeatable.")
@click.option("--timeout", default=number_monitor.DEFAULT_TIMEOUT_SECONDS, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0.1, max=300), help="The deadline of each request to a log.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per log.")
@pass_home
def command(home: Home, logs: tuple[str, ...], tns: tuple[str, ...], ranges: tuple[str, ...], spcs: tuple[str, ...],
            timeout: float, as_json: bool) -> None:
    """Follow CT logs; report certificates whose TNAuthList covers --tn/--range/--spc."""
    if not (tns or ranges or spcs):
        raise BadInput("--tn/--range/--spc", "give the numbers to watch")
    for url in logs:
        if not url.startswith(("http://", "https://")):
            raise BadInput("--log", f"{url[:60]!r} is not an http:// or https:// URL")
    watch = parse_scope(tns, ranges, spcs)
    keys = number_monitor.log_keys(home.policy.ct.logs)
    failed = False
    results = []
    for url in logs:
        reader = number_monitor.LogReader(url, timeout=timeout)
        try:
            with transaction(home) as session:
                result = number_monitor.follow(session, reader, watch, log_key=keys.get(reader.url),
                                               now=home.clock.now)
        except number_monitor.MonitorError as error:
            failed = True
            results.append({"log": reader.url, "error": error.detail})
            if not as_json:
                click.echo(f"{reader.url}: FAILED: {error.detail}", err=True)
            continue
        results.append(result.to_json())
        if not as_json:
            signed = "" if result.sth_signature_checked else " (STH signature not checked: not a [ct] log of the policy)"
            click.echo(f"{result.log_url}: entries {result.previous_size}..{result.tree_size - 1} verified against "
                       f"the head of size {result.tree_size}{signed}; {result.stir_entries} with a TNAuthList, "
                       f"{len(result.matches)} covering {watch.describe()}")
            for found in result.matches:
                click.echo(f"  #{found.leaf_index} {found.entry_type} serial {found.serial} issuer {found.issuer} "
                           f"subject {found.subject} ({found.scope.describe()}) valid {found.not_before.isoformat()} "
                           f"– {found.not_after.isoformat()}")
    if as_json:
        echo_json(results)
    if failed:
        raise SystemExit(1)
