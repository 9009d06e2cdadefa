"""Scopes: which tools a principal may call, keyed by toolset and by the tools' `readOnlyHint`.

| scope            | allows                                                                  |
|------------------|-------------------------------------------------------------------------|
| `all`            | every tool of every toolset                                             |
| `read`           | every read-only tool (`readOnlyHint: true`) of every toolset            |
| `<toolset>`      | every tool of that toolset: `sessions`, `commands`, `files`, `desktop`  |
| `<toolset>:read` | the read-only tools of that toolset (e.g. `desktop:read`: screenshots)  |

A new toolset (say `desktop`) is covered the day it lands: its tools are classified by the toolset
that registered them (`ToolsetServer.add_toolset`) and by their own annotations, so nothing here
lists tool names. Resources
(`agentbay://sessions...`) count as read-only tools of the `sessions` toolset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp_types import Icon, ToolAnnotations

from agentbay_mcp.errors import InvalidArgumentError

ALL = "all"
READ = "read"
UNCLASSIFIED = "unclassified"
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


LifespanT = TypeVar("LifespanT")


class ToolsetServer(MCPServer[LifespanT]):
    """An `MCPServer` that remembers which toolset registered each tool, and whether it is read-only.

    Toolset modules register with the ordinary `@mcp.tool(...)` decorator, which calls the public
    `add_tool`; recording there classifies every tool of a toolset, including ones added later.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tool_kinds: dict[str, ToolKind] = {}
        self._toolset: str | None = None

    def add_toolset(self, name: str, register: Callable[[ToolsetServer[Any]], None]) -> None:
        """Register toolset `name` (its module's `register` function), classifying its tools."""
        self._toolset = name
        try:
            register(self)
        finally:
            self._toolset = None

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        """Add a tool (see `MCPServer.add_tool`) and note its kind."""
        super().add_tool(
            fn,
            name=name,
            title=title,
            description=description,
            annotations=annotations,
            icons=icons,
            meta=meta,
            structured_output=structured_output,
        )
        read_only = bool(annotations and annotations.read_only_hint)
        # A tool registered outside any toolset is "unclassified": only the `all` scope reaches it.
        self.tool_kinds[name or fn.__name__] = ToolKind(self._toolset or UNCLASSIFIED, read_only)

    def publish_schemas(
        self,
        name: str,
        parameters: Callable[[dict[str, Any]], dict[str, Any]],
        output_schema: dict[str, Any] | None,
    ) -> None:
        """List tool `name` with its input schema passed through `parameters` and this output schema.

        The SDK derives both from the function's signature; ours are trimmed for the model (see
        tools/schemas.py). The tool builds its own `CallToolResult` (tools/shape.py), so the SDK gets
        no output model to validate against: the tests check every result against the schema instead.
        The SDK reads these fields live (see `FuncMetadata`), so setting them after `add_tool` is enough.
        """
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            raise KeyError(name)
        tool.parameters = parameters(tool.parameters)
        tool.fn_metadata.output_schema = output_schema
        tool.fn_metadata.output_model = None
