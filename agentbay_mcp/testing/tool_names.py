"""The tools of each toolset by name, as the tests expect them listed (a new tool must be added here)."""

from __future__ import annotations

COMMAND_TOOLS = {
    "execute_command",
    "start_process",
    "read_process_output",
    "write_process_input",
    "wait_process",
    "kill_process",
    "list_processes",
}
FILE_TOOLS = {
    "read_file",
    "write_file",
    "edit_file",
    "list_directory",
    "get_file_info",
    "search_files",
    "create_directory",
    "move_file",
}
DESKTOP_TOOLS = {
    "get_installed_apps",
    "start_app",
    "stop_app",
    "list_visible_apps",
    "list_windows",
    "get_active_window",
    "control_window",
    "set_focus_mode",
    "take_screenshot",
    "input_action",
}
NETWORK_TOOLS = {"set_session_network", "get_link"}
CONTEXT_TOOLS = {"create_context", "list_contexts", "get_context", "delete_context", "sync_context"}
WORKSPACE_TOOLS = {"workspace_diff", "workspace_apply"}
SESSION_TOOLS = {
    "create_session",
    "delete_session",
    "get_session",
    "list_sessions",
    "set_session_labels",
    "get_session_labels",
}
#: Every tool a server with every toolset lists.
ALL_TOOLS = SESSION_TOOLS | COMMAND_TOOLS | FILE_TOOLS | DESKTOP_TOOLS | NETWORK_TOOLS | CONTEXT_TOOLS | WORKSPACE_TOOLS
