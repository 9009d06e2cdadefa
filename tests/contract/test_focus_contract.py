"""set_focus_mode, the desktop contract member no other contract test calls: on and off, on every backend."""

from __future__ import annotations

import pytest

from agentbay_mcp.backends.protocols import SandboxBackend
from agentbay_mcp.services.desktop.models import FocusMode
from agentbay_mcp.services.model_base import from_records
from tests.contract.test_backend_contract import backend  # noqa: F401 - the parametrized fixture
from tests.contract.test_desktop_contract import desktop_of

pytestmark = pytest.mark.anyio


async def test_focus_mode_turns_on_and_off(backend: SandboxBackend) -> None:  # noqa: F811
    desktop = desktop_of(backend)
    session_id = (await backend.create_session(image_id="linux_latest", labels={}, owner="c")).session_id
    on = await desktop.set_focus_mode(session_id, True)
    assert on.on is True
    assert from_records(FocusMode, on).behaviour  # the tool's output adds what focus mode does
    # The desktop keeps answering with focus mode on.
    assert (await desktop.list_windows(session_id)).windows == []
    off = await desktop.set_focus_mode(session_id, False)
    assert off.on is False
    assert off.window_id is None
