"""The workspace tools' answers: one line per change (hostile names quoted), then the diff, read back whole."""

from __future__ import annotations

from agentbay_mcp.services.workspaces.models import WorkspaceAppliedInfo, WorkspaceChangeInfo, WorkspaceDiffInfo
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.tools.text.workspaces import APPLIED, DIFF

DIFF_TEXT = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"


def test_a_diff_lists_every_change_then_the_diff() -> None:
    changes = [
        WorkspaceChangeInfo(path="x", kind="modified"),
        WorkspaceChangeInfo(path="new\nline", kind="added", conflict=True),
        WorkspaceChangeInfo(path="link", kind="added", symlink="../x"),
        WorkspaceChangeInfo(path="blob", kind="deleted", binary=True),
    ]
    result = WorkspaceDiffInfo(session_id="s1", name="proj", mode="overlay", changes=changes, diff=DIFF_TEXT)
    answer = DIFF.answer(result)
    text = answer.content[-1].text  # type: ignore[union-attr]
    assert text.split("\n")[:5] == [
        "Workspace proj of s1: 4 changes",
        "modified x",
        'added "new\\nline" CONFLICT: changed on the host too',
        "added link -> ../x",
        "deleted blob (binary)",
    ]
    assert unpack("workspace_diff", answer) == result.model_dump(mode="json") | {"session_id": "s1"}


def test_ro_and_rw_say_why_there_is_nothing_to_apply() -> None:
    for mode, words in (("ro", "read-only"), ("rw", "on the host already")):
        result = WorkspaceDiffInfo(session_id="s1", name="p", mode=mode, changes=[], diff="")
        answer = DIFF.answer(result)
        assert words in answer.content[-1].text  # type: ignore[union-attr]
        assert unpack("workspace_diff", answer)["diff"] == ""


def test_an_apply_lists_what_it_wrote_left_and_refused() -> None:
    result = WorkspaceAppliedInfo(
        session_id="s1", name="p", applied=["a", "b c"], conflicts=["d"], refused=["abs: a link leads outside"]
    )
    answer = APPLIED.answer(result)
    assert answer.content[-1].text.split("\n") == [  # type: ignore[union-attr]
        "Applied 2 changes of s1 to workspace p",
        "a",
        "b c",
        "Left alone, changed on the host too (overwrite=true replaces them):",
        "d",
        "Refused:",
        "abs: a link leads outside",
    ]
    assert unpack("workspace_apply", answer)["session_id"] == "s1"
