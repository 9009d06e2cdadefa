"""Records of contexts: named storage that outlives sessions, shown in a session at a path (see
records.py for the rules records follow)."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

#: A context's name: what the model types, and part of a host path on the local backend.
CONTEXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would let "x\n" through


class Record(BaseModel):
    """Frozen, like records.Record (which imports this module, so cannot be imported here)."""

    model_config = ConfigDict(frozen=True)


class ContextRecord(Record):
    """A context as its backend knows it. `owner` is the principal it belongs to."""

    context_id: str
    name: str
    owner: str
    created_at: datetime
    last_used_at: datetime | None = None
    size_bytes: int | None = Field(default=None, description="None where the backend cannot tell cheaply.")
    file_count: int | None = None
    in_use_by: tuple[str, ...] = Field(default=(), description="Live sessions that have it mounted.")
    notice: str | None = Field(default=None, description="The last sync's problem (e.g. quota), until a sync works.")


class ContextMount(Record):
    """A context shown in a new session at `path` (absolute, under /home/user or /tmp); the service
    resolves `name` to `context_id` for `owner` before the backend sees it."""

    context_id: str
    name: str
    owner: str
    path: str


class ContextSynced(Record):
    """One context written back from a session."""

    name: str
    path: str
    size_bytes: int | None = None
    file_count: int | None = None
    warning: str = Field(default="", description="e.g. this sync replaced what another session synced since.")
