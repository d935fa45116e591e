"""Read at most `limit` bytes of an answer's body, after decompression, from its stream.

httpx would decompress a whole network chunk at once (a 64 KiB gzip bomb chunk is 64 MiB), so the
body is read raw and decompressed here with zlib's `max_length`: memory stays within the limit
plus one network chunk whatever the ratio. Reading also stops after `limit + _RAW_SLACK` raw bytes,
so a stream that decompresses to nothing cannot go on forever either; the caller's deadline
bounds the time.
"""

from __future__ import annotations

import zlib

import httpx

# Raw bytes read beyond the limit at most: room for compression headers and one network chunk.
_RAW_SLACK = 64 * 1024


class _Decoder:
    """One content coding (gzip, deflate or identity), with output bounded per call."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib = self._new()

    def _new(self) -> zlib._Decompress | None:
        if self._coding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._coding == "deflate":
            return zlib.decompressobj(zlib.MAX_WBITS)
        return None

    def decode(self, data: bytes, max_length: int) -> bytes:
        if self._zlib is None:
            return data[:max_length]
        try:
            return self._zlib.decompress(data, max_length)
        except zlib.error:
            if self._coding != "deflate":
                raise
            # Some servers send raw deflate without the zlib wrapper.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._zlib.decompress(data, max_length)


def _coding(response: httpx.Response) -> str:
    """The one content coding to undo; several, or one unknown, are kept as received."""
    header: str = response.headers.get("content-encoding", "")
    codings = [part.strip().lower() for part in header.split(",") if part.strip()]
    codings = [coding for coding in codings if coding != "identity"]
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return codings[0]
    return "identity"


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The first `limit` bytes of the decoded body; the rest is not read."""
    decoder = _Decoder(_coding(response))
    kept = bytearray()
    raw_read = 0
    async for chunk in response.aiter_raw():
        raw_read += len(chunk)
        try:
            # Never 0, which zlib reads as "no limit".
            kept += decoder.decode(chunk, max(limit - len(kept), 1))
        except zlib.error as error:
            raise httpx.DecodingError(f"invalid {_coding(response)} body") from error
        if len(kept) >= limit or raw_read > limit + _RAW_SLACK:
            break
    return bytes(kept[:limit])
