"""Paths inside the NUL-terminated strings of a binary (conda packages build theirs with long
placeholder prefixes), replaced without moving a byte of the rest of the file."""

from __future__ import annotations

import os
import re

from bundler.errors import BundlerError


def replace_padded(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace `old` with `new` inside the NUL-terminated strings of a binary without moving
    anything: a string that gets shorter is padded with NULs, one that gets longer takes them
    from its padding. The caller checks that `new` fits the string's original slot."""
    def replace(match: re.Match[bytes]) -> bytes:
        segment = match.group()
        body = segment.rstrip(b"\x00")
        spare = len(segment) - len(body)
        result = body.replace(old, new)
        if len(result) - len(body) >= spare:
            raise BundlerError(f"no room for {os.fsdecode(new)} in a binary string")
        return result + b"\x00" * (spare - (len(result) - len(body)))

    return re.sub(re.escape(old) + rb"[^\x00]*\x00+", replace, data)


def canonical_binary(data: bytes, prefix: bytes, placeholder: bytes) -> bytes:
    """`data` with `prefix` replaced by `placeholder` and the padding after those strings
    dropped: the same for every place the binary was relocated to."""
    return re.sub(re.escape(prefix) + rb"[^\x00]*\x00+",
                  lambda m: m.group().rstrip(b"\x00").replace(prefix, placeholder) + b"\x00", data)
