"""``tnca dev`` (what ``make run`` runs) prints the ACME directory URL and an admin login that
works: signing in with it through the login form reaches the operator pages.

The first run makes the person ``admin`` with a generated password (``ca.records.users.ensure_dev_admin``)
and prints it once; a later run names the admin and how to set a new password, and never prints a
password again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ca.home import Home
from tests.admin.support import csrf_token_of
from tests.e2e.devhome import running_dev_stack
from tests.protocol.support import free_port, free_port_pair
from tnca.commands.dev import admin_login

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_tnca_dev_prints_an_admin_login_that_signs_in(tmp_path, session_factory, database_url):
    port = free_port()
    ct_port = free_port_pair(avoid=port)
    env = {**os.environ, "TNCA_DATABASE_URL": database_url}
    home_path = tmp_path / "dev-home"
    tnca = [sys.executable, "-m", "tnca", "--home", str(home_path)]
    subprocess.run([*tnca, "init", "--base-url", f"http://127.0.0.1:{port}"], check=True, env=env,
                   capture_output=True, cwd=REPO)
    with running_dev_stack([*tnca, "dev", "--ct-port", str(ct_port), "--workers", "1"], env=env, cwd=REPO) as banner:
        assert f"  ACME directory:  http://127.0.0.1:{port}/acme/directory\n" in banner
        assert f"  Operator pages:  http://127.0.0.1:{port}/admin/\n" in banner
        login = re.search(r"^  Admin login:     (\S+) / (\S+)   \(shown this once\)$", banner, re.M)
        assert login, banner
        name, password = login.groups()
        assert name == "admin" and len(password) == 24

        browser = requests.Session()
        base = f"http://127.0.0.1:{port}"
        token = csrf_token_of(browser.get(f"{base}/auth/login", timeout=10).text)
        response = browser.post(f"{base}/auth/login", data={"csrf_token": token, "name": name, "password": password},
                                allow_redirects=False, timeout=10)
        assert (response.status_code, response.headers["Location"]) == (302, "/admin/")
        dashboard = browser.get(f"{base}/admin/", timeout=10)
        assert dashboard.status_code == 200
        assert 'id="signed-in-role">admin<' in dashboard.text

    # The next run: the admin exists, its password is not known and not printed.
    home = Home(home_path)
    try:
        assert admin_login(home) == [
            f"  Operator pages:  http://127.0.0.1:{port}/admin/",
            f"  Admin login:     admin   (new password: tnca --home {home_path} user passwd admin)",
        ]
    finally:
        home.close()
