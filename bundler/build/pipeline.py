"""spec -> plan -> materialize -> render -> records -> pack: `bundler build`.

The tree is staged in a folder inside the output folder and packed into a temporary file renamed
into place, so a failed or interrupted build leaves the output as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bundler
from bundler.build import cache, floor, installs, lock, native, patch, site
from bundler.build.code import compile_bytecode_only, materialize_code
from bundler.build.interpreters import BuildContext, patchelf
from bundler.build.plan import Plan, make_plan
from bundler.build.relocatable import (
    RootSearch,
    drop_bytecode_naming,
    make_scripts_relocatable,
    make_symlinks_relative,
    record,
)
from bundler.bundle import archive, integrity, signing
from bundler.bundle.manifest import BuildRecord, BuiltCode, BuiltInterpreter, Manifest
from bundler.bundle.records import PATCH_FILE, PATCH_SIGNATURE, Origin, Platform, Release
from bundler.bundle.render import PRIVATE, Renderer
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import regular_files, sha256_file
from bundler.spec import versions
from bundler.spec.model import Spec

Log = Callable[[str], None]
STAGING_PREFIX = ".bundler-staging-"


@dataclass(frozen=True)
class BuildOptions:
    output: Path
    format: str | None = None
    pip_options: tuple[str, ...] = ()
    keep_staging: bool = False
    patch_from: Path | None = None  # build a patch against this earlier build instead
    sign: Path | None = None        # an Ed25519 private key: sign the bundle and the patch
    cache: bool = True              # take interpreters from the build cache, and put them there
    locked: bool = False            # refuse to resolve what no lock (pylock.NAME.toml) pins
    overwrite: bool = False         # replace an artifact of the same name and other content


def build(spec: Spec, options: BuildOptions, log: Log = print) -> Path:
    """Build the bundle and return the artifact; on any failure nothing is left in the output.
    What the spec alone decides is refused first: a patch that does not move the version
    forward, an artifact name that a different earlier build holds."""
    fmt = options.format or spec.format
    old = patch.old_checksums(options.patch_from) if options.patch_from else None
    if old is not None:
        assert options.patch_from is not None
        warning = patch.check_forward(spec.version, old, options.patch_from)
        if warning:
            log(warning)
        fmt = "tar.zst" if fmt == "dir" else fmt
    output = options.output.resolve()
    basename = f"{spec.name}-{spec.version}{'.patch' if old is not None else ''}"
    final = archive.artifact_path(output, basename, fmt)
    if fmt != "dir" and not options.overwrite and final.exists() \
            and not os.environ.get("SOURCE_DATE_EPOCH"):
        raise BundlerError(_taken(final, spec.version, "and this build would differ from it (it "
                                  "records when it is built: no SOURCE_DATE_EPOCH)"))
    plan = make_plan(spec, options.output, memo=options.cache)
    key = _signing_key(plan, options.sign, log)
    locks = lock.for_build(plan, options.sign is not None, options.locked, log)
    output.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(output)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=output))
    root = staging / spec.name
    try:
        started = time.monotonic()
        materialize(plan, root, options, log, locks)
        tree = Bundle(root, plan.layout)
        if key is not None:
            signing.sign(key, "bundle", tree.checksums.read_bytes()).write(tree.signature)
        if old is not None:
            patch_dir = staging / basename
            counts = patch.make(tree, spec.name, spec.project, old, patch_dir)
            if key is not None:
                signing.sign(key, "patch", (patch_dir / PATCH_FILE).read_bytes()).write(
                    patch_dir / PATCH_SIGNATURE)
            log(f"patch against {options.patch_from}: {counts['files']} file(s), "
                f"{counts['links']} link(s), {counts['remove']} removal(s), {counts['site']} site "
                "default(s)")
            root = patch_dir
        log(f"packing {fmt}")
        if fmt == "dir":  # a folder to run in place, not a release: replaced as it was
            artifact = archive.pack(root, output, basename, fmt)
        else:  # packed beside the staging tree, then moved into place (if it may go there)
            groups = [p.folder for p in plan.interpreters.values()] if old is None else []
            frames = cache.Frames() if options.cache and old is None else None
            with cache.locked() if frames is not None else nullcontext():
                made = archive.pack(root, staging, basename, fmt, groups, frames)
            artifact = _publish(made, final, spec.version, options.overwrite, log)
        log(f"built {artifact} in {time.monotonic() - started:.1f}s")
        return artifact
    finally:
        if options.keep_staging:
            log(f"staging kept at {staging}")
        else:
            shutil.rmtree(staging, ignore_errors=True)


def _publish(made: Path, final: Path, version: str, overwrite: bool, log: Log) -> Path:
    """Move the packed artifact `made` to `final`, unless a file of other content is there (one
    version, one artifact: two releases never share a name) and `overwrite` was not asked."""
    if final.is_file() and not overwrite:
        there, ours = sha256_file(final), sha256_file(made)
        if there == ours:
            log(f"{final} is there already, byte for byte this build: kept")
            return final
        raise BundlerError(_taken(final, version, f"with other content (sha256 {there[:12]}; "
                                  f"this build's {ours[:12]})"))
    os.replace(made, final)
    return final


def _taken(final: Path, version: str, why: str) -> str:
    step = versions.next_after(version)
    bump = f"`bundler version --bump {step[0]}`" if step else "`bundler version NEW`"
    return (f"{final} exists already {why}: a new release needs a new version ({bump}), or "
            "replace that file with `bundler build --overwrite`")


def _signing_key(plan: Plan, path: Path | None, log: Log) -> Any:
    """The private key of --sign, checked against the keys the bundle will trust."""
    if path is None:
        if plan.trusted_keys:
            log("warning: the bundle trusts signing keys but this build is not signed (--sign KEY):"
                " its patches will be refused")
        return None
    key = signing.load_private(path)
    mine = signing.identity(signing.public_line(key))
    if plan.trusted_keys and mine not in {signing.identity(k) for k in plan.trusted_keys}:
        raise BundlerError(f"--sign {path}: this key is not one of [bundle] trusted_keys, so the "
                           "bundle would refuse what it signs; add its .pub there")
    return key


def _remove_abandoned_staging(output: Path) -> None:
    """Staging folders and half-written archives of builds that were killed (their pid no longer
    runs)."""
    def dead(pid: str) -> bool:
        return pid.isdigit() and not Path(f"/proc/{pid}").exists()

    for folder in output.glob(f"{STAGING_PREFIX}*"):
        if dead(folder.name[len(STAGING_PREFIX):].split("-")[0]):
            shutil.rmtree(folder, ignore_errors=True)
    for partial in output.glob(f".*{archive.PARTIAL}"):
        if dead(partial.name[:-len(archive.PARTIAL)].rpartition("-")[0].rpartition(".")[2]):
            partial.unlink(missing_ok=True)


def materialize(plan: Plan, root: Path, options: BuildOptions, log: Log,
                locks: dict[str, lock.Lock] | None = None) -> None:
    spec, layout = plan.spec, plan.layout
    ctx = BuildContext(spec_folder=spec.folder, pip_options=options.pip_options, log=log,
                       glibc=spec.glibc)
    packed = (options.format or spec.format) != "dir" or options.patch_from is not None
    resolved = installs.install(plan, root, ctx, options.sign is not None, options.cache, log,
                                link=packed and not options.keep_staging, locks=locks)
    for code in spec.code.values():
        dest = root / layout.code_dir(spec.project, code.name)
        log(f"code {code.name} -> {dest.name}")
        materialize_code(code, spec.folder, dest, options.output.resolve())
        if code.bytecode:
            compile_bytecode_only(dest, root / plan.interpreters[plan.code_interpreter[code.name]].python,
                                  cache.bytecode_dir() if options.cache else None)
    lib_dirs = [root / p.folder / "lib" for p in plan.interpreters.values()]
    for code in spec.code.values():
        folder = root / layout.code_dir(spec.project, code.name)
        for warning in native.fix_runpaths(folder, root, lib_dirs, patchelf()):
            log(f"warning: {warning}")
    tree = Bundle(root, layout)
    with cache.memo("glibc", options.cache) as known:
        _hold_to_floor(plan, tree, log, known)
    Renderer(spec, layout, {n: p.python for n, p in plan.interpreters.items()}).write(root)
    site.install(plan.site_files, tree)
    if plan.trusted_keys:
        signing.TrustedKeys(tuple(plan.trusted_keys)).write(tree.trusted_keys)
    _write_manifest(plan, tree, resolved)
    make_symlinks_relative(root)
    make_scripts_relocatable(root)
    _write_origin(plan, tree)
    capacity = {str(path.relative_to(root)): room - (len(os.fsencode(env)) - len(os.fsencode(root)))
                for path, (env, room) in ctx.binary_slots.items() if path.exists()}
    with cache.memo("staged", options.cache) as staged:
        search = RootSearch(root, STAGING_PREFIX, staged)
        drop_bytecode_naming(root, search)
        stuck = record(tree, capacity, search)
    with cache.memo("entries", options.cache) as entries:  # "digests" held another form
        integrity.write(tree, entries)
    for path in stuck:
        log(f"warning: {path} contains the build path and cannot be rewritten when the bundle moves")


def _hold_to_floor(plan: Plan, tree: Bundle, log: Log, known: dict[str, Any] | None) -> None:
    """Read the glibc every ELF file in the bundle needs; refuse the build when one needs more
    than [bundle] glibc; record what the bundle needs for bin/start and verify."""
    found = floor.needs(regular_files(tree.root), known)
    need, path = floor.highest(found)
    declared = plan.spec.glibc
    if declared is not None:
        lines = floor.offenders(tree.root, found, declared)
        if lines:
            raise BundlerError(f"{len(lines)} group(s) of files need more than [bundle] glibc = "
                               f"{floor.text(declared)}:\n" + "\n".join(f"  {line}" for line in lines))
    where = f" (for {path.relative_to(tree.root)})" if path else ""
    log(f"glibc: the bundle needs {floor.text(need)} or newer{where}"
        + (f"; floor {floor.text(declared)}" if declared else "; no [bundle] glibc floor declared"))
    tree.meta.mkdir(parents=True, exist_ok=True)  # before the render makes it
    Platform(floor.machine(), floor.text(need) if need else "0",
             floor.text(declared) if declared else "").write(tree.platform)


def _write_origin(plan: Plan, tree: Bundle) -> None:
    sources = {}
    for name, p in plan.interpreters.items():
        source = p.conda or (p.info.origin if p.info else None)
        if source is not None:
            sources[name] = str(source)
    Origin(staging=str(tree.root), project=str(plan.spec.folder), sources=sources).write(tree.origin)


def _write_manifest(plan: Plan, tree: Bundle, resolved: dict[str, dict[str, str]]) -> None:
    """bundle.toml inside the bundle: the spec as written, plus what the build resolved; and
    the layout the bundle was built with."""
    spec = plan.spec
    text = spec.path.read_text(encoding="utf-8")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    interpreters = {name: BuiltInterpreter(p.folder, p.python, p.minor, resolved.get(name, {}))
                    for name, p in plan.interpreters.items()}
    code = {c.name: BuiltCode(plan.layout.code_dir(spec.project, c.name),
                              plan.interpreters[plan.code_interpreter[c.name]].minor
                              if c.bytecode else None)
            for c in spec.code.values()}
    build = BuildRecord(
        bundler_version=bundler.__version__,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch) if epoch else None)),
        spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
        interpreters=interpreters, code=code)
    manifest = Manifest.compose(text, build)
    tree.manifest.write_text(manifest, encoding="utf-8")
    tree.manifest.chmod(PRIVATE)
    Release(manifest).write(tree.release_record, PRIVATE)  # the base of the next apply's merge
    plan.layout.write(tree.layout_record)
