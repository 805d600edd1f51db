"""Markers that tell any model, and the offline model in particular, what a request is for.

In one place without imports, so the agent, the offline model and the UI share them (llm
must not import agent, and the UI reads them before the SDK is loaded)."""

# Opens the system prompt of a request to summarise one tool result (agent/compress.py).
SUMMARIZE_MARKER = "[tuiagent:summarize]"
# Opens the system prompt of a compaction request (agent/context.py).
COMPACT_MARKER = "[tuiagent:compact]"
# Opens the user message that holds a compaction's summary.
SUMMARY_MARKER = "[tuiagent:summary]"
# Opens the system prompt of an eval's judge check: does an answer do what a task asks
# (tuiagent/eval/checks.py)?
CHECK_MARKER = "[tuiagent:check]"
