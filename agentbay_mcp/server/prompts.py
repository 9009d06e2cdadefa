"""Serve the markdown files of `prompts/` as MCP prompts.

A prompt file is markdown with a small header between `---` lines:

    ---
    name: work_with_sandbox_sessions
    title: Human readable title
    description: One line for the prompt list.
    argument: task | What the argument means. | optional      (repeatable; "required" or "optional")
    ---
    Body text with {{task}} placeholders.

No YAML library needed: header lines are `key: value`. Placeholders use double braces so code in
a prompt body (`{}` in JSON, shell) never needs escaping.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class PromptFile:
    """A parsed prompt file."""

    name: str
    title: str
    description: str
    body: str
    arguments: list[PromptArgument] = field(default_factory=list)

    def render(self, values: dict[str, Any]) -> str:
        """The body with every placeholder filled (missing optional ones become "(not given)")."""
        return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1)) or "(not given)"), self.body)


def prompts_dir() -> Path:
    """The prompts shipped with the package (wheel) or, in a checkout, the repo's `prompts/`."""
    packaged = Path(__file__).parents[1] / "_prompts"
    return packaged if packaged.is_dir() else Path(__file__).parents[2] / "prompts"


def parse_prompt_file(path: Path) -> PromptFile:
    """Parse one prompt file; raises ValueError naming the file and the problem."""
    text = path.read_text(encoding="utf-8")
    parts = text.split("---\n", 2)
    if len(parts) != 3 or parts[0].strip():
        raise ValueError(f"{path}: must start with a '---' header block")
    header: dict[str, str] = {}
    arguments: list[PromptArgument] = []
    for line in parts[1].splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{path}: header line {line!r} is not 'key: value'")
        key, value = key.strip(), value.strip()
        if key == "argument":
            fields = [part.strip() for part in value.split("|")]
            if len(fields) != 3 or fields[2] not in ("required", "optional"):
                raise ValueError(f"{path}: argument must be 'name | description | required|optional'")
            arguments.append(PromptArgument(name=fields[0], description=fields[1], required=fields[2] == "required"))
        else:
            header[key] = value
    missing = {"name", "description"} - header.keys()
    if missing:
        raise ValueError(f"{path}: header lacks {', '.join(sorted(missing))}")
    return PromptFile(
        name=header["name"],
        title=header.get("title", header["name"]),
        description=header["description"],
        body=parts[2].strip() + "\n",
        arguments=arguments,
    )


def _renderer(prompt_file: PromptFile) -> Callable[..., Awaitable[str]]:
    async def render(**values: Any) -> str:
        return prompt_file.render(values)

    return render


def load(directory: Path | None = None) -> list[PromptFile]:
    """Every `*.md` prompt in `directory` (default: the shipped prompts), by file name."""
    return [parse_prompt_file(path) for path in sorted((directory or prompts_dir()).glob("*.md"))]


def register(mcp: MCPServer[Any], prompt_files: Sequence[PromptFile] | None = None) -> list[str]:
    """Add the prompts (default: the shipped ones) to `mcp`; returns their names."""
    names: list[str] = []
    for prompt_file in load() if prompt_files is None else prompt_files:
        mcp.add_prompt(
            Prompt(
                name=prompt_file.name,
                title=prompt_file.title,
                description=prompt_file.description,
                arguments=prompt_file.arguments,
                fn=_renderer(prompt_file),
            )
        )
        names.append(prompt_file.name)
    return names


class PromptCheck:
    """SDK middleware answering a `prompts/get` the server cannot serve with -32602 (invalid params).

    The SDK reports an unknown prompt or a missing required argument as a bare ValueError: error
    code 0 in the 2025-11-25 era, -32603 (internal error) in 2026-07-28, and a logged traceback,
    although the mistake is the client's. Checking the request first gives both eras the right code
    and a sentence saying what to do.
    """

    def __init__(self, prompt_files: Sequence[PromptFile]) -> None:
        self._prompts = {prompt_file.name: prompt_file for prompt_file in prompt_files}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Check a prompts/get; pass everything else (and a valid prompts/get) straight through."""
        if ctx.method == "prompts/get":
            self._check(ctx.params or {})
        return await call_next(ctx)

    def _check(self, params: Mapping[str, Any]) -> None:
        name = params.get("name")
        prompt_file = self._prompts.get(name) if isinstance(name, str) else None
        if prompt_file is None:
            shown = repr(name[:128]) if isinstance(name, str) else "(none given)"
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"Unknown prompt {shown}. Available prompts: {', '.join(sorted(self._prompts)) or 'none'} "
                "(prompts/list describes them and their arguments).",
            )
        arguments = params.get("arguments")
        given = arguments if isinstance(arguments, dict) else {}
        missing = [a.name for a in prompt_file.arguments if a.required and a.name not in given]
        if missing:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"Prompt {prompt_file.name!r} needs the argument(s) {', '.join(missing)}: "
                "call prompts/get again with them.",
            )
