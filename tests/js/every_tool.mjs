// The TypeScript SDK client calling every tool over stdio, as Claude Code does. Driven by
// tests/e2e/test_ts_client.py:  node every_tool.mjs PYTHON [server args...]
// The SDK validates each structuredContent against the tool's outputSchema (ajv) and throws on a
// mismatch, and refuses a result without structuredContent from a tool that declares a schema.
// Prints one JSON line per call: {"tool", "text", "structured"}; then {"done": true}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [python, ...serverArgs] = process.argv.slice(2);
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const client = new Client({ name: "every-tool", version: "0" });
await client.connect(
  new StdioClientTransport({ command: python, args: ["-m", "agentbay_mcp", ...serverArgs], env: process.env, stderr: "inherit" }),
);
const { tools } = await client.listTools(); // caches the output schema validators
say({ tools: tools.map((tool) => [tool.name, Boolean(tool.outputSchema)]) });

async function call(name, args) {
  const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 60000 });
  if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result.content)}`);
  const text = result.content.filter((block) => block.type === "text").map((block) => block.text).join("\n");
  say({ tool: name, text, structured: result.structuredContent ?? null });
  return result.structuredContent ?? {};
}

const code = (await call("create_session", { image_id: "code_latest", labels: { via: "ts" } })).session_id;
await call("get_session", { session_id: code });
await call("list_sessions", { labels: { via: "ts" } });
await call("set_session_labels", { session_id: code, labels: { via: "ts", more: "yes" } });
await call("get_session_labels", { session_id: code });
await call("set_session_network", { session_id: code, network: "off" });
await call("get_link", { session_id: code, port: 8000 });
await call("create_context", { name: "ts-cache" });
const mounted = (await call("create_session", { image_id: "code_latest", contexts: [{ name: "ts-cache", path: "/home/user/.cache" }] })).session_id;
await call("sync_context", { session_id: mounted });
await call("delete_session", { session_id: mounted });
await call("list_contexts", {});
await call("get_context", { name: "ts-cache" });
await call("delete_context", { name: "ts-cache" });
await call("execute_command", { session_id: code, command: "echo out; echo err >&2; exit 3" });
const proc = (await call("start_process", { session_id: code, command: "cat" })).process_id;
await call("write_process_input", { session_id: code, process_id: proc, data: "hello\n", eof: true });
await call("read_process_output", { session_id: code, process_id: proc, wait_ms: 5000 });
await call("wait_process", { session_id: code, process_id: proc, timeout_ms: 10000 });
await call("list_processes", { session_id: code });
const sleeper = (await call("start_process", { session_id: code, command: "sleep 60" })).process_id;
await call("kill_process", { session_id: code, process_id: sleeper, signal: "KILL" });
await call("write_file", { session_id: code, path: "dir/a.txt", content: "one\ntwo\n" });
await call("read_file", { session_id: code, path: "dir/a.txt" });
await call("read_file", { session_id: code, path: "dir/a.txt", start_line: 2, line_count: 1 });
await call("edit_file", { session_id: code, path: "dir/a.txt", edits: [{ old_text: "two", new_text: "2" }] });
await call("get_file_info", { session_id: code, path: "dir/a.txt" });
await call("create_directory", { session_id: code, path: "dir/sub" });
await call("move_file", { session_id: code, source: "dir/a.txt", destination: "dir/sub/b.txt" });
await call("list_directory", { session_id: code, path: "dir" });
await call("list_directory", { session_id: code, path: "dir", details: true });
await call("search_files", { session_id: code, path: "/home/user", pattern: "*.txt" });
if (process.env.AGENTBAY_MCP_WORKSPACES) {
  // The test offers workspace "proj" (a root server only): edit it in a session, see the diff, apply it.
  const ws = (await call("create_session", { image_id: "code_latest", workspaces: ["proj"] })).session_id;
  await call("execute_command", { session_id: ws, command: "echo changed > /workspace/proj/a.txt" });
  await call("workspace_diff", { session_id: ws, name: "proj" });
  await call("workspace_apply", { session_id: ws, name: "proj", paths: ["a.txt"] });
}

const desk = (await call("create_session", { image_id: "linux_latest" })).session_id;
await call("get_installed_apps", { session_id: desk });
const started = await call("start_app", { session_id: desk, start_cmd: "xmessage -title ts-window hello", wait_ms: 30000 });
await call("list_windows", { session_id: desk });
await call("get_active_window", { session_id: desk });
await call("list_visible_apps", { session_id: desk });
if (started.window) {
  await call("control_window", { session_id: desk, window_id: started.window.window_id, action: "maximize" });
}
await call("set_focus_mode", { session_id: desk, on: true });
await call("set_focus_mode", { session_id: desk, on: false });
await call("input_action", { session_id: desk, action: "move", x: 10, y: 20 });
await call("take_screenshot", { session_id: desk, max_width: 320 });
await call("stop_app", { session_id: desk, pname: "xmessage" });
await call("delete_session", { session_id: desk });
await call("delete_session", { session_id: code });
say({ done: true });
await client.close();
