"""Odd content and read-only areas through the file tools: invalid UTF-8, images, empty and binary files,
read-only areas named in the error, and edit_file's errors, dry run and atomic write."""

from __future__ import annotations

import base64
import os
import secrets
import struct
import zlib
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp_types import ImageContent

from agentbay_mcp.testing.calls import call, call_error, error_text
from tests.security import file_attacks as attacks

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


# 4. Encodings: invalid UTF-8, images, empty and binary files ------------------------------------------


def png_bytes(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + b"".join(bytes([(x * 80) % 256, (y * 120) % 256, 200]) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def put_bytes(client: Client, session_id: str, path: str, data: bytes) -> None:
    """Write arbitrary bytes in the session: base64 text through write_file, decoded by `base64 -d`."""
    await call(client, "write_file", session_id=session_id, path=f"{path}.b64", content=base64.b64encode(data).decode())
    await attacks.run(client, session_id, f"base64 -d '{path}.b64' > '{path}' && rm '{path}.b64'")


async def test_text_images_empty_and_binary_files(client: Client, state_dir: Path) -> None:
    session_id = await attacks.new_session(client)
    home = attacks.home_of(state_dir, session_id)

    invalid = b"valid \xc3\xa9 then \xff\xfe broken \xc3 and \xed\xa0\x80 end\n"
    await put_bytes(client, session_id, "invalid.txt", invalid)
    read = await call(client, "read_file", session_id=session_id, path="invalid.txt")
    assert read["encoding"] == "utf-8"
    assert read["invalid_utf8"] is True
    assert read["content"] == invalid.decode("utf-8", errors="replace")
    assert "\ufffd" in read["content"]
    assert "valid é then" in read["content"]
    assert "U+FFFD" in read["message"]
    assert read["size"] == len(invalid)

    png = png_bytes()
    await put_bytes(client, session_id, "picture.png", png)
    assert (home / "picture.png").read_bytes() == png
    result = await client.call_tool("read_file", {"session_id": session_id, "path": "picture.png"})
    assert not result.is_error, error_text(result)
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == 1, result.content
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data) == png
    assert result.structured_content is not None
    assert result.structured_content["encoding"] == "image"
    assert result.structured_content["size"] == len(png)

    # The type comes from the magic bytes, not the name.
    for name, data, mime in (
        ("photo.bin", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + os.urandom(200), "image/jpeg"),
        ("anim.dat", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + os.urandom(50), "image/gif"),
        ("old.gif", b"GIF87a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),
        ("renamed.txt", png, "image/png"),
    ):
        await put_bytes(client, session_id, name, data)
        result = await client.call_tool("read_file", {"session_id": session_id, "path": name})
        assert not result.is_error, error_text(result)
        images = [block for block in result.content if isinstance(block, ImageContent)]
        assert [image.mime_type for image in images] == [mime], (name, result.content)
        assert base64.b64decode(images[0].data) == data
    not_png = await call(client, "write_file", session_id=session_id, path="fake.png", content="just text\n")
    assert not_png["size"] == 10
    fake = await call(client, "read_file", session_id=session_id, path="fake.png")
    assert (fake["encoding"], fake["content"]) == ("utf-8", "just text\n")

    await attacks.run(client, session_id, ": > empty.txt")
    empty = await call(client, "read_file", session_id=session_id, path="empty.txt")
    assert (empty["content"], empty["size"], empty["length"], empty["next_offset"]) == ("", 0, 0, None)
    assert empty["invalid_utf8"] is False

    binary = bytes(range(256)) * 4 + b"\x00\x01\x02\x00" + os.urandom(3000)
    await put_bytes(client, session_id, "blob.bin", binary)
    blob = await call(client, "read_file", session_id=session_id, path="blob.bin")
    assert blob["encoding"] == "base64"
    assert base64.b64decode(blob["content"]) == binary
    assert blob["next_offset"] is None

    # Binary over the read cap: base64 chunks that join up to the original bytes.
    big_binary = b"\x00" + os.urandom(600 * 1024)
    await put_bytes(client, session_id, "big.bin", big_binary)
    joined, offset, calls = b"", 0, 0
    while offset is not None:
        part = await call(client, "read_file", session_id=session_id, path="big.bin", offset=offset)
        assert part["encoding"] == "base64"
        joined += base64.b64decode(part["content"])
        offset, calls = part["next_offset"], calls + 1
        assert calls < 10
    assert joined == big_binary


# 5. Read-only areas -------------------------------------------------------------------------------------


async def test_read_only_areas_refuse_writes_and_name_the_path(client: Client, state_dir: Path) -> None:
    token = secrets.token_hex(6)
    session_id = await attacks.new_session(client)
    await call(client, "write_file", session_id=session_id, path="keep.txt", content=f"keep {token}\n")
    hostname_before = (await call(client, "read_file", session_id=session_id, path="/etc/hostname"))["content"]
    host_before = {p: attacks.digest(p) for p in attacks.HOST_FILES}
    targets = [
        f"/usr/probe-{token}",
        f"/usr/lib/probe-{token}/deep",
        f"/etc/probe-{token}",
        "/etc/hostname",
        "/etc/passwd",
        f"/probe-{token}",
        f"/opt/probe-{token}",
        f"/home/probe-{token}",
    ]
    for target in targets:
        for tool, arguments in (
            ("write_file", {"path": target, "content": f"x {token}"}),
            ("write_file", {"path": target, "content": f"x {token}", "mode": "append"}),
            ("create_directory", {"path": target + "-dir"}),
        ):
            message = await call_error(client, tool, session_id=session_id, **arguments)
            assert "Read-only" in message or "Permission denied" in message, (tool, target, message)
            assert (arguments["path"] in message) or (target in message), (tool, target, message)
        message = await call_error(client, "move_file", session_id=session_id, source="keep.txt", destination=target)
        assert "Read-only" in message or "Permission denied" in message or "already exists" in message, message
        assert not attacks.on_host(target) or target in ("/etc/hostname", "/etc/passwd"), f"{target} on the host"
    # Nothing changed: the session's file, the sandbox's /etc, the host's files.
    assert (await call(client, "read_file", session_id=session_id, path="keep.txt"))["content"] == f"keep {token}\n"
    assert (await call(client, "read_file", session_id=session_id, path="/etc/hostname"))["content"] == hostname_before
    passwd = (await call(client, "read_file", session_id=session_id, path="/etc/passwd"))["content"]
    assert token not in passwd
    assert {p: attacks.digest(p) for p in attacks.HOST_FILES} == host_before
    listing = await attacks.run(client, session_id, "ls -a /usr /etc / /opt /home")
    assert token not in listing["stdout"]


async def test_move_into_a_read_only_area_names_the_destination(client: Client) -> None:
    session_id = await attacks.new_session(client)
    await call(client, "write_file", session_id=session_id, path="keep.txt", content="keep\n")
    for target in ("/usr/moved", "/etc/moved", "/moved"):
        message = await call_error(client, "move_file", session_id=session_id, source="keep.txt", destination=target)
        assert "Read-only" in message, message
        assert target in message, f"the error does not name {target}: {message}"


async def test_failed_cross_mount_move_leaves_nothing_behind(client: Client) -> None:
    session_id = await attacks.new_session(client)
    message = await call_error(client, "move_file", session_id=session_id, source="/etc/hostname", destination="h")
    assert "Read-only" in message or "Permission denied" in message, message
    leftover = await attacks.attempt(client, "get_file_info", session_id=session_id, path="h")
    assert not leftover.ok, f"the failed move left /home/user/h behind: {leftover}"


# 8. edit_file -----------------------------------------------------------------------------------------


async def test_edit_file_errors_dry_run_and_atomic_write(client: Client, state_dir: Path) -> None:
    session_id = await attacks.new_session(client)
    original = "alpha = 1\nbeta = 2\nalpha = 1\ngamma = 3\n"
    await call(client, "write_file", session_id=session_id, path="src/conf.py", content=original)
    await attacks.run(client, session_id, "chmod 640 src/conf.py")
    host = attacks.home_of(state_dir, session_id) / "src" / "conf.py"
    before = host.stat()

    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "alpha = 1", "new_text": "alpha = 9"}],
    )  # fmt: skip
    assert "occurs 2 times" in message, message
    assert "/home/user/src/conf.py" in message, message
    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "delta = 4", "new_text": "delta = 5"}],
    )  # fmt: skip
    assert "does not occur" in message, message
    # A later edit that fails means none is applied.
    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "beta = 2", "new_text": "beta = 20"}, {"old_text": "a = ", "new_text": "x"}],
    )  # fmt: skip
    assert "edit 2" in message, message
    assert "occurs 4 times" in message, message
    assert host.read_text() == original

    preview = await call(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "beta = 2", "new_text": "beta = 22"}], dry_run=True,
    )  # fmt: skip
    assert preview["applied"] is False
    assert "-beta = 2\n+beta = 22" in preview["diff"]
    after_preview = host.stat()
    assert host.read_text() == original
    assert (after_preview.st_ino, after_preview.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    done = await call(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "beta = 2", "new_text": "beta = 22"}, {"old_text": "gamma = 3\n", "new_text": ""}],
    )  # fmt: skip
    assert done["applied"] is True
    assert done["edits"] == 2
    assert host.read_text() == "alpha = 1\nbeta = 22\nalpha = 1\n"
    after = host.stat()
    assert after.st_ino != before.st_ino, "not written through a temporary file + rename"
    assert oct(after.st_mode & 0o777) == oct(0o640), "the edit lost the file's mode"
    assert sorted(os.listdir(host.parent)) == ["conf.py"], "a temporary file was left behind"
    listing = await call(client, "list_directory", session_id=session_id, path="src")
    assert [e["name"] for e in listing["entries"]] == ["conf.py"]

    # Not text, not a regular file: refused without touching anything.
    await attacks.run(client, session_id, "printf 'a\\377b' > src/bin.dat; mkfifo src/pipe")
    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/bin.dat", edits=[{"old_text": "a", "new_text": "b"}]
    )
    assert "not UTF-8" in message, message
    with anyio.fail_after(attacks.CALL_SECONDS):
        message = await call_error(
            client, "edit_file", session_id=session_id, path="src/pipe", edits=[{"old_text": "a", "new_text": "b"}]
        )
    assert "not a regular file" in message, message
    assert sorted(os.listdir(host.parent)) == ["bin.dat", "conf.py", "pipe"]
