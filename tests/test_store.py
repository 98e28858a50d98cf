"""The SQLite store: the read paths that rebuild the bot's memory at start-up, and group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest

from bot import match
from bot.app import Core
from bot.config import config_from_dict
from bot.models import Item
from bot.store import NewItem


async def test_start_up_reloads_the_newest_originals_fingerprints_with_their_stories_and_times(tmp_path):
    """The near-duplicate index holds a bounded number of fingerprints: a restart loads the newest
    of them, each with the story its copies must join and the time the live judge indexed it by
    (published, else first seen), oldest first, so evictions happen in the same order as before."""
    core = await Core.open(config_from_dict({
        "storage": {"path": str(tmp_path / "t.db")},
        "sources": [{"name": "A", "url": "https://a.example/feed"}],
    }), sender=False)
    try:
        src = (await core.store.all_sources())[0]
        news = []
        for n in range(1, 6):
            published = datetime(2026, 11, 20, n, tzinfo=UTC) if n != 4 else None
            item = Item(source_name="A", guid=f"g{n}", url=f"https://a.example/{n}", title=f"T{n}", text="x",
                        published=published)
            news.append(NewItem(item=item, source_id=src.id, seen=1_800_000_000.0 + n, summary="", story_id=100 + n,
                                story_is_new=True, item_id=n, fingerprint=f"fp{n}".encode(),
                                fts=match.fts_columns(item.title, item.text, "A")))
        news[2].fingerprint = None  # a copy or a body too short: no fingerprint
        await core.store.write_items(news)
        async def load(since: float, limit: int, batch: int = 5000) -> list[list[tuple]]:
            return [b async for b in core.store.fingerprints_since(since, limit, batch)]

        [rows] = await load(0.0, 3)
        assert [(r[0], r[2], r[3]) for r in rows] == [(2, 102, b"fp2"), (4, 104, b"fp4"), (5, 105, b"fp5")]
        assert rows[0][1] == datetime(2026, 11, 20, 2, tzinfo=UTC).timestamp()
        assert rows[1][1] == 1_800_000_004.0, "no published date: first seen"
        assert await load(1_800_000_004.5, 10) == [[rows[2]]], "only within retention"
        assert await load(0.0, 3, batch=2) == [rows[:2], rows[2:]], "a batch at a time, oldest first"
        assert [r[0] for b in await load(0.0, 100, batch=2) for r in b] == [1, 2, 4, 5], "fewer than the limit: all"
    finally:
        await core.close()


async def _core_with_sources(tmp_path, n: int) -> Core:
    return await Core.open(config_from_dict({
        "storage": {"path": str(tmp_path / "t.db")},
        "sources": [{"name": f"S{i}", "url": f"https://s{i}.example/feed"} for i in range(n)],
    }), sender=False)


async def test_polls_finishing_together_are_committed_together_each_with_its_own_outcome(tmp_path):
    """Group commit of poll bookkeeping: 40 polls recording their outcome at once cost a few
    transactions, not 40, and every source ends up with exactly its own outcome."""
    core = await _core_with_sources(tmp_path, 40)
    try:
        sources = await core.store.all_sources()
        commits: list[str] = []
        original = core.store._write_hop

        async def counting(fn):
            commits.append(fn.func.__name__)
            return await original(fn)

        core.store._write_hop = counting  # type: ignore[method-assign]
        await asyncio.gather(*(
            core.store.record_poll_success(s.id, now=1000.0, next_poll=2000.0 + s.id, etag=f"e{s.id}",
                                           last_modified=None, body_hash=f"h{s.id}", baseline_done=True)
            if s.id % 2 else
            core.store.record_poll_failure(s.id, now=1000.0, next_poll=3000.0 + s.id, error=f"boom {s.id}",
                                           failing=False)
            for s in sources))
        assert 1 <= len(commits) <= 3, commits
        for s in await core.store.all_sources():
            if s.id % 2:
                assert (s.state, s.next_poll, s.etag, s.body_hash) == ("ok", 2000.0 + s.id, f"e{s.id}", f"h{s.id}")
            else:
                assert (s.consecutive_failures, s.next_poll, s.last_error) == (1, 3000.0 + s.id, f"boom {s.id}")
    finally:
        await core.close()


async def test_a_failed_group_commit_fails_every_writer_in_it_and_writes_none_of_it(tmp_path):
    """If the shared transaction fails, nobody is told their outcome was stored, and no part of it
    is: each caller's own recovery (the scheduler holds the source, the outbox records again) runs."""
    core = await _core_with_sources(tmp_path, 3)
    try:
        sources = await core.store.all_sources()
        # a statement that fails inside the group, queued among good ones
        results = await asyncio.gather(
            core.store.postpone_source(sources[0].id, 5000.0),
            core.store._grouped.write("UPDATE no_such_table SET x=1", [()]),
            core.store.postpone_source(sources[1].id, 6000.0),
            return_exceptions=True,
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        assert [s.next_poll for s in await core.store.all_sources()] == [s.next_poll for s in sources]
        await core.store.postpone_source(sources[2].id, 7000.0)  # the next group commits normally
        assert (await core.store.get_source(sources[2].id)).next_poll == 7000.0
        with pytest.raises(sqlite3.OperationalError):
            await core.store._grouped.write("UPDATE no_such_table SET x=1", [()])
    finally:
        await core.close()


async def test_the_delivery_path_never_reads_the_whole_deliveries_or_threads_table(tmp_path):
    """Every statement the store runs to queue, claim, send, update and prune deliveries, and the
    triggers those fire, finds its rows through an index: a bot with millions of sent messages
    behind it pays for the rows it touches, not for its history. (Checked on SQLite's own query
    plans of the statements run, aliases resolved; the only whole-index walks allowed are of the
    pending-only partial indexes.)"""
    from bot.models import Destination
    from bot.store import DeliveryRequest

    core = await _core_with_sources(tmp_path, 2)
    statements: list[str] = []
    try:
        a, b = await core.store.all_sources()
        channels = [Destination.parse(f"console:#c{i}") for i in range(3)]

        def new_item(n: int, source, **kw) -> NewItem:
            item = Item(source_name=source.name, guid=f"g{n}", url=f"https://x.example/{n}", title=f"T{n}",
                        text="body", published=None)
            return NewItem(item=item, source_id=source.id, seen=1_800_000_000.0 + n, summary="", item_id=n,
                           fts=match.fts_columns(item.title, item.text, source.name), **kw)

        await core.store._hop(lambda conn: conn.set_trace_callback(statements.append))
        original = new_item(1, a, story_id=7, story_is_new=True,
                            deliveries=[DeliveryRequest(destination=c, kind="story", tags=("t",)) for c in channels])
        await core.store.write_items([original])
        sent = await core.store.claim_deliveries(2e9, 100)
        await core.store.mark_sent([(d.id, f"m{d.id}", None) for d in sent], 2e9)
        copy = new_item(2, b, story_id=7, story_is_new=False, duplicate_of=1, deliveries=[
            DeliveryRequest(destination=None, kind="copy", original_item_id=1),
            *(DeliveryRequest(destination=c, kind="story_if_new", tags=("t",)) for c in channels)])
        await core.store.write_items([copy])
        updates = await core.store.claim_deliveries(2e9, 100)
        assert sorted(u.kind for u in updates) == ["update"] * 3, "the copy updates the original's 3 messages"
        await core.store.next_delivery_due()
        await core.store.deliveries_for_items([1, 2])
        await core.store.prune(1_800_000_001.5)
        await core.store._hop(lambda conn: conn.set_trace_callback(None))
        assert await core.store.delivery_counts() == {"sending": 3}, "the copy's updates stay with their item"
        assert await core.store._all("SELECT * FROM threads") == [], "the pruned roots' threads went with them"
        # what the triggers run when deliveries and items go (old.id stands for the deleted row)
        for (body,) in await core.store._all("SELECT sql FROM sqlite_master WHERE type = 'trigger'"):
            inner = body.split("BEGIN", 1)[1].rsplit("END", 1)[0]
            statements += [sql.replace("old.id", "1") for sql in inner.split(";") if sql.strip()]

        allowed = {"deliveries_queue", "deliveries_due"}  # pending rows only
        watched = {"deliveries", "threads"}
        full_scans = {}
        for sql in dict.fromkeys(statements):
            if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
                continue
            words = sql.replace("(", " ").replace(")", " ").replace(",", " ").split()
            names = {w for w in words if w in watched}
            names |= {alias for i, alias in enumerate(words[1:], 1) if words[i - 1] in watched
                      and alias.isidentifier() and alias.upper() not in _SQL_WORDS}
            for *_, detail in await core.store._all("EXPLAIN QUERY PLAN " + sql):
                step = detail.split()
                if step[0] == "SCAN" and step[1] in names and not any(ix in step for ix in allowed):
                    full_scans.setdefault(sql.strip(), []).append(detail)
        assert not full_scans, full_scans
    finally:
        await core.close()


_SQL_WORDS = {"WHERE", "SET", "JOIN", "LEFT", "ON", "AS", "AND", "OR", "ORDER", "GROUP", "LIMIT", "VALUES",
              "SELECT", "FROM", "INNER", "USING", "NOT", "IN", "IS"}
