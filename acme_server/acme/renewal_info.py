"""The renewalInfo resource (RFC 9773 §4): an unauthenticated GET per certificate.

The path names the certificate as RFC 9773 §4.1 builds it::

    base64url(AKI keyIdentifier) "." base64url(DER serialNumber content octets)

both without padding. The window itself comes from :mod:`ca.lifecycle.renewal_info`. ``Retry-After`` is
always sent (§4.3: its absence is a long-term error for the client), and the same value bounds
HTTP caching: §7 allows caches in front of this resource, and a cached answer should not
outlive the polling interval.
"""

from __future__ import annotations

from cryptography import x509
from flask import Response

from acme_server.acme import problems
from ca.encoding import EncodingError, b64url_decode, b64url_encode, rfc3339
from acme_server.acme.responses import acme_json
from acme_server.state import current_state, db_session
from ca.lifecycle import renewal_info as ari

# RFC 5280 §4.1.2.2: at most 20 octets (21 with the leading zero of a positive INTEGER).
MAX_SERIAL_OCTETS = 21
# SHA-1 key identifiers are 20 octets; RFC 7093 allows others. Anything longer is not ours.
MAX_KEY_IDENTIFIER_OCTETS = 64


def cert_id(certificate: x509.Certificate) -> str:
    """RFC 9773 §4.1 unique identifier of ``certificate`` (it must carry an AKI keyIdentifier)."""
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    if aki is None:
        raise ValueError("the certificate's Authority Key Identifier has no keyIdentifier (RFC 9773 §2)")
    return b64url_encode(aki) + "." + b64url_encode(serial_content_octets(certificate.serial_number))


def serial_content_octets(serial: int) -> bytes:
    """The content octets of the DER INTEGER ``serial`` (X.690 §8.3: minimal two's complement)."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)


def parse_cert_id(text: str) -> tuple[bytes, int]:
    """(keyIdentifier, serial) of an RFC 9773 §4.1 identifier; AcmeProblem ``malformed`` if it is not one."""
    parts = text.split(".")
    if len(parts) != 2 or not all(parts):
        raise problems.malformed(
            "a certID is base64url(AKI keyIdentifier) '.' base64url(serial number) (RFC 9773 §4.1)"
        )
    try:
        key_identifier = b64url_decode(parts[0], field="certID keyIdentifier")
        serial_octets = b64url_decode(parts[1], field="certID serial")
    except EncodingError as exc:
        raise problems.malformed(f"{exc} (RFC 9773 §4.1)") from exc
    if len(key_identifier) > MAX_KEY_IDENTIFIER_OCTETS:
        raise problems.malformed(f"certID keyIdentifier is {len(key_identifier)} octets; no key identifier is that long")
    if len(serial_octets) > MAX_SERIAL_OCTETS:
        raise problems.malformed(f"certID serial is {len(serial_octets)} octets; RFC 5280 §4.1.2.2 allows at most 20")
    serial = int.from_bytes(serial_octets, "big", signed=True)
    if serial <= 0:
        raise problems.malformed("certID serial is not positive (RFC 5280 §4.1.2.2)")
    # X.690 §8.3.2: DER uses the fewest octets, so a leading 00 only before a set high bit.
    if serial_octets != serial_content_octets(serial):
        raise problems.malformed(
            "certID serial is not the DER encoding of a serial number (a positive INTEGER in the fewest octets, "
            "X.690 §8.3)"
        )
    return key_identifier, serial


def renewal_info(cert_id: str) -> Response:
    """GET: the RenewalInfo object (RFC 9773 §4.2) with Retry-After (§4.3)."""
    state = current_state()
    key_identifier, serial = parse_cert_id(cert_id)
    # NotFoundError → 404 malformed through the one ca-error table.
    window = ari.renewal_info(db_session(), key_identifier, serial, clock=state.clock)
    seconds = int(window.retry_after.total_seconds())
    response = acme_json(
        {"suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)}}, retry_after=seconds
    )
    response.headers["Cache-Control"] = f"public, max-age={seconds}"
    return response
