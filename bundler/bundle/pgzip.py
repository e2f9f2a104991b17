"""gzip on every core, with output that does not depend on their number."""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import struct
from typing import IO, Any


class ParallelGzip:
    """gzip on every core, as pigz does: 1 MiB blocks compressed on their own (each with the 32
    KiB before it as dictionary) and joined in order. The blocks are cut by offset, so the bytes
    do not depend on the number of cores or on how the data arrived."""

    BLOCK = 1 << 20
    WINDOW = 1 << 15
    LEVEL = 6

    def __init__(self, raw: IO[bytes]) -> None:
        self.codec = _codec()
        self.raw, self.level = raw, self.LEVEL
        self.pending = bytearray()
        self.previous = b""
        self.crc = 0
        self.size = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self.queued: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
        raw.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # no name, mtime 0, unix

    def _deflate(self, block: bytes, dictionary: bytes) -> bytes:
        extra = {"zdict": dictionary} if dictionary else {}
        c = self.codec.compressobj(self.level, self.codec.DEFLATED, -15, 8, **extra)
        return bytes(c.compress(block) + c.flush(self.codec.Z_SYNC_FLUSH))

    def _submit(self, block: bytes) -> None:
        self.crc = self.codec.crc32(block, self.crc)
        self.size += len(block)
        self.queued.append(self.pool.submit(self._deflate, block, self.previous[-self.WINDOW:]))
        self.previous = block
        while len(self.queued) > 2 * (os.cpu_count() or 1):
            self.raw.write(self.queued.popleft().result())

    def write(self, data: bytes) -> int:
        self.pending += data
        while len(self.pending) >= self.BLOCK:
            self._submit(bytes(self.pending[:self.BLOCK]))
            del self.pending[:self.BLOCK]
        return len(data)

    def close(self) -> None:
        if self.pending:
            self._submit(bytes(self.pending))
            self.pending.clear()
        while self.queued:
            self.raw.write(self.queued.popleft().result())
        self.pool.shutdown()
        self.raw.write(b"\x03\x00")  # an empty last block
        self.raw.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))

    @staticmethod
    def codec_name() -> str:
        """The deflate library and its version: what decides the bytes, besides the input."""
        codec = _codec()
        return f"{codec.__name__}-{getattr(codec, 'ZLIBNG_VERSION', None) or codec.ZLIB_VERSION}"


@functools.cache
def _codec() -> Any:
    try:
        from zlib_ng import zlib_ng  # twice as fast as zlib at the same level

        return zlib_ng
    except ImportError:
        import zlib

        return zlib
