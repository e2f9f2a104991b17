"""Conda environments entering a bundle, packed with conda-pack.

conda-pack takes each file from the package cache as the package shipped it, with the
package's prefix placeholder, and records which files hold one. Its own `conda-unpack`
replaces those placeholders once, after which the environment can never move again; bundler
instead writes the bundle's path in at build time and hands the files to the bundle's
relocation, which rewrites them on every move: text files freely, binaries within the length
of the placeholder they were built with (NUL padding makes up the difference, as conda does).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bundler import progress
from bundler.build.interpreters import BuildContext, PythonInfo, probe
from bundler.bundle.cstrings import replace_padded
from bundler.errors import BundlerError

# conda-pack's own relocation tool, replaced by the bundle's relocation.
_DROPPED = ("bin/conda-unpack", "bin/conda_unpack_progress.py")


def check_env(prefix: Path) -> None:
    if not prefix.is_dir():
        raise BundlerError(f"conda = {str(prefix)!r}: no such folder")
    if not (prefix / "conda-meta").is_dir():
        raise BundlerError(f"{prefix} is not a conda environment (it has no conda-meta/): name "
                           "an environment's prefix, e.g. the output of `conda info --base` or "
                           "~/miniconda3/envs/NAME")
    if not (prefix / "bin" / "python").exists():
        raise BundlerError(f"conda environment {prefix} has no Python: install one into it "
                           "(conda install -p PREFIX python)")


@dataclass(frozen=True)
class CondaPacked:
    """A conda environment packed by conda-pack and unpacked at its place in the bundle."""

    prefix: Path

    def materialize(self, ctx: BuildContext, dest: Path) -> PythonInfo:
        import conda_pack

        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            env = conda_pack.CondaEnv.from_prefix(str(self.prefix))
            with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".conda-pack-") as tmp:
                packed = Path(tmp) / "env.tar"
                progress.watch(packed)  # conda-pack's progress: the size of what it wrote
                try:
                    env.pack(output=str(packed), format="tar", verbose=False)
                finally:
                    progress.watch(None)
                with tarfile.open(packed) as tar:
                    if hasattr(tarfile, "tar_filter"):  # conda-pack wrote it a moment ago
                        tar.extractall(dest, filter="tar")
                    else:
                        tar.extractall(dest)
        except conda_pack.CondaPackException as exc:
            raise BundlerError(_explain(self.prefix, exc)) from exc
        for rel in _DROPPED:
            (dest / rel).unlink(missing_ok=True)
        for file in env.files:
            target = dest / file.target
            if file.file_mode in ("text", "binary") and file.prefix_placeholder:
                placeholder = file.prefix_placeholder
            elif file.file_mode == "unknown":  # not from a package: it may name the env's path
                placeholder = str(self.prefix)
            else:
                continue
            if target.is_symlink() or not target.is_file():
                continue
            data = target.read_bytes()
            needle = placeholder.encode()
            if needle not in data:
                continue
            if file.file_mode == "binary":
                if len(needle) < len(os.fsencode(dest)):
                    raise BundlerError(f"{self.prefix}: {file.target} was built with a "
                                       f"{len(needle)}-byte prefix placeholder, shorter than the "
                                       f"build's staging path {dest}: build with a shorter --output")
                ctx.binary_slots[target] = (dest, len(needle))
                target.write_bytes(replace_padded(data, needle, os.fsencode(dest)))
            elif file.file_mode == "text" or b"\0" not in data:
                target.write_bytes(data.replace(needle, os.fsencode(dest)))
            else:
                ctx.log(f"  warning: {file.target} names the environment's path in binary data "
                        "that conda did not record; it cannot be relocated")
        return probe(dest / "bin" / "python")


def _explain(prefix: Path, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    advice = ""
    if "editable" in text.lower():
        advice = ("; install those packages normally (pip install PKG, not pip install -e) or "
                  "ship them as code versions")
    elif "deleted" in text.lower() or "missing" in text.lower():
        advice = "; reinstall the packages named (conda install -p PREFIX --force-reinstall PKG)"
    elif "cache" in text.lower():
        advice = "; conda clean removed their package files: reinstall them"
    return f"conda-pack cannot pack {prefix}: {text}{advice}"
