"""From a model's `network` argument to a `NetworkPolicy`, within the operator's mode.

A model may say `true`/`"on"` (the public internet), `false`/`"off"`, or give an allow-list of
domains and CIDRs. The operator's mode decides whether it may ask at all (`off`: never;
`on-request`: when it asks; `on`: on unless it asks for less). The operator's allow- and deny-lists
are not applied here: the backend applies them to every connection (see backends/common/egress.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from agentbay_mcp.backends.common.egress import MAX_RULES, RuleError, parse_rules
from agentbay_mcp.backends.records import NetworkPolicy
from agentbay_mcp.errors import InvalidArgumentError

OperatorMode = Literal["off", "on-request", "on"]
NetworkRequest = bool | str | Sequence[str] | None

OPERATOR_OFF = (
    "This server does not allow network access from sessions (operator setting network=off, the default); "
    "use network='off', or ask the operator to start the server with --network on-request."
)


def requested_policy(value: NetworkRequest, operator: OperatorMode) -> NetworkPolicy:
    """The policy a `network` argument asks for (None: the operator's default), or InvalidArgumentError."""
    if value is None:
        return NetworkPolicy(mode="on" if operator == "on" else "off")
    if value is True or value == "on":
        policy = NetworkPolicy(mode="on")
    elif value is False or value == "off":
        policy = NetworkPolicy(mode="off")
    elif isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgumentError(
            f"network must be 'off', 'on' (the public internet) or a list of domains and CIDRs such as "
            f"['pypi.org', '*.github.com', '203.0.113.0/24'] (got {str(value)[:80]!r})."
        )
    elif not value:
        raise InvalidArgumentError("An empty allow-list allows nothing: use network='off' for no network.")
    else:
        try:
            rules = parse_rules(value)
        except RuleError as exc:
            raise InvalidArgumentError(f"{exc} At most {MAX_RULES} rules.") from exc
        policy = NetworkPolicy(mode="allow", allow=tuple(rules.as_strings()))
    if policy.enabled and operator == "off":
        raise InvalidArgumentError(OPERATOR_OFF)
    return policy
