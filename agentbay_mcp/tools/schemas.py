"""Lean JSON schemas for `tools/list`: what a client needs to call a tool and check its result, nothing more.

Every byte of `tools/list` is read by the model on every conversation, so the schemas pydantic generates
are trimmed: no `title` keys (the property name says it), no `$defs` (small shapes are inlined where they
are used, without their class docstrings), `X | None` as a type list instead of an `anyOf`, no
`"default": null`. The trimmed schema accepts and rejects exactly what the generated one does;
tests/unit/test_answers.py checks that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

#: Keys that hold a map of name -> schema (every value is a schema, the keys are names, never keywords).
_SCHEMA_MAPS = ("properties", "$defs", "patternProperties")
#: Keys that hold one schema.
_SCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "propertyNames")
#: Keys that hold a list of schemas.
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def lean(schema: dict[str, Any], *, descriptions: bool = True) -> dict[str, Any]:
    """`schema` with titles and `$defs` gone, nullable types folded, and (optionally) no descriptions."""
    trimmed: dict[str, Any] = _node(schema, schema.get("$defs", {}), descriptions, ())
    return trimmed


def output_schema(model: type[BaseModel], text_only: Iterable[str] = ()) -> dict[str, Any]:
    """The published schema of `model`'s structured output: its fields but `text_only`, without descriptions.

    Descriptions stay out of output schemas, and a nested record (a window, a process status) is
    published as an object without its fields: a program reads the result by field name, a model
    reads the text block, and the README documents every field.
    """
    schema = lean(model.model_json_schema(mode="serialization"), descriptions=False)
    dropped = set(text_only)
    properties = {k: v for k, v in schema["properties"].items() if k not in dropped}
    # No defaults and no formats: both are annotations (a validator ignores them; the README says which
    # fields are times), and each costs the model bytes on every conversation.
    schema["properties"] = {
        k: _shallow(_without_enum_type({x: y for x, y in v.items() if x not in ("default", "format")}))
        for k, v in properties.items()
    }
    required = [k for k in schema.get("required", []) if k not in dropped]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


def _without_enum_type(node: dict[str, Any]) -> dict[str, Any]:
    """An enum without its type: the listed values admit exactly what the type and the enum together do."""
    return {k: v for k, v in node.items() if k != "type"} if "enum" in node else node


def _shallow(node: dict[str, Any]) -> dict[str, Any]:
    """A property's schema with nested records reduced to their type (object, or array of objects)."""
    if "properties" in node:
        return {k: v for k, v in node.items() if k not in ("properties", "required", "additionalProperties")}
    items = node.get("items")
    if isinstance(items, dict) and "properties" in items:
        return {**node, "items": _shallow(items)}
    return node


def _node(node: Any, defs: dict[str, Any], descriptions: bool, seen: tuple[str, ...]) -> Any:
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:  # a recursive shape cannot be inlined; none of ours is, so say so loudly
            raise ValueError(f"recursive schema {name!r} cannot be inlined")
        # A nested model's docstring says what the class is for its readers, not for the model
        # calling the tool (the property that holds it has the description that matters).
        definition = {k: v for k, v in defs[name].items() if k != "description"}
        inlined = _node(definition, defs, descriptions, (*seen, name))
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**inlined, **_node(extra, defs, descriptions, seen)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs") or (key == "description" and not descriptions):
            continue
        if key in _SCHEMA_MAPS:
            out[key] = {name: _node(sub, defs, descriptions, seen) for name, sub in value.items()}
        elif key in _SCHEMA_KEYS:
            out[key] = _node(value, defs, descriptions, seen)
        elif key in _SCHEMA_LISTS:
            out[key] = [_node(sub, defs, descriptions, seen) for sub in value]
        else:
            out[key] = value
    if out.get("default", ...) is None:
        del out["default"]
    return _fold_nullable(out)


def _fold_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, {"type": "null"}], ...}` as X with "null" added to its type (and enum), when X has a type."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return node
    (other,) = [option for option in options if option != {"type": "null"}]
    kind = other.get("type")
    if not isinstance(kind, str) or "anyOf" in other:
        return node
    folded = {**other, **{k: v for k, v in node.items() if k != "anyOf"}, "type": [kind, "null"]}
    if "enum" in other:
        folded["enum"] = [*other["enum"], None]
    if "const" in other:
        folded = {**{k: v for k, v in folded.items() if k != "const"}, "enum": [other["const"], None]}
    return folded
