"""`bundler verify`: is a bundle (or a built archive) file by file as built, and does it carry what
it needs to run on another machine? Integrity (bundle/integrity.py) and portability
(portability.py) in one report."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bundler.bundle import integrity, links, signing
from bundler.bundle.safetree import extract
from bundler.bundle.tree import Bundle, open_bundle
from bundler.errors import BundlerError, DamagedRecord
from bundler.server import history, portability

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    name: str  # what was checked: the archive, or the bundle's root
    integrity: integrity.Report
    portability: portability.Report
    signature: str = "signature none"
    signature_problem: str | None = None
    damaged: tuple[str, ...] = ()   # "PATH: why", for each record that cannot be read
    unchecked: tuple[str, ...] = ()  # the checks a damaged record stopped: "integrity", ...
    links_out: dict[str, str] = field(default_factory=dict)  # link -> its target, where it leaves

    def lines(self) -> list[str]:
        report = self.integrity
        out = [f"damaged  {_shown(line)}" for line in self.damaged]
        out += [f"{title:<8} {_shown(path)}" for title, paths in (("changed", report.changed),
                                                                  ("missing", report.missing),
                                                                  ("added", report.added))
                for path in paths]
        if "integrity" in self.unchecked:
            out.append("integrity not checked: a record it reads is damaged")
        else:
            out.append(f"integrity {report.checked - len(report.changed) - len(report.missing)} "
                       f"of {report.checked} files as built"
                       + (f", {report.differ} differ" if report.differ else ""))
        out += [f"link      {_shown(rel)} -> {_shown(where)}" for rel, where in self.links_out.items()]
        out.append(self.signature)
        if "portability" in self.unchecked:
            return [*out, "portability not checked: a record it reads is damaged"]
        return [*out, *self.portability.lines()]

    def problems(self) -> list[str]:
        differ, port = self.integrity.differ, self.portability
        return ([f"{len(self.damaged)} damaged record(s)"] if self.damaged else []) + \
            ([f"{differ} file(s) differ from the build"] if differ else []) + \
            ([f"{len(port.missing)} library(ies) missing"] if port.missing else []) + \
            ([f"{len(port.outside)} file(s) look for libraries outside it"] if port.outside else []) + \
            ([f"{len(port.leaks)} file(s) name build paths"] if port.leaks else []) + \
            ([f"it needs glibc {'.'.join(map(str, port.glibc))}, above its floor "
              f"{port.platform.floor if port.platform else ''}"] if port.above_floor else []) + \
            ([self.signature_problem] if self.signature_problem else []) + \
            ([f"{len(self.links_out)} link(s) lead out of the bundle or their code folder"]
             if self.links_out else [])


def verify(target: Path | None) -> Verdict:
    """Check `target`: a bundle's root, a built archive (unpacked into a temporary folder), or
    with None the bundle this code runs in."""
    if target is not None and target.is_file():
        with tempfile.TemporaryDirectory(prefix="bundler-verify-") as tmp:
            extract(target, Path(tmp))
            tops = [p for p in Path(tmp).iterdir() if p.is_dir()]
            if len(tops) != 1:
                raise BundlerError(f"{target} is not a bundle archive (expected one top folder)")
            return _check(open_bundle(tops[0]), str(target))
    bundle = open_bundle(target)
    return _check(bundle, str(bundle.root))


def _check(bundle: Bundle, name: str) -> Verdict:
    """Each check on its own: a damaged record stops the checks that read it, and is itself
    reported, not raised (verify is the tool that finds damage)."""
    damaged: dict[str, None] = {}
    unchecked: list[str] = []

    def part(what: str, check: Callable[[], T], instead: T) -> T:
        try:
            return check()
        except DamagedRecord as exc:
            damaged[str(exc).removeprefix("damaged record ")] = None  # "PATH: why"
            unchecked.append(what)
            return instead

    found = part("integrity", lambda: integrity.verify(bundle), integrity.Report())
    port = part("portability", lambda: portability.check(bundle), portability.Report())
    unread: tuple[str, str | None] = ("signature not checked: a record it reads is damaged", None)
    signature = part("signature", lambda: _signature(bundle), unread)
    none: dict[str, str] = {}
    links_out = part("links", lambda: links.leading_out(bundle), none)
    return Verdict(name, found, port, *signature, damaged=tuple(damaged),
                   unchecked=tuple(unchecked), links_out=links_out)


def _shown(text: str) -> str:
    """A path as the terminal may show it: escaped when it has control characters or no UTF-8."""
    return text if text.isprintable() else repr(text)


def _signature(bundle: Bundle) -> tuple[str, str | None]:
    """A line on the build's signature, and the problem with it if there is one."""
    trusted = signing.trusted_keys(bundle.trusted_keys)
    if not bundle.signature.is_file():
        return "signature none: the build is not signed", \
            "the build is not signed, though it trusts signing keys" if trusted else None
    try:
        sig = signing.Signature.read(bundle.signature)
        signing.check(sig, "bundle", bundle.checksums.read_bytes(), trusted)
    except (BundlerError, ValueError) as exc:
        if any(entry.op == "apply" for entry in history.history(bundle)):
            return ("signature the build's no longer covers its checksums: patches were applied "
                    "since (bin/bundler history shows who signed them)"), None
        return f"signature BAD: {exc}", f"its signature is not valid ({exc})"
    trust = ", a key the bundle trusts" if trusted else " (the bundle lists no trusted key)"
    return f"signature signed by {sig.fingerprint}{trust}", None
