"""Rich Call Data (RFC 9795): the ``rcd`` object, its ``rcdi`` integrity digests, and how a
delegation pins both in the claim constraints of its certificates.

Pinning (RFC 9795's constraints section, read with RFC 8226 §8 / RFC 9118): ``mustInclude``
lists ``rcd`` (and ``rcdi`` when the object references content by URI), and ``permittedValues``
holds the one permitted ``rcd`` (and ``rcdi``) value as a UTF8String. JSON has many spellings of
one value, so this authority writes the RFC 8785 canonical form (JCS: keys sorted by UTF-16 code
units, no white space, ECMAScript numbers) and a verifier compares a PASSporT's value by the same
canonical form (:func:`canonical`), never by its spelling: ``{"nam": "A", "icn": "…"}`` and
``{"icn":"…","nam":"A"}`` are one value. (For the ASCII keys of RCD objects RFC 8785 and the
RFC 8225 §9 deterministic form agree.)

``rcdi`` (RFC 9795): an object mapping JSON Pointers (RFC 6901) into ``rcd`` to digests of the
content each URI points to, written ``<alg>-<base64 digest>`` (Subresource-Integrity style:
``sha256-``, ``sha384-``, ``sha512-``). Every URI-referenced resource (``icn``, ``jcl``, and
URIs inside an inline ``jcd`` jCard) needs an entry; plain strings (``nam``, ``apn``) have none.
:func:`rcdi_problems` finds what a verification service must refuse: a pointer that leads
nowhere, a URI without a digest, a malformed digest, and, given the fetched content, a digest
that does not match.

RFC 9795's body was not available while this was written (``docs/identity.md`` says which rules
follow which text); where a rule here goes beyond what was checked, its comment says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import rfc8785

from ca.errors import ClaimConstraintsError

RCD_CLAIM = "rcd"
RCDI_CLAIM = "rcdi"
# RFC 9795 "PASSporT RCD Claim Types" registry: the keys an rcd object may carry.
RCD_KEYS = ("nam", "apn", "icn", "jcd", "jcl")
_URI_KEYS = ("icn", "jcl")
# RFC 9795 rcdi digest algorithms (Subresource Integrity names) and their hash functions.
DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
# Every pinned value inflates every certificate and every logged precertificate (spec §4.7 4).
MAX_PINNED_BYTES = 4096


def canonical(value: Any, *, field: str = "rcd") -> str:
    """The RFC 8785 canonical JSON text of ``value``; ClaimConstraintsError if it has none
    (NaN, infinities, integers beyond IEEE 754 doubles, non-string keys, lone surrogates)."""
    try:
        return rfc8785.dumps(value).decode("utf-8")
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeError, RecursionError) as error:
        raise ClaimConstraintsError(f"{field} has no RFC 8785 canonical JSON form: {error}", field=field) from None


def same_json(value: Any, permitted: str) -> bool:
    """Does a PASSporT claim value equal a permitted value written as JSON text, compared in the
    RFC 8785 canonical form? False when ``permitted`` is not JSON or either has no canonical form."""
    try:
        return canonical(value) == canonical(json.loads(permitted))
    except (ValueError, ClaimConstraintsError, RecursionError):
        return False


def _https(value: object) -> bool:
    return isinstance(value, str) and value.startswith("https://") and len(value) > len("https://") and value.isprintable()


def check_rcd(rcd: object) -> dict[str, Any]:
    """Refuse (ClaimConstraintsError naming the member) an ``rcd`` object a delegation must not
    pin: not an object, a key outside the registry, ``nam``/``apn`` not strings, ``icn``/``jcl``
    not https URIs, ``jcd`` not a jCard array, ``jcd`` and ``jcl`` together (RFC 9795: MUST NOT)."""
    if not isinstance(rcd, Mapping) or not rcd:
        raise ClaimConstraintsError("rcd must be a non-empty JSON object (RFC 9795)", field="rcd")
    for key, value in rcd.items():
        if key not in RCD_KEYS:
            raise ClaimConstraintsError(
                f"rcd member {key!r} is not a registered RCD claim type ({', '.join(RCD_KEYS)}; RFC 9795)",
                field=f"rcd.{key}")
        if key in ("nam", "apn") and (not isinstance(value, str) or not value):
            raise ClaimConstraintsError(f"rcd.{key} must be a non-empty string", field=f"rcd.{key}")
        if key in _URI_KEYS and not _https(value):
            raise ClaimConstraintsError(f"rcd.{key} must be an https URI", field=f"rcd.{key}")
        if key == "jcd" and not (isinstance(value, list) and value and value[0] == "vcard"):
            raise ClaimConstraintsError('rcd.jcd must be a jCard array ["vcard", [...]] (RFC 7095)', field="rcd.jcd")
    if "jcd" in rcd and "jcl" in rcd:
        raise ClaimConstraintsError("rcd must not carry both jcd and jcl (RFC 9795)", field="rcd.jcl")
    text = canonical(dict(rcd))
    if len(text.encode()) > MAX_PINNED_BYTES:
        raise ClaimConstraintsError(f"rcd is {len(text.encode())} bytes canonicalized; the limit is {MAX_PINNED_BYTES}",
                                    field="rcd")
    return json.loads(text)


def uri_pointers(rcd: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(JSON Pointer, URI) of every URI-referenced resource of ``rcd``: ``/icn``, ``/jcl`` and
    every jCard property of value type ``uri`` inside ``/jcd`` (``/jcd/1/<i>/3``)."""
    for key in _URI_KEYS:
        if isinstance(rcd.get(key), str):
            yield f"/{key}", rcd[key]
    jcard = rcd.get("jcd")
    if isinstance(jcard, list) and len(jcard) > 1 and isinstance(jcard[1], list):
        for index, prop in enumerate(jcard[1]):
            # RFC 7095 §3.3: [name, parameters, value type, value]
            if isinstance(prop, list) and len(prop) >= 4 and prop[2] == "uri" and isinstance(prop[3], str):
                yield f"/jcd/1/{index}/3", prop[3]


def resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901 evaluation; KeyError when the pointer leads nowhere."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    node = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            if token not in node:
                raise KeyError(pointer)
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or (token != "0" and token.startswith("0")) or int(token) >= len(node):
                raise KeyError(pointer)
            node = node[int(token)]
        else:
            raise KeyError(pointer)
    return node


def digest(content: bytes, algorithm: str = "sha256") -> str:
    """The rcdi form of a digest of ``content``: ``sha256-<base64>``."""
    return f"{algorithm}-{base64.b64encode(DIGESTS[algorithm](content).digest()).decode('ascii')}"


def _parse_digest(value: object) -> tuple[str, bytes] | None:
    if not isinstance(value, str) or "-" not in value:
        return None
    algorithm, _, encoded = value.partition("-")
    if algorithm not in DIGESTS:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return (algorithm, raw) if len(raw) == DIGESTS[algorithm]().digest_size else None


def rcdi_problems(rcd: object, rcdi: object, resources: Mapping[str, bytes] | None = None) -> list[str]:
    """What a verification service finds wrong with ``rcdi`` for ``rcd`` (RFC 9795); [] when right.

    ``resources`` maps a URI to the content the verifier fetched from it; a digest is compared
    only for URIs given there (this function fetches nothing).
    """
    problems: list[str] = []
    if not isinstance(rcdi, Mapping):
        return [f"rcdi must be a JSON object of JSON Pointer -> digest (got {type(rcdi).__name__})"]
    if not isinstance(rcd, Mapping):
        return ["rcdi is present but rcd is not an object"]
    for pointer, value in rcdi.items():
        try:
            target = resolve_pointer(rcd, pointer)
        except KeyError:
            problems.append(f"rcdi pointer {pointer!r} does not resolve inside rcd (RFC 6901)")
            continue
        parsed = _parse_digest(value)
        if parsed is None:
            problems.append(f"rcdi {pointer!r} digest is not '<sha256|sha384|sha512>-<base64 digest>'")
            continue
        if resources is not None and isinstance(target, str) and target in resources:
            algorithm, expected = parsed
            if DIGESTS[algorithm](resources[target]).digest() != expected:
                problems.append(f"rcdi {pointer!r}: the content at {target} does not match its {algorithm} digest")
    for pointer, uri in uri_pointers(rcd):
        if pointer not in rcdi:
            problems.append(f"rcd references {uri} at {pointer} but rcdi has no digest for it (RFC 9795)")
    return problems


def pinned_constraints(rcd: object, rcdi: object | None = None) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """(mustInclude, permittedValues) pinning exactly ``rcd`` (and ``rcdi``) in canonical JSON.

    Refuses an ``rcd`` that references content by URI without an ``rcdi`` covering it: a pinned
    icon URI alone lets the image change behind it (spec §4.7 choice 2).
    """
    checked = check_rcd(rcd)
    pointers = list(uri_pointers(checked))
    if pointers and rcdi is None:
        pointer, uri = pointers[0]
        raise ClaimConstraintsError(
            f"rcd references {uri} at {pointer}; pin its digest too (rcdi, RFC 9795), e.g. from a local copy of the content",
            field="rcdi")
    if rcdi is None:
        return (RCD_CLAIM,), ((RCD_CLAIM, (canonical(checked),)),)
    problems = rcdi_problems(checked, rcdi)
    if problems:
        raise ClaimConstraintsError(problems[0], field="rcdi")
    rcdi_text = canonical(dict(rcdi), field="rcdi")
    return (RCD_CLAIM, RCDI_CLAIM), ((RCD_CLAIM, (canonical(checked),)), (RCDI_CLAIM, (rcdi_text,)))
