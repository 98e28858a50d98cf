"""The SQLite store's read paths that rebuild the bot's memory at start-up."""

from __future__ import annotations

from datetime import UTC, datetime

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
