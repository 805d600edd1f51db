"""The offline model asked for sub-agents by a client whose tool starts them (the coding
agent's `Agent`): it starts one per step, all in one answer, as a model starts parallel work,
then answers from what each found."""

from __future__ import annotations

from typing import Any

from tuiagent.offline.brain import reply

AGENT = {
    "name": "Agent",
    "description": "Launch a new agent",
    "input_schema": {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "prompt": {"type": "string"},
            "subagent_type": {"type": "string"},
        },
        "required": ["description", "prompt"],
    },
}
READ = {
    "name": "Read",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
}
ASK = "Use two sub-agents in parallel: one lists the files here, one reads a.txt"


def _body(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "claude-opus-4-8", "max_tokens": 500, "messages": messages, "tools": tools}


def test_asked_for_sub_agents_it_starts_one_per_step_in_one_answer() -> None:
    turn = reply(_body([{"role": "user", "content": ASK}], [AGENT, READ]))
    calls = [turn.tool_call, *turn.also]
    assert [c.name for c in calls if c] == ["Agent", "Agent"]
    assert [c.input for c in calls if c] == [
        {
            "description": "List the files",
            "prompt": "List the files in the workspace.",
            "subagent_type": "general-purpose",
        },
        {
            "description": "Read a.txt",
            "prompt": "Read a.txt and say what it holds.",
            "subagent_type": "general-purpose",
        },
    ]
    # Each sub-agent's own request (its prompt, the tools it has) maps to the step.
    sub = reply(_body([{"role": "user", "content": calls[1].input["prompt"]}], [READ]))  # type: ignore[union-attr]
    assert sub.tool_call is not None and sub.tool_call.name == "Read"
    assert sub.tool_call.input["file_path"].endswith("a.txt") and not sub.also


def test_once_they_answered_it_says_what_each_found() -> None:
    first = reply(_body([{"role": "user", "content": ASK}], [AGENT]))
    calls = [first.tool_call, *first.also]
    uses = [
        {"type": "tool_use", "id": f"toolu_{i}", "name": c.name, "input": c.input}
        for i, c in enumerate(calls)
        if c
    ]
    results = [
        {"type": "tool_result", "tool_use_id": "toolu_0", "content": [
            {"type": "text", "text": "The workspace has 2 files and 0 folders."},
            {"type": "text", "text": "agentId: a1 (use SendMessage ...)\n<usage>tool_uses: 1</usage>"},
        ]},
        {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": "timed out"},
    ]  # fmt: skip
    messages = [
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": uses},
        {"role": "user", "content": results},
    ]
    done = reply(_body(messages, [AGENT]))
    assert done.tool_call is None and not done.also
    assert done.text == (
        "The sub-agents found:\n"
        "- List the files: The workspace has 2 files and 0 folders.\n"
        "- Read a.txt: failed: timed out"
    )


def test_without_the_words_or_the_tool_it_starts_none() -> None:
    plain = reply(_body([{"role": "user", "content": "read a.txt"}], [AGENT, READ]))
    assert plain.tool_call is not None and plain.tool_call.name == "Read" and not plain.also
    no_tool = reply(_body([{"role": "user", "content": ASK}], [READ]))
    assert no_tool.tool_call is not None and no_tool.tool_call.name == "Read"
