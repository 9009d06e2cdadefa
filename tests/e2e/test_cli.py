"""The `agentbay-mcp` command: doctor, settings from flags and environment, start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentbay_mcp.auth.token_file import read_entries
from agentbay_mcp.cli import build_parser, settings_from_args
from agentbay_mcp.settings import Settings, default_state_dir
from agentbay_mcp.testing.servers import server_env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentbay_mcp", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_doctor_runs_a_real_conversation(state_dir: Path) -> None:
    done = run_cli("doctor", env=server_env(state_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in (
        "create_session ->",
        "list_sessions(labels=",
        "get_session_labels ->",
        "list_windows -> desktop up (1280x800",
        "start_app('xterm') + control_window(maximize) -> window",
        "take_screenshot -> 1280x800 png",
        "delete_session ->",
    ):
        assert step in out
    assert "VERDICT: READY" in out
    assert list((state_dir / "sessions").iterdir()) == []


def test_doctor_names_the_fix_for_missing_programs(state_dir: Path, tmp_path: Path) -> None:
    env = server_env(state_dir)
    env["PATH"] = str(tmp_path / "empty-bin")
    done = run_cli("doctor", env=env)
    assert done.returncode == 1
    assert "[FAIL] bubblewrap" in done.stdout
    assert "apt-get install bubblewrap" in done.stdout
    assert "apt-get install xvfb" in done.stdout
    assert "VERDICT: NOT READY" in done.stdout


def test_doctor_reports_an_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run_cli("doctor", env=server_env(blocker / "state"))
    assert done.returncode == 1
    assert "[FAIL] state dir" in done.stdout
    assert "AGENTBAY_MCP_STATE_DIR" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_serving_on_an_unwritable_state_dir_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run_cli(env=server_env(blocker / "state"), timeout=30)
    assert done.returncode == 1
    assert "not usable" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_command_reports_its_errors_the_same_way(state_dir: Path, tmp_path: Path) -> None:
    """The CLI maps agentbay-mcp errors in one place: a line naming the command, exit status 1."""
    broken = tmp_path / "tokens.json"
    broken.write_text('{"not_tokens": 1}')
    done = run_cli("tokens", "list", "--token-file", str(broken), env=server_env(state_dir))
    assert done.returncode == 1
    assert done.stderr.startswith("agentbay-mcp tokens: token file")
    assert "Traceback" not in done.stderr


def test_bad_settings_exit_2_with_a_readable_message(state_dir: Path) -> None:
    done = run_cli("--toolsets", "sessions,bogus", env=server_env(state_dir))
    assert done.returncode == 2
    assert "unknown toolset(s) bogus" in done.stderr
    done = run_cli(env=server_env(state_dir, AGENTBAY_MCP_IDLE_LEASE_SECONDS="-5"))
    assert done.returncode == 2
    assert "idle_lease_seconds" in done.stderr


def test_http_refuses_non_loopback_without_authentication(state_dir: Path) -> None:
    done = run_cli("--transport", "http", "--host", "0.0.0.0", "--port", "0", env=server_env(state_dir))
    assert done.returncode == 1
    assert "refusing to serve HTTP on 0.0.0.0 without authentication" in done.stderr
    assert "--token-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_version() -> None:
    done = run_cli("--version", env=server_env(Path("/nonexistent")))
    assert done.returncode == 0
    assert done.stdout.startswith("agentbay-mcp ")


def test_flags_beat_environment_which_beats_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTBAY_MCP_STATE_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("AGENTBAY_MCP_MAX_SESSIONS_PER_CONVERSATION", "7")
    monkeypatch.setenv("AGENTBAY_MCP_TOOLSETS", "sessions")
    args = build_parser().parse_args(["serve", "--state-dir", str(tmp_path / "from-flag"), "--port", "9000"])
    settings = settings_from_args(args)
    assert settings.state_dir == tmp_path / "from-flag"
    assert settings.port == 9000
    assert settings.max_sessions_per_conversation == 7
    assert settings.toolsets == ("sessions",)
    assert settings.transport == "stdio"


def test_sandbox_flags_reach_the_settings() -> None:
    argv = ["serve", "--isolation", "none", "--network", "off", "--output-cap", "2048", "--process-limit", "64"]
    settings = settings_from_args(build_parser().parse_args([*argv, "--memory-limit-mb", "512"]))
    assert settings.isolation == "none"
    assert settings.network == "off"
    assert settings.output_cap_bytes == 2048
    assert settings.process_limit == 64
    assert settings.memory_limit_mb == 512


def test_default_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AGENTBAY_MCP_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings().state_dir == tmp_path / "xdg" / "agentbay-mcp"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir(euid=1000) == tmp_path / "home" / ".local" / "state" / "agentbay-mcp"
    assert default_state_dir(euid=0) == Path("/var/lib/agentbay-mcp")


def test_tokens_add_prints_the_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "team" / "tokens.json"
    env = {**os.environ, "AGENTBAY_MCP_STATE_DIR": str(tmp_path / "state")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "agentbay_mcp", "tokens", *args, "--token-file", str(path)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)

    added = run("add", "--principal", "alice", "--scopes", "read,commands")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("abm_")
    assert token not in path.read_text()
    listed = run("list")
    assert listed.stdout.startswith("alice\tread,commands\t")
    assert token not in listed.stdout
    typo = run("add", "--principal", "bob", "--scopes", "comands")
    assert typo.returncode == 1
    assert "names no known toolset" in typo.stderr
    assert run("remove", "--principal", "alice").returncode == 0
    assert read_entries(path) == []
