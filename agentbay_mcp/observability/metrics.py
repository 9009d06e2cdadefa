"""Basic metrics in the Prometheus text format: live sessions, tool calls, errors, latencies, HTTP statuses.

Plain counters in one process (no client library): the handful of series here are rendered by hand
in the text exposition format 0.0.4. Labels never carry principals, session ids or arguments.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The server's counters; `render()` gives the /metrics page."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.latency: dict[str, _Histogram] = {}
        self.http_responses: Counter[str] = Counter()
        self._live_sessions: Callable[[], int] = lambda: 0

    def count_sessions_with(self, live_sessions: Callable[[], int]) -> None:
        """Where the live-session gauge reads from (the service, once the server's lifespan built it)."""
        self._live_sessions = live_sessions

    def observe_call(self, tool: str, outcome: str, seconds: float) -> None:
        """Record one tool call: `outcome` is ok, error (a tool error), denied or failed (an exception)."""
        self.calls[(tool, outcome)] += 1
        self.latency.setdefault(tool, _Histogram()).observe(seconds)

    def observe_http(self, status: int) -> None:
        """Record one HTTP response status."""
        self.http_responses[str(status)] += 1

    def render(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        lines = [
            "# HELP agentbay_mcp_live_sessions Sessions currently held by this server.",
            "# TYPE agentbay_mcp_live_sessions gauge",
            f"agentbay_mcp_live_sessions {self._live_sessions()}",
            "# HELP agentbay_mcp_tool_calls_total Tool calls by tool and outcome (ok, error, denied, failed).",
            "# TYPE agentbay_mcp_tool_calls_total counter",
        ]
        lines += [
            f'agentbay_mcp_tool_calls_total{{tool="{_label(tool)}",outcome="{outcome}"}} {n}'
            for (tool, outcome), n in sorted(self.calls.items())
        ]
        errors: Counter[str] = Counter()
        for (tool, outcome), n in self.calls.items():
            if outcome != "ok":
                errors[tool] += n
        lines += [
            "# HELP agentbay_mcp_tool_errors_total Tool calls that did not succeed, by tool.",
            "# TYPE agentbay_mcp_tool_errors_total counter",
        ]
        lines += [f'agentbay_mcp_tool_errors_total{{tool="{_label(t)}"}} {n}' for t, n in sorted(errors.items())]
        lines += [
            "# HELP agentbay_mcp_tool_call_duration_seconds Tool call latency.",
            "# TYPE agentbay_mcp_tool_call_duration_seconds histogram",
        ]
        for tool, histogram in sorted(self.latency.items()):
            name = _label(tool)
            running = 0
            for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'agentbay_mcp_tool_call_duration_seconds_bucket{{tool="{name}",le="{le}"}} {running}')
            lines.append(f'agentbay_mcp_tool_call_duration_seconds_sum{{tool="{name}"}} {histogram.total:.6f}')
            lines.append(f'agentbay_mcp_tool_call_duration_seconds_count{{tool="{name}"}} {running}')
        lines += [
            "# HELP agentbay_mcp_http_responses_total HTTP responses by status code.",
            "# TYPE agentbay_mcp_http_responses_total counter",
        ]
        lines += [
            f'agentbay_mcp_http_responses_total{{code="{code}"}} {n}' for code, n in sorted(self.http_responses.items())
        ]
        return "\n".join(lines) + "\n"
