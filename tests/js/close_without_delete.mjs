// A TypeScript-SDK MCP client that goes away without HTTP DELETE, as client.close() and the MCP
// Inspector CLI do. Driven by tests/e2e/test_http_client_gone.py over stdin/stdout, one JSON per line:
//   MCP_BEARER_TOKEN=... node close_without_delete.mjs URL COMMAND [close|exit]
// 1. connects over streamable HTTP (2025-11-25, Mcp-Session-Id; the SDK opens its GET stream),
// 2. creates a session and prints {"session_id": ...},
// 3. starts execute_command(COMMAND) without waiting for it and prints {"started": true},
// 4. on a "go" line on stdin: client.close() (aborts every request, sends no DELETE) and exits 0,
//    or with "exit" leaves the process abruptly (process.exit with the call still in flight).
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, command, how = "close"] = process.argv.slice(2);
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");

// The server's token, sent as a client configured with `"headers": {"Authorization": "Bearer ..."}` does.
const token = process.env.MCP_BEARER_TOKEN;
const requestInit = token ? { headers: { Authorization: `Bearer ${token}` } } : undefined;
const client = new Client({ name: "close-without-delete", version: "0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit }));
const created = await client.callTool({ name: "create_session", arguments: { image_id: "code_latest" } });
const sessionId = created.structuredContent.session_id;
say({ session_id: sessionId });

client
  .callTool({ name: "execute_command", arguments: { session_id: sessionId, command, timeout_ms: 600000 } }, undefined, {
    timeout: 600000,
  })
  .then((result) => say({ finished: result }))
  .catch((error) => say({ aborted: String(error) }));
say({ started: true });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() !== "go") continue;
  if (how === "exit") process.exit(0);
  await client.close();
  say({ closed: true });
  process.exit(0);
}
