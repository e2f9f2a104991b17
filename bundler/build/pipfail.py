"""Why pip could not install, in pip's own words: no such project, no such version, a conflict.

pip's ERROR lines come first, whatever the glibc floor. The floor is blamed only when a second
pip run, made on failure alone, finds a wheel of the missing requirement for a newer glibc (the
floor's pip took none): then the message names that file and the glibc it needs.
"""

from __future__ import annotations

import json
import re
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from bundler.build import floor
from bundler.runner import call, clean_env

_NO_MATCH = re.compile(r"^ERROR: No matching distribution found for (\S+)", re.MULTILINE)
_REASONS = ("Could not find a version that satisfies", "No matching distribution found",
            "ResolutionImpossible", "conflicting dependencies", "Cannot install")
_UNREACHED = re.compile(r"^WARNING: (.*(?:Retrying \(Retry\(|Could not fetch URL).*)$",
                        re.MULTILINE)
_VERSIONS = re.compile(r"\(from versions: ([^)]*)\)")
_SHOWN_VERSIONS = 8  # of a long "from versions:" list, its first two and last ones are shown
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}  # PEP 600
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_\w+")
_NEWEST_MINOR = 99  # how far up a floor's "newer glibc" is looked for


@dataclass(frozen=True)
class Refusal:
    """What pip said it could not do."""

    reason: str          # its ERROR lines (and a conflict's causes), on one line
    missing: str | None  # the requirement no distribution matched, if that was it
    none: bool = False   # and pip found no version of it at all ("from versions: none")
    unreached: bool = False  # pip could not reach an index: asking it again would wait again


def read(output: str) -> Refusal | None:
    """pip's reason in `output`, when it is one of those a requirement can have (not a failed
    sdist build or a network error: those are shown as the end of pip's output)."""
    said: list[str] = []
    lines = output.splitlines()
    for at, line in enumerate(lines):
        if line.startswith("ERROR: "):
            said.append(_shorter(line[len("ERROR: "):].strip().rstrip(".")))
        elif line.strip() == "The conflict is caused by:":
            causes = []
            for cause in lines[at + 1:]:
                if not cause.startswith((" ", "\t")) or not cause.strip():
                    break
                causes.append(cause.strip())
            said.append(f"The conflict is caused by: {'; '.join(causes)}")
    if not any(reason in line for line in said for reason in _REASONS):
        return None
    said.sort(key=lambda line: line.startswith("Ignored the following"))  # the reason first
    unreached = _UNREACHED.search(output)
    if unreached:
        said.append(f"the index was not reached: {unreached[1].strip()}")
    missing = _NO_MATCH.search(output)
    if missing is None:
        return Refusal("; ".join(said), None, unreached=unreached is not None)
    none = re.search(rf"requirement {re.escape(missing[1])} .*\(from versions: none\)", output)
    return Refusal("; ".join(said), missing[1], none is not None, unreached is not None)


def _shorter(line: str) -> str:
    """A "from versions:" list of a hundred releases, cut to its ends."""
    def cut(match: re.Match[str]) -> str:
        found = [v.strip() for v in match[1].split(",")]
        if len(found) <= _SHOWN_VERSIONS:
            return match[0]
        shown = found[:2] + ["..."] + found[2 - _SHOWN_VERSIONS:]
        return f"(from versions: {', '.join(shown)}; {len(found)} in all)"
    return _VERSIONS.sub(cut, line)


def wheel_glibc(filename: str) -> floor.Version | None:
    """The glibc a wheel needs, read from its platform tags (the oldest of its manylinux tags);
    None for a wheel that is not a manylinux one."""
    platforms = filename[:-len(".whl")].split("-")[-1].split(".") if filename.endswith(".whl") \
        else []
    found = []
    for tag in platforms:
        m = _MANYLINUX.fullmatch(tag)
        legacy = _LEGACY.get(tag.split("_", 1)[0])
        if m:
            found.append((int(m[1]), int(m[2])))
        elif legacy:
            found.append(legacy)
    return min(found) if found else None


def newer_platforms(glibc: floor.Version, arch: str) -> list[str]:
    """The manylinux platform tags of every glibc 2.x newer than `glibc`."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc[1] + 1, _NEWEST_MINOR + 1)]
    return tags + [f"{name}_{arch}" for name, needs in _LEGACY.items() if needs > glibc]


def newer_wheel(python: Path, requirement: str, glibc: floor.Version,
                pip_options: tuple[str, ...]) -> tuple[str, floor.Version] | None:
    """A wheel of `requirement` (itself, not its dependencies) for a glibc newer than `glibc`,
    from the same sources, and the glibc it needs; None when there is none. pip resolves
    without installing and, from an index that serves wheel metadata, without downloading."""
    platforms = [a for tag in newer_platforms(glibc, floor.machine()) for a in ("--platform", tag)]
    with tempfile.TemporaryDirectory(prefix="bundler-pip-") as scratch:
        report = Path(scratch, "report.json")
        done = call([python, "-I", "-m", "pip", "install", "--dry-run", "--no-deps",
                     "--ignore-installed", "--only-binary", ":all:", "--target",
                     Path(scratch, "target"), "--quiet", "--disable-pip-version-check",
                     "--report", report, *platforms, *pip_options, requirement],
                    what=f"looking for a wheel of {requirement} for a newer glibc",
                    env=clean_env())
        if done.returncode != 0 or not report.is_file():  # none, or a pip without --report
            return None
        try:
            install = json.loads(report.read_text(encoding="utf-8"))["install"]
            url = install[0]["download_info"]["url"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
    file = urllib.parse.unquote(url.split("#")[0].rsplit("/", 1)[-1])
    needs = wheel_glibc(file)
    return (file, needs) if needs is not None and needs > glibc else None


def floor_to_blame(python: Path, refusal: Refusal, glibc: floor.Version, binary_only: bool,
                   pip_options: tuple[str, ...]) -> str | None:
    """How the glibc floor kept pip from the missing requirement, asked of pip once more: a
    wheel for a newer glibc exists (that file), or only sdists, which pip builds under no floor
    below this machine's glibc; None when the floor is not why."""
    if refusal.missing is None or refusal.unreached:
        return None
    newer = newer_wheel(python, refusal.missing, glibc, pip_options)
    at = floor.text(glibc)
    ways = (f"put a wheel built for it (manylinux_{glibc[0]}_{glibc[1]} or older) in a folder and "
            "build with --find-links FOLDER, ask for a lower version of it, or raise [bundle] "
            "glibc")
    if newer is not None:
        file, needs = newer
        return (f"the glibc floor is why: {file} needs glibc {floor.text(needs)}, above [bundle] "
                f"glibc = {at}, and no wheel of {refusal.missing} runs on glibc {at}: {ways} to "
                f"{floor.text(needs)}")
    found = sdist_versions(python, refusal.missing, pip_options) \
        if binary_only and refusal.none else None
    if not found:
        return None
    return (f"the glibc floor is why: {refusal.missing} has sdists only ({found}), and with "
            f"[bundle] glibc = {at}, below this machine's, pip builds none (what it compiles "
            f"could need this machine's glibc): {ways}")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Run in the interpreter: which of argv[2:] satisfy requirement argv[1] (pip's packaging).
_MATCHING = ("import sys; from pip._vendor.packaging.requirements import Requirement; "
             "spec = Requirement(sys.argv[1]).specifier; "
             "print(', '.join(v for v in sys.argv[2:] if spec.contains(v, prereleases=True)))")


def sdist_versions(python: Path, requirement: str, pip_options: tuple[str, ...]) -> str | None:
    """The versions of `requirement` that the sources hold for this Python (pip index
    versions, sdists included), when the floor's pip, taking wheels only, found none: they are
    sdists, as a wheel for this machine would be a wheel for a newer glibc than the floor."""
    name = _NAME.match(requirement)
    if name is None:
        return None
    done = call([python, "-I", "-m", "pip", "index", "versions", "--pre",
                 "--disable-pip-version-check", *pip_options, name[0]],
                what=f"listing the versions of {name[0]}", env=clean_env())
    listed = re.search(r"^Available versions: (.+)$", done.output, re.MULTILINE)
    if done.returncode != 0 or listed is None:
        return None
    found = [v.strip() for v in listed[1].split(",")]
    done = call([python, "-I", "-c", _MATCHING, requirement, *found],
                what=f"versions that satisfy {requirement}", env=clean_env())
    matching = [v for v in done.output.strip().split(", ") if v] if done.returncode == 0 else []
    if not matching:
        return None
    return ", ".join(matching[:5]) + (f" and {len(matching) - 5} more" if len(matching) > 5 else "")


def message(what: str, refusal: Refusal, blame: str | None) -> str:
    """pip's reason first; then, when the floor is why, how."""
    return f"{what} failed: {refusal.reason}" + (f"; {blame}" if blame else "")
