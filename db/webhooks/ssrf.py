"""The SSRF guard: a webhook may only reach the public internet.

Checked at registration and again before every delivery (DNS answers change: a name
that resolved to a public address yesterday may point at 10.0.0.5 today). The delivery
then connects to the very address vetted here (db/webhooks/delivery.py), so a second
DNS lookup cannot slip a private address in between, and redirects are never followed.

`WEBHOOK_ALLOW_PRIVATE_HOSTS=true` (development, tests) allows plain http and private
or loopback addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# Tests replace this to play a DNS server whose answers change.
getaddrinfo = socket.getaddrinfo


class UnsafeUrl(ValueError):
    """The URL may not be used for a webhook; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (TLS verification and the Host header use it)
    port: int
    path: str  # path and query
    address: str  # the vetted IP address to connect to


def parse(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeUrl("must be an https URL")
    if not parts.hostname:
        raise UnsafeUrl("must name a host")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("has an invalid port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(url: str, *, allow_private: bool) -> Target:
    """The URL's parts and one address to connect to; `UnsafeUrl` unless every address
    the host resolves to is public (one private answer among public ones is refused:
    which one a client picks is not ours to decide)."""
    scheme, host, port, path = parse(url, allow_private=allow_private)
    try:
        answers = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"host {host!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    if not addresses:
        raise UnsafeUrl(f"host {host!r} does not resolve")
    if not allow_private:
        private = [a for a in addresses if not _public(a)]
        if private:
            raise UnsafeUrl(f"host {host!r} resolves to a non-public address ({private[0]})")
    return Target(scheme, host, port, path, addresses[0])
