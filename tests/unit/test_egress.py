"""Egress rules, routes and the proxy's request parsing: the policy's arithmetic, without a network."""

from __future__ import annotations

import ipaddress

import pytest

from agentbay_mcp.backends.common.egress import MAX_RULES, NEVER, PRIVATE, Egress, RuleError, Rules, parse_rules
from agentbay_mcp.backends.local.egress_proxy import RefusedError, _parse
from agentbay_mcp.backends.records import NetworkPolicy
from agentbay_mcp.errors import InvalidArgumentError
from agentbay_mcp.services.network.policy import requested_policy

ip = ipaddress.ip_address


def covered(routes: list[ipaddress.IPv4Network], address: str) -> bool:
    return any(ip(address) in net for net in routes)


def test_rules_are_normalised_and_bad_ones_say_why() -> None:
    rules = parse_rules(["PyPI.org", "*.GitHub.com.", "203.0.113.7/24", "2001:db8::1", "pypi.org", "bücher.example"])
    assert rules.domains == ("pypi.org", "*.github.com", "xn--bcher-kva.example")
    assert [str(n) for n in rules.networks] == ["203.0.113.0/24", "2001:db8::1/128"]
    for bad in ("", "   ", "not a domain", "-x.com", "*.", "com", "a..b", "x" * 300, "*.*.x.com", "10.0.0.0/33"):
        with pytest.raises(RuleError):
            parse_rules([bad])
    with pytest.raises(RuleError, match=f"At most {MAX_RULES}"):
        parse_rules([f"h{i}.test" for i in range(MAX_RULES + 1)])


def test_wildcards_match_subdomains_only() -> None:
    rules = parse_rules(["*.github.com", "pypi.org"])
    assert [rules.names(h) for h in ("api.github.com", "a.b.github.com", "github.com", "evilgithub.com")] == [
        True,
        True,
        False,
        False,
    ]
    assert [rules.names(h) for h in ("pypi.org", "PYPI.ORG.", "files.pypi.org")] == [True, True, False]


def test_on_means_the_public_internet_only() -> None:
    egress = Egress(mode="on", host_addresses=(ip("198.51.100.77"),))
    for address in ("8.8.8.8", "203.0.113.5", "2606:4700::1111"):
        assert egress.allows_address(ip(address)), address
    never = ("127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "::ffff:127.0.0.1")
    private = ("10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd00::1", "::ffff:10.0.0.1")
    for address in (*never, *private, "198.51.100.77"):  # ...and this host's own address
        assert not egress.allows_address(ip(address)), address
    routes = egress.routes()
    assert covered(routes, "8.8.8.8")
    assert covered(routes, "203.0.113.5")
    for address in ("127.0.0.1", "169.254.169.254", "10.0.2.2", "172.20.0.1", "192.168.0.1", "198.51.100.77"):
        assert not covered(routes, address), address
    # Exactly the complement: every address is either routed or in a denied range, never both.
    for address in ("1.1.1.1", "100.63.255.255", "100.128.0.0", "172.32.0.0", "198.51.100.76", "223.255.255.255"):
        denied = any(ip(address) in n for n in (*NEVER, *PRIVATE)) or address == "198.51.100.77"
        assert covered(routes, address) != denied, address


def test_an_ipv6_zone_or_an_embedded_ipv4_does_not_sidestep_the_checks() -> None:
    egress = Egress(mode="on", operator=parse_rules(["fd00::/8"]), host_addresses=(ip("fd00::2"),))
    assert egress.allows_address(ip("fd00::3"))  # the operator named the range
    for address in ("fd00::2", "fd00::2%4", "fd00::2%eth0", "::ffff:127.0.0.1", "::7f00:1", "64:ff9b:1::a00:1"):
        assert not egress.allows_address(ip(address)), address


def test_off_allows_nothing_and_routes_nothing() -> None:
    egress = Egress()
    assert not egress.allows_address(ip("8.8.8.8"))
    assert not egress.allows_name("pypi.org")
    assert egress.routes() == []
    assert not egress.raw


def test_allow_lists_and_the_operators_bounds() -> None:
    session = parse_rules(["pypi.org", "203.0.113.0/24", "10.5.0.0/16"])
    alone = Egress(mode="allow", session=session)
    assert alone.allows_name("pypi.org")
    assert not alone.allows_name("evil.test")
    assert alone.allows_address(ip("203.0.113.9"))
    assert not alone.allows_address(ip("8.8.8.8"))
    assert not alone.allows_address(ip("10.5.0.1"))  # private: only if the operator names it
    assert alone.routes() == [ipaddress.IPv4Network("203.0.113.0/24")]

    operator = parse_rules(["10.0.0.0/8", "203.0.113.0/25", "pypi.org"])
    bounded = Egress(mode="allow", session=session, operator=operator)
    assert bounded.allows_address(ip("10.5.0.1"))  # the operator named the private range
    assert bounded.allows_address(ip("203.0.113.9"))
    assert not bounded.allows_address(ip("203.0.113.200"))
    assert bounded.routes() == [ipaddress.IPv4Network("10.5.0.0/16"), ipaddress.IPv4Network("203.0.113.0/25")]

    denied = Egress(mode="on", denied=parse_rules(["8.8.8.0/24", "evil.test"]))
    assert not denied.allows_address(ip("8.8.8.8"))
    assert denied.allows_address(ip("8.8.4.4"))
    assert not denied.allows_name("evil.test")
    assert denied.allows_name("good.test")
    assert not covered(denied.routes(), "8.8.8.8")
    assert covered(denied.routes(), "8.8.4.4")
    # A domain-only list: no routes at all, the proxy is the only way.
    assert not Egress(mode="allow", session=parse_rules(["pypi.org"])).raw


def test_requested_policy_reads_the_models_argument_within_the_operators_mode() -> None:
    assert requested_policy(None, "on-request") == NetworkPolicy(mode="off")
    assert requested_policy(None, "on") == NetworkPolicy(mode="on")
    assert requested_policy(True, "on-request") == requested_policy("on", "on") == NetworkPolicy(mode="on")
    assert requested_policy(False, "on") == NetworkPolicy(mode="off")
    assert requested_policy(["PyPI.org", "203.0.113.1/24"], "on") == NetworkPolicy(
        mode="allow", allow=("pypi.org", "203.0.113.0/24")
    )
    assert requested_policy("off", "off") == NetworkPolicy(mode="off")
    for bad, said in (("sure", "network must be"), ([], "empty allow-list"), (["x y"], "Invalid network rule")):
        with pytest.raises(InvalidArgumentError, match=said):
            requested_policy(bad, "on")
    with pytest.raises(InvalidArgumentError, match="network=off"):
        requested_policy("on", "off")
    assert NetworkPolicy(mode="allow", allow=("a.test", "b.test")).describe() == "a.test,b.test"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443", ("CONNECT", "pypi.org", 443, b"")),
        (b"CONNECT [2001:db8::1]:8443 HTTP/1.1", ("CONNECT", "2001:db8::1", 8443, b"")),
        (
            b"GET http://Example.COM:8080/a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nProxy-Connection: keep-alive\r\n"
            b"Proxy-Authorization: Basic eA==\r\nAccept: */*",
            (
                "GET",
                "example.com",
                8080,
                b"GET /a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            ),
        ),
        (  # the Host sent is the URL's, whatever the client said
            b"GET http://pypi.org/simple HTTP/1.1\r\nHost: evil.test\r\nAccept: */*",
            (
                "GET",
                "pypi.org",
                80,
                b"GET /simple HTTP/1.1\r\nHost: pypi.org\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            ),
        ),
        (
            b"GET http://x.test HTTP/1.0",
            ("GET", "x.test", 80, b"GET / HTTP/1.0\r\nHost: x.test\r\nConnection: close\r\n\r\n"),
        ),
    ],
)
def test_the_proxy_reads_connect_and_absolute_requests(head: bytes, expected: tuple[str, str, int, bytes]) -> None:
    assert _parse(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x.test",  # not a proxy request
        b"CONNECT x.test HTTP/1.1",  # no port
        b"CONNECT x.test:99999 HTTP/1.1",
        b"GET https://x.test/ HTTP/1.1",  # https goes through CONNECT
        b"GET http://x.test:bad/ HTTP/1.1",
        b"HELLO",
        b"GET http://x.test/ SPDY/3",
        "CONNECT a:\u00b2 HTTP/1.1".encode(),  # a digit to isdigit(), not to int()
        b"GET http://[::1 HTTP/1.1",
        b"CONNECT [fd00::2%4]:80 HTTP/1.1",  # a zone: the checks compare addresses without one
    ],
)
def test_the_proxy_refuses_what_it_does_not_serve(head: bytes) -> None:
    with pytest.raises(RefusedError) as refused:
        _parse(head)
    assert refused.value.status.startswith("400")


def test_rules_round_trip_as_strings() -> None:
    rules = Rules(domains=("a.test",), networks=(ipaddress.ip_network("203.0.113.0/24"),))
    assert parse_rules(rules.as_strings()) == rules
