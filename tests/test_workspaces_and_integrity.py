"""Workspaces stay apart through copies, `latest` and `why`; removed sources leave nothing behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.app import Tagwire
from bot.config import config_from_dict
from bot.models import Command, Destination, MessageKind, OutgoingMessage, SendResult
from bot.store.sqlite import SQLiteStore, _same_outlet
from tests.feedserver import Entry, FeedServer
from tests.test_judgement_e2e import QUAKE_SYNDICATED, QUAKE_WIRE

T1 = Destination("slack", "C1", "T1")
T2 = Destination("slack", "C2", "T2")


class SlackRecorder:
    platform = "slack"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def start(self, commands) -> None: ...
    async def close(self) -> None: ...

    async def send(self, m: OutgoingMessage) -> SendResult:
        self.sent.append(m)
        ref = f"ts{len(self.sent)}"
        return SendResult(ref, ref if m.kind is MessageKind.ALERT else m.thread_ref)


@pytest.fixture
async def world(tmp_path):
    server = await FeedServer().start()
    cfg = config_from_dict({
        "storage": {"path": str(tmp_path / "t.db")},
        "fetch": {"allow_private_addresses": True},
        "sources": [{"name": "Public Wire", "url": server.url("public")}],
    })
    rec = SlackRecorder()
    app = await Tagwire.create(cfg, adapters=[rec])
    yield app, server, rec
    await app.close()
    await server.stop()


def ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def run(app: Tagwire, name: str, args: str, where: Destination, admin: bool = False):
    return await app.core.commands.handle(Command(name, args, where, user="u", is_admin=admin))


async def test_a_private_sources_copy_never_reaches_another_workspace(world):
    app, server, rec = world
    server.feed("public", "Public Wire")
    private = server.feed("private", "T2 Internal Briefings")
    await run(app, "sources", f"add {server.url('private')} T2 Internal Briefings", T2, admin=True)
    await run(app, "subscribe", "Sulawesi", T1)
    await run(app, "subscribe", "Sulawesi", T2)
    await app.run_once()
    server.feeds["public"].entries.append(Entry("p1", "Magnitude 6.4 earthquake strikes off Sulawesi",
                                                QUAKE_WIRE, published=ago(10)))
    await app.run_once()
    private.entries.append(Entry("x1", "CONFIDENTIAL: Sulawesi quake brief", QUAKE_SYNDICATED, published=ago(5)))
    await app.run_once()
    t1 = [m for m in rec.sent if m.destination == T1]
    t2 = [m for m in rec.sent if m.destination == T2]
    assert [m.kind for m in t1] == [MessageKind.ALERT], "T1 is not told about T2's private copy"
    assert [m.kind for m in t2] == [MessageKind.ALERT, MessageKind.UPDATE]
    assert t2[1].also_reported_by == ("T2 Internal Briefings",)

    # latest and why in T1 know nothing of T2's private item
    latest = await run(app, "latest", "Sulawesi", T1)
    assert all("T2 Internal Briefings" not in s.sources for s in latest.stories)
    why = await run(app, "why", server.url("articles/x1"), T1)
    assert "has not seen" in why.text


async def test_a_copy_reaches_a_channel_that_never_had_the_original(world):
    """The original came from T2's private feed; the public copy is T1's first news of the story."""
    app, server, rec = world
    server.feed("public", "Public Wire")
    private = server.feed("private", "T2 Desk")
    await run(app, "sources", f"add {server.url('private')} T2 Desk", T2, admin=True)
    await run(app, "subscribe", "Sulawesi", T1)
    await app.run_once()
    private.entries.append(Entry("x1", "Magnitude 6.4 earthquake strikes off Sulawesi", QUAKE_WIRE,
                                 published=ago(10)))
    await app.run_once()
    server.feeds["public"].entries.append(Entry("p1", "Strong earthquake hits off Sulawesi", QUAKE_SYNDICATED,
                                                published=ago(5)))
    await app.run_once()
    t1 = [m for m in rec.sent if m.destination == T1]
    assert [(m.kind, m.source) for m in t1] == [(MessageKind.ALERT, "Public Wire")]


async def test_removing_a_source_and_restarting_never_reuses_ids_or_blocks_a_channel(tmp_path):
    server = await FeedServer().start()
    try:
        cfg = config_from_dict({"storage": {"path": str(tmp_path / "t.db")},
                                "fetch": {"allow_private_addresses": True}})
        rec = SlackRecorder()
        app = await Tagwire.create(cfg, adapters=[rec])
        gone = server.feed("gone", "Gone Daily")
        await run(app, "sources", f"add {server.url('gone')} Gone Daily", T1, admin=True)
        await run(app, "subscribe", "Sulawesi", T1)
        await app.run_once()
        gone.entries.append(Entry("g1", "Magnitude 6.4 earthquake strikes off Sulawesi", QUAKE_WIRE,
                                  published=ago(10)))
        await app.run_once()
        assert len(rec.sent) == 1
        removed = await run(app, "sources", "remove Gone Daily", T1, admin=True)
        assert removed.ok
        await app.close()

        store = SQLiteStore(tmp_path / "t.db")
        await store.open()
        try:
            assert await store._all("SELECT rowid FROM items_fts") == [], "no full-text rows outlive their items"
            assert await store._all("SELECT * FROM threads") == [], "no thread outlives its root message"
            next_item, _ = await store.next_ids()
            assert next_item > 1, "ids of deleted items are not handed out again"
        finally:
            await store.close()

        # the same story from a new source after a restart: a fresh root alert, nothing stuck
        rec2 = SlackRecorder()
        app = await Tagwire.create(cfg, adapters=[rec2])
        back = server.feed("back", "Back Daily")
        await run(app, "sources", f"add {server.url('back')} Back Daily", T1, admin=True)
        await app.run_once()
        back.entries.append(Entry("b1", "Sulawesi earthquake: engineers begin checking schools", QUAKE_WIRE[:300],
                                  published=ago(1)))
        await app.run_once()
        assert [m.kind for m in rec2.sent] == [MessageKind.ALERT]
        await app.close()
    finally:
        await server.stop()


@pytest.mark.parametrize(("name", "origin", "same"), [
    ("Harbour Daily", "Harbour Daily", True),
    ("South China Morning Post", "south china morning post", True),
    ("Harbour Daily World Edition", "Harbour Daily", True),
    ("AP", "Apple Daily", False),
    ("Post", "Washington Post", True),
    ("Bay Post", "Washington Post", False),
])
def test_credited_outlets_match_by_whole_words(name, origin, same):
    assert _same_outlet(name, origin) is same
