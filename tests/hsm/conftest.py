"""A real SoftHSM2 token for the PKCS#11 signer tests.

SoftHSM2 reads SOFTHSM2_CONF and its token list when the PKCS#11 library is initialised, once per
process, so the token directory and a pool of tokens are set up once per test session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "tnca-test"
# Test fixture PINs for a throwaway token created in a temporary directory.
USER_PIN = "1234"
SO_PIN = "5678"


# SoftHSM2 lists the tokens it finds when the PKCS#11 library is initialised, once per process: a
# token made later stays invisible. So the session makes a pool of tokens up front and each test
# takes a fresh one.
TOKEN_POOL_SIZE = 12


@pytest.fixture(scope="session")
def softhsm_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Labels of freshly initialised tokens in a SoftHSM2 directory of this session's own."""
    if not (shutil.which("softhsm2-util") and Path(SOFTHSM_MODULE).exists()):
        pytest.fail("SoftHSM2 is not installed: run scripts/system-packages.sh (make test does)")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    labels = [f"{TOKEN_LABEL}-{n}" for n in range(TOKEN_POOL_SIZE)]
    for label in labels:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
        )
    return iter(labels)


@pytest.fixture
def softhsm_token(softhsm_pool: Iterator[str]) -> str:
    """A fresh token for this test; returns the URI of a key on it with ``{label}`` to fill in."""
    label = next(softhsm_pool, None)
    if label is None:
        pytest.fail(f"the SoftHSM2 token pool is used up; raise TOKEN_POOL_SIZE ({TOKEN_POOL_SIZE})")
    return f"pkcs11:token={label};object={{label}}?module-path={SOFTHSM_MODULE}&pin-value={USER_PIN}"
