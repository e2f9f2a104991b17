"""Interpreters made at once: what each says comes out in the plan's order; the first failure
stops the others' commands at once and is what the build reports."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from bundler import runner
from bundler.build.installs import _Made, _report
from bundler.errors import BundlerError


def test_lines_come_in_the_plans_order_whichever_interpreter_ends_first() -> None:
    said = {"base": ["interpreter base"], "py37": ["interpreter py37", "  kept 3 libraries"]}
    base_may_end = threading.Event()
    shown: list[str] = []

    def base() -> _Made:
        base_may_end.wait(60)
        return _Made({}, None)

    def py37() -> _Made:
        base_may_end.set()  # py37 is done before base
        return _Made({}, None)

    with ThreadPoolExecutor(2) as pool:
        made = {"base": pool.submit(base), "py37": pool.submit(py37)}
        _report(made, said, shown.append)
    assert shown == ["interpreter base", "interpreter py37", "  kept 3 libraries"]


def test_a_later_interpreter_that_fails_first_is_reported_while_the_first_still_runs() -> None:
    said = {"base": ["interpreter base"], "py37": ["interpreter py37"]}
    never: Future[_Made] = Future()  # the base still runs
    failed: Future[_Made] = Future()
    failed.set_exception(BundlerError("pip install for interpreter py37 failed"))
    shown: list[str] = []
    with pytest.raises(BundlerError, match="py37 failed"):
        _report({"base": never, "py37": failed}, said, shown.append)
    assert shown == ["interpreter py37"]


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
