"""Recorded real API traffic (shared/wire, copied into tests/fixtures/wire), and the offline
model's answer to one request in this process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import yaml

from tests.support import FIXTURES
from tuiagent.offline import OfflineModel

WIRE = FIXTURES / "wire"


def wire(name: str) -> dict[str, Any]:
    """A recorded cassette from shared/wire (copied into tests/fixtures/wire)."""
    data: dict[str, Any] = yaml.safe_load((WIRE / name).read_text())
    return data


def wire_body(interaction: dict[str, Any]) -> str:
    """The response body of one recorded interaction, in either cassette dialect."""
    response = interaction["response"]
    if "parsed_body" in response:
        return json.dumps(response["parsed_body"])
    body = response["body"]
    if "string" in body:
        return str(body["string"])
    if "content" in body:
        content = body["content"]
        return content if isinstance(content, str) else json.dumps(content)
    return json.dumps(interaction["response"]["parsed_body"])


def offline_answer(body: Any, path: str = "/v1/messages") -> httpx2.Response:
    """The offline model's whole answer to one request, in this process (no server)."""

    async def go() -> httpx2.Response:
        request = httpx2.Request("POST", "http://offline" + path, json=body)
        response = await OfflineModel().handle_async_request(request)
        await response.aread()
        return response

    return asyncio.run(go())
