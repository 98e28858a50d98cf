"""The run-time guard on the fast parser: sampled fast parses are checked against feedparser, and a
source where they disagree is parsed by feedparser from then on."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from bot import parse
from bot.parse_fast import parse_fast
from bot.pipeline import ParseGuard

FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"
URL = "https://www.theguardian.com/world/rss"


@pytest.fixture
def body() -> bytes:
    return (FEEDS / "guardian.rss.xml").read_bytes()


@pytest.fixture
def drifting_fast_path(monkeypatch):
    """A fast path that has drifted from feedparser (as a feedparser upgrade could make it): it
    gets every title wrong. Counts its calls."""
    calls = []

    def drifted(body: bytes, *, url: str, content_type: str | None):
        calls.append(url)
        feed = parse_fast(body, url=url, content_type=content_type)
        assert feed is not None
        entries = tuple(dataclasses.replace(e, title=e.title + " (garbled)") for e in feed.entries)
        return dataclasses.replace(feed, entries=entries)

    monkeypatch.setattr(parse, "_FAST", [drifted])
    return calls


def test_an_honest_fast_path_is_kept_when_checked(body):
    guard = ParseGuard(every=1)
    feed = guard.parse(1, body, url=URL, content_type="application/rss+xml")
    assert feed.parser == "fast" and guard.checked == 1 and not guard.pinned


def test_a_disagreeing_fast_path_is_caught_and_the_source_goes_to_feedparser(body, drifting_fast_path, caplog):
    guard = ParseGuard(every=1)
    with caplog.at_level(logging.WARNING, logger="tagwire.pipeline"):
        feed = guard.parse(7, body, url=URL, content_type=None)
    assert feed.parser == "feedparser", "the checked parse already uses the reference result"
    assert not any(e.title.endswith("(garbled)") for e in feed.entries)
    assert guard.pinned == {7}
    [record] = [r for r in caplog.records if "disagrees with feedparser" in r.getMessage()]
    assert "title" in record.first and record.url == URL
    calls = len(drifting_fast_path)
    again = guard.parse(7, body, url=URL, content_type=None)
    assert again.parser == "feedparser" and len(drifting_fast_path) == calls, "the pinned source skips the fast path"
    other = guard.parse(8, body, url=URL, content_type=None)
    assert other.parser == "feedparser" and guard.pinned == {7, 8}, "every source is checked on its own"


def test_only_one_fast_parse_in_every_n_is_checked(body):
    guard = ParseGuard(every=5)
    for n in range(10):
        guard.parse(n, body, url=URL, content_type=None)
    assert guard.checked == 2
