"""The egress rules: which addresses a call whose address comes from data (a templated webhook url,
a browser's push endpoint) may reach. Pure functions, free of I/O, so that they can be fuzzed;
``activities.providers.egress`` resolves names and connects to the address these rules passed.

Refused, in every notation (``0x7f000001``, ``2130706433``, ``127.1``, ``0177.0.0.1``,
``[::ffff:127.0.0.1]``, NAT64 and 6to4 forms): loopback, private (RFC 1918), shared (CGNAT
100.64/10), link-local, unique-local, unspecified, multicast, broadcast, reserved ranges, and
the cloud metadata addresses (also by name). JOURNEYS_EGRESS_ALLOW names networks that are let
through anyway (``--dev`` adds loopback); a metadata address only if a network names it alone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What ``worker.py --dev`` adds to the allowed networks: local stand-ins for vendors.
LOOPBACK: Final = "127.0.0.0/8,::1/128"

#: Instance metadata services (AWS, GCP, Azure, OpenStack; AWS IPv6; ECS tasks; Alibaba; Oracle).
METADATA_ADDRESSES: Final = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200", "192.0.0.192"))
METADATA_NAMES: Final = frozenset({"metadata.google.internal", "metadata.goog", "metadata",
                                   "instance-data", "instance-data.ec2.internal"})

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible ::a.b.c.d
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: a.b.c.d in the last 32 bits
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local translators, refused
_BROADCAST = ipaddress.ip_address("255.255.255.255")


class Refused(ValueError):
    """A destination the policy does not let a call reach; ``rule`` names why."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"egress refused: {rule}")
        self.rule = rule


def parse_networks(text: str | None) -> tuple[Network, ...]:
    """``"10.0.0.0/8, fd12::/16, 192.0.2.7"`` as networks (an address alone is its /32 or /128)."""
    networks = []
    for part in (text or "").split(","):
        if part := part.strip():
            try:
                networks.append(ipaddress.ip_network(part, strict=True))
            except ValueError as exc:
                raise ValueError(f"'{part}' is not a network (CIDR such as 10.0.0.0/8): {exc}") from None
    return tuple(networks)


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells, in any notation a resolver or browser accepts, or None for a
    name. Raises Refused for a host that looks like a number but is none (``999.1.1.1``)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if ":" in host:  # IPv6, perhaps with a zone (fe80::1%eth0)
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise Refused("malformed address") from None
    parts = host.split(".")
    if not parts or not _numeric(parts[-1]):  # (WHATWG: a host ending in a number is IPv4)
        return None
    if len(parts) > 4:
        raise Refused("malformed address")
    numbers = [_number(part) for part in parts]
    if any(n is None for n in numbers):
        raise Refused("malformed address")
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise Refused("malformed address")
    value = last
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _numeric(part: str) -> bool:
    return part.isascii() and (part.isdigit() or (part[:2] in ("0x",) and all(
        c in "0123456789abcdef" for c in part[2:])))


def _number(part: str) -> int | None:
    """One part as inet_aton reads it: 0x hex, leading-zero octal, else decimal."""
    if not part.isascii():
        return None
    try:
        if part.startswith("0x"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part, 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped, compatible, NAT64, 6to4 (Teredo is refused)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if (ip in _COMPATIBLE and int(ip) > 1) or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def rule_of(ip: IPAddress) -> str | None:
    """The rule that refuses ``ip`` (IPv6 forms of IPv4 judged as their IPv4), or None: public."""
    ip = embedded_ipv4(ip) or ip
    if ip in METADATA_ADDRESSES:
        return "metadata address"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip == _BROADCAST:
        return "broadcast address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_link_local:
        return "link-local address"
    if ip in _CGNAT:
        return "shared address (CGNAT)"
    if any(ip in n for n in _RFC1918):
        return "private address"
    if ip in _UNIQUE_LOCAL:
        return "unique-local address"
    if ip in _SITE_LOCAL:
        return "site-local address"
    if not ip.is_global or ip in _LOCAL_NAT64:
        return "reserved address"
    return None


def refusal(ip: IPAddress, allowed: tuple[Network, ...] = ()) -> str | None:
    """Why ``ip`` may not be reached, or None. An allowed network lets its addresses through;
    a metadata address only when the network is that address alone."""
    rule = rule_of(ip)
    if rule is None:
        return None
    for candidate in {ip, embedded_ipv4(ip) or ip}:
        for network in allowed:
            if network.version == candidate.version and candidate in network and (
                    rule != "metadata address" or network.num_addresses == 1):
                return None
    return rule


def check_name(host: str) -> IPAddress | None:
    """A URL's host before it is resolved: a metadata name is refused, a literal address is
    returned (to be judged as is, never resolved), a name gives None."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        raise Refused("no host")
    if name in METADATA_NAMES:
        raise Refused("metadata address")
    if name == "localhost" or name.endswith(".localhost"):  # loopback, whatever DNS says (RFC 6761)
        return ipaddress.IPv4Address("127.0.0.1")
    return literal_address(name)


def check_url(url: str, allowed: tuple[Network, ...] = ()) -> None:
    """What a URL says by itself: http(s) only, no user:password, no refused literal address.
    (A name is checked when it is resolved, at connect time.)"""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        raise Refused("malformed url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused("only http and https")
    if "@" in parts.netloc:
        raise Refused("credentials in the url")
    literal = check_name(host or "")
    if literal is not None and (rule := refusal(literal, allowed)):
        raise Refused(rule)


@dataclass(frozen=True)
class Policy:
    """The networks let through despite the rules (JOURNEYS_EGRESS_ALLOW, plus loopback under --dev)."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str | None, *, loopback: bool = False) -> Policy:
        return cls(parse_networks(text) + (parse_networks(LOOPBACK) if loopback else ()))

    def check(self, ip: IPAddress) -> None:
        if rule := refusal(ip, self.allowed):
            raise Refused(rule)


def is_loopback(host: str) -> bool:
    """Is ``host`` this machine (a literal loopback address, or localhost)?"""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
