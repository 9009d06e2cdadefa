"""Every tool's description, by tool name: what a client shows its model (one place to write them)."""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # tools/sessions.py
    "create_session": (
        "Create a disposable sandbox session; returns the session_id the other tools need. Deleted when this "
        "conversation ends or after its idle lease. image_id: 'linux_latest' (desktop) or 'code_latest' "
        "(shell, files). network: as for set_session_network. contexts: storage kept between sessions, "
        "copied in at path (made if new) and saved back when the session ends. workspaces: host dirs the "
        "operator offers, at /workspace/NAME."
    ),
    # tools/workspaces.py
    "workspace_diff": "Changes the session made in /workspace/NAME (overlay mode): paths, then a unified diff.",
    "workspace_apply": (
        "Write the session's changes in /workspace/NAME (or under paths) to the host. Paths the host changed "
        "too are skipped and listed, unless overwrite."
    ),
    "set_session_network": (
        "Change what a session may reach, at once: 'off', 'on' (public internet) or an allow-list of domains "
        "and CIDRs, e.g. ['pypi.org', '*.github.com', '203.0.113.0/24']."
    ),
    "get_link": (
        "A URL that reaches a port the session serves (a dev server); works without network; dies with the session."
    ),
    # tools/contexts.py
    "create_context": "Make a context (named storage your sessions keep between them), or find it if it exists.",
    "list_contexts": "Your contexts: size, last use, sessions using them.",
    "get_context": "One context: size, files, last use, users, and any problem its last save had.",
    "delete_context": "Delete a context and its content for good (not while a session uses it).",
    "sync_context": (
        "Save a session's contexts (or only name) now, as they are in it; the last save wins. Sessions also "
        "save them when they end."
    ),
    "delete_session": "Delete a session now: its sandbox, files and processes are gone for good.",
    "get_session": "A session's image, status, labels and idle expiry.",
    "list_sessions": (
        "List your sessions, oldest first; with labels, only those carrying all of them. Page with next_token."
    ),
    "set_session_labels": "Replace a session's labels with exactly this map ({} clears them).",
    "get_session_labels": "A session's labels, the whole key/value map.",
    # tools/commands.py
    "execute_command": (
        "Run a shell command (sh -c, stdin closed, cwd /home/user) and wait for it. Answers a status line, "
        "stdout, then stderr after a line '--- stderr ---'. Long output keeps its start and end; the full "
        "output is saved in the session (the marker says where). On timeout the process group is killed, "
        "and so is what it left running: use start_process for servers."
    ),
    "start_process": (
        "Start a long-running command (sh -c) in the background, stdin open; returns its process_id at "
        "once. Then read_process_output, write_process_input, wait_process, kill_process."
    ),
    "read_process_output": (
        "A background process's output since cursor (omit: from the start), after its status line. "
        "wait_ms > 0 waits for new output or exit. Pass the returned cursor next time."
    ),
    "write_process_input": "Write text to a background process's stdin; eof=true closes stdin after.",
    "wait_process": "Wait up to timeout_ms for a background process to exit; returns its status.",
    "kill_process": "Stop a background process and its process group (TERM, then KILL after 1 s).",
    "list_processes": "The session's background processes, one per line with status.",
    # tools/files.py
    "read_file": (
        "Read a file: a header line (path, range, size, where to continue), then the text. Images come as "
        "images, other binary as base64. Large files come in 256 KiB parts (length: up to 1 MiB): continue at "
        "the offset or start_line the header names. start_line/line_count read by lines."
    ),
    "write_file": (
        "Write text to a file, creating parent directories; overwrite is atomic, append adds to the end. "
        "Only /home/user and /tmp are writable."
    ),
    "edit_file": (
        "Edit a text file by exact replacements in order; each old_text must occur exactly once. "
        "Answers the unified diff; dry_run=true writes nothing."
    ),
    "list_directory": "List a directory, one entry per line: kind, size, name. details=true adds permissions and time.",
    "get_file_info": "A path's type, size, permissions and times (a symlink itself, and its target).",
    "search_files": (
        "Find paths below path matching a glob: a name ('*.py') or a relative path ('src/**/*.ts'). "
        "One path per line; exclude_patterns prune (['node_modules', '.git']). Capped."
    ),
    "create_directory": "Create a directory and its parents; fine if it exists.",
    "move_file": "Move or rename a file or directory; the destination must not exist.",
    # tools/desktop.py
    "get_installed_apps": "Applications the session can start: name and start_cmd for start_app, one per line.",
    "start_app": (
        "Start an application on the desktop (a command, e.g. 'xterm'). Waits up to wait_ms for its window; "
        "answers its processes, the window and a process_id for read_process_output."
    ),
    "stop_app": "Stop an application by exactly one of: pid (and its children), pname, or stop_cmd.",
    "list_visible_apps": "Processes that own a visible window, one per line with window ids.",
    "list_windows": "Top-level windows, one per line: window_id, title, WxH+X+Y, state, owner; child windows below.",
    "get_active_window": "The window that has the keyboard focus.",
    "control_window": (
        "Activate, maximize, minimize, restore, close, fullscreen or resize (width, height) a window; "
        "checks the effect and answers the window afterwards."
    ),
    "set_focus_mode": (
        "While on, the active window keeps the focus: a window that takes it is sent back behind at once. "
        "control_window activate moves the lock."
    ),
    "take_screenshot": "A screenshot of the whole screen (png or jpeg), under 1 MB; max_width scales it down.",
    "input_action": (
        "Mouse and keyboard on the desktop: click/move/scroll at x, y; drag to to_x, to_y; type text "
        "('\\n' presses Return); keys pressed together, e.g. ['ctrl', 'c']. Keys go to the active window."
    ),
}
