"""Slack with the real core: signed slash commands into the real command service and SQLite store,
feeds served on 127.0.0.1 flowing through the real pipeline and outbox to the Slack stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import bot.app as app_module
from adapters.slack import SlackAdapter, SlackTuning
from bot.config import SlackConfig, config_from_dict
from tests.feedserver import Entry, FeedServer
from tests.slack_standin import SlackStandIn, form_body, signed_headers, slash_command_form

STORY = (
    "Liu Zhongyi, the port authority chair, announced on Tuesday that the eastern container terminal will close "
    "for three weeks of flood repairs after last month's storm surge. Shipping lines were told to divert vessels "
    "to the western quays, where extra night shifts will run until the terminal reopens. Liu said the repair bill "
    "would be shared with the provincial government."
)
OTHER_OUTLET = (
    "Diverted container ships will berth at the western quays from next week, port chief Liu Zhongyi told "
    "reporters, as repairs begin at the storm-damaged eastern terminal. Freight forwarders warned of delays of "
    "two to three days for some cargo while the terminal is closed."
)
FAST = SlackTuning(request_timeout=5.0, server_error_backoff=0.01, command_timeout=10.0)


def minutes_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=n)


class Harness:
    def __init__(self, standin: SlackStandIn, adapter: SlackAdapter, app: Any, feeds: FeedServer) -> None:
        self.standin, self.adapter, self.app, self.feeds = standin, adapter, app, feeds

    async def command(self, text: str, **fields: str) -> dict[str, Any]:
        """Type ``/tagwire TEXT`` in Slack; returns what the app posted to the response_url."""
        form = slash_command_form(self.standin, text=text, **fields)
        body = form_body(form)
        url = f"http://127.0.0.1:{self.adapter.http_port}/slack/events"
        async with aiohttp.ClientSession() as session:
            headers = signed_headers(self.standin.signing_secret, body)
            async with session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200
        hook = form["response_url"].rsplit("/", 1)[-1]
        found = await self.standin.wait_for(lambda: [r for r in self.standin.responses if r["hook"] == hook])
        return found[0]["json"]


def texts(answer: dict[str, Any]) -> str:
    """All the visible text of a reply, block by block."""
    out = []
    for block in answer["blocks"]:
        if block["type"] == "section":
            out.append(block["text"]["text"])
        else:
            out.extend(e["text"] for e in block["elements"])
    return "\n".join(out)


@pytest.fixture
async def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    standin = await SlackStandIn().start()
    feeds = await FeedServer().start()
    standin.add_channel("C0001")
    standin.add_user("U0001")
    standin.add_user("UADMIN", is_admin=True)
    for path, title in (("a", "Harbour Daily"), ("b", "Mekong Wire"), ("c", "Northern Ledger")):
        feeds.feed(path, title)
    config = config_from_dict(
        {
            "storage": {"path": str(tmp_path / "tagwire.db")},
            "fetch": {"allow_private_addresses": True, "default_interval": "1h"},
            "sources": [{"name": f.title, "url": feeds.url(p)} for p, f in feeds.feeds.items()],
            "console": {"enabled": False},
        }
    )
    monkeypatch.setenv("TEST_SLACK_BOT", standin.bot_token)
    monkeypatch.setenv("TEST_SLACK_SECRET", standin.signing_secret)
    slack = SlackConfig(
        enabled=True,
        mode="http",
        api_base_url=standin.base_url,
        bot_token_env="TEST_SLACK_BOT",
        signing_secret_env="TEST_SLACK_SECRET",
        messages_per_second=100,
    )
    adapter = SlackAdapter(slack, tuning=FAST, http_host="127.0.0.1", http_port=0)
    app = await app_module.Tagwire.create(config, adapters=[adapter])
    await adapter.start(app.core.commands)
    try:
        yield Harness(standin, adapter, app, feeds)
    finally:
        await adapter.close()
        await app.close()
        await feeds.stop()
        await standin.close()


async def test_workspaces_only_see_their_own_subscriptions_and_admins_manage_sources(harness: Harness) -> None:
    confirm = await harness.command("subscribe #LiuZhongyi", channel_id="C0001", team_id="T0001")
    assert confirm["response_type"] == "in_channel"
    assert texts(confirm).startswith("Subscribed C0001 to:")

    mine = await harness.command("subscriptions", channel_id="C0001", team_id="T0001")
    assert mine["response_type"] == "ephemeral" and "#LiuZhongyi" in texts(mine)
    # another workspace, even with the same channel id, sees nothing and cannot remove it
    theirs = await harness.command("subscriptions", channel_id="C0001", team_id="T0002")
    assert "#LiuZhongyi" not in texts(theirs) and "follows no tags" in texts(theirs)
    refused = await harness.command("unsubscribe #LiuZhongyi", channel_id="C0001", team_id="T0002")
    assert refused["response_type"] == "ephemeral" and texts(refused).startswith(":warning:")
    assert "#LiuZhongyi" in texts(await harness.command("subscriptions", channel_id="C0001", team_id="T0001"))

    feed = harness.feeds.url("a").replace("/a", "/extra")
    denied = await harness.command(f"sources add {feed} Extra", user_id="U0001")
    assert denied["response_type"] == "ephemeral"
    assert texts(denied).startswith(":warning: Only workspace admins")
    added = await harness.command(f"sources add {feed} Extra", user_id="UADMIN")
    assert added["response_type"] == "in_channel" and "Added source Extra" in texts(added)
    assert "Extra" not in texts(await harness.command("sources list", team_id="T0002"))


async def test_alerts_thread_coverage_edit_for_copies_and_pause_on_a_missing_channel(harness: Harness) -> None:
    standin, feeds = harness.standin, harness.feeds
    await harness.command("subscribe #LiuZhongyi", channel_id="C0001")
    await harness.command("subscribe #LiuZhongyi", channel_id="C0404")  # the stand-in has no such channel
    await harness.app.run_once()  # baselines
    feeds.feed("a").entries.append(
        Entry(
            "a1",
            "Liu Zhongyi orders three-week closure of eastern container terminal",
            STORY,
            published=minutes_ago(3),
            categories=("Ports",),
        )
    )
    await harness.app.run_once()
    feeds.feed("b").entries.append(
        Entry(
            "b1",
            "Port chief Liu Zhongyi: western quays to take diverted ships during repairs",
            OTHER_OUTLET,
            published=minutes_ago(2),
        )
    )
    await harness.app.run_once()
    feeds.feed("c").entries.append(
        Entry(
            "c1",
            "Liu Zhongyi orders three-week closure of eastern container terminal",
            STORY + " This article originally appeared in Harbour Daily.",
            published=minutes_ago(1),
        )
    )
    await harness.app.run_once()

    root, reply = standin.messages("C0001")
    assert root.get("thread_ts") is None and reply["thread_ts"] == root["ts"]
    assert root["blocks"][0]["text"]["text"] == (
        f"*<{feeds.url('articles/a1')}|Liu Zhongyi orders three-week closure of eastern container terminal>*"
    )
    assert root["blocks"][1]["elements"][0]["text"].startswith("Harbour Daily · <!date^")
    (before_edit,) = root["edits"]
    assert before_edit["blocks"][-1]["elements"][0]["text"] == "Tag: #LiuZhongyi"
    assert reply["blocks"][1]["elements"][0]["text"].startswith("Mekong Wire · ")
    (edit,) = standin.calls_to("chat.update", ok_only=True)
    assert edit.args["ts"] == root["ts"]
    assert root["blocks"][-1]["elements"][0]["text"] == "Also reported by: Northern Ledger"

    assert [c.error for c in standin.calls_to("chat.postMessage") if c.args["channel"] == "C0404"] == [
        "channel_not_found"
    ]
    paused = await harness.command("subscriptions", channel_id="C0404")
    assert "paused" in texts(paused)

    latest = await harness.command("latest #LiuZhongyi 5", channel_id="C0001")
    assert latest["response_type"] == "ephemeral"
    assert f"*<{feeds.url('articles/a1')}|" in texts(latest)
    assert "^{ago}|" in texts(latest)  # time ago, shown in the reader's own terms
