"""The Discord adapter, driven by the real discord.py client against a local Discord stand-in.

Every assertion is about what "Discord" (the stand-in) received: the commands synced, the
interaction callbacks, the messages, threads and edits, and the allowed_mentions on each.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord import DiscordAdapter
from bot.config import DiscordConfig
from bot.models import Command, DeliveryError, Destination, MessageKind, OutgoingMessage, Reply, StoryView
from tests.discord_standin import EPHEMERAL, DiscordStandIn, Recorded

MANAGE_GUILD = 1 << 5
NO_PINGS = {"parse": []}
DELIVERY_IDS = itertools.count(1)


@dataclass
class FakeCore:
    """A stand-in for the core's command service: records commands, answers as scripted."""

    delay: float = 0.0
    reply: Reply | None = None
    tag_list: list[str] = field(default_factory=list)
    received: list[Command] = field(default_factory=list)

    async def handle(self, command: Command) -> Reply:
        self.received.append(command)
        await asyncio.sleep(self.delay)
        return self.reply or Reply(f"ran {command.name} {command.args}".strip())

    async def tags(self, destination: Destination) -> list[str]:
        return list(self.tag_list)


@dataclass
class Bot:
    standin: DiscordStandIn
    adapter: DiscordAdapter
    core: FakeCore
    guild: int
    channel: int

    @property
    def dest(self) -> Destination:
        return Destination("discord", str(self.channel), str(self.guild))

    async def command(self, name: str, options: list[dict[str, Any]] | None = None, **kw: Any) -> list[Recorded]:
        """Run a slash command as a member; return the bot's requests on it (waits for ``count``)."""
        count = kw.pop("count", 1)
        kw.setdefault("guild_id", self.guild)
        kw.setdefault("channel_id", self.channel)
        sent = await self.standin.interact(name, options, **kw)
        return await self.standin.answer(sent, count)


@asynccontextmanager
async def running(
    standin: DiscordStandIn, core: FakeCore | None = None, *, channels: int = 1, **settings: Any
) -> AsyncIterator[Bot]:
    gid, chans = standin.add_guild("Newsroom", channels=channels)
    settings.setdefault("guild_ids", [gid])
    settings.setdefault("messages_per_second", 1000.0)
    settings.setdefault("gateway_url", standin.gateway_url)
    cfg = DiscordConfig(enabled=True, api_base_url=standin.api_base_url, **settings)
    core = core or FakeCore()
    adapter = DiscordAdapter(cfg, standin.token, guild_ready_timeout=0.01, defer_after=0.5, identify_interval=0.01)
    await adapter.start(core)
    try:
        yield Bot(standin, adapter, core, gid, chans[0])
    finally:
        await adapter.close()


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandIn]:
    async with DiscordStandIn() as s:
        yield s


@pytest.fixture
async def bot(standin: DiscordStandIn) -> AsyncIterator[Bot]:
    async with running(standin) as b:
        yield b


def opt(name: str, value: Any, kind: int = 3, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "value": value, **extra}


def sub(name: str, *options: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": 1, "name": name, "options": list(options)}]


def message(bot: Bot, kind: MessageKind = MessageKind.ALERT, **kw: Any) -> OutgoingMessage:
    base: dict[str, Any] = dict(
        delivery_id=next(DELIVERY_IDS),
        kind=kind,
        destination=bot.dest,
        story_id=1,
        url="https://news.example/floods",
        title="Flood waters rise in the valley",
        source="BBC News",
        published=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        summary="Rivers burst their banks overnight.",
        categories=("World",),
        tags=("#Floods",),
    )
    base.update(kw)
    return OutgoingMessage(**base)


def callback(rec: Recorded) -> tuple[int, int]:
    """(callback type, message flags) of an interaction callback."""
    assert rec.path.endswith("/callback"), rec.path
    return rec.body["type"], int((rec.body.get("data") or {}).get("flags") or 0)


# --- connection and command sync ------------------------------------------------------------


async def test_connects_with_default_intents_and_syncs_commands_to_configured_guild(bot: Bot) -> None:
    s = bot.standin
    (identify,) = s.identifies
    assert identify["token"] == s.token
    assert identify["intents"] == discord.Intents.default().value
    privileged = discord.Intents(members=True, presences=True, message_content=True).value
    assert identify["intents"] & privileged == 0

    synced = {c["name"]: c for c in s.commands[bot.guild]}
    assert set(synced) == {"subscribe", "unsubscribe", "subscriptions", "latest", "sources", "why", "help"}
    assert None not in s.commands  # guild sync only: nothing global
    assert synced["sources"]["default_member_permissions"] == str(MANAGE_GUILD)
    assert {o["name"] for o in synced["sources"]["options"]} == {"add", "remove", "list"}
    add = next(o for o in synced["sources"]["options"] if o["name"] == "add")
    assert [(o["name"], o["required"]) for o in add["options"]] == [("url", True), ("name", False)]
    assert synced["subscribe"]["default_member_permissions"] is None
    (tag,) = synced["unsubscribe"]["options"]
    assert tag["name"] == "tag" and tag["autocomplete"] is True
    query, count = synced["latest"]["options"]
    assert (query["name"], query["required"]) == ("query", True)
    assert (count["name"], count["type"], count["required"]) == ("count", 4, False)
    assert (count["min_value"], count["max_value"]) == (1, 20)


async def test_without_guild_ids_commands_sync_globally(standin: DiscordStandIn) -> None:
    async with running(standin, guild_ids=[]) as b:
        assert {c["name"] for c in standin.commands[None]} >= {"subscribe", "sources", "help"}
        assert b.guild not in standin.commands
        replies = await b.command("help")  # a global command works in the guild
        assert callback(replies[0])[0] == 4


async def test_configured_shards_each_identify_and_serve_their_guilds(standin: DiscordStandIn) -> None:
    g0, (c0,) = standin.add_guild("On shard 0", shard=(0, 2))
    g1, (c1,) = standin.add_guild("On shard 1", shard=(1, 2))
    async with running(standin, shards=2, guild_ids=[g0, g1]) as b:
        assert sorted(tuple(i["shard"]) for i in standin.identifies) == [(0, 2), (1, 2)]
        assert not standin.sent("GET", "/gateway/bot")  # the shard count came from the config
        for guild, channel in ((g0, c0), (g1, c1)):
            (answer,) = await b.command("help", guild_id=guild, channel_id=channel)
            assert callback(answer)[0] == 4
        assert {c.destination.workspace for c in b.core.received} == {str(g0), str(g1)}


async def test_auto_sharding_takes_the_count_and_gateway_from_discord(standin: DiscordStandIn) -> None:
    standin.recommended_shards = 2
    async with running(standin, gateway_url="wss://unused.invalid/") as b:
        assert standin.sent("GET", "/gateway/bot")
        assert sorted(tuple(i["shard"]) for i in standin.identifies) == [(0, 2), (1, 2)]
        assert callback((await b.command("help"))[0])[0] == 4


async def test_endpoints_are_restored_when_the_adapter_closes(standin: DiscordStandIn) -> None:
    before = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    async with running(standin):
        assert Route.BASE == standin.api_base_url
    assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == before


async def test_a_wrong_token_is_fatal(standin: DiscordStandIn) -> None:
    cfg = DiscordConfig(api_base_url=standin.api_base_url, gateway_url=standin.gateway_url)
    adapter = DiscordAdapter(cfg, "not-the-token", guild_ready_timeout=0.01)
    with pytest.raises(DeliveryError) as err:
        await adapter.start(FakeCore())
    assert err.value.fatal
    assert Route.BASE == "https://discord.com/api/v10"


# --- alerts, threads, edits -----------------------------------------------------------------


async def test_sending_before_connecting_is_a_retryable_failure() -> None:
    adapter = DiscordAdapter(DiscordConfig(), "token")
    with pytest.raises(DeliveryError) as err:
        await adapter.send(message(Bot(DiscordStandIn(), adapter, FakeCore(), 1, 2)))
    assert not err.value.pause and not err.value.fatal


async def test_alert_is_an_embed_message_with_a_thread_opened_from_it(bot: Bot) -> None:
    s = bot.standin
    result = await bot.adapter.send(message(bot))

    (posted,) = s.posted_in(bot.channel)
    assert result.message_ref == posted["id"]
    (embed,) = posted["embeds"]
    assert embed["title"] == "Flood waters rise in the valley"
    assert embed["url"] == "https://news.example/floods"
    assert embed["description"] == "Rivers burst their banks overnight."
    assert [f["name"] for f in embed["fields"]] == ["Source", "Published", "Category"]
    assert embed["footer"]["text"] == "Tag: #Floods"
    thread = s.channels[int(result.thread_ref or 0)]
    assert thread["type"] == 11 and thread["parent_id"] == str(bot.channel)
    assert thread["name"] == "Flood waters rise in the valley"


async def test_feed_text_cannot_ping_anyone(bot: Bot) -> None:
    s = bot.standin
    await bot.adapter.send(message(bot, title="@everyone Breaking *news*", summary="cc @here <@&123456789012345678>"))
    (post,) = s.sent("POST", rf"/channels/{bot.channel}/messages")
    assert post.body["allowed_mentions"] == NO_PINGS
    embed = post.body["embeds"][0]
    assert embed["title"] == "@\u200beveryone Breaking \\*news\\*"
    assert "@here" not in embed["description"] and "<@&" not in embed["description"]


async def test_follow_up_coverage_goes_into_the_alert_thread(bot: Bot) -> None:
    s = bot.standin
    root = await bot.adapter.send(message(bot))
    reply = await bot.adapter.send(
        message(bot, MessageKind.REPLY, title="Valley evacuated", source="NPR", thread_ref=root.thread_ref)
    )
    assert [m["id"] for m in s.posted_in(int(root.thread_ref or 0))] == [reply.message_ref]
    assert len(s.posted_in(bot.channel)) == 1  # nothing new at the top level
    assert reply.thread_ref == root.thread_ref


async def test_syndicated_copy_edits_the_root_to_list_also_reported_by(bot: Bot) -> None:
    s = bot.standin
    root = await bot.adapter.send(message(bot))
    result = await bot.adapter.send(
        message(bot, MessageKind.UPDATE, target_ref=root.message_ref, also_reported_by=("Yahoo News",))
    )
    (edit,) = s.sent("PATCH", rf"/channels/{bot.channel}/messages/{root.message_ref}")
    assert edit.body["allowed_mentions"] == NO_PINGS
    edited = s.messages[int(root.message_ref)]
    assert {"name": "Also reported by", "value": "Yahoo News", "inline": False} in edited["embeds"][0]["fields"]
    assert edited["edited_timestamp"] is not None
    assert result.message_ref == root.message_ref
    assert len(s.posted_in(bot.channel)) == 1  # edited, not reposted


async def test_update_of_a_follow_up_edits_it_inside_the_thread(bot: Bot) -> None:
    s = bot.standin
    root = await bot.adapter.send(message(bot))
    follow = await bot.adapter.send(message(bot, MessageKind.REPLY, thread_ref=root.thread_ref))
    await bot.adapter.send(
        message(
            bot,
            MessageKind.UPDATE,
            target_ref=follow.message_ref,
            thread_ref=root.thread_ref,
            also_reported_by=("MSN",),
        )
    )
    assert s.sent("PATCH", rf"/channels/{root.thread_ref}/messages/{follow.message_ref}")


async def test_reply_opens_the_thread_late_if_it_could_not_be_created_with_the_alert(bot: Bot) -> None:
    s = bot.standin
    s.fail("POST", r"/channels/\d+/messages/\d+/threads", 403, {"message": "Missing Permissions", "code": 50013})
    root = await bot.adapter.send(message(bot))  # posted, but the thread was refused
    assert root.thread_ref == root.message_ref
    assert int(root.thread_ref) not in s.channels
    reply = await bot.adapter.send(message(bot, MessageKind.REPLY, thread_ref=root.thread_ref))
    assert [m["id"] for m in s.posted_in(int(root.message_ref))] == [reply.message_ref]


async def test_reply_to_a_locked_thread_is_posted_in_the_channel_instead(bot: Bot) -> None:
    s = bot.standin
    root = await bot.adapter.send(message(bot))
    s.lock_thread(int(root.thread_ref or 0))
    reply = await bot.adapter.send(message(bot, MessageKind.REPLY, thread_ref=root.thread_ref))
    assert [m["id"] for m in s.posted_in(bot.channel)] == [root.message_ref, reply.message_ref]


async def test_editing_a_deleted_message_is_skipped_not_retried(bot: Bot) -> None:
    s = bot.standin
    root = await bot.adapter.send(message(bot))
    s.delete_message(int(root.message_ref))
    result = await bot.adapter.send(message(bot, MessageKind.UPDATE, target_ref=root.message_ref))
    assert result.message_ref == root.message_ref


async def test_oversize_feed_text_still_posts(bot: Bot) -> None:
    s = bot.standin
    await bot.adapter.send(message(bot, title="Headline " * 100, summary="Long text. " * 1000, tags=("#x",) * 900))
    (post,) = s.sent("POST", rf"/channels/{bot.channel}/messages")
    assert post.status == 200  # the stand-in checks Discord's embed limits (400 / 50035 otherwise)
    assert post.body["embeds"][0]["description"].endswith("…")
    thread = s.sent("POST", rf"/channels/{bot.channel}/messages/\d+/threads")[0]
    assert thread.status == 201 and len(thread.body["name"]) <= 100


# --- rate limits and failures -----------------------------------------------------------------


async def test_a_429_is_waited_out_and_the_message_posted_once(bot: Bot) -> None:
    s = bot.standin
    s.rate_limit("POST", rf"/channels/{bot.channel}/messages", retry_after=0.2)
    started = time.monotonic()
    result = await bot.adapter.send(message(bot))
    posts = s.sent("POST", rf"/channels/{bot.channel}/messages")
    assert [p.status for p in posts] == [429, 200]
    assert posts[1].at - posts[0].at >= 0.2 and time.monotonic() - started >= 0.2
    assert [m["id"] for m in s.posted_in(bot.channel)] == [result.message_ref]


async def test_a_retry_after_a_lost_answer_does_not_post_twice(bot: Bot) -> None:
    s = bot.standin
    alert = message(bot)
    s.lose_answer("POST", rf"/channels/{bot.channel}/messages")  # posted, but the answer never arrives
    with pytest.raises(DeliveryError) as err:
        await bot.adapter.send(alert)
    assert not err.value.pause and not err.value.fatal  # the core will retry
    result = await bot.adapter.send(alert)  # the core's retry of the same delivery
    assert [m["id"] for m in s.posted_in(bot.channel)] == [result.message_ref]
    assert int(result.thread_ref or 0) in s.channels


async def test_a_long_rate_limit_goes_back_to_the_core_with_retry_after(bot: Bot) -> None:
    bot.standin.rate_limit("POST", rf"/channels/{bot.channel}/messages", retry_after=120.0)
    with pytest.raises(DeliveryError) as err:
        await bot.adapter.send(message(bot))
    assert err.value.retry_after == 120.0 and not err.value.pause and not err.value.fatal
    assert bot.standin.posted_in(bot.channel) == []


async def test_sends_to_one_channel_are_paced(standin: DiscordStandIn) -> None:
    async with running(standin, channels=2, messages_per_second=10.0) as b:
        other = b.standin.guilds[b.guild]["channels"][1]
        for _ in range(3):
            await b.adapter.send(message(b))
        await b.adapter.send(message(b, destination=Destination("discord", str(other), str(b.guild))))
        times = [p.at for p in standin.sent("POST", r"/channels/\d+/messages")]
        # slots are 0.1 s apart; what the stand-in sees also carries each request's own transit
        # time, which varies on a loaded machine (hence the margin)
        assert times[1] - times[0] >= 0.07 and times[2] - times[1] >= 0.07
        assert times[2] - times[0] >= 0.17
        assert times[3] - times[2] < 0.07  # another channel does not wait


async def test_a_channel_without_access_pauses_the_destination(bot: Bot) -> None:
    bot.standin.forbidden.add(bot.channel)
    with pytest.raises(DeliveryError) as err:
        await bot.adapter.send(message(bot))
    assert err.value.pause and not err.value.fatal
    assert "50001" in str(err.value)


async def test_a_deleted_channel_pauses_the_destination(bot: Bot) -> None:
    bot.standin.delete_channel(bot.channel)
    with pytest.raises(DeliveryError) as err:
        await bot.adapter.send(message(bot))
    assert err.value.pause


async def test_a_revoked_token_is_fatal(bot: Bot) -> None:
    bot.standin.fail("POST", r"/channels/\d+/messages", 401, {"message": "401: Unauthorized", "code": 0})
    with pytest.raises(DeliveryError) as err:
        await bot.adapter.send(message(bot))
    assert err.value.fatal


async def test_a_server_error_is_retryable(bot: Bot) -> None:
    bot.standin.fail("POST", r"/channels/\d+/messages", 503, {"message": "busy", "code": 0})
    with pytest.raises(DeliveryError) as err:
        await bot.adapter.send(message(bot))
    assert not err.value.pause and not err.value.fatal


# --- slash commands ---------------------------------------------------------------------------


async def test_each_command_reaches_the_core_with_its_arguments(bot: Bot) -> None:
    runs: list[tuple[str, list[dict[str, Any]] | None]] = [
        ("subscribe", [opt("query", '#LiuZhongyi OR "Liu Zhongyi"')]),
        ("unsubscribe", [opt("tag", "#LiuZhongyi")]),
        ("subscriptions", None),
        ("latest", [opt("query", "#Floods"), opt("count", 3, kind=4)]),
        ("latest", [opt("query", "covid 19")]),
        ("sources", sub("add", opt("url", "https://feeds.example/rss"), opt("name", "Example News"))),
        ("sources", sub("add", opt("url", "https://feeds.example/other"))),
        ("sources", sub("remove", opt("source", "Example News"))),
        ("sources", sub("list")),
        ("why", [opt("url", "https://news.example/a")]),
        ("help", None),
    ]
    for name, options in runs:
        (answer,) = await bot.command(name, options)
        assert callback(answer) == (4, 0) and answer.body["data"]["content"].startswith("ran ")
    assert [(c.name, c.args) for c in bot.core.received] == [
        ("subscribe", '#LiuZhongyi OR "Liu Zhongyi"'),
        ("unsubscribe", "#LiuZhongyi"),
        ("subscriptions", ""),
        ("latest", "#Floods 3"),
        ("latest", "covid 19 5"),
        ("sources", "add https://feeds.example/rss Example News"),
        ("sources", "add https://feeds.example/other"),
        ("sources", "remove Example News"),
        ("sources", "list"),
        ("why", "https://news.example/a"),
        ("help", ""),
    ]
    assert {c.destination for c in bot.core.received} == {bot.dest}


async def test_manage_server_permission_makes_the_member_an_admin(bot: Bot) -> None:
    await bot.command("sources", sub("list"), user_id=111111111111111111, permissions=MANAGE_GUILD | 1 << 11)
    await bot.command("sources", sub("list"), user_id=222222222222222222, permissions=1 << 11)
    admin, member = bot.core.received
    assert (admin.user, admin.is_admin) == ("111111111111111111", True)
    assert (member.user, member.is_admin) == ("222222222222222222", False)


async def test_a_quick_answer_is_the_interaction_response_itself(bot: Bot) -> None:
    bot.core.reply = Reply("Subscribed to #Floods", ephemeral=False)
    (resp,) = await bot.command("subscribe", [opt("query", "#Floods")])
    assert callback(resp) == (4, 0)
    assert resp.body["data"]["content"] == "Subscribed to #Floods"
    assert "Authorization" not in resp.headers  # interaction callbacks are authorised by their token


async def test_errors_are_answered_ephemerally(bot: Bot) -> None:
    bot.core.reply = Reply("That query has a problem: unbalanced parenthesis.", ok=False)
    (resp,) = await bot.command("subscribe", [opt("query", "(a")])
    assert callback(resp) == (4, EPHEMERAL)


async def test_slow_work_is_deferred_then_answered_with_a_follow_up(bot: Bot) -> None:
    bot.core.delay = 0.8  # longer than defer_after (0.5 s in these tests)
    bot.core.reply = Reply(
        "Newest 1 story:",
        ephemeral=True,
        stories=(StoryView(1, "Flood waters rise", "https://news.example/f", ("BBC",), None, "Rivers burst."),),
    )
    defer, follow = await bot.command("latest", [opt("query", "#Floods")], count=2)
    assert callback(defer) == (5, EPHEMERAL)
    sent = bot.standin.interactions[follow.path.rsplit("/", 1)[1]]
    assert defer.at - sent.dispatched_at < 3.0
    assert follow.method == "POST" and follow.path.startswith(f"/webhooks/{bot.standin.bot_id}/")
    assert follow.body["content"] == "Newest 1 story:"
    assert follow.body["embeds"][0]["title"] == "Flood waters rise"
    assert int(follow.body.get("flags") or 0) & EPHEMERAL
    assert "Authorization" not in defer.headers and "Authorization" not in follow.headers


async def test_a_deferred_public_answer_that_turns_out_an_error_is_replaced_by_an_ephemeral_one(bot: Bot) -> None:
    bot.core.delay = 0.8
    bot.core.reply = Reply("Only admins can do that.", ok=False)
    defer, delete, follow = await bot.command("subscribe", [opt("query", "#x")], count=3)
    assert callback(defer) == (5, 0)
    assert delete.method == "DELETE" and delete.path.endswith("/messages/@original")
    assert follow.body["content"] == "Only admins can do that." and follow.body["flags"] & EPHEMERAL


async def test_unsubscribe_autocompletes_the_channels_tags(bot: Bot) -> None:
    bot.core.tag_list = ["#LiuZhongyi", "climate policy", "#Floods", "x" * 150]
    options = [opt("tag", "li", focused=True)]
    (resp,) = await bot.command("unsubscribe", options, autocomplete=True)
    assert resp.body["type"] == 8
    assert resp.body["data"]["choices"] == [
        {"name": "#LiuZhongyi", "value": "#LiuZhongyi"},
        {"name": "climate policy", "value": "climate policy"},
    ]


async def test_a_command_typed_in_an_alert_thread_acts_on_its_channel(bot: Bot) -> None:
    root = await bot.adapter.send(message(bot))
    await bot.command("subscriptions", channel_id=int(root.thread_ref or 0))
    assert bot.core.received[0].destination == bot.dest


async def test_every_message_and_reply_forbids_mentions(bot: Bot) -> None:
    root = await bot.adapter.send(message(bot, title="@everyone"))
    await bot.adapter.send(message(bot, MessageKind.REPLY, thread_ref=root.thread_ref))
    await bot.adapter.send(message(bot, MessageKind.UPDATE, target_ref=root.message_ref, also_reported_by=("X",)))
    bot.core.reply = Reply("@everyone subscribed", ephemeral=False)
    await bot.command("subscribe", [opt("query", "@everyone")])
    bot.core.delay = 0.8
    bot.core.reply = Reply("@here: 0 stories", ephemeral=True)
    await bot.command("latest", [opt("query", "x")], count=2)

    posts = bot.standin.message_posts()
    assert len(posts) == 5
    for post in posts:
        body = post.body["data"] if post.path.endswith("/callback") else post.body
        assert body["allowed_mentions"] == NO_PINGS, post.path
