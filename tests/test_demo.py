"""`tagwire demo` is what a new user runs first: it must show an alert, a thread reply and an update."""

from __future__ import annotations

import io
import json

from bot.demo import ITEMS, render_feed, run_demo


async def test_demo_shows_alerts_replies_and_updates(tmp_path):
    out = io.StringIO()
    jsonl = tmp_path / "demo.jsonl"
    assert await run_demo(speed=8.0, jsonl=str(jsonl), out=out) == 0
    events = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    kinds = [(e["type"], e["destination"], e["title"][:30]) for e in events]
    news = [e for e in events if e["destination"] == "console:#news"]
    asia = [e for e in events if e["destination"] == "console:#asia"]
    # Liu Zhongyi: the first outlet's story is the root, the second outlet's coverage a reply in its
    # thread, and the syndicated copy edits the root to say "also reported by"
    assert [e["type"] for e in news] == ["alert", "reply", "update"], kinds
    assert news[1]["thread_id"] == news[0]["message_id"]
    assert news[2]["message_id"] == news[0]["message_id"]
    assert news[2]["also_reported_by"] == ["Northern Ledger"]
    # scam centres: the sport item is excluded by -sport; the follow-up is a reply
    assert [e["type"] for e in asia] == ["alert", "reply"], kinds
    assert not any("2-0" in e["title"] for e in events)
    # nothing from the baseline was posted
    baseline_titles = {it.title for it in ITEMS if it.at < 0}
    assert not any(e["title"] in baseline_titles for e in events)
    text = out.getvalue()
    assert "● [console:#news] Liu Zhongyi orders three-week closure" in text
    assert "also reported by Northern Ledger" in text


def test_demo_feeds_are_valid_rss_with_tracking_links():
    from datetime import UTC, datetime

    from bot.parse import parse_feed

    body = render_feed("harbour", [i for i in ITEMS if i.outlet == "harbour"], datetime.now(UTC), "http://127.0.0.1:1")
    feed = parse_feed(body, url="http://127.0.0.1:1/harbour/feed.xml")
    assert len(feed.entries) == sum(1 for i in ITEMS if i.outlet == "harbour")
    assert all("utm_source" in e.link for e in feed.entries)
