"""The command service, as any adapter (or the CLI) calls it: replies a user would read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import Core
from bot.config import config_from_dict
from bot.models import Command, Destination, Item
from bot.store import NewItem

NEWS = Destination.parse("console:#news")
TEAM_A = Destination("slack", "C1", "T_A")
TEAM_A_OTHER = Destination("slack", "C2", "T_A")
TEAM_B = Destination("slack", "C9", "T_B")


@pytest.fixture
async def core(tmp_path):
    c = await Core.open(config_from_dict({
        "storage": {"path": str(tmp_path / "t.db")},
        "sources": [{"name": "Harbour Daily", "url": "https://harbour.example/feed.xml"}],
    }))
    yield c
    await c.close()


def cmd(name: str, args: str = "", where: Destination = NEWS, admin: bool = False, user: str = "u1") -> Command:
    return Command(name, args, where, user=user, is_admin=admin)


async def archive(core: Core, *items: tuple[str, str, str, int]) -> None:
    """Store items as the pipeline would: (guid, title, text, story id)."""
    src = (await core.store.all_sources())[0]
    from bot import match

    batch = []
    next_item, _ = await core.store.next_ids()
    for n, (guid, title, text, story) in enumerate(items):
        it = Item(source_name=src.name, guid=guid, url=f"https://harbour.example/{guid}", title=title, text=text,
                  published=datetime.now(UTC) - timedelta(hours=len(items) - n))
        batch.append(NewItem(item=it, source_id=src.id, seen=datetime.now(UTC).timestamp(), summary=text[:100],
                             story_id=story, story_is_new=True, item_id=next_item + n,
                             fts=match.fts_columns(title, text, src.name)))
    await core.store.write_items(batch)


async def test_subscribe_echoes_the_normal_form_and_previews_the_archive(core):
    await archive(core, ("1", "Liu Zhongyi opens the new pier", "Liú Zhōngyì cut the ribbon.", 1),
                  ("2", "Markets close higher", "Stocks rose.", 2))
    reply = await core.commands.handle(cmd("subscribe", "#LiuZhongyi"))
    assert reply.ok and not reply.ephemeral
    assert "#LiuZhongyi" in reply.text
    assert [s.title for s in reply.stories] == ["Liu Zhongyi opens the new pier"]
    again = await core.commands.handle(cmd("subscribe", "#LiuZhongyi"))
    assert "already follows" in again.text
    listed = await core.commands.handle(cmd("subscriptions"))
    assert listed.lines == ("#LiuZhongyi",)


async def test_a_bad_query_gets_a_helpful_ephemeral_reply(core):
    reply = await core.commands.handle(cmd("subscribe", '"scam centres" AND (Myanmar OR'))
    assert not reply.ok and reply.ephemeral
    assert "column" in reply.text
    assert await core.commands.tags(NEWS) == []
    empty = await core.commands.handle(cmd("subscribe", "   "))
    assert not empty.ok and "Give a query" in empty.text


async def test_unsubscribe_by_tag_or_by_equivalent_query(core):
    await core.commands.handle(cmd("subscribe", '"scam centres"  Myanmar'))
    missing = await core.commands.handle(cmd("unsubscribe", "#Nope"))
    assert not missing.ok and '"scam centres"  Myanmar' in missing.text
    done = await core.commands.handle(cmd("unsubscribe", '"scam centres" AND Myanmar'))
    assert done.ok and await core.commands.tags(NEWS) == []


async def test_latest_returns_newest_stories_deduplicated_and_validates_the_count(core):
    await archive(core, ("1", "Flood warning for the delta", "Rivers rise.", 10),
                  ("2", "Delta flood: villages evacuated", "Rivers rise further.", 10),
                  ("3", "Flood defences hold in the north", "Barriers worked.", 11))
    reply = await core.commands.handle(cmd("latest", "flood 5"))
    assert reply.ok and reply.ephemeral
    assert [s.story_id for s in reply.stories] == [11, 10], "newest first, one entry per story"
    one = await core.commands.handle(cmd("latest", "flood 1"))
    assert len(one.stories) == 1
    too_many = await core.commands.handle(cmd("latest", "flood 500"))
    assert not too_many.ok and "between 1 and 20" in too_many.text
    none = await core.commands.handle(cmd("latest", "volcano"))
    assert none.ok and none.stories == () and "No stories" in none.text


async def test_only_admins_manage_sources(core):
    refused = await core.commands.handle(cmd("sources", "add https://wire.example/rss Wire", where=TEAM_A))
    assert not refused.ok and refused.ephemeral and "admins" in refused.text
    ok = await core.commands.handle(cmd("sources", "add https://wire.example/rss Wire", where=TEAM_A, admin=True))
    assert ok.ok and "baseline" in ok.text
    bad = await core.commands.handle(cmd("sources", "add ftp://x.example/feed", where=TEAM_A, admin=True))
    assert not bad.ok and "not an http(s) URL" in bad.text
    private = await core.commands.handle(cmd("sources", "add http://169.254.169.254/latest", where=TEAM_A, admin=True))
    assert not private.ok and "link-local" in private.text


async def test_workspaces_never_see_each_others_sources_or_subscriptions(core):
    await core.commands.handle(cmd("sources", "add https://wire.example/rss Wire", where=TEAM_A, admin=True))
    await core.commands.handle(cmd("subscribe", "harbour", where=TEAM_A))
    a_sources = await core.commands.handle(cmd("sources", "list", where=TEAM_A_OTHER))
    b_sources = await core.commands.handle(cmd("sources", "list", where=TEAM_B))
    assert any("Wire" in line for line in a_sources.lines), "a workspace's channels share its sources"
    assert not any("Wire" in line for line in b_sources.lines)
    assert any("Harbour Daily" in line for line in b_sources.lines), "config sources are everyone's"
    assert (await core.commands.handle(cmd("subscriptions", where=TEAM_B))).lines == ()
    removed = await core.commands.handle(cmd("sources", "remove Wire", where=TEAM_B, admin=True))
    assert not removed.ok, "team B cannot remove team A's source"
    assert await core.commands.tags(TEAM_A) == ["harbour"]


async def test_why_explains_and_unknown_urls_are_said_plainly(core):
    await archive(core, ("1", "Liu Zhongyi opens the new pier", "Liu Zhongyi cut the ribbon.", 1))
    item = (await core.store.items_by_url("https://harbour.example/1"))[0]
    await core.store.record_decisions([(item.id, "", "baseline", "first fetch of this source"),
                                       (item.id, str(TEAM_B), "matched", "query secret-team-b-tag")])
    reply = await core.commands.handle(cmd("why", "https://harbour.example/1?utm_source=x#top", where=TEAM_A))
    assert reply.ok and any("baseline" in line for line in reply.lines)
    assert not any("secret-team-b-tag" in line for line in reply.lines), "other workspaces' decisions stay hidden"
    unknown = await core.commands.handle(cmd("why", "https://elsewhere.example/story"))
    assert "has not seen" in unknown.text
    bad = await core.commands.handle(cmd("why", "not a url"))
    assert not bad.ok and bad.ephemeral


async def test_unknown_commands_and_help(core):
    reply = await core.commands.handle(cmd("frobnicate"))
    assert not reply.ok and "subscribe QUERY" in reply.text
    assert "latest QUERY" in (await core.commands.handle(cmd("help"))).text


def test_cli_round_trip(tmp_path, capsys):
    from bot.cli import main

    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[storage]\npath = {json.dumps(str(tmp_path / "c.db"))}\n')
    assert main(["subscribe", "#LiuZhongyi", "--config", str(cfg)]) == 0
    assert "Subscribed #news to: #LiuZhongyi" in capsys.readouterr().out
    assert main(["subscriptions", "--config", str(cfg)]) == 0
    assert "#LiuZhongyi" in capsys.readouterr().out
    assert main(["subscribe", "(oops", "--config", str(cfg)]) == 1
    assert "column" in capsys.readouterr().out
    assert main(["latest", "anything", "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == []


async def test_a_running_bot_picks_up_subscriptions_made_from_the_cli(tmp_path):
    """`tagwire subscribe` runs in its own process against the same database; the bot sees it."""
    import asyncio

    from bot.app import Tagwire

    cfg = config_from_dict({"storage": {"path": str(tmp_path / "shared.db")}})
    app = await Tagwire.create(cfg, adapters=[])
    watcher = asyncio.create_task(app._housekeeping(watch=0.05))
    try:
        await asyncio.sleep(0.1)
        cli = await Core.open(cfg)  # what the CLI does
        await cli.commands.handle(cmd("subscribe", "#LiuZhongyi"))
        await cli.close()
        for _ in range(40):
            await asyncio.sleep(0.05)
            if app.core.pipeline.judge and any(s.tag == "#LiuZhongyi"
                                               for s in app.core.pipeline.judge.subscribers.values()):
                break
        assert any(s.tag == "#LiuZhongyi" for s in app.core.pipeline.judge.subscribers.values())
    finally:
        watcher.cancel()
        await app.close()
