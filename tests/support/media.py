"""Images for the tests: real PNGs of a given size."""

from __future__ import annotations

import base64
import struct
import zlib


def png(width: int, height: int, padding: int = 0) -> bytes:
    """A PNG of that size (one row of its pixels is enough to read it), then `padding` zero
    bytes: the bulk of a big file, which sizes nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1))
    image = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
    return image + chunk(b"IEND", b"") + bytes(padding)


def png_base64(width: int, height: int, padding: int = 0) -> str:
    """`png`, as an image block's base64 source carries it."""
    return base64.b64encode(png(width, height, padding)).decode()
