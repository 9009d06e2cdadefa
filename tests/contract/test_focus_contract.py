"""set_focus_mode, the desktop contract member no other contract test calls: on and off, on every backend."""

from __future__ import annotations

import pytest

from agentbay_mcp.backends.base import SandboxBackend
from tests.contract.test_backend_contract import backend  # noqa: F401 - the parametrized fixture

pytestmark = pytest.mark.anyio


async def test_focus_mode_turns_on_and_off(backend: SandboxBackend) -> None:  # noqa: F811
    session_id = (await backend.create_session(image_id="linux_latest", labels={}, owner="c")).session_id
    on = await backend.set_focus_mode(session_id, True)
    assert on.on is True
    assert on.behaviour
    # The desktop keeps answering with focus mode on.
    assert (await backend.list_windows(session_id)).windows == []
    off = await backend.set_focus_mode(session_id, False)
    assert off.on is False
    assert off.window_id is None
