"""Tool errors reach the model as one line: what went wrong, what to do (server/error_text.py)."""

from __future__ import annotations

from agentbay_mcp.server.error_text import compact, compacted

PYDANTIC_DUMP = """Error executing tool get_session: 2 validation errors for get_sessionArguments
session_id
  Field required [type=missing, input_value={}, input_type=dict]
    For further information visit https://errors.pydantic.dev/2.14/v/missing
max_results
  Input should be greater than or equal to 1 [type=greater_than_equal, input_value=0, input_type=int]
    For further information visit https://errors.pydantic.dev/2.14/v/greater_than_equal"""


def test_a_validation_dump_becomes_one_line_naming_each_argument() -> None:
    text = compact("get_session", PYDANTIC_DUMP)
    assert text == (
        "Invalid arguments: session_id: Field required; max_results: Input should be greater than or equal "
        "to 1 (got 0). Call get_session again with arguments its input schema allows."
    )
    assert "\n" not in text
    assert "https://" not in text


def test_a_long_bad_value_is_cut() -> None:
    dump = (
        "1 validation error for read_fileArguments\noffset\n  Input should be a valid integer "
        f"[type=int_parsing, input_value='{'x' * 500}', input_type=str]"
    )
    assert len(compact("read_file", dump)) < 200


def test_our_own_errors_only_lose_the_sdk_prefix() -> None:
    text = "Error executing tool read_file: /x: No such file or directory. Check the path with list_directory."
    assert compact("read_file", text) == "/x: No such file or directory. Check the path with list_directory."
    result = {"content": [{"type": "text", "text": text}], "isError": True}
    assert compacted("read_file", result)["content"][0]["text"].startswith("/x: No such file")
