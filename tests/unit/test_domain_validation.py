"""ca/orders/domains.py against a real DNS server (dnslib, UDP and TCP) and a real HTTP server on
loopback: what RFC 8555 §8.3/§8.4 validation must accept and refuse, each within one deadline."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest

from ca.config import DomainSettings
from ca.orders.domains import DNS01, HTTP01, DomainValidationError, DomainValidator, dns01_value, key_authorization
from identity.domain_support import Content, Zone, dns_server, http_server

DOMAIN = "exampleretail.test"
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTH = key_authorization(TOKEN, "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI")


def validator(dns_port: int, http_port: int = 80, *, deadline: float = 2.0, private: bool = True) -> DomainValidator:
    return DomainValidator(DomainSettings(resolver=f"127.0.0.1:{dns_port}", http_port=http_port,
                                          deadline=dt.timedelta(seconds=deadline), max_response_bytes=1024,
                                          allow_private_addresses=private))


def test_rfc8555_s8_1_key_authorization_and_s8_4_txt_value():
    """RFC 8555 §8.1 example token and thumbprint; §8.4: base64url(SHA-256(key authorization))."""
    assert KEY_AUTH == TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
    assert len(dns01_value(KEY_AUTH)) == 43 and "=" not in dns01_value(KEY_AUTH)


def test_dns01_finds_its_record_among_many_through_a_truncated_udp_answer():
    """A TXT set larger than 512 octets comes back truncated over UDP; the validator asks over TCP."""
    zone = Zone()
    for index in range(20):
        zone.add(f"_acme-challenge.{DOMAIN}", "TXT", f"unrelated-record-{index:02d}-" + "x" * 20)
    zone.add(f"_acme-challenge.{DOMAIN}", "TXT", dns01_value(KEY_AUTH))
    with dns_server(zone) as port:
        validator(port).validate(DNS01, DOMAIN, TOKEN, KEY_AUTH)


def test_dns01_refuses_a_name_without_the_record_and_a_wrong_record():
    zone = Zone()
    zone.add(DOMAIN, "A", "127.0.0.1")
    with dns_server(zone) as port:
        with pytest.raises(DomainValidationError) as missing:
            validator(port).validate(DNS01, DOMAIN, TOKEN, KEY_AUTH)
        assert missing.value.problem == "dns"
        zone.add(f"_acme-challenge.{DOMAIN}", "TXT", dns01_value(KEY_AUTH + "x"))
        with pytest.raises(DomainValidationError) as wrong:
            validator(port).validate(DNS01, DOMAIN, TOKEN, KEY_AUTH)
        assert wrong.value.problem == "incorrectResponse"


def test_dns01_follows_a_cname_the_resolver_answers_with():
    """The common delegation of _acme-challenge to another zone (RFC 1034 §3.6.2 chains)."""
    zone = Zone()
    zone.add(f"_acme-challenge.{DOMAIN}", "CNAME", "challenges.dns-provider.test")
    zone.add("challenges.dns-provider.test", "TXT", dns01_value(KEY_AUTH))
    with dns_server(zone) as port:
        validator(port).validate(DNS01, DOMAIN, TOKEN, KEY_AUTH)


def test_a_silent_resolver_fails_within_the_deadline():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        with pytest.raises(DomainValidationError) as caught:
            validator(silent.getsockname()[1], deadline=1.0).validate(DNS01, DOMAIN, TOKEN, KEY_AUTH)
        assert caught.value.problem == "dns" and time.monotonic() - started < 2.0
    finally:
        silent.close()


def test_http01_accepts_the_key_authorization_with_trailing_white_space_and_refuses_other_content():
    """RFC 8555 §8.3: the body is the key authorization; trailing white space is ignored."""
    zone, content = Zone(), Content()
    zone.add(DOMAIN, "A", "127.0.0.1")
    path = f"/.well-known/acme-challenge/{TOKEN}"
    with dns_server(zone) as dns_port, http_server(content) as http_port:
        content.paths[path] = (200, KEY_AUTH.encode() + b"\r\n", 0.0)
        validator(dns_port, http_port).validate(HTTP01, DOMAIN, TOKEN, KEY_AUTH)
        assert content.requests[-1] == (f"{DOMAIN}:{http_port}", path)
        for status, body, problem in ((200, b"x" * 5000, "incorrectResponse"), (302, b"", "incorrectResponse"),
                                      (404, b"", "unauthorized"), (200, KEY_AUTH.encode() + b"junk", "incorrectResponse")):
            content.paths[path] = (status, body, 0.0)
            with pytest.raises(DomainValidationError) as caught:
                validator(dns_port, http_port).validate(HTTP01, DOMAIN, TOKEN, KEY_AUTH)
            assert caught.value.problem == problem, (status, caught.value.detail)


def test_http01_refuses_private_addresses_unless_allowed():
    zone = Zone()
    zone.add(DOMAIN, "A", "127.0.0.1")
    with dns_server(zone) as dns_port:
        with pytest.raises(DomainValidationError) as caught:
            validator(dns_port, private=False).validate(HTTP01, DOMAIN, TOKEN, KEY_AUTH)
        assert "non-public" in caught.value.detail
