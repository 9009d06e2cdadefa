"""Scopes: which tools a principal may call, keyed by toolset and by the tools' `readOnlyHint`.

| scope            | allows                                                                  |
|------------------|-------------------------------------------------------------------------|
| `all`            | every tool of every toolset                                             |
| `read`           | every read-only tool (`readOnlyHint: true`) of every toolset            |
| `<toolset>`      | every tool of that toolset: `sessions`, `commands`, `files`, `desktop`  |
| `<toolset>:read` | the read-only tools of that toolset (e.g. `desktop:read`: screenshots)  |

A new toolset (say `desktop`) is covered the day it lands: its tools are classified by the toolset
that registered them and by their own annotations, so nothing here lists tool names. Resources
(`agentbay://sessions...`) count as read-only tools of the `sessions` toolset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer

from agentbay_mcp.errors import InvalidArgumentError

ALL = "all"
READ = "read"
_SCOPE = re.compile(r"^[a-z][a-z0-9_-]{0,31}(:read)?$")


@dataclass(frozen=True)
class ToolKind:
    """What a scope decision needs to know about a tool."""

    toolset: str
    read_only: bool


def allows(scopes: Collection[str] | None, kind: ToolKind) -> bool:
    """Whether a principal holding `scopes` may call a tool of `kind` (None: unauthenticated, all)."""
    if scopes is None:
        return True
    granted = set(scopes)
    if ALL in granted or kind.toolset in granted:
        return True
    return kind.read_only and (READ in granted or f"{kind.toolset}:read" in granted)


def needed_for(kind: ToolKind) -> str:
    """The narrowest scope that allows a tool of `kind` (for error messages)."""
    return f"{kind.toolset}:read" if kind.read_only else kind.toolset


def parse_scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes from a comma- or space-separated string or a list, validated and de-duplicated."""
    parts = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    scopes = [p.strip() for p in parts if p and p.strip()]
    for scope in scopes:
        if not _SCOPE.match(scope):
            raise InvalidArgumentError(
                f"scope {scope[:40]!r} is not valid: use all, read, a toolset name or <toolset>:read"
            )
    return tuple(dict.fromkeys(scopes))


def check_known(scopes: Iterable[str], toolsets: Collection[str]) -> None:
    """Refuse scopes naming no toolset this server knows (a typo would silently grant nothing)."""
    for scope in scopes:
        base = scope.removesuffix(":read")
        if scope not in (ALL, READ) and base not in toolsets:
            raise InvalidArgumentError(
                f"scope {scope!r} names no known toolset; choose from all, read, "
                + ", ".join(f"{t}, {t}:read" for t in sorted(toolsets))
            )


_catalog_cache: dict[Callable[[MCPServer[Any]], None], dict[str, ToolKind]] = {}


async def tool_kinds(toolsets: Mapping[str, Callable[[MCPServer[Any]], None]]) -> dict[str, ToolKind]:
    """tool name -> kind, for the given toolsets (name -> register function).

    Each toolset is registered on a throwaway server to learn which tools it adds and their
    annotations, so the classification follows whatever a toolset module declares.
    """
    kinds: dict[str, ToolKind] = {}
    for name, register in toolsets.items():
        if register not in _catalog_cache:
            probe: MCPServer[Any] = MCPServer(f"probe-{name}")
            register(probe)
            _catalog_cache[register] = {
                tool.name: ToolKind(name, bool(tool.annotations and tool.annotations.read_only_hint))
                for tool in await probe.list_tools()
            }
        kinds.update(_catalog_cache[register])
    return kinds
