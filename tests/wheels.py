"""Real (tiny) wheels made on the spot, for pip to choose among from a local folder."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def wheel(folder: Path, name: str, tag: str, version: str = "1.0") -> Path:
    """A wheel of one module `name`, tagged `tag` (e.g. cp311-cp311-manylinux_2_99_x86_64)."""
    dist = f"{name}-{version}"
    files = {f"{name}.py": b"VALUE = 1\n",
             f"{dist}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                        f"Tag: {tag}\n".encode()}

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{n},sha256={digest(d)},{len(d)}\n" for n, d in files.items()) \
        + f"{dist}.dist-info/RECORD,,\n"
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(f"{dist}.dist-info/RECORD", record)
    return path
