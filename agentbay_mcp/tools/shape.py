"""How a result goes on the wire: one compact text block for the model, metadata as structured content.

The rule (README, "What a tool answers"): the bulk of a result - file text, command output, a diff,
the entries of a listing - travels once, in the text block, rendered for a model to read. The
structured content carries the rest: the small fields a program acts on (ids, sizes, offsets, exit
codes, cursors, counts), which the text also mentions in words. So no payload is sent twice, and a
client that only shows text to its model loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel

from agentbay_mcp.tools.schemas import output_schema

Result = TypeVar("Result", bound=BaseModel)


class Shape(Generic[Result]):
    """One kind of result: how to render it as text, and which of its fields are text only."""

    def __init__(
        self,
        model: type[Result],
        render: Callable[[Result], str],
        text_only: Sequence[str] = (),
        *,
        structured: bool = True,
    ) -> None:
        unknown = set(text_only) - set(model.model_fields)
        if unknown:
            raise ValueError(f"{model.__name__} has no fields {sorted(unknown)}")
        self.render = render
        self.text_only = frozenset(text_only)
        #: The published outputSchema; None when nothing but text is left (a listing's whole payload).
        self.schema: dict[str, Any] | None = output_schema(model, text_only) if structured else None

    def answer(self, result: Result, *, image: ImageContent | None = None, text: str | None = None) -> CallToolResult:
        """The tool result for `result`: the image first when there is one, then the text (rendered,
        unless the tool rendered it itself because its arguments change the rendering)."""
        blocks: list[TextContent | ImageContent] = [] if image is None else [image]
        blocks.append(TextContent(type="text", text=self.render(result) if text is None else text))
        if self.schema is None:
            return CallToolResult(content=blocks)
        structured = result.model_dump(mode="json", exclude=set(self.text_only) or None)
        return CallToolResult(content=blocks, structured_content=structured)
