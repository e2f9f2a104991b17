"""The one runner for external commands: a timeout, and failures that show what ran and what it
said."""

from __future__ import annotations

import pytest

from bundler.errors import BundlerError
from bundler.runner import ToolMissing, call, run


def test_output_and_accepted_exit_codes() -> None:
    assert run(["sh", "-c", "echo out; echo err >&2"], what="both") == "out\nerr\n"
    assert run(["sh", "-c", "echo out; echo err >&2"], what="apart", merge=False) == "out\n"
    assert run(["sh", "-c", "exit 1"], what="one is fine", ok=(0, 1)) == ""
    done = call(["sh", "-c", "echo said; exit 4"], what="any code")
    assert (done.returncode, done.output) == (4, "said\n")


def test_a_failure_names_the_command_and_shows_the_end_of_its_output() -> None:
    with pytest.raises(BundlerError) as info:
        run(["sh", "-c", "for i in $(seq 100); do echo line$i; done; echo why >&2; exit 3"],
            what="pip install for base", merge=False)
    text = str(info.value)
    assert text.startswith("pip install for base failed (exit 3): sh -c ")
    assert text.endswith("line100\nwhy") and "line60\n" not in text  # the end, not all of it


def test_a_command_that_does_not_end_is_stopped() -> None:
    with pytest.raises(BundlerError, match=r"^nap: no end after 0.5 s, stopped: sleep 30"):
        run(["sleep", "30"], what="nap", timeout=0.5)


def test_a_missing_program_is_named() -> None:
    with pytest.raises(ToolMissing, match="^ldd: cannot run no-such-tool-here: no such program"):
        call(["no-such-tool-here"], what="ldd")


def test_a_failure_shows_a_c_program_by_its_first_line_only() -> None:
    import sys

    program = "import sys\nprint('the real cause', file=sys.stderr)\nsys.exit(3)\n"
    with pytest.raises(BundlerError) as info:
        run([sys.executable, "-I", "-c", program], what="a probe")
    said = str(info.value)
    assert "-c 'import sys ...'" in said and "sys.exit(3)" not in said
    assert said.endswith("the real cause")
