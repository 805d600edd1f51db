"""Image and PDF blocks as the API checks them, with the API's wording (see `S_VISION` and
`S_PDF` in `tuiagent.llm.models`): media types, base64 that decodes, the data matching its
declared type, 5 MB per image (as sent, base64), 8000 px a side (2000 px once a request holds
more than 20 images), and 100 pages per PDF."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from tuiagent.llm.tokens import image_kind, image_size

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_SIDE = 8000
MANY_IMAGES = 20
MAX_SIDE_MANY = 2000
MAX_PDF_PAGES = 100
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def _blocks(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every content block with its path, tool results' blocks included."""
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            yield f"messages.{i}.content.{j}", block
            inner = block.get("content")
            if block.get("type") == "tool_result" and isinstance(inner, list):
                for k, sub in enumerate(inner):
                    if isinstance(sub, dict):
                        yield f"messages.{i}.content.{j}.tool_result.content.{k}", sub


def media_error(body: dict[str, Any]) -> str | None:
    """What the API refuses in the request's image and document blocks, or None."""
    images = [(path, b) for path, b in _blocks(body) if b.get("type") == "image"]
    for path, block in images:
        if problem := _image_error(path, block, many=len(images) > MANY_IMAGES):
            return problem
    for path, block in _blocks(body):
        if block.get("type") == "document" and (problem := _pdf_error(path, block)):
            return problem
    return None


def _decoded(source: dict[str, Any]) -> bytes | None:
    try:
        return base64.b64decode(str(source.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        return None


def _image_error(path: str, block: dict[str, Any], *, many: bool) -> str | None:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return None  # a URL or a file: fetched by the API, not checked here
    media_type = source.get("media_type")
    if media_type not in IMAGE_TYPES:
        return (
            f"{path}.image.source.base64.media_type: Input should be 'image/jpeg', "
            "'image/png', 'image/gif' or 'image/webp'"
        )
    sent = len(str(source.get("data", "")))
    if sent > MAX_IMAGE_BYTES:
        return (
            f"{path}.image.source.base64: image exceeds 5 MB maximum: {sent} bytes > "
            f"{MAX_IMAGE_BYTES} bytes"
        )
    data = _decoded(source)
    kind = image_kind(data) if data else None
    if data is None or kind is None:
        return "Could not process image"
    if kind != media_type:
        return f"{path}.image.source.base64.data: Image does not match the provided media type {media_type}"
    size = image_size(kind, data)
    if size is None:
        return "Could not process image"
    if max(size) > MAX_SIDE:
        return (
            f"{path}.image.source.base64.data: At least one of the image dimensions exceed "
            f"max allowed size: {MAX_SIDE} pixels"
        )
    if many and max(size) > MAX_SIDE_MANY:
        return (
            f"{path}.image.source.base64.data: At least one of the image dimensions exceed "
            f"max allowed size for many-image requests: {MAX_SIDE_MANY} pixels"
        )
    return None


def _pdf_error(path: str, block: dict[str, Any]) -> str | None:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return None
    if source.get("media_type") != "application/pdf":
        return None
    data = _decoded(source)
    if data is None or not data.startswith(b"%PDF-"):
        return "The PDF specified was not valid."
    if len(_PAGE.findall(data)) > MAX_PDF_PAGES:
        return f"A maximum of {MAX_PDF_PAGES} PDF pages may be provided."
    return None
