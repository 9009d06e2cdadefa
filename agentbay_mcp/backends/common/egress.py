"""Egress rules: what a session's network may reach, parsed once and checked in one place.

A session asks for `off`, `on` (the public internet) or an allow-list of domains (`pypi.org`,
`*.github.com`: subdomains only) and CIDRs (`203.0.113.0/24`, a bare address is a /32 or /128).
The operator bounds every session: an allow-list of their own (a destination must pass both) and a
deny-list (always wins). Some destinations are never reachable whatever anyone allows (loopback,
link-local and cloud metadata, multicast, reserved, the host's own addresses); the private ranges
(10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) are denied unless the operator's allow-list names
them. `Egress` answers the two questions the enforcement asks: may a connection go to this address
(`allows_address`, the proxy and the routes), and may a request name this host (`allows_name`, the
proxy only, before it resolves the name on the host and checks every address it gets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
EgressMode = Literal["off", "on", "allow"]

MAX_RULES = 64
_MAX_RULE_CHARS = 253

#: Never reachable from a session: this host, link-local (cloud metadata at 169.254.169.254), multicast, reserved.
NEVER: tuple[Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "192.0.0.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/127",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "::/96",
        "2002::/16",
        "fe80::/10",
        "ff00::/8",
    )
)
#: Denied unless the operator's allow-list names a range inside them (a company mirror, say).
PRIVATE: tuple[Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15", "fc00::/7")
)


class RuleError(ValueError):
    """A rule that is neither a domain nor a CIDR (the message says which rule and why)."""


@dataclass(frozen=True)
class Rules:
    """A parsed allow- or deny-list."""

    domains: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @property
    def empty(self) -> bool:
        """No rule at all."""
        return not self.domains and not self.networks

    def names(self, host: str) -> bool:
        """Whether a domain rule matches `host` (`*.x` matches every name below x, not x itself)."""
        return any(_domain_matches(rule, host) for rule in self.domains)

    def holds(self, address: Address) -> bool:
        """Whether a CIDR rule contains `address`."""
        return any(address in net for net in self.networks)

    def as_strings(self) -> list[str]:
        """The rules as the user would write them back (domains first)."""
        return [*self.domains, *(str(net) for net in self.networks)]


def parse_rules(items: Iterable[str], *, what: str = "network rule") -> Rules:
    """Domains and CIDRs from user text, normalised (lowercase, IDNA, host bits dropped), deduplicated."""
    domains: list[str] = []
    networks: list[Network] = []
    for count, raw in enumerate(items, start=1):
        if count > MAX_RULES:
            raise RuleError(f"At most {MAX_RULES} {what}s are allowed.")
        if not isinstance(raw, str) or not raw.strip() or len(raw) > _MAX_RULE_CHARS:
            raise RuleError(f"Invalid {what} {str(raw)[:80]!r}: give a domain such as 'pypi.org' or a CIDR.")
        text = raw.strip()
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            domain = _domain(text, what)
            if domain not in domains:
                domains.append(domain)
            continue
        if net not in networks:
            networks.append(net)
    return Rules(tuple(domains), tuple(networks))


def _domain(text: str, what: str) -> str:
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    try:
        ascii_name = name.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise RuleError(f"Invalid {what} {text!r}: not a valid domain name.") from exc
    labels = ascii_name.split(".")
    if not all(0 < len(label) <= 63 and _label_ok(label) for label in labels) or len(labels) < 2:
        raise RuleError(
            f"Invalid {what} {text!r}: give a domain such as 'pypi.org' or '*.github.com' (subdomains), "
            "or a CIDR such as '203.0.113.0/24'."
        )
    return ("*." if wildcard else "") + ascii_name


def _label_ok(label: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in label) and not label.startswith("-")


def _domain_matches(rule: str, host: str) -> bool:
    host = host.rstrip(".").lower()
    if rule.startswith("*."):
        return host.endswith(rule[1:])
    return host == rule


def plain_address(address: Address) -> Address:
    """The address every check compares: without an IPv6 zone (`fd00::2%4` is `fd00::2`, which a
    connection reaches whatever the zone), and an IPv4-mapped IPv6 address as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


@dataclass(frozen=True)
class Egress:
    """One session's effective egress: its own request within the operator's bounds."""

    mode: EgressMode = "off"
    session: Rules = Rules()
    #: The operator's allow-list; empty: the public internet (no bound beyond the denials).
    operator: Rules = Rules()
    #: The operator's deny-list.
    denied: Rules = Rules()
    #: This host's own addresses (a session must not reach the host's services through them).
    host_addresses: tuple[Address, ...] = ()

    @property
    def raw(self) -> bool:
        """Whether the session gets routes at all (on, or CIDRs in its allow-list): else the proxy only."""
        return self.mode == "on" or (self.mode == "allow" and bool(self.session.networks))

    def reachable(self, address: Address) -> bool:
        """Not denied by the rules every session obeys (whatever its own allow-list says)."""
        address = plain_address(address)
        own = {plain_address(a) for a in self.host_addresses}
        if any(address in net for net in NEVER) or address in own or self.denied.holds(address):
            return False
        return not any(address in net for net in PRIVATE) or self.operator.holds(address)

    def allows_address(self, address: Address) -> bool:
        """May a connection go to `address` (no name involved)?"""
        address = plain_address(address)
        if self.mode == "off" or not self.reachable(address):
            return False
        if self.mode == "allow" and not self.session.holds(address):
            return False
        return self.operator.empty or self.operator.holds(address)

    def allows_name(self, host: str) -> bool:
        """May a request name `host`? (Its addresses must then each be `reachable`.)"""
        if self.mode == "off" or self.denied.names(host):
            return False
        if self.mode == "allow" and not self.session.names(host):
            return False
        return self.operator.empty or self.operator.names(host)

    def routes(self) -> list[ipaddress.IPv4Network]:
        """The IPv4 prefixes the session's namespace routes out (everything else: no route at all)."""
        if not self.raw:
            return []
        wanted = [ipaddress.IPv4Network("0.0.0.0/0")] if self.mode == "on" else _v4(self.session.networks)
        if not self.operator.empty:
            wanted = _intersect(wanted, _v4(self.operator.networks))
        denied = [*_v4(NEVER), *_v4(self.denied.networks)]
        denied += [ipaddress.IPv4Network(a) for a in self.host_addresses if isinstance(a, ipaddress.IPv4Address)]
        denied += _subtract(_v4(PRIVATE), _v4(self.operator.networks))
        return _subtract(wanted, denied)

    def describe(self) -> str:
        """One line for answers: what the session may reach."""
        if self.mode == "off":
            return "off"
        if self.mode == "on":
            return "on: the public internet"
        return "allow " + ", ".join(self.session.as_strings())


def _v4(nets: Sequence[Network]) -> list[ipaddress.IPv4Network]:
    return [net for net in nets if isinstance(net, ipaddress.IPv4Network)]


def _intersect(a: list[ipaddress.IPv4Network], b: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    out: set[ipaddress.IPv4Network] = set()
    for x in a:
        for y in b:
            if x.subnet_of(y):
                out.add(x)
            elif y.subnet_of(x):
                out.add(y)
    return sorted(out)


def _subtract(nets: list[ipaddress.IPv4Network], removed: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """`nets` minus every range in `removed`, as the fewest prefixes `address_exclude` gives."""
    current = list(nets)
    for gone in removed:
        nxt: list[ipaddress.IPv4Network] = []
        for net in current:
            if net.subnet_of(gone):
                continue
            if gone.subnet_of(net):
                nxt.extend(net.address_exclude(gone))
            else:
                nxt.append(net)
        current = nxt
    return sorted(set(current))
