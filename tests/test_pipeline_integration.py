"""The whole pipeline against real feeds served over HTTP on 127.0.0.1, a real SQLite file and the
console adapter's JSON Lines output: what a user of `tagwire run` would see."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.console import ConsoleAdapter
from bot.app import Tagwire
from bot.config import Config, config_from_dict
from bot.models import Command, DeliveryError, Destination, OutgoingMessage, SendResult
from tests.feedserver import Entry, FeedServer

LIU_STORY = (
    "Liu Zhongyi, the port authority chair, announced on Tuesday that the eastern container terminal will close "
    "for three weeks of flood repairs after last month's storm surge. Shipping lines were told to divert vessels "
    "to the western quays, where extra night shifts will run until the terminal reopens. Liu said the repair bill "
    "would be shared with the provincial government. Dock workers' representatives welcomed the extra shifts but "
    "asked for guarantees on overtime pay during the closure."
)
LIU_OTHER_OUTLET = (
    "Diverted container ships will berth at the western quays from next week, port chief Liu Zhongyi told "
    "reporters, as repairs begin at the storm-damaged eastern terminal. Freight forwarders warned of delays of "
    "two to three days for some cargo while the terminal is closed, and one shipping line said it would add a "
    "surcharge for the duration."
)


@pytest.fixture
async def server():
    s = await FeedServer().start()
    yield s
    await s.stop()


def make_config(tmp_path: Path, server: FeedServer, paths: list[str], subs: list[tuple[str, str]],
                **fetch: object) -> Config:
    return config_from_dict({
        "storage": {"path": str(tmp_path / "tagwire.db")},
        "fetch": {"allow_private_addresses": True, "default_interval": "1h", **fetch},
        "sources": [{"name": server.feed(p).title, "url": server.url(p)} for p in paths],
        "console": {"enabled": True, "jsonl": str(tmp_path / "alerts.jsonl")},
        "subscriptions": [{"destination": d, "query": q} for d, q in subs],
    })


async def open_app(cfg: Config) -> tuple[Tagwire, io.StringIO]:
    out = io.StringIO()
    app = await Tagwire.create(cfg, adapters=[ConsoleAdapter(jsonl=cfg.console.jsonl, stream=out, color=False)])
    return app, out


def events(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def now_minus(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def test_first_fetch_is_a_baseline_and_later_items_alert(tmp_path, server):
    feed = server.feed("harbour", "Harbour Daily")
    feed.entries.append(Entry("old-1", "Liu Zhongyi opens new ferry pier", "Liu Zhongyi opened the pier.",
                              published=now_minus(30)))
    app, out = await open_app(make_config(tmp_path, server, ["harbour"], [("console:#news", "#LiuZhongyi")]))
    try:
        await app.run_once()
        assert events(tmp_path) == [], "items already in a feed at its first fetch are not alerted"
        # but they are stored and searchable
        stories = await app.core.commands.latest("#LiuZhongyi", 5)
        assert [s.title for s in stories] == ["Liu Zhongyi opens new ferry pier"]

        feed.entries.insert(0, Entry("new-1", "Liu Zhongyi orders terminal closure", LIU_STORY,
                                     published=now_minus(1), categories=("Ports",)))
        await app.run_once()
        evs = events(tmp_path)
        assert len(evs) == 1
        ev = evs[0]
        assert ev["type"] == "alert" and ev["destination"] == "console:#news" and ev["thread_id"] is None
        assert ev["title"] == "Liu Zhongyi orders terminal closure"
        assert ev["source"] == "Harbour Daily" and ev["tags"] == ["#LiuZhongyi"]
        assert ev["url"] == server.url("articles/new-1")
        assert ev["summary"].startswith("Liu Zhongyi, the port authority chair")
        assert len(ev["summary"]) <= 400 and ev["also_reported_by"] == []
        assert datetime.fromisoformat(ev["published"]).tzinfo is not None
        assert "Liu Zhongyi orders terminal closure" in out.getvalue()

        await app.run_once()
        assert len(events(tmp_path)) == 1, "polling again posts nothing new"
    finally:
        await app.close()


async def test_unchanged_feeds_skip_the_pipeline(tmp_path, server):
    feed = server.feed("a", "A")
    feed.entries.append(Entry("1", "Something", "Body text here."))
    app, _ = await open_app(make_config(tmp_path, server, ["a"], []))
    try:
        [first] = await app.run_once()
        assert first.status == "ok"
        [second] = await app.run_once()
        assert second.status == "not_modified" and feed.conditional_hits == 1
        feed.etag = False  # a server without validators: the body hash catches it
        [third] = await app.run_once()
        assert third.status == "unchanged"
    finally:
        await app.close()


async def test_a_failing_source_backs_off_is_marked_failing_and_recovers(tmp_path, server):
    good, bad = server.feed("good", "Good"), server.feed("bad", "Bad")
    good.entries.append(Entry("g1", "Fine item", "Body."))
    bad.raw = b"<html><body>This is not a feed</body></html>"
    app, _ = await open_app(make_config(tmp_path, server, ["good", "bad"], [], backoff_base="60s", failing_after=3))
    try:
        for attempt in range(1, 4):
            outcomes = {o.source_id: o for o in await app.run_once()}
            sources = {s.name: s for s in await app.core.store.all_sources()}
            assert outcomes[sources["Good"].id].ok, "the other sources go on"
            failing = sources["Bad"]
            assert failing.consecutive_failures == attempt
            assert failing.state == ("failing" if attempt >= 3 else "new")
            assert "not a feed" in (failing.last_error or "").lower() or "feed" in (failing.last_error or "")
            # exponential backoff: 60 s, 120 s, 240 s after the failure
            expected = 60 * 2 ** (attempt - 1)
            assert failing.next_poll - failing.last_poll == pytest.approx(expected, rel=0.01)
            listing = await app.core.commands.handle(Command("sources", "list", Destination.parse("console:#a")))
            bad_line = next(line for line in listing.lines if line.startswith("Bad "))
            assert ("failing" if attempt >= 3 else "retrying") in bad_line and "feed" in bad_line
        bad.raw = None
        bad.status = 500
        await app.run_once()
        bad.status = 200
        bad.entries.append(Entry("b1", "Back again", "Body."))
        await app.run_once()
        recovered = {s.name: s for s in await app.core.store.all_sources()}["Bad"]
        assert recovered.state == "ok" and recovered.consecutive_failures == 0 and recovered.last_error is None
    finally:
        await app.close()


async def test_private_addresses_are_refused_without_a_request(tmp_path, server):
    feed = server.feed("inside", "Inside")
    feed.entries.append(Entry("1", "Secret", "Body."))
    cfg = make_config(tmp_path, server, ["inside"], [])
    cfg.fetch.allow_private_addresses = False
    app, _ = await open_app(cfg)
    try:
        [outcome] = await app.run_once()
        assert not outcome.ok and "loopback" in (outcome.error or "")
        assert feed.requests == 0
    finally:
        await app.close()


async def test_near_miss_terms_do_not_match(tmp_path, server):
    feed = server.feed("wire", "Wire")
    app, _ = await open_app(make_config(tmp_path, server, ["wire"], [("console:#news", "#LiuZhongyi")]))
    try:
        await app.run_once()  # baseline
        feed.entries[:0] = [
            Entry("n1", "Liu Yang wins the city marathon", "Liu Yang crossed the line first in the marathon."),
            Entry("n2", "Zhongyi clinics expand in the suburbs", "Traditional zhongyi clinics opened new branches."),
            Entry("n3", "Noodles at Liuzhongyis", "A restaurant named Liuzhongyis sells noodles to Liu fans."),
        ]
        await app.run_once()
        assert events(tmp_path) == []
    finally:
        await app.close()


async def test_coverage_threads_and_copies_update_the_alert(tmp_path, server):
    a, b, c = server.feed("a", "Harbour Daily"), server.feed("b", "Mekong Wire"), server.feed("c", "Northern Ledger")
    app, _ = await open_app(make_config(tmp_path, server, ["a", "b", "c"], [("console:#news", "#LiuZhongyi")]))
    try:
        await app.run_once()  # baselines
        a.entries.append(Entry("a1", "Liu Zhongyi orders three-week closure of eastern container terminal",
                               LIU_STORY, published=now_minus(3)))
        await app.run_once()
        b.entries.append(Entry("b1", "Port chief Liu Zhongyi: western quays to take diverted ships during repairs",
                               LIU_OTHER_OUTLET, published=now_minus(2)))
        await app.run_once()
        c.entries.append(Entry("c1", "Liu Zhongyi orders three-week closure of eastern container terminal",
                               LIU_STORY + " This article originally appeared in Harbour Daily.",
                               published=now_minus(1)))
        await app.run_once()
        evs = events(tmp_path)
        assert [e["type"] for e in evs] == ["alert", "reply", "update"]
        root, reply, update = evs
        assert reply["thread_id"] == root["message_id"] and reply["story_id"] == root["story_id"]
        assert reply["source"] == "Mekong Wire"
        assert update["message_id"] == root["message_id"], "the copy edits the root alert"
        assert update["also_reported_by"] == ["Northern Ledger"] and update["source"] == "Harbour Daily"
    finally:
        await app.close()


async def test_old_items_are_stored_but_not_alerted(tmp_path, server):
    feed = server.feed("w", "Wire")
    app, _ = await open_app(make_config(tmp_path, server, ["w"], [("console:#news", "harbour")]))
    try:
        await app.run_once()
        feed.entries.append(Entry("old", "Harbour news from last week", "The harbour was busy.",
                                  published=now_minus(60 * 24 * 7)))
        await app.run_once()
        assert events(tmp_path) == []
        reply = await app.core.commands.handle(
            Command("why", server.url("articles/old"), Destination.parse("console:#news"))
        )
        assert any("too old" in line for line in reply.lines)
    finally:
        await app.close()


class FlakyConsole(ConsoleAdapter):
    """Refuses every message (as a platform outage would)."""

    async def send(self, m: OutgoingMessage) -> SendResult:
        raise DeliveryError("service unavailable", retry_after=0.0)


async def test_restart_loses_nothing_and_posts_nothing_twice(tmp_path, server):
    feed = server.feed("a", "Harbour Daily")
    cfg = make_config(tmp_path, server, ["a"], [("console:#news", "#LiuZhongyi")])
    out = io.StringIO()
    app = await Tagwire.create(cfg, adapters=[FlakyConsole(jsonl=cfg.console.jsonl, stream=out)])
    try:
        await app.run_once()
        feed.entries.append(Entry("a1", "Liu Zhongyi orders terminal closure", LIU_STORY, published=now_minus(1)))
        await app.run_once()  # queued, but the platform refuses
        assert events(tmp_path) == []
        assert (await app.core.store.delivery_counts()).get("pending") == 1
    finally:
        await app.close()
    # restart with a working adapter: the pending alert goes out exactly once
    app, _ = await open_app(cfg)
    try:
        await app.run_once()
        await app.run_once()
        evs = events(tmp_path)
        assert [e["type"] for e in evs] == ["alert"]
    finally:
        await app.close()
    app, _ = await open_app(cfg)
    try:
        await app.run_once()
        assert len(events(tmp_path)) == 1, "a second restart neither re-alerts nor re-baselines"
    finally:
        await app.close()


async def test_a_copy_is_recognised_from_what_the_store_keeps_even_after_a_restart(tmp_path, server):
    """The near-duplicate index keeps only what finds candidates in memory; the text that confirms
    a copy is read back from the database. A reprint arriving after a restart still edits the
    original's alert instead of alerting again, and the confirmation really came from the store."""
    a, c = server.feed("a", "Harbour Daily"), server.feed("c", "Northern Ledger")
    cfg = make_config(tmp_path, server, ["a", "c"], [("console:#news", "#LiuZhongyi")])
    app, _ = await open_app(cfg)
    try:
        await app.run_once()  # baselines
        a.entries.append(Entry("a1", "Liu Zhongyi orders three-week closure of eastern container terminal",
                               LIU_STORY, published=now_minus(3)))
        await app.run_once()
    finally:
        await app.close()
    app, _ = await open_app(cfg)
    asked: list[int] = []
    loader = app.core.pipeline._fingerprints
    original_call = loader.__call__

    def recording(keys):
        asked.extend(keys)
        return original_call(keys)

    app.core.pipeline.judge.dupes._load = recording
    [original_id] = [r[0] for r in await app.core.store._all("SELECT id FROM items WHERE guid LIKE '%a1%'")]
    try:
        c.entries.append(Entry("c1", "Eastern container terminal to close for three weeks, says Liu Zhongyi",
                               LIU_STORY + " This article originally appeared in Harbour Daily.",
                               published=now_minus(1)))
        await app.run_once()
        assert [e["type"] for e in events(tmp_path)] == ["alert", "update"]
        assert original_id in asked, "the original's shingles were read back from the store"
    finally:
        await app.close()
