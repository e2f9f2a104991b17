"""Interpreters made at once: what each says comes out in the plan's order; the first failure
stops the others' commands at once and is what the build reports."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from bundler import runner
from bundler.build.installs import _Made, _Voices, _wait
from bundler.errors import BundlerError


def test_lines_come_in_the_plans_order_whichever_interpreter_ends_first() -> None:
    shown: list[str] = []
    voices = _Voices(["base", "py37"], shown.append)
    base, py37 = voices.of("base"), voices.of("py37")
    base("interpreter base")  # the first: shown as it comes
    py37("interpreter py37")
    py37("  kept 3 libraries")
    voices.finished("py37")  # done before base: waits for its turn
    assert shown == ["interpreter base"]
    base("compiling the bytecode of base")
    voices.finished("base")
    assert shown == ["interpreter base", "compiling the bytecode of base", "interpreter py37",
                     "  kept 3 libraries"]


def test_a_later_interpreter_that_fails_first_is_reported_while_the_first_still_runs() -> None:
    shown: list[str] = []
    voices = _Voices(["base", "py37"], shown.append)
    voices.of("base")("interpreter base")
    voices.of("py37")("interpreter py37")
    never: Future[_Made] = Future()  # the base still runs
    failed: Future[_Made] = Future()
    failed.set_exception(BundlerError("pip install for interpreter py37 failed"))
    with pytest.raises(BundlerError, match="py37 failed"):
        _wait({"base": never, "py37": failed}, voices)
    assert shown == ["interpreter base", "interpreter py37"]


def test_a_failed_parent_is_what_is_reported_not_its_virtualenv() -> None:
    voices = _Voices(["base", "web"], [].append)
    with ThreadPoolExecutor(2) as pool:
        def base() -> _Made:
            raise BundlerError("pip install for interpreter base failed")

        def web(parent: Future[_Made]) -> _Made:
            parent.result()
            return _Made({}, None)

        first = pool.submit(base)
        made = {"base": first, "web": pool.submit(web, first)}
        with pytest.raises(BundlerError, match="interpreter base failed"):
            _wait(made, voices)


def test_stopping_kills_what_other_threads_run_and_starts_nothing_more() -> None:
    results: list[int] = []
    started = threading.Event()

    def long_command() -> None:
        started.set()
        done = runner.call([sys.executable, "-c", "import time; time.sleep(600)"], what="sleeping")
        results.append(done.returncode)

    thread = threading.Thread(target=long_command)
    thread.start()
    try:
        started.wait(60)
        while not runner._running:
            threading.Event().wait(0.01)
        runner.stop_all()
        thread.join(60)
        assert results == [-9]
        with pytest.raises(BundlerError, match="not started, the build is stopping"):
            runner.call(["true"], what="another step")
    finally:
        runner.resume()
    assert runner.call(["true"], what="after").returncode == 0
