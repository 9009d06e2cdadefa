"""The base of every tool output model: strict, and free of backend types."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OutputModel(BaseModel):
    model_config = ConfigDict(frozen=True)
