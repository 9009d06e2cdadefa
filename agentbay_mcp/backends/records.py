"""The records backends deal in: what a backend knows, in its own types.

Backends build these and never import `agentbay_mcp.services`; the services turn them into the
tools' output models (`services/*/models.py`, which subclass the records that reach the model
unchanged and add the schema's descriptions), so a tool-schema change stays in the services.
Desktop records are in records_desktop.py; what a backend can do is `Capabilities`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentbay_mcp.backends.records_contexts import ContextMount

#: SANDBOX_DIED: the sandbox died (processes lost, files kept); the next call says what was lost and restarts it.
SessionStatus = Literal["RUNNING", "SANDBOX_DIED", "DELETING", "DELETED"]


class Record(BaseModel):
    """The base of the records that tool output models extend: frozen, like the output models."""

    model_config = ConfigDict(frozen=True)


class Capabilities(Record):
    """What a backend can do, declared once: services and the contract suite ask this, never guess.

    A new capability adds its flag here and its protocol in protocols.py.
    """

    process_handles: bool = Field(
        description="Background processes with handles: start_process, write_process_input, and a proc_id for "
        "every app start (the backend's `process_handles` is then not None)."
    )
    window_states: bool = Field(
        description="Windows report their state (maximized, minimized...) and size increments; without it "
        "every window's state is 'unknown'."
    )
    sandbox_side_timeouts: bool = Field(
        description="The sandbox stops a command at its timeout_ms itself and reports it as killed_by "
        "'timeout' (otherwise only the command service's own kill does)."
    )
    desktop: bool = Field(description="Desktop images exist: apps, windows, screenshots, input.")
    egress_rules: bool = Field(
        default=False,
        description="Per-session egress policies (on, off, allow-lists), changed while running: set_egress.",
    )
    port_links: bool = Field(default=False, description="URLs that reach a port inside a session: open_link.")
    contexts: bool = Field(
        default=False,
        description="Named storage that outlives sessions, shown in a session at a path: the `contexts` object.",
    )
    workspaces: bool = Field(
        default=False,
        description="Operator-configured host directories shown at /workspace/NAME: the `workspaces` object.",
    )
    unsupported: dict[str, str] = Field(
        default_factory=dict,
        description="Why an absent capability is absent, by flag name: the error message a tool returns.",
    )


class ShellCommand(Record):
    """A command to run in a session: `sh -c command`, in `cwd` (None: /home/user), with `env` added."""

    command: str
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class ReadSpan(Record):
    """Which part of a file to read: bytes from `offset` (`length` of them; None: up to the cap), or, with
    `start_line`, whole lines from there (`line_count` of them; None: up to the cap)."""

    offset: int = 0
    length: int | None = None
    start_line: int | None = None
    line_count: int | None = None


NetworkMode = Literal["off", "on", "allow"]


class NetworkPolicy(Record):
    """A session's egress as asked for: off, on (the public internet), or allow (only `allow`: domains such
    as 'pypi.org' or '*.github.com', and CIDRs), normalised by the service. The operator's bounds apply on top."""

    mode: NetworkMode = "off"
    allow: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether the session has any network at all."""
        return self.mode != "off"

    def describe(self) -> str:
        """As answers show it: `off`, `on`, or the allow-list, comma-separated (`pypi.org,*.github.com`)."""
        return ",".join(self.allow) if self.mode == "allow" else self.mode


class LinkRecord(Record):
    """A URL that reaches a port inside a session."""

    url: str
    port: int
    protocol: str


class SessionRecord(BaseModel):
    """What a backend knows about one session."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    image_id: str
    labels: dict[str, str] = Field(default_factory=dict)
    owner: str = Field(description="The conversation that created the session.")
    server_id: str = Field(description="The server instance that created the session (for reaping).")
    created_at: datetime
    status: SessionStatus = "RUNNING"
    network: NetworkPolicy = Field(default_factory=NetworkPolicy, description="What the session may reach.")
    contexts: tuple[ContextMount, ...] = Field(default=(), description="Contexts shown in the session.")
    workspaces: tuple[str, ...] = Field(default=(), description="Workspace names shown at /workspace/NAME.")
    notice: str | None = Field(default=None, description="Something the owner must be told (a sandbox that died).")

    @classmethod
    def new(
        cls,
        session_id: str,
        *,
        image_id: str,
        labels: dict[str, str],
        owner: str,
        server_id: str,
        network: NetworkPolicy | None = None,
        contexts: Sequence[ContextMount] = (),
        workspaces: Sequence[str] = (),
    ) -> SessionRecord:
        """The record of a session being created now (status RUNNING)."""
        return cls(
            session_id=session_id,
            image_id=image_id,
            labels=dict(labels),
            owner=owner,
            server_id=server_id,
            created_at=datetime.now(UTC),
            network=network or NetworkPolicy(),
            contexts=tuple(contexts),
            workspaces=tuple(workspaces),
        )

    @field_validator("network", mode="before")
    @classmethod
    def _old_flag(cls, value: object) -> object:
        """Records written before policies said `network: true/false`."""
        return NetworkPolicy(mode="on" if value else "off") if isinstance(value, bool) else value


class ProcessInfo(BaseModel):
    """A process started in a session (validated: it comes from inside the sandbox)."""

    proc_id: str = Field(max_length=32)
    pid: int
    command: str = Field(max_length=1_000_000)
    running: bool
    exit_code: int | None
    signal: int | None
    killed_by: str = Field(default="", max_length=40)
    elapsed_ms: int = Field(ge=0)
    stdout_bytes: int = Field(ge=0)
    stderr_bytes: int = Field(ge=0)
    stdin_open: bool


class StreamChunk(BaseModel):
    """Output of one stream from an absolute byte offset."""

    data: bytes
    start: int = Field(ge=0)
    next_cursor: int = Field(ge=0)
    dropped: int = Field(ge=0, description="Bytes before `start` that were asked for but no longer kept.")
    total: int = Field(ge=0)


class ProcessOutput(BaseModel):
    """New output of a process since the caller's cursors."""

    info: ProcessInfo
    streams: dict[str, StreamChunk]


class StreamSummary(BaseModel):
    """A stream's output within a cap: all of it, or its head and tail."""

    head: bytes
    tail: bytes
    total: int = Field(ge=0)
    full_path: str | None = Field(default=None, max_length=4096)
    full_bytes: int = Field(ge=0)
    full_complete: bool
    note: str = Field(default="", max_length=2000)


class OutputSummary(BaseModel):
    """A finished command: its status and both streams within the cap."""

    info: ProcessInfo
    streams: dict[str, StreamSummary]


class RunOutcome(BaseModel):
    """A foreground command after its first wait: still running, or finished with its output."""

    info: ProcessInfo
    summary: dict[str, StreamSummary] | None = None


class FileChunk(BaseModel):
    """Bytes read from a file (validated: they come from inside the sandbox)."""

    data: bytes
    offset: int = Field(ge=0)
    size: int = Field(ge=0)
    next_offset: int = Field(ge=0)
    head: bytes = Field(max_length=16, description="The file's first bytes, for recognising images.")
    start_line: int | None = None
    lines: int | None = None
    next_line: int | None = None


class ImageInfo(BaseModel):
    """An image a backend can start sessions from."""

    model_config = ConfigDict(frozen=True)

    image_id: str
    description: str
    desktop: bool


# ---- files -----------------------------------------------------------------------------------------


class FileWritten(Record):
    """A write's outcome."""

    path: str
    bytes_written: int
    size: int


class FileEdited(Record):
    """An edit's outcome."""

    path: str
    applied: bool
    edits: int
    diff: str


class FileInfo(Record):
    """Metadata of one path."""

    path: str
    name: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int
    permissions: str
    mode: str
    modified: datetime
    changed: datetime
    accessed: datetime
    target: str | None = None


class DirectoryListing(Record):
    """Entries of a directory."""

    path: str
    entries: Sequence[FileInfo]
    total: int
    truncated: bool
    message: str = ""


class SearchResult(Record):
    """Paths matching a glob."""

    path: str
    pattern: str
    matches: list[str]
    truncated: bool
    message: str = ""


class DirectoryCreated(Record):
    """A mkdir's outcome."""

    path: str
    created: bool


class FileMoved(Record):
    """A move's outcome."""

    source: str
    destination: str
