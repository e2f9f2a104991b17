"""The commands of a project (a folder with bundle.toml): init, add-env, add-code, check, build,
and the rest of the build machine's (remove-code, remove-env, lock, cache, keygen)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from bundler.cli import jsondocs
from bundler.cli.options import (
    json_option,
    not_in_bundle,
    pip_options,
    pip_sources,
    project_folder,
    spec_path,
)
from bundler.cli.shell import complete
from bundler.errors import printable


@click.command()
@click.argument("name")
@click.pass_context
def init(ctx: click.Context, name: str) -> None:
    """Create NAME/bundle.toml with one example service (and its code in NAME/src).

    \b
    Example:
      bundler init smartbox && cd smartbox && bundler build
    """
    from bundler.spec import edit

    not_in_bundle(ctx)
    path = edit.init_project(project_folder(ctx) / name, name)
    click.echo(f"created {path}; next: bundler -C {path.parent} check")


@click.command("add-env")
@click.argument("name")
@click.option("--virtualenv", metavar="ENV", help="Make a virtualenv on this bundle interpreter "
              "(base, or an env declared with --python).")
@click.option("--python", metavar="PYTHON", help="Copy this CPython into envs/NAME: a version "
              "(3.12: a standalone CPython from the python mirror), a prefix folder, an "
              "executable, a standalone CPython .tar.gz, or 'current'.")
@click.option("--conda", metavar="PREFIX", help="Pack this conda environment (with conda-pack) "
              "into envs/NAME.")
@click.option("-r", "--requirements-file", metavar="FILE", help="Install this requirements file.")
@click.option("-p", "--package", "packages", multiple=True, metavar="REQ",
              help="Install this requirement (repeatable), e.g. -p 'pillow>=10'.")
@click.pass_context
def add_env(ctx: click.Context, name: str, virtualenv: str | None, python: str | None,
            conda: str | None, requirements_file: str | None, packages: tuple[str, ...]) -> None:
    """Declare envs/NAME: a virtualenv on a bundle interpreter, another CPython, or a conda
    environment.

    \b
    Examples:
      bundler add-env pyocr --virtualenv base -r requirements-ocr.txt
      bundler add-env py312 --python 3.12
      bundler add-env py37 --python "$(pyenv prefix 3.7.16)"
      bundler add-env py312 --python cpython-3.12.8+20250106-x86_64-unknown-linux-gnu-install_only.tar.gz
      bundler add-env legacy --conda /opt/miniconda3/envs/legacy
    """
    from bundler.spec import edit

    edit.edit(spec_path(ctx), lambda doc: edit.add_env(
        doc, name, virtualenv, python, conda, list(packages), requirements_file))
    click.echo(f"added env {name} to {spec_path(ctx)}")


@click.command("add-code")
@click.argument("name")
@click.option("--path", metavar="DIR", help="Copy this folder (relative to bundle.toml).")
@click.option("--git", metavar="REPO", help="Take a `git archive` of this repository...")
@click.option("--ref", metavar="REF", help="...at this tag, branch or commit (default HEAD).")
@click.option("--pythonpath", multiple=True, metavar="ENTRY",
              help="A PYTHONPATH entry relative to the code folder (repeatable; default '.').")
@click.option("--bytecode", is_flag=True, help="Ship .pyc files only (no sources).")
@click.pass_context
def add_code(ctx: click.Context, name: str, path: str | None, git: str | None, ref: str | None,
             pythonpath: tuple[str, ...], bytecode: bool) -> None:
    """Declare code version NAME, shipped as <project>_NAME/ beside the others. The folder must
    be there, or the ref in the (local) git repository; nothing is written otherwise.

    \b
    Examples:
      bundler add-code v3 --path ../sam
      bundler add-code v3 --git . --ref v3 --pythonpath . --pythonpath code_django
    """
    from bundler.build.code import check_code_found
    from bundler.spec import edit

    edit.edit(spec_path(ctx), lambda doc: edit.add_code(
        doc, name, path, git, ref, list(pythonpath), bytecode),
        check=lambda spec: check_code_found(spec.code[name], spec.folder))
    click.echo(f"added code {name} to {spec_path(ctx)}")


@click.command("remove-code")
@click.argument("name", shell_complete=complete("versions"))
@click.pass_context
def remove_code(ctx: click.Context, name: str) -> None:
    """Remove code version NAME from bundle.toml (its folder stays where it is). Refused while
    a service, in a group or not, runs it: the refusal names them.

    \b
    Example:
      bundler remove-code v1
    """
    from bundler.spec import edit

    edit.edit(spec_path(ctx), lambda doc: edit.remove_code(doc, name))
    click.echo(f"removed code {name} from {spec_path(ctx)}")


@click.command("remove-env")
@click.argument("name", shell_complete=complete("envs"))
@click.pass_context
def remove_env(ctx: click.Context, name: str) -> None:
    """Remove interpreter envs/NAME from bundle.toml (a lock file pylock.NAME.toml stays).
    Refused while a service runs it or a virtualenv is made on it: the refusal names them.

    \b
    Examples:
      bundler remove-env pyocr
      bundler remove-env envs/py37
    """
    from bundler.spec import edit

    edit.edit(spec_path(ctx), lambda doc: edit.remove_env(doc, name))
    click.echo(f"removed env {name} from {spec_path(ctx)}")


@click.command()
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate bundle.toml and the interpreters it names, and print the build plan. Nothing is
    downloaded or built; exits 1 (2 for a mistake in bundle.toml) with what is wrong.

    \b
    Examples:
      bundler check
      bundler -C examples/smartbox check --json | jq '.interpreters[].glibc'
    """
    from bundler.build.plan import make_plan
    from bundler.spec.load import load_spec

    plan = make_plan(load_spec(spec_path(ctx)), fetch=False)
    if as_json:
        jsondocs.emit(jsondocs.plan(plan))
        return
    for line in plan.describe():
        click.echo(printable(line))


@click.command("build")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Where the artifact goes. Default: dist/ beside bundle.toml.")
@click.option("--format", "fmt", type=click.Choice(["tar.gz", "tar.zst", "dir"]),
              help="Override [bundle] format.")
@pip_sources
@click.option("--keep-staging", is_flag=True, help="Keep the staging tree (for debugging).")
@click.option("--patch-from", type=click.Path(exists=True, path_type=Path), metavar="OLD",
              help="Write a patch with only what changed since OLD: an earlier archive, its "
              "unpacked tree, what `bin/bundler state` printed on a server (best: the patch "
              "then knows that server's last release), or a .bundler/checksums.json. Apply it "
              "with bin/bundler apply.")
@click.option("--sign", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="KEY", help="Sign the archive and the patch with this Ed25519 private key "
              "(bundler keygen, or ssh-keygen -t ed25519); an encrypted key takes its passphrase "
              "from $BUNDLER_KEY_PASSPHRASE.")
@click.option("--no-cache", is_flag=True, help="Materialize every interpreter afresh, neither "
              "taking it from nor putting it into the build cache (`bundler cache`).")
@click.option("--locked", is_flag=True, help="Refuse to build an interpreter whose packages no "
              "lock pins (pylock.NAME.toml, written by `bundler lock`) or whose lock was made for "
              "other requirements.")
@click.option("--overwrite", is_flag=True, help="Replace an artifact of the same name in the "
              "output folder even though its content differs. Without it the build refuses, "
              "before it starts where it can: one version, one artifact (a rebuild identical "
              "byte for byte is fine).")
@json_option
@click.pass_context
def build_cmd(ctx: click.Context, output: Path | None, fmt: str | None,
              find_links: tuple[str, ...], no_index: bool, index_url: str | None,
              keep_staging: bool, patch_from: Path | None, sign: Path | None,
              no_cache: bool, locked: bool, overwrite: bool, as_json: bool) -> None:
    """Build the bundle: copy interpreters, create envs, copy code, render configs, pack.

    A patch (--patch-from) needs a [bundle] version newer than the release it patches
    (`bundler version --bump patch`); an archive or patch already in the output folder with
    other content is never replaced unless --overwrite says so.

    \b
    Examples:
      bundler build
      bundler build --format tar.zst --find-links ./wheels --no-index   # offline
      bundler build --patch-from dist/smartbox-2026.11.1.tar.gz         # only what changed
      bundler build --patch-from server1-state.json   # against what a server runs
      bundler build --sign ~/.ssh/release_ed25519 --patch-from dist/smartbox-2026.11.1.tar.gz
      bundler build --no-cache      # every interpreter afresh (pip resolves again)
      bundler build --locked        # only what pylock.NAME.toml pins (CI, releases)
      bundler build --overwrite     # rebuild this version over dist/NAME-VERSION.tar.gz
      bundler build --json          # {"artifact": ..., "size": ..., "sha256": ...} on stdout
    """
    from bundler import progress
    from bundler.build.pipeline import BuildOptions, build
    from bundler.spec.load import load_spec

    spec = load_spec(spec_path(ctx))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up staging on SIGTERM too
    options = BuildOptions(output=output or spec.folder / "dist", format=fmt,
                           pip_options=pip_options(find_links, no_index, index_url),
                           keep_staging=keep_staging, patch_from=patch_from, sign=sign,
                           cache=not no_cache, locked=locked, overwrite=overwrite)
    artifact = build(spec, options, log=progress.log)
    if as_json:
        jsondocs.emit(jsondocs.artifact(artifact, options.format or spec.format, bool(patch_from)))
        return
    click.echo(artifact)  # the only line on stdout, for scripts: scp "$(bundler build)" ...


@click.command("version")
@click.argument("new", required=False)
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]),
              help="Count up this number of the version: major the first, minor the second, "
              "patch the third; the numbers after it become 0.")
@click.pass_context
def version_cmd(ctx: click.Context, new: str | None, bump: str | None) -> None:
    """Print [bundle] version, or set it to NEW, or count it up with --bump; bundle.toml keeps
    its comments and layout. The version names the artifacts (dist/NAME-VERSION.tar.gz), and a
    patch must have a newer one than the release it patches.

    The numbers are counted by position, whatever they mean: 1.4.2 --bump minor gives 1.5.0,
    and a calendar version 2026.11.1 --bump patch gives 2026.11.2. A version without that
    number (1.4 --bump patch), or not made of numbers alone (1.5.0rc1), is refused: give the
    next one itself. (bundler's own version: bundler --version.)

    \b
    Examples:
      bundler version                   # 2026.11.1
      bundler version --bump patch      # 2026.11.1 -> 2026.11.2
      bundler version 2026.12.0
      bundler version --bump patch && bundler build --patch-from dist/smartbox-2026.11.1.tar.gz
    """
    from bundler import progress
    from bundler.spec import edit

    if new is not None and bump is not None:
        raise click.UsageError("give NEW or --bump, not both")
    if new is None and bump is None:
        click.echo(edit.read_version(spec_path(ctx)))
        return
    old, now = edit.change_version(spec_path(ctx), new, bump)
    progress.log(f"{spec_path(ctx)}: version {old} -> {now}")
    click.echo(now)


@click.command("lock")
@pip_sources
@click.pass_context
def lock_cmd(ctx: click.Context, find_links: tuple[str, ...], no_index: bool,
             index_url: str | None) -> None:
    """Pin every interpreter's packages: resolve its requirements (the base's include bundler's
    own) to exact versions and files with their SHA-256, for its Python and the glibc floor,
    into pylock.NAME.toml beside bundle.toml (PEP 751).

    Builds then install exactly what the locks pin, so next month's build is the same bundle;
    run it again after changing requirements (`build --locked` refuses a stale lock). Commit
    the lock files with bundle.toml.

    \b
    Examples:
      bundler lock
      bundler lock --find-links ./wheels --no-index    # from a folder of wheels
      bundler build --locked
    """
    from bundler import progress
    from bundler.build import lock
    from bundler.build.interpreters import BuildContext
    from bundler.build.plan import make_plan
    from bundler.spec.load import load_spec

    spec = load_spec(spec_path(ctx))
    plan = make_plan(spec)
    context = BuildContext(spec_folder=spec.folder, log=progress.log,
                           pip_options=pip_options(find_links, no_index, index_url),
                           glibc=spec.glibc)
    written = lock.write_all(plan, context)
    if not written:
        click.echo("no interpreter installs packages with pip: nothing to lock", err=True)
    for path in written:
        click.echo(path)


@click.group("cache", invoke_without_command=True)
@click.pass_context
def cache_cmd(ctx: click.Context) -> None:
    """Show the build cache: the interpreters builds reuse (where, what, size, last use).

    Each interpreter a build makes (a copied CPython or a virtualenv, with its packages and
    bytecode) is kept under $BUNDLER_CACHE_DIR (default ~/.cache/bundler/builds), keyed on
    everything that decides its bytes, and copied into the next build that needs the same. So
    are its files compressed as a piece of an archive, and code versions' bytecode.

    \b
    Examples:
      bundler cache
      bundler cache prune --older-than 30
      bundler cache prune --all
    """
    if ctx.invoked_subcommand is not None:
        return
    import time

    from bundler.build import cache

    found = cache.entries()
    click.echo(f"{cache.cache_dir()}: {len(found)} interpreter(s), "
               f"{sum(e.size for e in found) / 2**20:.0f} MiB (kept under {cache.LIMIT >> 30} GiB)")
    for e in found:
        days = (time.time() - e.created) / 86400
        click.echo(f"  {e.key[:12]}  {e.size / 2**20:7.1f} MiB  made {days:5.1f} days ago  {e.what}")
    for kind, (files, size) in cache.kept().items():
        click.echo(f"{kind}: {files}, {size / 2**20:.0f} MiB")


@cache_cmd.command("prune")
@click.option("--older-than", type=click.FloatRange(min=0), metavar="DAYS",
              help="Remove what no build used for DAYS days.")
@click.option("--all", "everything", is_flag=True, help="Remove every entry.")
def cache_prune(older_than: float | None, everything: bool) -> None:
    """Remove entries of the build cache (and what killed builds left).

    \b
    Examples:
      bundler cache prune --older-than 30
      bundler cache prune --all
    """
    from bundler.build import cache

    if older_than is None and not everything:
        raise click.UsageError("say what to remove: --older-than DAYS or --all")
    removed = cache.prune(older_than * 86400 if older_than is not None else None, everything)
    click.echo(f"removed {len(removed)} interpreter(s), {sum(e.size for e in removed) / 2**20:.0f} MiB")


@click.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--comment", default="bundler release key", show_default=True,
              help="Written after the public key, to tell keys apart.")
def keygen(path: Path, comment: str) -> None:
    """Create an Ed25519 signing key: PATH (private, mode 0600) and PATH.pub. PATH's folder is
    created (mode 0700) when it is missing.

    Keep PATH on the build machine; put PATH.pub in [bundle] trusted_keys, and sign builds and
    patches with `bundler build --sign PATH`. A bundle that trusts a key refuses patches that are
    unsigned or signed by another key.

    \b
    Example:
      bundler keygen keys/release && bundler build --sign keys/release
    """
    from bundler.bundle.signing import keygen as make_key

    line = make_key(path, comment)
    click.echo(f"wrote {path} (keep it secret) and {path}.pub:")
    click.echo(line)


COMMANDS = [init, add_env, add_code, check, version_cmd, lock_cmd, build_cmd, cache_cmd, keygen,
            remove_code, remove_env]
