"""Random bundle.toml texts through `bundler check`, render and supervisor's own config parser.

Values come from an alphabet of what breaks configs and terminals: control characters (C0, DEL,
C1, U+2028), quotes, `%` and `%(here)s`, `;` and `#`, line breaks, backslashes, letters beyond
ASCII, a lone surrogate (not UTF-8 once written), huge and deeply nested values, raw bytes that
are no UTF-8. The property: `check` ends in one `Error:` line with exit 1 (no control character
shown raw), or succeeds; then the rendered files hold no control character (and the supervisor
configs nothing but ASCII), supervisord's parser reads them, and each service's command,
environment and directory read back as the spec gave them (through bundler.launch's JSON when
supervisor's syntax cannot carry them). Never a traceback."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bundler.bundle.layout import load_layout  # noqa: E402
from bundler.bundle.render import Renderer  # noqa: E402
from bundler.cli import cli  # noqa: E402
from bundler.spec.load import load_spec  # noqa: E402

PYTHONS = {"base": "bin/python3"}
BUDGET = 60.0  # seconds for the whole property, shrinking included
SHOWN_RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
IN_FILE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # a line end only
HOSTILE = ("\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x7f\x80\x85\x9b\x9f\u2028\u2029"
           "'\"\\%;# =,:$`*?[]{}()<>|&!~/.-_" "abcXYZ019" "\u00e9\u00fc\u4e2d\ufeff\U0001f600")
ESCAPABLE = "abc XYZ 019 '\"\\%;#=,:$`*?()/.-_\u00e9\u4e2d"
MILD = ("%(here)s", "%(program_name)s", "%%", " ;", " #", "''", '""', "\t", "\n", "\r\n",
        "-----BEGIN-----\n")
FRAGMENTS = ("%(here)s", "%(program_name)s", "%(ENV_HOME)s", "%%", " ;", " #", "\\n", "''", '""',
             "\x1b[2J", "\r\n", "-----BEGIN-----\n")
VALID = {"stopsignal": '"TERM"', "process_name": '"%(program_name)s_x"', "umask": '"022"',
         "exitcodes": "[0, 2]", "stdout_logfile_maxbytes": '"10MB"'}
NAMES = ("web", "api", "supervisord", "_monitor", "all", "web_00", "Web", "w\u00e9b", "a.b", "",
         "web\n", "x" * 70)


def values(mild: bool, max_size: int = 12) -> st.SearchStrategy[str]:
    """What a config must escape (quotes, `%`, `;`, `#`, spaces, letters beyond ASCII, tabs and
    line breaks), fragments supervisor reads otherwise, now and then a huge value; unless
    `mild`, any control character and any code point too."""
    escapable = st.text(st.sampled_from(ESCAPABLE), max_size=max_size)
    huge = st.tuples(st.sampled_from(("a", "%", "\t", "\u00e9", "a b")),
                     st.integers(1_000, 60_000)).map(lambda t: t[0] * t[1])
    if mild:
        pieces = st.lists(st.one_of(escapable, st.sampled_from(MILD)), max_size=4).map("".join)
        return st.one_of(escapable, escapable, pieces, pieces, huge)
    plain = st.text(st.sampled_from(HOSTILE), max_size=max_size)
    pieces = st.lists(st.one_of(escapable, plain, st.sampled_from(FRAGMENTS)), max_size=4) \
        .map("".join)
    return st.one_of(escapable, pieces, pieces, huge,
                     st.text(max_size=max_size))  # any code point but surrogates


def toml_string(value: str, raw: bool) -> str:
    """A TOML basic string: what TOML forbids raw (C0, DEL) escaped, and (unless `raw`) every
    other character beyond ASCII too, as \\uXXXX or \\UXXXXXXXX."""
    out = []
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7f or (not raw and code > 0x7e):
            out.append(f"\\u{code:04x}" if code <= 0xffff else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def nested(depth: int) -> str:
    return "{ A = " * depth + '"x"' + " }" * depth


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, dict]:
    raw = draw(st.booleans())
    mild = draw(st.booleans())
    name = "web" if mild else draw(st.one_of(st.just("web"), st.sampled_from(NAMES),
                          st.text(st.sampled_from(HOSTILE), max_size=8)))
    quoted = draw(st.booleans())
    words = draw(st.lists(values(mild), min_size=0, max_size=4))
    first = draw(st.sampled_from(("python", "python3", "/usr/bin/env", "gunicorn", "py thon")
                                 + (() if mild else ("/opt/caf\u00e9", "%(here)s/x", ""))))
    command = " ".join([shlex.quote(first), *map(shlex.quote, words)]) if quoted \
        else " ".join([first, *words])
    env = draw(st.dictionaries(st.one_of(st.sampled_from(("A", "B_2", "PATHX", "_U")),
                                         st.sampled_from(("A", "B_2", "PATHX", "_U")),
                                         st.text(st.sampled_from(HOSTILE), max_size=4)),
                               values(mild), max_size=3))
    service = [f"command = {toml_string(command, raw)}", 'code = "v1"']
    if env:
        service.append("environment = { " + ", ".join(
            f"{toml_string(k, raw)} = {toml_string(v, raw)}" for k, v in env.items()) + " }")
    option = draw(st.sampled_from(("", "stopsignal", "process_name", "umask", "exitcodes",
                                   "stdout_logfile_maxbytes", "deep", "deep-list")))
    if option in ("deep", "deep-list") and not mild:
        depth = draw(st.integers(1, 400))
        service.append(f"environment = {nested(depth)}" if option == "deep"
                       else "exitcodes = " + "[" * depth + "]" * depth)
    elif option in VALID and mild:
        service.append(f"{option} = {VALID[option]}")
    elif option in VALID:
        service.append(f"{option} = {toml_string(draw(values(mild)), raw)}")
    extra = ""
    table = draw(st.sampled_from(("", "metrics", "alerts", "health")))
    if table == "metrics":
        host = draw(st.one_of(st.sampled_from(("127.0.0.2", "127.1", "::1", "[::1]", "localhost",
                                               "0.0.0.0", "0177.0.0.1", "h ;x")), values(mild)))
        extra = f"[metrics]\nport = 9100\nhost = {toml_string(host, raw)}\n"
    elif table == "alerts":
        extra = f"[alerts]\ncommand = {toml_string(draw(values(mild)), raw)}\n"
    elif table == "health":
        service.append(f"health = {{ command = {toml_string(draw(values(mild)), raw)} }}")
    version = "1.0" if mild else draw(st.one_of(st.just("1.0"), values(mild)))
    text = (f"[bundle]\nname = \"shop\"\nversion = {toml_string(version, raw)}\n"
            f"[code.v1]\npath = \"src\"\n[services.{toml_string(name, raw)}]\n"
            + "\n".join(service) + "\n" + extra)
    if draw(st.sampled_from([False] * 19 + [True])):  # a lone surrogate: no UTF-8 once written
        text = text.replace("code = ", 'X = "\ud800"\ncode = ', 1)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.sampled_from([False] * 19 + [True])):  # bytes that are no UTF-8, somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"))) \
            + data[at:]
    return data, {"name": name, "command": command, "env": env}


def _process(root: Path, name: str):  # type: ignore[no-untyped-def]
    """supervisord's ProcessConfig of program `name` (its one process), parsed from the rendered files as
    supervisord itself reads them (supervisord.conf, then the [include]d conf.d/*.ini)."""
    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.configfile = str(root / "etc" / "supervisord.conf")
    options.process_config(do_usage=False)
    found = {g.name: g.process_configs for g in options.process_group_configs}
    assert len(found[name]) == 1
    return found[name][0]


def _reads_back(project: Path, root: Path) -> None:
    spec = load_spec(project)
    Renderer(spec, load_layout(), PYTHONS).write(root)
    for path in (root / "etc").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not IN_FILE.search(text), (path.name, text)
            assert path.suffix not in (".ini", ".conf") or text.isascii(), (path.name, text)
    conf_d = root / "etc" / "conf.d"
    for service in spec.services.values():
        process = _process(root, service.name)
        words = shlex.split(service.command)
        argv = shlex.split(process.command)
        if argv[2:4] == ["-m", "bundler.launch"]:
            launch = json.loads((conf_d / f"{service.name}.launch.json").read_text("utf-8"))
            args, environment, program = launch["args"], launch["environment"], argv[-1]
            assert argv[4] == str(conf_d / f"{service.name}.launch.json")
        else:
            args, environment, program = argv[1:], process.environment, argv[0]
        assert args == words[1:]
        assert {k: environment[k] for k in service.environment} == dict(service.environment)
        expected = str(root / "bin" / "python3") if words[0] in ("python", "python3") \
            else words[0]
        assert os.path.normpath(program) == os.path.normpath(expected) or program == expected
        assert os.path.normpath(process.directory) == str(root / "shop_v1")


def test_random_specs_are_refused_in_one_line_or_read_back_unchanged_by_supervisor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    monkeypatch.setenv("BUNDLER_SOCKET", str(tmp_path / "s.sock"))
    seen = {"examples": 0, "refused": 0, "accepted": 0, "launched": 0}

    @settings(deadline=None)
    @given(documents())
    def one(document: tuple[bytes, dict]) -> None:
        data, _ = document
        seen["examples"] += 1
        project = tmp_path / f"p{seen['examples']}" / "shop"
        (project / "src").mkdir(parents=True)
        (project / "bundle.toml").write_bytes(data)
        result = CliRunner().invoke(cli, ["-C", str(project), "check"])
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            (data, result.exception)
        if result.exit_code != 0:
            seen["refused"] += 1
            assert result.exit_code == 1, (data, result.output)
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), (data, result.stderr)
            assert not SHOWN_RAW.search(result.stderr), (data, result.stderr)
            return
        seen["accepted"] += 1
        assert not SHOWN_RAW.search(result.stdout.replace("\n", " ")), (data, result.stdout)
        root = project.parent / "bundle"
        _reads_back(project, root)
        seen["launched"] += len(list((root / "etc" / "conf.d").glob("*.launch.json")))

    started = time.monotonic()
    one()
    took = time.monotonic() - started
    print(f"\nspec property: {seen['examples']} specs in {took:.1f} s: {seen['refused']} refused "
          f"in one line, {seen['accepted']} accepted and read back by supervisor "
          f"({seen['launched']} through bundler.launch)")
    assert seen["accepted"] >= 5 and seen["refused"] >= 5, seen
    assert took < BUDGET, seen
