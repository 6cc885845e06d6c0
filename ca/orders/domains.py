"""Domain identifiers and their validation: ``http-01`` and ``dns-01`` (RFC 8555 §8.3, §8.4).

An order may carry one ``dns`` identifier beside its TNAuthList one (draft-wendt-stir-vesper-07+
and draft-wendt-stir-tn-domain-binding-00: the certificate binds the numbers to the domain of the
entity behind them). Its authorization offers ``http-01`` and ``dns-01``; the order becomes
``ready`` only when both authorizations are valid, so the two validations are one condition: if
either fails the order is ``invalid``, nothing is issued and no log sees a precertificate. A
domain validation is never reused from another order.

:func:`check_domain` refuses what is not a plain host name this authority can validate
(RFC 8555 §7.1.4 and §8.3/§8.4 read with RFC 1035 §2.3.1 and RFC 5890/5891): wildcards (no
challenge here can prove one), IP addresses, non-ASCII text (IDNs come as A-labels), A-labels
that do not decode under IDNA2008, a trailing dot, labels longer than 63 or names longer than 253
octets, single-label names. :class:`DomainValidator` runs one validation under one deadline
(``[domains] deadline``): every DNS query to the configured resolver (``[domains] resolver``),
the connection to ``[domains] http_port``, the response read to at most ``max_response_bytes``.
Redirects are not followed (RFC 8555 §8.3 allows following them; refusing is the narrower
choice, written in docs/identity.md). Addresses that are private, loopback or link-local are
refused unless ``allow_private_addresses`` (tests on loopback set it).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import ipaddress
import re
import socket
import struct
import time
from pathlib import Path

import idna
from dnslib import CLASS, QTYPE, RCODE, DNSRecord, DNSError

from typing import TYPE_CHECKING

from ca.config import DomainSettings
from ca.errors import TNCAError

if TYPE_CHECKING:
    from ca.records.models_acme import Authorization, Order

DNS_IDENTIFIER = "dns"
HTTP01 = "http-01"
DNS01 = "dns-01"
DOMAIN_CHALLENGES = (HTTP01, DNS01)
MAX_NAME_OCTETS = 253  # RFC 1035 §2.3.4, without the root label
MAX_LABEL_OCTETS = 63
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# RFC 8555 §8.3: the token is base64url, at least 128 bits.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,128}")
MAX_DNS_ANSWERS = 32
MAX_CNAME_HOPS = 8
DNS_MESSAGE_BYTES = 4096


class DomainError(TNCAError):
    """A ``dns`` identifier is not one this authority can validate (rejectedIdentifier)."""


class DomainValidationError(TNCAError):
    """An http-01 or dns-01 validation failed. ``problem`` is the RFC 8555 §6.7 type it reports:
    ``dns`` (no answer from the resolver), ``connection`` (nothing listening, timed out),
    ``incorrectResponse`` (the wrong key authorization) or ``unauthorized``."""

    def __init__(self, detail: str, *, problem: str, field: str | None = "challenge") -> None:
        super().__init__(detail, field=field)
        self.problem = problem


def check_domain(value: object) -> str:
    """The domain of a ``dns`` identifier, as the certificate will carry it (lower-case A-labels),
    or DomainError saying why it is refused."""
    if not isinstance(value, str) or not value:
        raise DomainError("a dns identifier's value must be a non-empty string", field="value")
    shown = value[:80]
    if not value.isascii():
        raise DomainError(f"dns identifier {shown!r} is not ASCII: send internationalized names as A-labels "
                          f"(xn--…, RFC 5890 §2.3.2.1)", field="value")
    if "*" in value:
        raise DomainError(f"dns identifier {shown!r} is a wildcard; a certificate binds numbers to one domain "
                          f"(tn-domain-binding: exactly one dNSName) and no challenge here proves a wildcard",
                          field="value")
    if value.endswith("."):
        raise DomainError(f"dns identifier {shown!r} ends with a dot; send the name without the root label",
                          field="value")
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        pass
    else:
        raise DomainError(f"dns identifier {shown!r} is an IP address, not a domain name (RFC 8738 has 'ip')",
                          field="value")
    name = value.lower()
    if len(name) > MAX_NAME_OCTETS:
        raise DomainError(f"dns identifier is {len(name)} octets; at most {MAX_NAME_OCTETS} (RFC 1035 §2.3.4)",
                          field="value")
    labels = name.split(".")
    if len(labels) < 2:
        raise DomainError(f"dns identifier {shown!r} has a single label; a public domain name is required",
                          field="value")
    for label in labels:
        if not _LDH_LABEL.fullmatch(label):
            raise DomainError(f"dns identifier {shown!r} has the label {label[:70]!r}: labels are 1-63 letters, "
                              f"digits and inner hyphens (RFC 1035 §2.3.1, RFC 5891 §4.2.3.1)", field="value")
        if label[2:4] == "--" and not label.startswith("xn--"):
            raise DomainError(f"dns identifier label {label!r} has hyphens in positions 3 and 4 without 'xn--' "
                              f"(RFC 5891 §4.2.3.1)", field="value")
        if label.startswith("xn--"):
            try:
                if idna.encode(idna.decode(label)).decode("ascii") != label:
                    raise idna.IDNAError("not the canonical A-label")
            except (idna.IDNAError, UnicodeError) as error:
                raise DomainError(f"dns identifier label {label!r} is not a valid IDNA2008 A-label: {error}",
                                  field="value") from None
    if labels[-1].isdigit():
        raise DomainError(f"dns identifier {shown!r} ends in an all-numeric label", field="value")
    return name


def key_authorization(token: str, thumbprint: str) -> str:
    """RFC 8555 §8.1: ``token || '.' || base64url(Thumbprint(accountKey))``."""
    return f"{token}.{thumbprint}"


def dns01_value(key_auth: str) -> str:
    """RFC 8555 §8.4: the TXT record holds base64url(SHA-256(key authorization))."""
    return base64.urlsafe_b64encode(hashlib.sha256(key_auth.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _system_resolver() -> tuple[str, int]:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1], 53
    except OSError:
        pass
    return "127.0.0.1", 53


@dataclasses.dataclass
class _Deadline:
    at: float

    def left(self, what: str) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise DomainValidationError(f"the validation deadline passed while {what}", problem="connection")
        return remaining


class DomainValidator:
    """Runs http-01 and dns-01 validations as ``[domains]`` says (module docstring)."""

    def __init__(self, settings: DomainSettings) -> None:
        self.settings = settings
        if settings.resolver:
            host, _, port = settings.resolver.rpartition(":") if settings.resolver.count(":") == 1 else (settings.resolver, "", "53")
            self.resolver = (host, int(port))
        else:
            self.resolver = _system_resolver()

    def validate(self, challenge_type: str, domain: str, token: str, key_auth: str) -> None:
        """Validate ``domain`` with ``challenge_type``; DomainValidationError when it fails."""
        if not _TOKEN.fullmatch(token):
            raise DomainValidationError("the challenge token is malformed", problem="serverInternal")
        deadline = _Deadline(time.monotonic() + self.settings.deadline.total_seconds())
        if challenge_type == HTTP01:
            self._http01(domain, token, key_auth, deadline)
        elif challenge_type == DNS01:
            self._dns01(domain, key_auth, deadline)
        else:
            raise DomainValidationError(f"unknown domain challenge {challenge_type!r}", problem="malformed")

    # ---- DNS ----------------------------------------------------------------------------------

    def _query(self, name: str, qtype: str, deadline: _Deadline) -> list[object]:
        """The answers of type ``qtype`` for ``name`` from the configured resolver (UDP, then TCP
        when the answer is truncated), within the deadline."""
        question = DNSRecord.question(name, qtype)
        packet = question.pack()
        host, port = self.resolver
        try:
            raw = self._udp(packet, host, port, deadline)
            reply = DNSRecord.parse(raw)
            if reply.header.tc:
                reply = DNSRecord.parse(self._tcp(packet, host, port, deadline))
        except DomainValidationError:
            raise
        except (DNSError, ValueError, IndexError, struct.error) as error:
            raise DomainValidationError(f"the resolver's answer for {name} {qtype} does not parse: {error}",
                                        problem="dns") from None
        if reply.header.id != question.header.id:
            raise DomainValidationError(f"the resolver answered another query (id mismatch) for {name}", problem="dns")
        if reply.header.rcode != RCODE.NOERROR:
            raise DomainValidationError(f"DNS lookup of {name} {qtype} failed: {RCODE.get(reply.header.rcode)}",
                                        problem="dns")
        # A recursive resolver answers a CNAME chain in one message (RFC 1034 §3.6.2): follow it
        # there, at most MAX_CNAME_HOPS links, never with another query.
        names = {name}
        for _ in range(MAX_CNAME_HOPS):
            targets = {str(rr.rdata.label).rstrip(".").lower() for rr in reply.rr
                       if rr.rtype == QTYPE.CNAME and str(rr.rname).rstrip(".").lower() in names}
            if targets <= names:
                break
            names |= targets
        answers = [rr for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype) and rr.rclass == CLASS.IN
                   and str(rr.rname).rstrip(".").lower() in names]
        return answers[:MAX_DNS_ANSWERS]

    def _udp(self, packet: bytes, host: str, port: int, deadline: _Deadline) -> bytes:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.settimeout(deadline.left("waiting for the resolver"))
                sock.connect((host, port))
                sock.send(packet)
                return sock.recv(DNS_MESSAGE_BYTES)
            except TimeoutError:
                raise DomainValidationError(f"the resolver {host}:{port} did not answer in time", problem="dns") from None
            except OSError as error:
                raise DomainValidationError(f"the resolver {host}:{port} cannot be reached: {error.strerror or error}",
                                            problem="dns") from None

    def _tcp(self, packet: bytes, host: str, port: int, deadline: _Deadline) -> bytes:
        try:
            with socket.create_connection((host, port), timeout=deadline.left("connecting to the resolver")) as sock:
                sock.sendall(len(packet).to_bytes(2, "big") + packet)
                data = b""
                while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                    sock.settimeout(deadline.left("reading the resolver's answer"))
                    chunk = sock.recv(DNS_MESSAGE_BYTES)
                    if not chunk:
                        break
                    data += chunk
                    if len(data) > 65537:
                        break
                return data[2:2 + int.from_bytes(data[:2], "big")] if len(data) >= 2 else b""
        except TimeoutError:
            raise DomainValidationError(f"the resolver {host}:{port} did not answer in time", problem="dns") from None
        except OSError as error:
            raise DomainValidationError(f"the resolver {host}:{port} cannot be reached over TCP: "
                                        f"{error.strerror or error}", problem="dns") from None

    def _dns01(self, domain: str, key_auth: str, deadline: _Deadline) -> None:
        """RFC 8555 §8.4: a TXT record at _acme-challenge.<domain> holds the digest."""
        name = f"_acme-challenge.{domain}"
        expected = dns01_value(key_auth)
        found = []
        for rr in self._query(name, "TXT", deadline):
            text = b"".join(rr.rdata.data).decode("ascii", "replace")
            found.append(text)
            if text == expected:
                return
        if not found:
            raise DomainValidationError(f"no TXT record at {name} (RFC 8555 §8.4)", problem="dns")
        raise DomainValidationError(
            f"the TXT records at {name} do not hold the key authorization digest (found {len(found)} record(s), "
            f"none equal to the expected value; RFC 8555 §8.4)", problem="incorrectResponse")

    # ---- HTTP ---------------------------------------------------------------------------------

    def _address(self, domain: str, deadline: _Deadline) -> str:
        addresses = [str(rr.rdata) for rr in self._query(domain, "A", deadline)]
        if not addresses:
            raise DomainValidationError(f"{domain} has no A record", problem="dns")
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if self.settings.allow_private_addresses or ip.is_global:
                return address
        raise DomainValidationError(
            f"{domain} resolves only to non-public addresses ({', '.join(addresses[:4])}); "
            f"[domains] allow_private_addresses is off", problem="connection")

    def _http01(self, domain: str, token: str, key_auth: str, deadline: _Deadline) -> None:
        """RFC 8555 §8.3: GET http://<domain>/.well-known/acme-challenge/<token> returns the key
        authorization (trailing white space ignored)."""
        address = self._address(domain, deadline)
        port = self.settings.http_port
        path = f"/.well-known/acme-challenge/{token}"
        url = f"http://{domain}:{port}{path}"
        connection = http.client.HTTPConnection(address, port, timeout=deadline.left("connecting"))
        try:
            connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", domain if port == 80 else f"{domain}:{port}")
            connection.putheader("User-Agent", "tnca-domain-validation")
            connection.putheader("Accept", "*/*")
            connection.endheaders()
            if connection.sock is not None:
                connection.sock.settimeout(deadline.left("waiting for the response"))
            response = connection.getresponse()
            if response.status != 200:
                raise DomainValidationError(
                    f"{url} answered HTTP {response.status}; RFC 8555 §8.3 expects 200 with the key authorization "
                    f"(redirects are not followed)", problem="unauthorized" if response.status in (401, 403, 404)
                    else "incorrectResponse")
            limit = self.settings.max_response_bytes
            body = b""
            while len(body) <= limit:
                if connection.sock is not None:
                    connection.sock.settimeout(deadline.left("reading the response"))
                chunk = response.read1(limit + 1 - len(body)) if hasattr(response, "read1") else response.read(limit + 1)
                if not chunk:
                    break
                body += chunk
            if len(body) > limit:
                raise DomainValidationError(f"{url} answered more than {limit} bytes; a key authorization is short",
                                            problem="incorrectResponse")
        except DomainValidationError:
            raise
        except (TimeoutError, socket.timeout):
            raise DomainValidationError(f"{url} did not answer within the validation deadline", problem="connection") from None
        except (OSError, http.client.HTTPException) as error:
            raise DomainValidationError(f"{url} cannot be fetched: {error}", problem="connection") from None
        finally:
            connection.close()
        if body.rstrip(b" \t\r\n") != key_auth.encode("ascii"):
            raise DomainValidationError(f"{url} does not hold this challenge's key authorization (RFC 8555 §8.3)",
                                        problem="incorrectResponse")


def tn_authorization(order: "Order") -> "Authorization":
    """The order's TNAuthList authorization (every order has exactly one; RFC 9448 §3)."""
    return next(authz for authz in order.authorizations if authz.identifier_type != DNS_IDENTIFIER)


def order_domain(order: "Order") -> str | None:
    """The domain of the order's ``dns`` identifier, or None when it has none."""
    return next((authz.identifier_value for authz in order.authorizations if authz.identifier_type == DNS_IDENTIFIER),
                None)
