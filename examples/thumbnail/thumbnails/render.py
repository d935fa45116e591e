"""Draws the thumbnail: a one-colour PNG, with the standard library's zlib.

It stands for the heavy part of a real thumbnail type (an image library such as Pillow): only
the handler imports this module, inside itself, so the gateway never loads it.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png(width: int, height: int, *, colour: bytes) -> bytes:
    """A `width` x `height` PNG (8-bit RGB) filled with `colour`, three bytes."""
    if len(colour) != 3:
        raise ValueError(f"colour must be 3 bytes (RGB), not {len(colour)}")
    row = b"\x00" + colour * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))
