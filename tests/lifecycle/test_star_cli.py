"""``tnca worker`` and ``tnca star``: the renewal worker's command line and the operator's view of
STAR orders (list; cancel, dry run unless --execute)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from bench import proctree
from ca.records.models_audit import AuditEvent
from protocol.rfc8739.star_support import auto_renewal, order_row, star_valid_order
from protocol.support import app, authority, client, free_port, free_port_pair, home, port, registered, table_counts  # noqa: F401
from tests.e2e.devhome import dev_stack_process
from tnca.cli import cli

REPO = Path(__file__).resolve().parents[2]


def tnca(home, *args: str):  # noqa: F811
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)


def test_worker_once_with_nothing_due_renews_nothing(registered, authority, home, session_factory):  # noqa: F811
    order = star_valid_order(registered, authority, auto_renewal())
    before = order_row(session_factory, order.url)
    certificates = table_counts(session_factory)["certificates"]
    result = tnca(home, "worker", "--once")
    assert (result.exit_code, result.stdout) == (0, "renewed 0 STAR order(s)\n")
    after = order_row(session_factory, order.url)
    assert (after.status, after.next_renewal_at, after.renewal_claim) == ("valid", before.next_renewal_at, None)
    assert table_counts(session_factory)["certificates"] == certificates


def test_worker_tick_signs_the_crls_that_are_due(home, session_factory):  # noqa: F811
    """A home that never published a CRL has one due for each issuer (ca.lifecycle.crl.refresh_due)."""
    assert table_counts(session_factory)["crls"] == 0
    assert tnca(home, "worker", "--once").exit_code == 0
    assert table_counts(session_factory)["crls"] == 2  # the root's and the issuing CA's
    assert tnca(home, "worker", "--once").exit_code == 0
    assert table_counts(session_factory)["crls"] == 2  # not due again yet


def test_worker_once_cancels_the_star_orders_of_a_revoked_delegation(registered, authority, home, session_factory):  # noqa: F811
    delegation_id = authority.delegate()
    order = star_valid_order(registered, authority, auto_renewal(), delegation_id=delegation_id)
    authority.revoke(delegation_id)
    assert tnca(home, "worker", "--once").exit_code == 0
    assert order_row(session_factory, order.url).status == "canceled"


def test_worker_refuses_a_bad_interval_naming_the_option(home):  # noqa: F811
    for value, fragment in (("0s", "must be at least 1s"), ("5 seconds", "expected a duration")):
        result = tnca(home, "worker", "--interval", value)
        assert result.exit_code == 2
        assert "--interval" in result.stderr and fragment in result.stderr


def test_worker_without_a_home_fails(tmp_path):
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "none"), "worker", "--once"])
    assert result.exit_code == 1
    assert "is not an authority home" in result.stderr


def test_worker_runs_until_sigterm_and_stops_cleanly(home, database_url):  # noqa: F811
    """What ``tnca dev`` supervises: a ready line, then a clean exit on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tnca", "--home", str(home.path), "worker", "--interval", "1s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "TNCA_DATABASE_URL": database_url},
    )
    try:
        assert process.stdout.readline().startswith("renewal worker started (interval 1s")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.endswith("renewal worker stopped\n")


def test_star_list_shows_valid_star_orders(registered, authority, home):  # noqa: F811
    order = star_valid_order(registered, authority, auto_renewal())
    order_id = order.url.rsplit("/", 1)[1]
    listed = tnca(home, "star", "list", "--json")
    assert listed.exit_code == 0
    (view,) = json.loads(listed.stdout)
    assert (view["id"], view["status"], view["certificates_issued"]) == (order_id, "valid", 1)
    assert view["auto_renewal"] == order.body["auto-renewal"]
    assert order_id in tnca(home, "star", "list").stdout
    assert tnca(home, "star", "list", "--status", "canceled").stdout == "no STAR orders\n"


def test_star_cancel_is_a_dry_run_without_execute(registered, authority, home, session_factory):  # noqa: F811
    order = star_valid_order(registered, authority, auto_renewal())
    before = table_counts(session_factory)
    result = tnca(home, "star", "cancel", order.url.rsplit("/", 1)[1], "--reason", "contract ended")
    assert result.exit_code == 0
    assert "would cancel STAR order" in result.stdout and "dry run: nothing changed" in result.stdout
    assert table_counts(session_factory) == before
    assert order_row(session_factory, order.url).status == "valid"


def test_star_cancel_execute_cancels_with_the_reason_shown_to_the_client(registered, authority, home, session_factory):  # noqa: F811
    order = star_valid_order(registered, authority, auto_renewal())
    order_id = order.url.rsplit("/", 1)[1]
    result = tnca(home, "star", "cancel", order_id, "--reason", "contract ended", "--execute")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"canceled STAR order {order_id}")
    row = order_row(session_factory, order.url)
    assert row.status == "canceled"
    fetched = registered.post(order.body["star-certificate"], None)
    assert fetched.status_code == 403
    assert fetched.get_json()["detail"] == "canceled by the operator: contract ended"
    with session_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "order.cancel")).one()
    assert event.details["by"] == "operator" and event.actor.startswith("cli")
    again = tnca(home, "star", "cancel", order_id, "--reason", "twice", "--execute")
    assert again.exit_code == 1 and "is canceled, not valid" in again.stderr


def test_star_cancel_refuses_bad_input_naming_it(registered, authority, home, session_factory):  # noqa: F811
    order = star_valid_order(registered, authority, auto_renewal())
    before = table_counts(session_factory)
    unknown = tnca(home, "star", "cancel", "nonexistent", "--reason", "x", "--execute")
    assert unknown.exit_code == 2 and "ORDER" in unknown.stderr and "no order 'nonexistent'" in unknown.stderr
    blank = tnca(home, "star", "cancel", order.url.rsplit("/", 1)[1], "--reason", " ", "--execute")
    assert blank.exit_code == 2 and "--reason" in blank.stderr
    assert table_counts(session_factory) == before


def test_the_dev_stack_runs_a_renewal_worker(tmp_path, session_factory, database_url):
    """``tnca dev`` (what ``make run`` runs) runs one renewal worker, a thread of its own process
    named ``renewal worker`` (not a ``tnca worker`` child), and stops it with the rest."""
    port = free_port()
    ct_port = free_port_pair(avoid=port)
    env = {**os.environ, "TNCA_DATABASE_URL": database_url}
    tnca_command = [sys.executable, "-m", "tnca", "--home", str(tmp_path / "dev-home")]
    subprocess.run([*tnca_command, "init", "--base-url", f"http://127.0.0.1:{port}"], check=True, env=env,
                   capture_output=True, cwd=REPO)
    with dev_stack_process([*tnca_command, "dev", "--ct-port", str(ct_port), "--workers", "1"], env=env,
                           cwd=REPO) as (dev, _banner):
        assert proctree.thread_names(dev.pid).count("renewal worker") == 1, proctree.thread_names(dev.pid)
        children = proctree.children(dev.pid)
        assert not [cmd for cmd in children.values() if cmd.split()[-1:] == ["worker"]], children
        (server,) = proctree.children(dev.pid)
    assert dev.returncode == 0
    assert not Path(f"/proc/{server}").exists()  # the server too: stopped and reaped by tnca dev
