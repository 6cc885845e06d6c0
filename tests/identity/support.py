"""Helpers shared by the identity tests: PASSporTs signed and checked by secsipidx, an
independent STIR implementation (its HTTP verification service fetches the x5u chain and
builds it to the given root)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.e2e.devhome import require_tool, run_tool



def sign_passport(key: Any, workdir: Path, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """The compact JWS secsipidx makes for ``header`` and ``payload`` with ``key`` (the
    certificate's key, written as SEC1 PEM as secsipidx reads it)."""
    key_path = workdir / "passport.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    result = run_tool([require_tool("secsipidx"), "-sign", "-header", json.dumps(header),
                       "-payload", json.dumps(payload), "-k", str(key_path)])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def identity_header(jws: str, x5u: str, ppt: str = "shaken") -> str:
    """RFC 8224 §4.1 Identity header value."""
    return f"{jws};info=<{x5u}>;alg=ES256;ppt={ppt}"
