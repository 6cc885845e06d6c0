"""The client's address, as rate limits and login throttling count it.

Without a configured proxy it is the socket's peer (``request.remote_addr``), whatever headers
say: X-Forwarded-For is a header any client can send. Behind reverse proxies listed in
``tnca.toml [server] trusted_proxies`` it is read from X-Forwarded-For, right to left: each proxy
appends the address it received the request from, so the right-most entry that is not one of
our proxies is the address that reached the first of them. Entries left of it were written by
the client and are ignored. A malformed entry ends the walk at the last trusted hop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from flask import request

from acme_server.state import current_state

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# More X-Forwarded-For entries than any real chain of proxies has are not read.
MAX_FORWARDED_ENTRIES = 20


def client_address() -> str:
    """The current request's client address (see the module docstring)."""
    return resolve(request.remote_addr or "unknown", request.headers.getlist("X-Forwarded-For"),
                   current_state().trusted_proxies)


def resolve(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address given the socket's ``peer``, the X-Forwarded-For header lines and the
    trusted proxy networks."""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    entries = [entry.strip() for line in forwarded_for for entry in line.split(",")][-MAX_FORWARDED_ENTRIES:]
    address = peer
    for entry in reversed(entries):
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            return address
        address = entry
        if not _is_trusted(entry, trusted):
            return entry
    return address


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
