"""Whose files a release changes, who must restart for them, and who runs stale files."""

from __future__ import annotations

from bundler.bundle.layout import MONITOR
from bundler.bundle.manifest import Manifest
from bundler.bundle.tree import Bundle
from bundler.server import stale
from tests.unit.tiny import MANIFEST

TWO = MANIFEST.replace("[build.interpreters.base]", '''[envs.venv]
virtualenv = "base"
[envs.other]
python = "/opt/py"
[envs.onother]
virtualenv = "other"
[code.v2]
path = "src2"
[services.api]
command = "python -m api"
code = "v2"
python = "envs/venv"
[services.tool]
command = "python -m tool"
code = "v2"
python = "envs/other"
[build.interpreters.venv]
folder = "envs/venv"
python = "envs/venv/bin/python"
python_version = "3.11"
[build.interpreters.other]
folder = "envs/other"
python = "envs/other/bin/python3"
python_version = "3.11"
[build.interpreters.onother]
folder = "envs/onother"
python = "envs/onother/bin/python"
python_version = "3.11"
[build.code.v2]
folder = "app_v2"
[build.interpreters.base]''')


def _manifest(tiny: Bundle) -> Manifest:
    tiny.manifest.write_text(TWO)
    (tiny.root / "envs" / "venv").mkdir(parents=True)
    (tiny.root / "envs" / "venv" / "pyvenv.cfg").write_text("home = ../../bin\n")
    return Manifest.read(tiny.manifest)


def test_each_path_belongs_to_its_code_version_or_interpreter(tiny: Bundle) -> None:
    manifest = _manifest(tiny)
    assert stale.touched(tiny, manifest, ["app_v1/web.py", "envs/other/lib/x.py"]) == \
        stale.Touched(frozenset({"v1"}), frozenset({"other", "onother"}))
    # the base's site-packages: its services only; bundler's own package: the monitor only
    site = "lib/python3.11/site-packages"
    flask = stale.touched(tiny, manifest, [f"{site}/flask/app.py"])
    assert flask.interpreters == {"base"} and flask.tool  # the monitor runs on the base
    tool = stale.touched(tiny, manifest, [f"{site}/bundler/cli/bundle.py",
                                          f"{site}/offline_bundler-2.dist-info/RECORD"])
    assert tool == stale.Touched(tool=True)
    # the base's own Python: every virtualenv made from it too, not a copied interpreter
    assert stale.touched(tiny, manifest, ["lib/python3.11/os.py"]).interpreters == \
        {"base", "venv"}
    assert stale.touched(tiny, manifest, ["bin/start", "etc/app/x.toml", ".bundler/p"]) == \
        stale.Touched()
    # a virtualenv follows the Python it sits on, whichever it is; not its site-packages
    assert stale.touched(tiny, manifest, ["envs/other/lib/python3.11/os.py"]).interpreters == \
        {"other", "onother"}
    assert stale.touched(tiny, manifest, ["envs/other/lib/python3.11/site-packages/a.py"]
                         ).interpreters == {"other"}
    assert stale.touched(tiny, manifest, ["app_v10/x.py", "envs/otherx/x"]) == stale.Touched()


def test_a_service_restarts_for_its_code_or_its_interpreter(tiny: Bundle) -> None:
    manifest = _manifest(tiny)
    what = stale.Touched(frozenset({"v2"}), frozenset({"base"}), tool=True)
    reasons = stale.reasons(manifest, what)
    assert reasons == {"web": "files of interpreter base changed",
                       "api": "files of code v2 changed", "tool": "files of code v2 changed",
                       **({MONITOR: "files of the base changed (bundler's monitor runs on it)"}
                          if manifest.spec.monitored
                          else {})}


def test_a_process_started_before_its_files_changed_runs_stale_files(tiny: Bundle) -> None:
    stale.record(tiny, stale.Touched(frozenset({"v1"})), when=100.0)
    stale.record(tiny, stale.Touched(interpreters=frozenset({"base"})), when=200.0)
    changed = stale.FilesChanged.load(tiny)
    assert changed == stale.FilesChanged({"v1": 100.0}, {"base": 200.0})
    assert stale.stale(changed, "v1", "base", 150.0) == \
        "files of interpreter base changed since it started"
    assert stale.stale(changed, "v1", "base", 50.0) == \
        "files of code v1 and interpreter base changed since it started"
    assert stale.stale(changed, "v1", "base", 200.0) == ""
    tiny.files_changed.write_text("{ damaged")
    assert stale.FilesChanged.load(tiny) == stale.FilesChanged()
