"""The base of every tool output model: strict, and free of backend types."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict


class OutputModel(BaseModel):
    model_config = ConfigDict(frozen=True)


Output = TypeVar("Output", bound=OutputModel)


def from_records(model: type[Output], data: object) -> Output:
    """`model` built from a backend record (or a dict holding records): the fields are copied, and
    nested records become their output models (which extend them, see backends/records.py)."""
    return model.model_validate(data, from_attributes=True)
