"""RFC 8555 §6.2 request authentication, as a chain of small checks.

Every POST to an ACME resource is a JWS in the flattened JSON serialization. RFC 8555 §6.2 says
the server MUST check that the JWS:

- has a protected header, exactly one signature, no unprotected header, no detached or
  unencoded payload;
- uses an "alg" that is not "none" and not a MAC, and that the server supports (otherwise
  ``badSignatureAlgorithm`` with an "algorithms" list);
- carries exactly one of "jwk" and "kid" (newAccount and certificate-key revocation use "jwk");
- carries a "nonce" the server issued and has not seen used (RFC 8555 §6.5, ``badNonce``);
- carries a "url" equal to the URL it was posted to (RFC 8555 §6.4, ``unauthorized``);
- has a valid signature; and, with "kid", names an existing account in "valid" state.

:func:`acme_post` applies them in that order; each step is a plain function that can be tested
alone and leaves its result on ``flask.g``. The JSON is parsed here, not by josepy:
``josepy.JWS.from_json`` merges an unprotected ``header`` into what it verifies,
so ``header`` and ``signatures`` members are refused before anything else looks at the body, and
``nonce``, ``url`` and ``kid`` are only ever read from the protected header.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import g, request
from sqlalchemy import bindparam, select

from acme_server.acme import problems
from ca.encoding import EncodingError, b64url_decode
from acme_server.acme.keys import SUPPORTED_ALGORITHMS, AccountKey, JWKError, load_stored_jwk, parse_jwk
from acme_server.state import current_state, db_session
from ca.records.models_acme import Account

JOSE_CONTENT_TYPE = "application/jose+json"
# A JWS carrying a CSR or an authority token is a few KiB; 64 KiB leaves room for RSA keys and
# long contact lists while bounding what an unauthenticated client can make the server parse.
MAX_JWS_BODY_BYTES = 64 * 1024

# RFC 7515 §7.2.1: the members of a flattened JWS. "header" is legal JOSE but refused by
# RFC 8555 §6.2; "signatures" belongs to the general serialization, also refused.
_FLATTENED_MEMBERS = frozenset({"protected", "payload", "signature"})
# RFC 8555 §6.2: a MAC is never acceptable on an ACME request; named to word the refusal.
_MAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


class Auth(enum.Enum):
    """How a resource's requests identify their signer (RFC 8555 §6.2)."""

    JWK = "jwk"  # newAccount: the key itself, in the "jwk" header
    KID = "kid"  # everything else: the URL of an existing, valid account
    JWK_OR_KID = "jwk or kid"  # revokeCert: an account, or the certificate's own key


class Payload(enum.Enum):
    """What the payload of a resource's requests may be."""

    JSON = "a JSON object"
    # newAccount: a JSON object; empty too with [compat] new_account_empty_payload (read as {}).
    ACCOUNT = "a JSON object (newAccount)"
    EMPTY = "empty (POST-as-GET)"  # RFC 8555 §6.3: payload is the empty string
    EMPTY_OR_JSON = "empty (POST-as-GET) or a JSON object"


@dataclasses.dataclass(frozen=True)
class FlattenedJWS:
    """A flattened JWS with its protected header decoded, signature not yet verified."""

    protected_b64: str
    payload_b64: str
    signature: bytes
    header: Mapping[str, Any]

    @property
    def signing_input(self) -> bytes:
        # RFC 7515 §5.1: ASCII(BASE64URL(protected) || '.' || BASE64URL(payload)).
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    @property
    def signing_input_without_dot(self) -> bytes | None:
        """What some SHAKEN clients sign when the payload is empty: ``ASCII(BASE64URL(protected))``
        with no "." (not RFC 7515). None when the payload is not empty: then nothing but the RFC
        7515 input can be meant."""
        return self.protected_b64.encode("ascii") if self.payload_b64 == "" else None

    def payload_bytes(self) -> bytes:
        return b64url_decode(self.payload_b64, field="payload")


# --------------------------------------------------------------------------------------------
# The steps, in RFC 8555 §6.2 order. Each raises an AcmeProblem or stores its result on g.
# --------------------------------------------------------------------------------------------


def check_content_type() -> None:
    # RFC 8555 §6.2: requests MUST use Content-Type application/jose+json; the server replies
    # 415 otherwise.
    content_type = request.mimetype
    if content_type != JOSE_CONTENT_TYPE:
        raise problems.malformed(
            f"Content-Type must be {JOSE_CONTENT_TYPE!r}, got {request.content_type or 'none'!r}", status=415
        )


class LoneSurrogate(ValueError):
    """A JSON string escapes half of a UTF-16 surrogate pair (``"\\ud800"``): valid JSON, but no
    Unicode text (RFC 7493 §2.1 forbids it), and it cannot be encoded again as UTF-8."""


def loads_i_json(data: bytes | str) -> Any:
    """``json.loads``, refusing strings (names and values) that are not Unicode text.

    Python's parser turns ``"\\ud800"`` into a lone surrogate; echoed into a problem document it
    made the UTF-8 encoding of the response fail (a 500). Refused here, every later use of the
    payload handles ordinary text only.
    """
    obj = json.loads(data)
    pending = [obj]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise LoneSurrogate("a string holds a lone UTF-16 surrogate") from None
    return obj


def check_body_size() -> None:
    length = request.content_length
    if length is not None and length > MAX_JWS_BODY_BYTES:
        raise problems.malformed(f"request body of {length} bytes exceeds the limit of {MAX_JWS_BODY_BYTES} bytes", status=413)


def parse_flattened(body: bytes | str | Mapping[str, Any], *, what: str = "request body") -> FlattenedJWS:
    """Parse a flattened JWS (a request body, or the inner JWS of keyChange and EAB).

    Every shape error, whatever the parser would have raised (KeyError, TypeError, ValueError,
    UnicodeDecodeError), becomes ``malformed``.
    """
    if isinstance(body, Mapping):
        obj: Any = body
    else:
        try:
            obj = loads_i_json(body)
        except RecursionError as exc:
            raise problems.malformed(f"{what} nests JSON too deeply") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise problems.malformed(f"{what} is not JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from exc
    if not isinstance(obj, dict):
        raise problems.malformed(f"{what} must be a flattened JWS (a JSON object), got {type(obj).__name__}")
    if "signatures" in obj:
        raise problems.malformed(f"{what}: the general JWS serialization ('signatures') is not accepted; RFC 8555 §6.2 requires the flattened serialization with one signature")
    if "header" in obj:
        raise problems.malformed(f"{what}: an unprotected 'header' is not accepted (RFC 8555 §6.2); put every parameter in 'protected'")
    missing = sorted(_FLATTENED_MEMBERS - obj.keys())
    if missing:
        raise problems.malformed(f"{what}: flattened JWS lacks {', '.join(repr(m) for m in missing)}")
    unexpected = sorted(obj.keys() - _FLATTENED_MEMBERS)
    if unexpected:
        raise problems.malformed(f"{what}: unexpected JWS member(s) {', '.join(repr(m) for m in unexpected)}")
    for member in ("protected", "payload", "signature"):
        if not isinstance(obj[member], str):
            raise problems.malformed(f"{what}: JWS member {member!r} must be a string")
    if not obj["protected"]:
        raise problems.malformed(f"{what}: the protected header is empty")
    try:
        header = loads_i_json(b64url_decode(obj["protected"], field="protected"))
        signature = b64url_decode(obj["signature"], field="signature")
        b64url_decode(obj["payload"], field="payload")
    except EncodingError as exc:
        raise problems.malformed(f"{what}: {exc}") from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise problems.malformed(f"{what}: the protected header is not JSON") from exc
    if not isinstance(header, dict):
        raise problems.malformed(f"{what}: the protected header must be a JSON object")
    if "crit" in header:
        raise problems.malformed(f"{what}: critical header parameters {header['crit']!r} are not understood (RFC 7515 §4.1.11)")
    if header.get("b64", True) is not True:
        raise problems.malformed(f"{what}: the unencoded payload option (RFC 7797) is not accepted (RFC 8555 §6.2)")
    return FlattenedJWS(obj["protected"], obj["payload"], signature, header)


def check_algorithm(jws: FlattenedJWS) -> str:
    """RFC 8555 §6.2: "alg" MUST NOT be "none" or a MAC; unsupported ones get badSignatureAlgorithm."""
    alg = jws.header.get("alg")
    if not isinstance(alg, str):
        raise problems.malformed("protected header lacks 'alg'")
    if alg not in SUPPORTED_ALGORITHMS:
        reason = "a MAC" if alg in _MAC_ALGORITHMS else ("'none'" if alg.lower() == "none" else "not supported")
        raise problems.bad_signature_algorithm(
            f"JWS alg {alg!r} is {reason}; this server accepts {', '.join(SUPPORTED_ALGORITHMS)}", SUPPORTED_ALGORITHMS
        )
    return alg


def check_key_reference(jws: FlattenedJWS, auth: Auth) -> AccountKey | None:
    """RFC 8555 §6.2: exactly one of "jwk" and "kid", and the one this resource expects.

    Returns the parsed "jwk" (None when the request uses "kid").
    """
    has_jwk, has_kid = "jwk" in jws.header, "kid" in jws.header
    if has_jwk and has_kid:
        raise problems.malformed("protected header has both 'jwk' and 'kid'; RFC 8555 §6.2 allows exactly one")
    if not has_jwk and not has_kid:
        raise problems.malformed("protected header has neither 'jwk' nor 'kid'; RFC 8555 §6.2 requires exactly one")
    if has_kid:
        if auth is Auth.JWK:
            raise problems.malformed("this resource needs the account key in 'jwk', not a 'kid' (RFC 8555 §6.2)")
        if not isinstance(jws.header["kid"], str):
            raise problems.malformed("protected header 'kid' must be a string (the account URL)")
        return None
    if auth is Auth.KID:
        raise problems.malformed("this resource needs the account URL in 'kid', not a 'jwk' (RFC 8555 §6.2)")
    return parse_header_jwk(jws.header["jwk"])


def parse_header_jwk(obj: object) -> AccountKey:
    try:
        return parse_jwk(obj)
    except JWKError as exc:
        if exc.unsupported:
            raise problems.bad_public_key(str(exc)) from exc
        raise problems.malformed(str(exc)) from exc


def redeem_nonce(jws: FlattenedJWS) -> None:
    """RFC 8555 §6.5: the nonce must be one we issued and not yet used; it is spent now, in the
    request's session: the caller commits it before anything else can fail (``acme_post``).

    The successor nonce is left on ``g.replay_nonce`` for the response, so even a badNonce
    answer carries a nonce the client can retry with.
    """
    nonce = jws.header.get("nonce")
    if nonce is None:
        raise problems.bad_nonce("protected header lacks 'nonce'; get one from newNonce (RFC 8555 §6.5)")
    try:
        # RFC 8555 §6.5.2: a nonce that is not base64url makes the JWS malformed.
        b64url_decode(nonce, field="nonce")
    except EncodingError as exc:
        raise problems.malformed(f"protected header {exc}") from exc
    valid, g.replay_nonce = current_state().nonces.redeem_and_issue(nonce, db_session().connection())
    if not valid:
        # A fixed detail, since the cause (never issued, used, expired) is not
        # something the client needs and naming it helps an attacker probe.
        raise problems.bad_nonce("JWS nonce is unknown, expired or already used; retry with the Replay-Nonce of this response")


def check_url(jws: FlattenedJWS) -> None:
    """RFC 8555 §6.4: "url" MUST equal the URL of the request, compared as strings."""
    url = jws.header.get("url")
    if not isinstance(url, str):
        raise problems.malformed("protected header lacks 'url' (RFC 8555 §6.4)")
    expected = current_state().urls.external(request.path, request.query_string.decode("latin-1"))
    if url != expected:
        raise problems.unauthorized(f"JWS header parameter 'url' incorrect: expected {expected!r}, got {url[:200]!r}")


# Built once: a statement object keeps its cache key, so each request only binds the id
# (``session.get`` builds and keys a new SELECT every call; ~70 µs more on every request).
_ACCOUNT_BY_ID = select(Account).where(Account.id == bindparam("account_id"))


def load_account(jws: FlattenedJWS) -> Account:
    """Resolve "kid" to an account that may act: it exists and its status is "valid"."""
    state = current_state()
    kid = jws.header["kid"]
    account_id = state.urls.account_id_from_kid(kid)
    account = (db_session().execute(_ACCOUNT_BY_ID, {"account_id": account_id}).scalar_one_or_none()
               if account_id is not None else None)
    if account is None:
        raise problems.account_does_not_exist(f"no account at 'kid' {kid[:200]!r}")
    if account.status == "deactivated":
        # RFC 8555 §7.3.6: a deactivated account's requests get 401 Unauthorized.
        raise problems.unauthorized(f"account {account.id} is deactivated", status=401)
    if account.status != "valid":
        raise problems.unauthorized(f"account {account.id} is {account.status}")
    return account


def verify_signature(jws: FlattenedJWS, key: AccountKey, alg: str, *, without_dot: bool = False) -> None:
    """RFC 7515 §5.2 over RFC 7515 §5.1's signing input.

    ``without_dot`` (``[compat] empty_payload_signed_without_dot``): an empty-payload JWS signed
    over the protected header alone is accepted too. Off, such a signature gets a detail that
    names the switch, so an operator can tell this client from a broken one.
    """
    try:
        key.check_algorithm(alg)
    except JWKError as exc:
        raise problems.bad_signature_algorithm(str(exc), SUPPORTED_ALGORITHMS) from exc
    if key.verify(alg, jws.signing_input, jws.signature):
        return
    bare = jws.signing_input_without_dot
    if bare is not None and key.verify(alg, bare, jws.signature):
        if without_dot:
            return
        raise problems.malformed(
            "JWS signature covers the protected header without the '.' that RFC 7515 §5.1 puts before the "
            "empty payload; this server accepts that only with [compat] empty_payload_signed_without_dot = true"
        )
    raise problems.malformed("JWS signature does not verify with the account key")


def decode_payload(jws: FlattenedJWS, mode: Payload, *, empty_account: bool = False) -> dict[str, Any] | None:
    """The payload as a JSON object, or None for POST-as-GET (RFC 8555 §6.3: payload "").

    ``empty_account`` (``[compat] new_account_empty_payload``): an empty newAccount payload
    reads as ``{}``; off, it is refused with a detail naming the switch.
    """
    if jws.payload_b64 == "":
        if mode is Payload.ACCOUNT:
            if empty_account:
                return {}
            raise problems.malformed(
                "newAccount needs a JSON object payload (RFC 8555 §7.3), got an empty one; this server reads an "
                "empty newAccount payload as {} only with [compat] new_account_empty_payload = true"
            )
        if mode is Payload.JSON:
            raise problems.malformed("this resource needs a JSON object payload; POST-as-GET is not accepted here")
        return None
    if mode is Payload.EMPTY:
        raise problems.malformed("this resource is read with POST-as-GET: the JWS payload must be empty (RFC 8555 §6.3)")
    try:
        obj = loads_i_json(jws.payload_bytes())
    except RecursionError as exc:
        raise problems.malformed("JWS payload nests JSON too deeply") from exc
    except LoneSurrogate as exc:
        raise problems.malformed(f"JWS payload is not I-JSON: {exc} (RFC 7493 §2.1)") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise problems.malformed("JWS payload is not JSON") from exc
    if not isinstance(obj, dict):
        raise problems.malformed(f"JWS payload must be a JSON object, got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------------------------
# The decorator that runs the chain.
# --------------------------------------------------------------------------------------------


def acme_post(*, auth: Auth, payload: Payload) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate an ACME POST, then call the handler.

    content type → size → parse → alg → jwk xor kid → nonce → url → account → signature →
    payload. Results: ``g.jws``, ``g.account`` (None when signed with "jwk"), ``g.account_key``
    (the key that signed), ``g.payload`` (None for POST-as-GET).
    """

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def authenticated(*args: Any, **kwargs: Any) -> Any:
            check_content_type()
            check_body_size()
            jws = parse_flattened(request.get_data(cache=False))
            alg = check_algorithm(jws)
            header_key = check_key_reference(jws, auth)
            redeem_nonce(jws)
            try:
                check_url(jws)
                account = load_account(jws) if header_key is None else None
            finally:
                # The spent nonce stays spent whatever happens next (RFC 8555 §6.5): committed
                # with the account's lookup, one short transaction before the handler's own.
                db_session().commit()
            key = header_key if header_key is not None else load_stored_jwk(account.jwk)
            compat = current_state().compat
            verify_signature(jws, key, alg, without_dot=compat.empty_payload_signed_without_dot)
            g.jws, g.account, g.account_key = jws, account, key
            g.payload = decode_payload(jws, payload, empty_account=compat.new_account_empty_payload)
            return handler(*args, **kwargs)

        authenticated.acme_auth = auth  # type: ignore[attr-defined]
        authenticated.acme_payload = payload  # type: ignore[attr-defined]
        return authenticated

    return decorate
