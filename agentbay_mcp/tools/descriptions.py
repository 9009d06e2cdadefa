"""Every tool's description, by tool name: what a client shows its model (one place to write them)."""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # tools/sessions.py
    "create_session": (
        "New sandbox session; returns its session_id. Deleted when this conversation ends or after idling. "
        "image_id: 'linux_latest' (desktop) or 'code_latest' (shell, files). network: as "
        "set_session_network. contexts: shown at path (made if new). workspaces: host directories, at "
        "/workspace/NAME."
    ),
    # tools/workspaces.py
    "workspace_diff": "Changes the session made in /workspace/NAME (overlay mode): paths, then a unified diff.",
    "workspace_apply": (
        "Write the session's changes in /workspace/NAME (or under paths) to the host. Paths the host changed "
        "too are skipped and listed, unless overwrite."
    ),
    "set_session_network": (
        "Set what a session may reach, at once: 'off', 'on' (internet) or domains and CIDRs, "
        "e.g. ['pypi.org', '*.github.com', '203.0.113.0/24']."
    ),
    "get_link": "A URL to a port the session serves; works without network; dies with the session.",
    # tools/contexts.py
    "create_context": "Make a context (named storage kept between your sessions), or find it if it exists.",
    "list_contexts": "Your contexts: size, last use, users.",
    "get_context": "One context: size, files, last use, users, any problem of its last save.",
    "delete_context": "Delete a context and its content for good (not while in use).",
    "sync_context": "Save a session's contexts (or only name) now; the last save wins. Sessions also save at the end.",
    "delete_session": "Delete a session now, with its files and processes.",
    "get_session": "A session's image, status, labels and idle expiry.",
    "list_sessions": "Your sessions, oldest first; with labels, only those having all. Page with next_token.",
    "set_session_labels": "Replace a session's labels with this map ({} clears them).",
    "get_session_labels": "A session's labels, the whole map.",
    # tools/commands.py
    "execute_command": (
        "Run a shell command (sh -c, stdin closed, cwd /home/user) and wait. Answers a status line, stdout, "
        "then stderr after '--- stderr ---'. Long output keeps start and end (the marker names the full "
        "output's file). Timeout kills all it started: use start_process for servers."
    ),
    "start_process": (
        "Start a command (sh -c, cwd /home/user) in the background, stdin open; returns its process_id at once."
    ),
    "read_process_output": (
        "A background process's status and output since cursor (none: all). wait_ms > 0 waits for output "
        "or exit. Pass the returned cursor next."
    ),
    "write_process_input": "Write to a background process's stdin; eof=true closes it after.",
    "wait_process": "Wait up to timeout_ms for a background process to exit.",
    "kill_process": "Stop a background process and its process group (TERM, KILL after 1 s).",
    "list_processes": "The session's background processes and their status.",
    # tools/files.py
    "read_file": (
        "A file's text after a header (path, range, size, where to continue); images as images, other "
        "binary as base64. 256 KiB a call (length: up to 1 MiB); start_line/line_count read lines."
    ),
    "write_file": (
        "Write a file, making parent directories; overwrite is atomic. Only /home/user and /tmp are writable."
    ),
    "edit_file": (
        "Replace exact text in a file, in order; each old_text must occur once. Answers the diff; "
        "dry_run=true writes nothing."
    ),
    "list_directory": "A directory, one entry per line (kind size name); details=true: permissions, time.",
    "get_file_info": "A path's type, size, permissions and times (of a symlink itself; and its target).",
    "search_files": (
        "Paths below path matching a glob ('*.py' or 'src/**/*.ts'); exclude_patterns prune, e.g. "
        "['node_modules']. Capped."
    ),
    "create_directory": "Create a directory and its parents; fine if it exists.",
    "move_file": "Move or rename a file or directory; the destination must not exist.",
    # tools/desktop.py
    "get_installed_apps": "Applications start_app can start, with their start_cmd.",
    "start_app": ("Start a desktop application (a command, e.g. 'xterm'); waits up to wait_ms for its window."),
    "stop_app": "Stop an application by one of: pid (and its children), pname, stop_cmd.",
    "list_visible_apps": "Processes that own a visible window, with the window ids.",
    "list_windows": "Top-level windows (id, title, WxH+X+Y, state, owner) and their children.",
    "get_active_window": "The window that has the keyboard focus.",
    "control_window": "Act on a window (resize: width, height) and check the effect.",
    "set_focus_mode": (
        "While on, the active window keeps the focus (one taking it is sent back); control_window activate "
        "moves the lock."
    ),
    "take_screenshot": "A screenshot (png or jpeg), under 1 MB; max_width scales it down.",
    "input_action": (
        "Mouse and keys: click/move/scroll at x, y; drag to to_x, to_y; type text ('\\n' is Return); "
        "keys pressed together, e.g. ['ctrl', 'c'], to the active window."
    ),
}
