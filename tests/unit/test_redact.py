"""URLs as bundler shows them in logs, the history, status and errors: without userinfo or query."""

from __future__ import annotations

import string

import pytest
from click.testing import CliRunner

from bundler.errors import BundlerError
from bundler.redact import redact
from bundler.server.history import HistoryEntry, ServiceChange

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@pytest.mark.parametrize("text, shown", [
    ("alert exit api -> https://hooks.example/a/b?token=s3cret",
     "alert exit api -> https://hooks.example/a/b?***"),
    ("GET http://ops:pw@127.0.0.1:8080/health?key=k: HTTP 500",
     "GET http://***@127.0.0.1:8080/health?***: HTTP 500"),
    ("index https://user:tok@pypi.example/simple/ refused", "index https://***@pypi.example/simple/ refused"),
    ("(see http://h/p?a=1&b=2), then", "(see http://h/p?***), then"),
    ('curl "https://x.y/z?key=1"', 'curl "https://x.y/z?***"'),
    ("https://pip.pypa.io/en/latest/topics/x/#dealing-with", "https://pip.pypa.io/en/latest/topics/x/#dealing-with"),
    ("http://h/p?q=1#frag", "http://h/p?***#frag"),
    ("postgres://app:hunter2@db:5432/app?sslmode=require", "postgres://***@db:5432/app?***"),
    ("no url: a?b=c and user@host", "no url: a?b=c and user@host"),
    ("http://[::1]:9001/RPC2?x", "http://[::1]:9001/RPC2?***"),
])
def test_userinfo_and_query_are_hidden_where_it_points_stays(text: str, shown: str) -> None:
    assert redact(text) == shown


_SECRET = st.text(string.ascii_letters + string.digits, min_size=8, max_size=20)
_WORDS = st.text(string.ascii_letters + " :;,()'\"\n", max_size=20)


@hypothesis.given(before=_WORDS, after=_WORDS, secret=_SECRET,
                  where=st.sampled_from(["query", "userinfo", "both"]),
                  scheme=st.sampled_from(["http", "https", "redis", "git+ssh"]))
def test_no_secret_survives_in_any_text(before: str, after: str, secret: str, where: str,
                                        scheme: str) -> None:
    user = f"u:{secret}@" if where in ("userinfo", "both") else ""
    query = f"?token={secret}&x=1" if where in ("query", "both") else ""
    url = f"{scheme}://{user}host.example:81/a/b{query}"
    shown = redact(f"{before} {url} {after}")
    assert secret not in shown.replace(before, "").replace(after, "")
    assert "host.example:81/a/b" in shown
    assert redact(shown) == shown


def test_the_history_and_errors_show_urls_redacted() -> None:
    entry = HistoryEntry("run", "ok", service="web", detail="curl https://h/x?token=s3cret")
    assert "s3cret" not in entry.text() and entry.what() == "curl https://h/x?***"
    change = ServiceChange("web", None, None, change="HOOK: https://a:pw@h/ -> https://h/?k=v")
    assert HistoryEntry("set", "ok", change=change).what() == "HOOK: https://***@h/ -> https://h/?***"
    assert change.describe() == "web: HOOK: https://***@h/ -> https://h/?***"

    import click

    from bundler.cli import _Group

    @click.group(cls=_Group)
    def cli() -> None:
        pass

    @cli.command()
    def fail() -> None:
        raise BundlerError("cannot reach https://user:pw@index.example/simple?token=t0k")

    result = CliRunner().invoke(cli, ["fail"])
    assert result.exit_code == 1
    assert "pw" not in result.output and "t0k" not in result.output
    assert "Error: cannot reach https://***@index.example/simple?***" in result.output
