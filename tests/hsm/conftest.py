"""A real SoftHSM2 token for the PKCS#11 signer tests.

SoftHSM2 reads SOFTHSM2_CONF when the PKCS#11 library is initialised, once per process, so the
token directory is set up once per test session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "tnca-test"
# Test fixture PINs for a throwaway token created in a temporary directory.
USER_PIN = "1234"
SO_PIN = "5678"


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Initialise a fresh SoftHSM2 token and return the PKCS#11 URI prefix for keys on it."""
    if not (shutil.which("softhsm2-util") and Path(SOFTHSM_MODULE).exists()):
        pytest.fail("SoftHSM2 is not installed: run scripts/system-packages.sh (make test does)")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL, "--pin", USER_PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
    )
    return f"pkcs11:token={TOKEN_LABEL};object={{label}}?module-path={SOFTHSM_MODULE}&pin-value={USER_PIN}"
