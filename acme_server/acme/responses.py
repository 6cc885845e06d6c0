"""Building successful ACME responses: JSON bodies with the headers RFC 8555 asks for."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import Response

JSON_CONTENT_TYPE = "application/json"


def acme_json(
    obj: Mapping[str, Any],
    status: int = 200,
    *,
    location: str | None = None,
    links: tuple[tuple[str, str], ...] = (),
    retry_after: int | None = None,
) -> Response:
    """A JSON response; ``links`` are (URL, rel) pairs, ``retry_after`` is in seconds."""
    response = Response(json.dumps(obj, separators=(",", ":"), ensure_ascii=False), status=status, content_type=JSON_CONTENT_TYPE)
    if location is not None:
        response.headers["Location"] = location
    for url, rel in links:
        response.headers.add("Link", f'<{url}>;rel="{rel}"')
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response
