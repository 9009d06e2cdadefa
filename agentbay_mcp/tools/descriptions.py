"""Every tool's description, by tool name: what a client shows its model (one place to write them)."""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # tools/sessions.py
    "create_session": (
        "Create a new disposable sandbox session and return its session_id, which every other tool "
        "needs. The session is yours alone, is deleted automatically when this conversation ends or "
        "after it sits unused past its idle lease (see idle_expires_at), and can be deleted early with "
        "delete_session. image_id 'linux_latest' has a desktop (apps, windows, screenshots); "
        "'code_latest' is shell and files only. Optional labels let you find the session again with "
        "list_sessions."
    ),
    "delete_session": (
        "Delete a session now: its sandbox, files and processes are destroyed and cannot be recovered. "
        "Use it when you are done with a session; sessions are also deleted automatically when the "
        "conversation ends."
    ),
    "get_session": "Get one session's details: image, status, labels, creation time and idle expiry.",
    "list_sessions": (
        "List your sessions, oldest first, optionally only those carrying ALL the given labels. "
        "Returns at most max_results sessions, total_count (all matches) and next_token; when "
        "next_token is not null, call again with the same labels and that next_token for the next page."
    ),
    "set_session_labels": (
        "Replace a session's labels with exactly the given map (labels not in the map are removed; "
        "pass {} to clear them). To add one label, get_session_labels first and send the merged map."
    ),
    "get_session_labels": "Get a session's labels, the whole key/value map (use set_session_labels to change it).",
    # tools/commands.py
    "execute_command": (
        "Run a shell command (sh -c) in the session's sandbox and wait for it. Returns exit_code, stdout "
        "and stderr separately, duration_ms and timed_out. stdin is closed. Each stream is capped "
        "(64 KiB by default): longer output keeps its start and end with a marker in between, and the "
        "complete output is saved in the session at full_stdout_path / full_stderr_path. When "
        "timeout_ms runs out the whole process group is killed and the output so far is returned. "
        "Processes the command leaves behind in its process group are killed when it exits: use start_process "
        "for servers "
        "and other long-running work. The default directory is /home/user."
    ),
    "start_process": (
        "Start a long-running command (sh -c) in the background with stdin open and return its process_id "
        "at once. Then use read_process_output (with wait_ms to wait for new output server-side), "
        "write_process_input, wait_process and kill_process. It dies with the session."
    ),
    "read_process_output": (
        "Read a background process's output written since cursor (omit cursor to read from the start), and "
        "its status. With wait_ms > 0 the call waits server-side until there is new output or the process "
        "exits, so you do not need to poll in a loop. Pass the returned cursor next time. If more is true, "
        "more output is ready now. Very old output may have been dropped (dropped_bytes says how much)."
    ),
    "write_process_input": "Write text to a background process's stdin; set eof=true to close stdin afterwards.",
    "wait_process": "Wait up to timeout_ms for a background process to exit and return its status (running or not).",
    "kill_process": (
        "Stop a background process and everything it started (its process group). TERM (default) is "
        "followed by KILL after 1 s if it is still running; KILL is immediate."
    ),
    "list_processes": "List the session's background processes with their status.",
    # tools/files.py
    "read_file": (
        "Read a file in the session. Text comes back as text (UTF-8; undecodable bytes are replaced and "
        "invalid_utf8 says so), images (png, jpeg, gif, webp) as image content, other binary as base64. "
        "At most 256 KiB per call: next_offset (or next_line in line mode) says where to continue and "
        "size is the file's total size. Use start_line/line_count to read by lines."
    ),
    "write_file": (
        "Write text to a file in the session, creating parent directories. mode 'overwrite' (default) "
        "replaces the file atomically (readers never see half a file); 'append' adds to its end. Only "
        "/home/user and /tmp are writable."
    ),
    "edit_file": (
        "Edit a text file by exact replacements, applied in order: each old_text must occur exactly once "
        "(if not, the error says how many times it matched; add surrounding lines to make it unique). "
        "Returns a unified diff. dry_run=true shows the diff without writing. The write is atomic."
    ),
    "list_directory": "List a directory in the session (default /home/user): names, types, sizes, permissions, times.",
    "get_file_info": "Get a path's type, size, permissions and times (a symlink itself, with its target).",
    "search_files": (
        "Find files and directories below path whose name matches a glob ('*.py'), or whose path relative "
        "to path matches one containing '/' ('src/**/*.ts'). exclude_patterns prune matches and whole "
        "directories (e.g. ['node_modules', '.git']). Symlinks are not followed; results are capped."
    ),
    "create_directory": "Create a directory (and its parents); fine if it already exists.",
    "move_file": "Move or rename a file or directory in the session. Fails if the destination already exists.",
    # tools/desktop.py
    "get_installed_apps": (
        "Applications installed in the session (from its .desktop entries): name, start_cmd to pass to "
        "start_app, work_directory. include_system=true also lists hidden entries and settings tools. "
        "The first desktop tool call on a session starts its desktop (a fraction of a second)."
    ),
    "start_app": (
        "Start an application on the session's desktop (a shell command, e.g. 'xterm' or a start_cmd from "
        "get_installed_apps). Waits up to wait_ms for its window and returns it with the started processes "
        "(pid, pname, cmdline) and a proc_id whose output read_process_output can show. Fails with the "
        "application's error output if it is not found or exits at once."
    ),
    "stop_app": (
        "Stop an application, by exactly one of: pid (that process and all its children), pname (every "
        "process with that name, and their children) or stop_cmd (a shell command to run). Only the "
        "session's own processes; the desktop itself cannot be stopped this way."
    ),
    "list_visible_apps": "Processes that own a visible (not minimized) window.",
    "list_windows": (
        "Top-level windows on the session's desktop: window_id, title, outer x/y/width/height, pid and "
        "pname of the owner, state (normal, minimized, maximized, fullscreen) and child windows."
    ),
    "get_active_window": "The window that has the keyboard focus (null if none).",
    "control_window": (
        "Control a window: activate, maximize, minimize, restore, close, fullscreen, or resize (with width "
        "and height, the outer size in pixels). Checks the effect and returns the window afterwards; "
        "verified=false says it did not happen in time (e.g. an app asking before it closes). Terminals "
        "resize in whole character cells, so their size can differ by less than a cell."
    ),
    "set_focus_mode": (
        "Focus mode: while on, the active window keeps the focus; any other window that takes it (a new "
        "window, a click elsewhere) is sent back behind it at once. control_window activate moves the lock "
        "to another window. Off restores normal focus."
    ),
    "take_screenshot": (
        "Screenshot of the session's whole screen as an image (png, or jpeg for photos), scaled to "
        "max_width if given and always under 1 MB (scaled down further if needed; the reply says)."
    ),
    "input_action": (
        "Mouse and keyboard input on the session's desktop. action: click (x, y, button left|middle|right, "
        "count 2 for a double click), move (x, y), drag (x, y to to_x, to_y), scroll (x, y, direction "
        "up|down|left|right, amount), type (text, any Unicode; '\\n' presses Return), keys (a combination "
        "held together, e.g. ['ctrl', 'c'] or ['alt', 'F4'] or ['Return']). Keys go to the active window."
    ),
}
