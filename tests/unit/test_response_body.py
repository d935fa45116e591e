"""Reading a webhook's answer up to a byte limit, after decompression."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from taskproc.tasks.response_body import read_limited

TEXT = b"The quick brown fox jumps over the lazy dog. " * 200  # 9,000 bytes


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


class Pieces(httpx.AsyncByteStream):
    """A body arriving in small pieces, as from a network."""

    def __init__(self, body: bytes, size: int = 512) -> None:
        self._pieces = [body[i:i + size] for i in range(0, len(body), size)]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


def answer(body: bytes, encoding: str | None = None) -> httpx.Response:
    headers = {"Content-Encoding": encoding} if encoding else {}
    return httpx.Response(200, headers=headers, stream=Pieces(body))


@pytest.mark.parametrize(("encoding", "encode"), [
    (None, lambda data: data),
    ("identity", lambda data: data),
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", raw_deflate),  # what some servers send as deflate
])
async def test_the_decoded_body_is_cut_at_the_limit(encoding: str | None, encode: object) -> None:
    assert callable(encode)

    assert await read_limited(answer(encode(TEXT), encoding), 1000) == TEXT[:1000]
    assert await read_limited(answer(encode(TEXT), encoding), 100_000) == TEXT


async def test_a_limit_of_zero_keeps_nothing() -> None:
    assert await read_limited(answer(gzip.compress(TEXT), "gzip"), 0) == b""


async def test_an_encoding_it_does_not_undo_is_kept_as_received() -> None:
    nested = gzip.compress(gzip.compress(TEXT))

    assert await read_limited(answer(b"\x8b\x00brotli?", "br"), 100) == b"\x8b\x00brotli?"
    assert await read_limited(answer(nested, "gzip, gzip"), 10_000) == nested


async def test_a_corrupt_gzip_body_is_a_decoding_error() -> None:
    with pytest.raises(httpx.DecodingError):
        await read_limited(answer(b"not gzip at all", "gzip"), 100)
