"""The three-way merge of a release into a running bundle's services and groups (the model is
`kubectl apply` and its last-applied configuration).

Three definitions of each service and group: the last release applied to the server (`base`),
what the server runs now (`server`: changed since by switch, set, add-service...), and the new
release. A definition changed only by the release is taken; one changed only on the server is
kept; one changed on both sides merges key by key, and a key changed on both to different values
is a conflict, which `prefer` ("release" or "server") settles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bundler.spec.edit import describe_change, show_value
from bundler.spec.live import Definition, Definitions

KINDS = ("services", "groups")


@dataclass(frozen=True)
class Merged:
    kind: str                 # "services" or "groups"
    name: str
    server: Definition | None   # what the server has now
    release: Definition | None  # what the release says
    result: Definition | None   # what it will have (None: removed)
    conflicts: tuple[str, ...] = ()  # keys changed on both sides to different values
    kept: bool = False        # the server's own change, kept

    @property
    def changes(self) -> bool:
        return self.result != self.server

    def describe(self) -> str:
        """One line for apply's plan."""
        what = f"{self.kind[:-1]} {self.name}"
        if self.conflicts:
            if self.server is None or self.release is None:
                here = "removed here" if self.server is None else "removed by the release"
                return f"{what}: CONFLICT: {here}, changed on the other side"
            keys = ", ".join(f"{k} (here {show_value(self.server.get(k))}, release "
                             f"{show_value(self.release.get(k))})" for k in self.conflicts)
            return f"{what}: CONFLICT: changed here and by the release: {keys}"
        if self.changes:
            return f"{what}: {describe_change(self.server, self.result)}"
        return f"{what}: keeps this server's change" if self.kept else f"{what}: unchanged"


def merge(base: Definitions, server: Definitions, release: Definitions,
          prefer: str | None = None) -> list[Merged]:
    """Every service and group the three sides name, merged."""
    merged = []
    for kind in KINDS:
        b, s, r = base.of(kind), server.of(kind), release.of(kind)
        for name in sorted({*b, *s, *r}):
            merged.append(_one(kind, name, b.get(name), s.get(name), r.get(name), prefer))
    return merged


def _one(kind: str, name: str, base: Definition | None, server: Definition | None,
         release: Definition | None, prefer: str | None) -> Merged:
    if server == release:
        return Merged(kind, name, server, release, server)
    if release == base:
        return Merged(kind, name, server, release, server, kept=True)
    if server == base:
        return Merged(kind, name, server, release, release)
    if server is None or release is None:  # removed on one side, changed on the other
        chosen = {"release": release, "server": server}.get(prefer or "", server)
        return Merged(kind, name, server, release, chosen, () if prefer else ("(removed)",))
    result: dict[str, object] = {}
    conflicts = []
    old: Mapping[str, object] = base or {}
    for key in sorted({*old, *server, *release}):
        here, there = server.get(key), release.get(key)
        if here == there or there == old.get(key):
            value = here
        elif here == old.get(key):
            value = there
        else:
            conflicts.append(key)
            value = there if prefer == "release" else here
        if value is not None:
            result[key] = value
    return Merged(kind, name, server, release, Definition(result),
                  () if prefer else tuple(conflicts))
