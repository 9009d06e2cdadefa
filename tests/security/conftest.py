"""Fixtures of the security tests: canary files on the host, and a cleanup for trees too deep for rmtree."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.file_attacks import Canaries


@pytest.fixture
def canaries(tmp_path: Path, state_dir: Path) -> Canaries:
    directory = tmp_path / f"host-canary-{secrets.token_hex(4)}"
    (directory / "sub").mkdir(parents=True)
    secret, inner_secret, state_secret = (f"CANARY-{secrets.token_hex(16)}" for _ in range(3))
    secret_file = directory / f"secret-{secrets.token_hex(4)}.txt"
    secret_file.write_text(secret)
    inner_file = directory / "sub" / "inner.txt"
    inner_file.write_text(inner_secret)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "host-canary.txt"
    state_file.write_text(state_secret)
    for path in (directory, directory / "sub"):
        path.chmod(0o755)
    for path in (secret_file, inner_file, state_file):
        path.chmod(0o644)
    return Canaries(directory, secret_file, secret, inner_file, inner_secret, state_secret, state_file)


@pytest.fixture
def deep_tree_cleanup(state_dir: Path) -> Iterator[None]:
    """Remove the state dir with `rm -rf` afterwards: Python's rmtree (the server's, pytest's) recurses and
    cannot remove the 1500-level trees some tests leave behind (see test_a_deep_tree_..._next_start)."""
    yield
    subprocess.run(["rm", "-rf", "--one-file-system", str(state_dir)], timeout=300, check=False)
