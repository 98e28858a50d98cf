"""Parsing only what changed: the entries a source showed last time are cut out of its next body,
and what is left parses into exactly the new entries, as parsing the whole feed would give them."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from bench.farm import Farm, FarmSpec
from bot import entryspans
from bot import pipeline as pipeline_module
from bot.entryspans import encode, reduce, split
from bot.parse import parse_feed, parse_with_feedparser
from bot.parse_fast import compare_parsed
from bot.pipeline import ParseGuard, parse_with_guids
from tests.feedserver import Entry
from tests.test_pipeline_integration import events, make_config, now_minus, open_app, server  # noqa: F401

FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"
URL = "https://example.org/feed.xml"


def drop_entries(body: bytes, indices: set[int]) -> bytes:
    """``body`` as it was before the entries at ``indices`` were published."""
    spans = split(body)
    assert spans is not None
    out, at = [], 0
    for i, (a, b) in enumerate(spans.bounds):
        if i in indices:
            out.append(body[at:a])
            at = b
    out.append(body[at:])
    return b"".join(out)


def assert_cut_matches_whole(previous: bytes, current: bytes, url: str = URL) -> tuple[int, ...]:
    reduced, kept = reduce(current, split(current), encode(split(previous)))
    assert kept is not None, "something was cut"
    whole = parse_feed(current, url=url)
    cut = parse_feed(reduced, url=url)
    expected = dataclasses.replace(whole, entries=tuple(whole.entries[i] for i in kept))
    assert compare_parsed(cut, expected, url=url) == []
    assert compare_parsed(cut, dataclasses.replace(parse_with_feedparser(current, url=url),
                                                   entries=expected.entries), url=url) == []
    return kept


def fast_shared_feeds() -> list[Path]:
    return [p for p in sorted(FEEDS.glob("*.xml")) if parse_feed(p.read_bytes(), url=URL).parser == "fast"]


@pytest.mark.parametrize("path", fast_shared_feeds(), ids=lambda p: p.name)
def test_real_feeds_cut_at_their_entries_and_the_rest_parses_to_the_new_entries(path):
    body = path.read_bytes()
    spans = split(body)
    assert spans is not None
    assert len(spans.bounds) == len(parse_feed(body, url=URL).entries)
    n = len(spans.bounds)
    if n == 1:  # one entry: the previous version had none, so there is nothing to cut
        assert reduce(body, spans, encode(split(drop_entries(body, {0})))) == (body, None)
        return
    new = {0, n // 2}
    kept = assert_cut_matches_whole(drop_entries(body, new), body)
    assert set(kept) == new


def test_farm_feeds_that_gained_items_parse_only_the_new_ones():
    farm = Farm(FarmSpec(feeds=60))
    for feed in range(60):
        previous, current = farm.render(feed, 50), farm.render(feed, 52)
        kept = assert_cut_matches_whole(previous, current, url=f"http://127.0.0.1{farm.feed_path(feed)}")
        assert len(kept) == 2, "two items were added; the other 48 are known"


def test_an_entry_edited_in_place_is_parsed_again():
    body = (FEEDS / "guardian.rss.xml").read_bytes()
    spans = split(body)
    assert spans is not None
    a, b = spans.bounds[3]
    edited = body[:a] + body[a:b].replace(b"</title>", b" (updated)</title>", 1) + body[b:]
    assert assert_cut_matches_whole(body, edited) == (3,)


def test_nothing_is_cut_when_the_markup_around_the_entries_changed():
    body = (FEEDS / "guardian.rss.xml").read_bytes()
    seen = encode(split(body))
    rebased = body.replace(b"<channel>", b'<channel xml:base="https://elsewhere.example/">', 1)
    assert rebased != body
    assert reduce(rebased, split(rebased), seen) == (rebased, None)
    # text outside the entries (a new build date) is not markup: cutting still happens
    redated = re.sub(rb"<lastBuildDate>[^<]*</lastBuildDate>", b"<lastBuildDate>Fri, 27 Nov 2026 10:00:00 GMT"
                     b"</lastBuildDate>", body, count=1)
    assert reduce(redated, split(redated), seen)[1] == ()


@pytest.mark.parametrize("body", [
    b"<rss><channel><item><description><![CDATA[<item>]]></description></item></channel></rss>",
    b"<rss><channel><!-- </item> --><item><title>a</title></item></channel></rss>",
    b'<rss><channel><?x <item> ?><item><title>a</title></item></channel></rss>',
    b'<feed xmlns:a="http://www.w3.org/2005/Atom"><a:entry><a:title>a</a:title></a:entry></feed>',
    b"<rss><channel><item><item><title>a</title></item></item></channel></rss>",
    b"<rss><channel><item><title>a</title></channel></rss>",
    b"<rss><channel><item/></channel></rss>",
    b'<!DOCTYPE rss [<!ENTITY x "y">]><rss><channel><item><title>&x;</title></item></channel></rss>',
    "<rss><channel><item><title>a</title></item></channel></rss>".encode("utf-16"),
    b"<rss><channel><title>no entries</title></channel></rss>",
], ids=["cdata", "comment", "pi", "prefixed", "nested", "unclosed", "empty-item", "doctype", "utf16", "none"])
def test_bodies_that_cannot_be_cut_safely_are_parsed_whole(body):
    assert split(body) is None


def test_a_source_whose_cut_disagrees_with_the_whole_feed_is_parsed_whole_from_then_on(monkeypatch, caplog):
    """The run-time check: a cut that lost a new entry (simulated) is caught, the whole feed is
    used, and that source's bodies are not cut again."""
    farm = Farm(FarmSpec(feeds=2))
    previous, current = farm.render(0, 50), farm.render(0, 52)
    seen, guard = encode(split(previous)), ParseGuard(every=1)
    real_reduce = entryspans.reduce

    def lossy(body, spans, seen):
        reduced, kept = real_reduce(body, spans, seen)
        return drop_entries(reduced, {0}), kept  # loses the first new entry

    monkeypatch.setattr(entryspans, "reduce", lossy)
    with caplog.at_level(logging.WARNING, logger="tagwire.pipeline"):
        feed, guids, remember = parse_with_guids(current, url=URL, content_type=None, guard=guard, source_id=5,
                                                 seen=seen)
    assert len(feed.entries) == 50 and len(guids) == 50, "the whole feed, checked, is what the pipeline gets"
    assert guard.no_cut == {5} and remember is None
    assert any("parsed whole from now on" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(entryspans, "reduce", real_reduce)
    again, _, remember = parse_with_guids(current, url=URL, content_type=None, guard=guard, source_id=5, seen=seen)
    assert len(again.entries) == 50 and remember is None
    other, _, remember = parse_with_guids(current, url=URL, content_type=None, guard=guard, source_id=6, seen=seen)
    assert len(other.entries) == 2 and remember == encode(split(current)), "other sources are still cut"


async def test_the_running_bot_parses_only_new_entries_and_alerts_as_before(tmp_path, server):  # noqa: F811
    """Through the real app: after the baseline, a poll parses the new entry only; an entry edited
    in place is parsed again and, its guid being known, not alerted twice; after a restart the
    store still knows which entries were seen."""
    feed = server.feed("harbour", "Harbour Daily")
    feed.entries.extend(Entry(f"old-{i}", f"Pier {i} reopens", f"Pier {i} reopened after repairs to the deck.",
                              published=now_minus(60 + i)) for i in range(5))
    cfg = make_config(tmp_path, server, ["harbour"], [("console:#news", "#LiuZhongyi")])
    parsed: list[int] = []
    real = pipeline_module.parse_with_guids

    def counting(*a, **k):
        out = real(*a, **k)
        parsed.append(len(out[0].entries))
        return out

    pipeline_module.parse_with_guids = counting
    try:
        app, _ = await open_app(cfg)
        try:
            await app.run_once()
            feed.entries.insert(0, Entry("new-1", "Liu Zhongyi orders terminal closure", "Liu Zhongyi closed it.",
                                         published=now_minus(1)))
            await app.run_once()
            assert parsed == [5, 1], "the second poll parsed the new entry only"
            assert [e["title"] for e in events(tmp_path)] == ["Liu Zhongyi orders terminal closure"]
            feed.entries[0] = Entry("new-1", "Liu Zhongyi orders terminal closure (updated)",
                                    "Liu Zhongyi closed it for a week.", published=now_minus(1))
            await app.run_once()
            assert parsed[-1] == 1 and len(events(tmp_path)) == 1, "an edited entry is parsed, not re-posted"
        finally:
            await app.close()
        app, _ = await open_app(cfg)
        try:
            await app.run_once()  # nothing changed: a 304 or the same body keeps what the store knows
            feed.entries.insert(0, Entry("new-2", "Liu Zhongyi reopens the terminal", "Liu Zhongyi reopened it.",
                                         published=now_minus(0.5)))
            await app.run_once()
            assert parsed[-1] == 1, "a restarted bot still parses only the new entry"
            assert [e["title"] for e in events(tmp_path)][1:] == ["Liu Zhongyi reopens the terminal"]
        finally:
            await app.close()
    finally:
        pipeline_module.parse_with_guids = real
