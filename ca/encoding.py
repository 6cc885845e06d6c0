"""Text encodings used across the authority: strict base64url and RFC 3339 timestamps.

At the bottom of ``ca/`` with config, policy, clock and errors: every part of the authority, the
ACME front end and the command line use these, and this module uses nothing of theirs. A caller
with its own error type (a token, a TN scope) catches :class:`EncodingError` and words the
problem for its field.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import unicodedata

# RFC 8555 §6.1 / RFC 7515 §2: base64url without "=" padding. RFC 8555 §6.1: "values with
# trailing '=' ... MUST be rejected".
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class EncodingError(ValueError):
    """A value is not in the encoding its field requires; the message says which and why."""


def b64url_decode(value: object, *, field: str) -> bytes:
    """Decode unpadded base64url (RFC 7515 §2), refusing padding and foreign characters."""
    if not isinstance(value, str):
        raise EncodingError(f"'{field}' must be a base64url string, got {type(value).__name__}")
    if "=" in value:
        raise EncodingError(f"'{field}' must be base64url without '=' padding (RFC 8555 §6.1)")
    if not _BASE64URL.fullmatch(value):
        raise EncodingError(f"'{field}' contains characters outside the base64url alphabet")
    if len(value) % 4 == 1:
        raise EncodingError(f"'{field}' has an impossible base64url length ({len(value)} characters)")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the checks above are exhaustive
        raise EncodingError(f"'{field}' is not valid base64url") from exc


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2), as every JOSE and ACME field carries it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rfc3339(moment: dt.datetime) -> str:
    """An aware datetime as RFC 3339 in UTC with a "Z" suffix, to whole seconds."""
    if moment.tzinfo is None:
        raise ValueError("rfc3339() needs an aware datetime")
    # isoformat, not strftime: glibc's %Y writes year 1 as "1", and RFC 3339 §5.6 has four digits.
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_rfc3339(value: object, *, field: str) -> dt.datetime:
    """Parse an RFC 3339 date-time; it must carry a UTC offset or "Z" (RFC 3339 §5.6)."""
    if not isinstance(value, str):
        raise EncodingError(f"'{field}' must be an RFC 3339 date-time string, got {type(value).__name__}")
    # RFC 3339 §5.6 date-time: full-date "T" full-time, time-offset mandatory.
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        raise EncodingError(f"'{field}' is not an RFC 3339 date-time with a time offset: {value[:40]!r}")
    try:
        return dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise EncodingError(f"'{field}' is not a valid date-time: {value[:40]!r} ({exc})") from exc


def isoformat_or_none(value: dt.datetime | None) -> str | None:
    """A stored time for JSON views (ISO 8601 with its offset, as Python writes it), None as None."""
    return value.isoformat() if value is not None else None


# Unicode general categories a name shown to people must not contain: controls (Cc), format
# characters (Cf: the bidi overrides U+202A-U+202E and isolates U+2066-U+2069, zero-width
# joiners, the BOM), line and paragraph separators (Zl, Zp), surrogates (Cs), private use (Co)
# and unassigned code points (Cn). A right-to-left override in a subject makes a page render
# "gnp.exe" as "exe.png" (Unicode Technical Report #36 §2.1, "Bidirectional Text Spoofing").
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def unsafe_text(text: str) -> str | None:
    """Why ``text`` must not be a name shown to people (a control or bidi character), or None.

    The reason names the first offending code point (``U+202E``), never the raw character, so
    it can be printed safely.
    """
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category in _UNSAFE_CATEGORIES:
            name = unicodedata.name(char, "unnamed")
            return f"character {index} is U+{ord(char):04X} ({name}, category {category}): control and bidi characters are refused"
    return None
