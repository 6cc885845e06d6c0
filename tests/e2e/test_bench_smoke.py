"""``make bench`` keeps working: the whole harness, tiny (one client process, two issuances).

No figure is asserted (speed lives in the benchmark, docs/performance.md); only that every part
of the report is there and that the issuances went through the real stack: ``tnca dev`` with its
two CT logs and the renewal worker as threads, gunicorn, the client process, the in-process SQL
count and the crypto baseline. SQLite in the run's own home, whatever database the suite uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(bool(os.environ.get("TNCA_TEST_DATABASE_URL")),
                    reason="the bench makes its own SQLite home: once, in the SQLite suite, is enough")
def test_bench_reports_every_figure_for_a_tiny_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.issuance", "--home", str(tmp_path / "home"), "--clients", "1",
         "--issuances", "2", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["issued"] == 2 and result["errors"] == {}
    # tnca dev (the logs and the renewal worker are its threads), gunicorn's master and 2 workers.
    assert result["server_processes"] == 4
    roles = result["server_cpu_ms_per_issuance_by_role"]
    assert set(roles) == {"tnca dev (2 CT logs, renewal worker, supervisor)", "ACME master", "ACME workers"}
    threads = result["tnca_dev_cpu_ms_per_issuance_by_thread"]
    assert {"ct log dev1", "ct log dev2", "renewal worker", "supervisor (main thread)"} <= set(threads)
    # The split accounts for all of tnca dev's CPU (each figure rounded to 0.01 ms).
    assert sum(threads.values()) >= roles["tnca dev (2 CT logs, renewal worker, supervisor)"] - 0.05
    assert result["server_cpu_ms_per_issuance"] > 0
    # PSS counts a page shared by the gunicorn workers and their master once, RSS once per process.
    assert 0 < result["peak_pss_mb"] < result["peak_rss_mb"]
    assert set(result["latency_ms"]) == {"end_to_end", "new-order", "authorization", "challenge", "poll-authz",
                                         "finalize", "poll-order", "download"}
    assert result["sql_statements_per_issuance"] == sum(result["sql_statements_per_step"].values()) > 0
    assert result["crypto_baseline"]["ms_per_issuance"] > 0 and result["ratio_to_crypto"] > 0
