"""Discord end to end: the real core (commands, store, pipeline, outbox) behind the Discord adapter.

Feeds come from a local feed server, Discord is the local stand-in, and discord.py is real.
What a server's members would see is asserted on what the stand-in received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bot.app as app_module
import bot.config as config_module
from adapters.discord import DiscordAdapter
from tests.discord_standin import EPHEMERAL, DiscordStandIn, Recorded
from tests.feedserver import Entry, FeedServer

MANAGE_GUILD = 1 << 5

STORY = (
    "Quay workers at the Lantern Bay harbour walked out on Monday after Shen Maoyu, the harbour board "
    "chair, announced a pay freeze for night crews. The board said the freeze would last until the new "
    "crane contract is signed. Union leaders said the walkout would continue until the board reopened talks."
)
OTHER_OUTLET = (
    "The Lantern Bay harbour walkout by quay workers entered its second day on Tuesday. Shen Maoyu, the "
    "harbour board chair whose pay freeze for night crews started the strike, said talks with union leaders "
    "could reopen next week. Ships queued outside the harbour and agents warned of delays for perishable cargo."
)


@dataclass
class Server:
    guild: int
    channel: int


@dataclass
class World:
    standin: DiscordStandIn
    feeds: FeedServer
    app: Any
    adapter: DiscordAdapter
    a: Server
    b: Server

    async def run(
        self, where: Server, name: str, options: list[dict[str, Any]] | None = None, *, admin: bool = False
    ) -> Recorded:
        sent = await self.standin.interact(
            name,
            options,
            guild_id=where.guild,
            channel_id=where.channel,
            permissions=(MANAGE_GUILD if admin else 0) | 1 << 11,
        )
        (answer,) = await self.standin.answer(sent)  # the core is quick here: answered, not deferred
        return answer


def text(rec: Recorded) -> str:
    return str(rec.body["data"]["content"])


def opt(name: str, value: Any) -> dict[str, Any]:
    return {"type": 3, "name": name, "value": value}


def sub(name: str, *options: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": 1, "name": name, "options": list(options)}]


def ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with DiscordStandIn() as standin:
        feeds = await FeedServer().start()
        ga, (ca,) = standin.add_guild("Alpha")
        gb, (cb,) = standin.add_guild("Beta")
        cfg = config_module.config_from_dict(
            {
                "storage": {"path": str(tmp_path / "tagwire.db")},
                "fetch": {"allow_private_addresses": True, "default_interval": "1h"},
                "console": {"enabled": False},
                "discord": {
                    "enabled": True,
                    "guild_ids": [ga, gb],
                    "api_base_url": standin.api_base_url,
                    "gateway_url": standin.gateway_url,
                    "messages_per_second": 1000,
                },
            }
        )
        adapter = DiscordAdapter(cfg.discord, standin.token, guild_ready_timeout=0.01, identify_interval=0.01)
        app = await app_module.Tagwire.create(cfg, adapters=[adapter])
        try:
            await adapter.start(app.core.commands)
            yield World(standin, feeds, app, adapter, Server(ga, ca), Server(gb, cb))
        finally:
            await app.close()
            await feeds.stop()


async def test_a_member_without_manage_server_is_refused_by_the_core(world: World) -> None:
    feed = world.feeds.feed("rss", "Bay Post")
    answer = await world.run(world.a, "sources", sub("add", opt("url", world.feeds.url("rss"))), admin=False)
    assert answer.body["type"] == 4 and answer.body["data"]["flags"] & EPHEMERAL
    assert "admin" in text(answer).lower()
    listing = await world.run(world.a, "sources", sub("list"), admin=False)
    assert world.feeds.url("rss") not in text(listing)
    assert feed.requests == 0


async def test_guilds_never_see_or_change_each_others_subscriptions_or_sources(world: World) -> None:
    a, b = world.a, world.b
    await world.run(a, "subscribe", [opt("query", "#ShenMaoyu")])
    await world.run(a, "sources", sub("add", opt("url", world.feeds.url("bay")), opt("name", "Bay Post")), admin=True)

    assert "ShenMaoyu" in text(await world.run(a, "subscriptions"))
    assert "ShenMaoyu" not in text(await world.run(b, "subscriptions"))
    refused = await world.run(b, "unsubscribe", [opt("tag", "#ShenMaoyu")])
    assert refused.body["data"]["flags"] & EPHEMERAL and "does not follow" in text(refused)
    assert "ShenMaoyu" in text(await world.run(a, "subscriptions")), "guild A's subscription is untouched"

    assert "Bay Post" in text(await world.run(a, "sources", sub("list")))
    assert "Bay Post" not in text(await world.run(b, "sources", sub("list")))
    gone = await world.run(b, "sources", sub("remove", opt("source", "Bay Post")), admin=True)
    assert gone.body["data"]["flags"] & EPHEMERAL
    assert "Bay Post" in text(await world.run(a, "sources", sub("list")))

    sent = await world.standin.interact(
        "unsubscribe",
        [{"type": 3, "name": "tag", "value": "", "focused": True}],
        guild_id=b.guild,
        channel_id=b.channel,
        autocomplete=True,
    )
    (choices,) = await world.standin.answer(sent)
    assert choices.body["data"]["choices"] == []


async def test_alerts_thread_and_edit_in_the_subscribed_guild_only(world: World) -> None:
    s, a, b = world.standin, world.a, world.b
    bay, wire, copy = world.feeds.feed("bay"), world.feeds.feed("wire"), world.feeds.feed("copy")
    for path, name in (("bay", "Bay Post"), ("wire", "Coast Wire"), ("copy", "Daily Mirror")):
        await world.run(a, "sources", sub("add", opt("url", world.feeds.url(path)), opt("name", name)), admin=True)
    await world.run(a, "subscribe", [opt("query", "#ShenMaoyu")])
    await world.run(b, "subscribe", [opt("query", "#ShenMaoyu")])  # B follows the tag but not A's sources
    await world.app.run_once()  # first fetches are baselines

    bay.entries.append(Entry("b1", "Shen Maoyu's pay freeze sparks Lantern Bay walkout", STORY, published=ago(3)))
    await world.app.run_once()
    (root,) = s.posted_in(a.channel)
    assert root["embeds"][0]["title"] == "Shen Maoyu's pay freeze sparks Lantern Bay walkout"
    assert root["embeds"][0]["footer"]["text"] == "Tag: #ShenMaoyu"
    assert root["allowed_mentions"] == {"parse": []}
    thread = int(root["id"])
    assert s.channels[thread]["parent_id"] == str(a.channel)

    wire.entries.append(
        Entry("w1", "Lantern Bay walkout over Shen Maoyu pay freeze enters second day", OTHER_OUTLET, published=ago(2))
    )
    await world.app.run_once()
    (follow_up,) = s.posted_in(thread)
    assert "second day" in follow_up["embeds"][0]["title"]

    copy.entries.append(
        Entry(
            "c1",
            "Shen Maoyu's pay freeze sparks Lantern Bay walkout",
            STORY + " This article originally appeared in Bay Post.",
            published=ago(1),
        )
    )
    await world.app.run_once()
    fields = {f["name"]: f["value"] for f in s.messages[thread]["embeds"][0]["fields"]}
    assert fields["Also reported by"] == "Daily Mirror"
    assert len(s.posted_in(a.channel)) == 1 and len(s.posted_in(thread)) == 1

    assert s.posted_in(b.channel) == [], "guild B does not see guild A's sources"
