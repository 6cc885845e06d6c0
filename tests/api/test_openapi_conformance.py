"""The audit API against its own OpenAPI document, by schemathesis over real HTTP on loopback.

schemathesis generates requests from ``/api/v1/openapi.json`` (schema-valid ones and, in its
negative mode, schema-violating ones) and runs every check it has: no 5xx; every status code,
content type, header and body as documented; schema-valid input accepted and invalid input
refused; operations that declare security refuse requests without credentials. The server is
the real app in a thread; schemathesis runs as its own process, the way CI would run it.

``TNCA_SCHEMATHESIS_EXAMPLES`` raises the number of examples per operation (default 25).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ca.numbers.tnauthlist import TNScope
from tests.audit.support import Authority

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = os.environ.get("TNCA_SCHEMATHESIS_EXAMPLES", "25")

pytestmark = pytest.mark.e2e


def _populate(authority: Authority) -> str:
    """Certificates (one revoked), two delegations (one revoked), people, a checkpoint; an auditor token."""
    delegation = authority.delegate()
    ended = authority.delegate(TNScope.parse(ranges=["12025551000:100"]), delegate="Initech")
    serials = [authority.issue(TNScope.parse(tns=[f"1202555010{i}"]), delegation_id=delegation) for i in range(3)]
    authority.issue(TNScope.parse(ranges=["12025551000:10"]), delegation_id=ended)
    authority.issue(TNScope.parse(spcs=["1234"]), delegation_id=delegation)
    authority.revoke(serials[0])
    authority.revoke_delegation(ended)
    authority.add_user("dana", "auditor")
    assert authority.run("audit", "checkpoint").exit_code == 0
    return authority.api_token("dana")


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(authority, live_server, tmp_path):
    token = _populate(authority)
    command = [
        str(SCHEMATHESIS), "run", f"{live_server.base_url}/api/v1/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all",
        "--max-examples", EXAMPLES,
        "--workers", "1",
        "--seed", "20260301",
        "--generation-database", "none",
        "--no-color",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    assert "No issues found" in output
    assert re.search(r"Selected: (\d+)/\1\n  Tested: \1\n", output), output[-3000:]  # every operation
