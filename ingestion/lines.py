"""The lines of a file of events (or of standard input) as ``starter.py ingest`` reads them: bytes
in bounded chunks, off the event loop, each line handed on as soon as it is complete.

A line over :data:`MAX_LINE_BYTES` is never held whole: its bytes are dropped as they come, and
it is handed on as a :class:`~journeys.ingest.BadLine`, as are the bytes that are not UTF-8
(:func:`journeys.ingest.parse_line`). A UTF-8 BOM before the first line is dropped. Since each
chunk is what the stream has (``read1``), ``tail -f events | starter.py ingest -`` routes each
line as it is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

from journeys.ingest import BadLine

#: The longest line: an event's properties (32 KB) and profile (64 KB) with room for escapes.
MAX_LINE_BYTES = 1024 * 1024
#: The most read at once.
CHUNK_BYTES = 64 * 1024
BOM = b"\xef\xbb\xbf"


async def read_lines(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES
                     ) -> AsyncIterator[tuple[int, bytes | BadLine]]:
    """Each line of ``stream`` with its number (from 1), without its line break, or a BadLine."""
    number, line, too_long = 0, bytearray(), False

    def done() -> tuple[int, bytes | BadLine]:
        nonlocal too_long
        data = bytes(line)
        line.clear()
        if too_long:
            too_long = False
            return number, BadLine(number, f"over {max_bytes} bytes: a line is one event")
        return number, data[len(BOM):] if number == 1 and data.startswith(BOM) else data

    while chunk := await asyncio.to_thread(_read_some, stream):
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            number += 1
            if not too_long:
                line.extend(memoryview(chunk)[start:end])
                too_long = len(line) > max_bytes
            yield done()
            start = end + 1
        if not too_long:
            line.extend(memoryview(chunk)[start:])
            if len(line) > max_bytes:  # drop it now, and what follows up to its end
                too_long = True
                line.clear()
    if line or too_long:
        number += 1
        yield done()


def _read_some(stream: BinaryIO) -> bytes:
    """What the stream has now (a pipe's last write), at most :data:`CHUNK_BYTES`; b"" at its end."""
    read1 = getattr(stream, "read1", None)
    return read1(CHUNK_BYTES) if read1 is not None else stream.read(CHUNK_BYTES)
