"""The Slack adapter end to end: the real Bolt app and slack_sdk client against a local Slack stand-in.

Alerts go through `SlackAdapter.send`; commands arrive as real signed HTTP requests (HTTP mode) or
as Socket Mode envelopes over a real WebSocket. Assertions are on what the stand-in received.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from adapters.slack import SlackAdapter, SlackTuning
from bot.config import ConfigError, SlackConfig
from bot.models import (
    Command,
    DeliveryError,
    Destination,
    MessageKind,
    OutgoingMessage,
    Reply,
    SendResult,
)
from tests.slack_standin import SlackStandIn, form_body, signed_headers, slash_command_form

FAST = SlackTuning(
    request_timeout=5.0,
    rate_limit_retries=2,
    max_rate_limit_wait=5.0,
    server_error_retries=2,
    server_error_backoff=0.01,
    command_timeout=5.0,
    connect_timeout=5.0,
    ping_interval=5.0,
)
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


class FakeCore:
    """A CommandPort that records commands and answers with a canned or computed Reply."""

    def __init__(self, answer: Callable[[Command], Reply] | None = None) -> None:
        self.commands: list[Command] = []
        self.gate: asyncio.Event | None = None
        self.answer = answer or (lambda c: Reply(text=f"Subscribed {c.destination.channel} to: {c.args}"))

    async def handle(self, command: Command) -> Reply:
        self.commands.append(command)
        if self.gate is not None:
            await self.gate.wait()
        if command.name == "help":
            return Reply(text="subscribe QUERY  follow a query", ephemeral=True)
        return self.answer(command)

    async def tags(self, destination: Destination) -> list[str]:
        return []


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    s = await SlackStandIn().start()
    s.add_channel("C0001")
    s.add_channel("C0002")
    s.add_user("U0001")
    s.add_user("UADMIN", is_admin=True)
    s.add_user("UOWNER", is_owner=True)
    try:
        yield s
    finally:
        await s.close()


Factory = Callable[..., Awaitable[SlackAdapter]]


@pytest.fixture
async def make_adapter(standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Factory]:
    """Build (and optionally start) an adapter pointed at the stand-in; closed at teardown."""
    monkeypatch.setenv("TEST_SLACK_BOT", standin.bot_token)
    monkeypatch.setenv("TEST_SLACK_APP", standin.app_token)
    monkeypatch.setenv("TEST_SLACK_SECRET", standin.signing_secret)
    made: list[SlackAdapter] = []

    async def factory(core: Any = None, *, start: bool = True, mode: str = "http", **settings: Any) -> SlackAdapter:
        settings.setdefault("messages_per_second", 100.0)  # pacing has its own test
        config = SlackConfig(
            enabled=True,
            mode=mode,
            api_base_url=standin.base_url,
            bot_token_env="TEST_SLACK_BOT",
            app_token_env="TEST_SLACK_APP",
            signing_secret_env="TEST_SLACK_SECRET",
            **settings,
        )
        adapter = SlackAdapter(config, tuning=FAST, http_host="127.0.0.1", http_port=0)
        made.append(adapter)
        if start:
            await adapter.start(core or FakeCore())
        return adapter

    yield factory
    for adapter in made:
        await adapter.close()


def alert(kind: MessageKind = MessageKind.ALERT, channel: str = "C0001", **kw: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "delivery_id": 1,
        "kind": kind,
        "destination": Destination("slack", channel, "T0001"),
        "story_id": 7,
        "url": "https://news.example/liu",
        "title": "Liu Zhongyi wins the final",
        "source": "SCMP",
        "published": WHEN,
        "summary": "Liu Zhongyi won the final on Sunday.",
        "categories": ("Sport",),
        "tags": ("#LiuZhongyi",),
    }
    base.update(kw)
    return OutgoingMessage(**base)


async def post_command(
    adapter: SlackAdapter,
    standin: SlackStandIn,
    text: str,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    **fields: str,
) -> tuple[int, str, dict[str, str]]:
    """POST a slash command the way Slack does (form body, v0 signature); returns status, body, form."""
    form = slash_command_form(standin, text=text, **fields)
    body = form_body(form)
    headers = signed_headers(secret or standin.signing_secret, body, timestamp)
    url = f"http://127.0.0.1:{adapter.http_port}/slack/events"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text(), form


async def response_for(standin: SlackStandIn, form: dict[str, str]) -> dict[str, Any]:
    hook = form["response_url"].rsplit("/", 1)[-1]
    found = await standin.wait_for(lambda: [r for r in standin.responses if r["hook"] == hook])
    return found[0]["json"]


# ----------------------------------------------------------------------------- alerts


async def test_story_root_then_thread_reply_then_also_reported_by_edit(
    standin: SlackStandIn, make_adapter: Factory
) -> None:
    adapter = await make_adapter(start=False)
    root = await adapter.send(alert())
    reply = await adapter.send(alert(MessageKind.REPLY, title="Liu: more coverage", thread_ref=root.thread_ref))
    edit = await adapter.send(alert(MessageKind.UPDATE, target_ref=root.message_ref, also_reported_by=("Yahoo",)))

    root_msg, reply_msg = standin.messages("C0001")
    assert root == SendResult(message_ref=root_msg["ts"], thread_ref=root_msg["ts"])
    assert root_msg.get("thread_ts") is None
    assert reply_msg["thread_ts"] == root_msg["ts"] and reply.thread_ref == root_msg["ts"]
    assert edit.message_ref == root_msg["ts"]
    assert len(standin.calls_to("chat.postMessage")) == 2  # the copy was an edit, not a new post
    (update,) = standin.calls_to("chat.update")
    assert update.args["ts"] == root_msg["ts"]
    last_block = root_msg["blocks"][-1]
    assert last_block["elements"][0]["text"] == "Also reported by: Yahoo"
    assert root_msg["blocks"][0]["text"]["text"] == "*<https://news.example/liu|Liu Zhongyi wins the final>*"
    assert root_msg["text"].startswith("Liu Zhongyi wins the final (SCMP)")


async def test_hostile_title_cannot_ping_or_fake_a_link(standin: SlackStandIn, make_adapter: Factory) -> None:
    adapter = await make_adapter(start=False)
    await adapter.send(alert(title="<!channel> @here <@U1> read <https://evil.example|this>"))
    (msg,) = standin.messages("C0001")
    wire = json.dumps({"text": msg["text"], "blocks": msg["blocks"]}, ensure_ascii=False)
    for forbidden in ("<!channel>", "<@U1>", "<https://evil", "@here"):
        assert forbidden not in wire
    assert "&lt;!channel&gt; @\u200bhere &lt;@U1&gt;" in wire


async def test_rate_limit_waits_for_retry_after_then_posts_once(standin: SlackStandIn, make_adapter: Factory) -> None:
    adapter = await make_adapter(start=False)
    standin.rate_limit_next("chat.postMessage", retry_after="0.3")
    await adapter.send(alert())
    limited, accepted = standin.calls_to("chat.postMessage")
    assert limited.status == 429 and accepted.error is None
    assert accepted.at - limited.at >= 0.3
    assert len(standin.messages("C0001")) == 1


async def test_long_or_repeated_rate_limits_go_back_to_the_core_with_retry_after(
    standin: SlackStandIn, make_adapter: Factory
) -> None:
    adapter = await make_adapter(start=False)
    standin.rate_limit_next("chat.postMessage", retry_after="120")  # longer than we block the outbox
    with pytest.raises(DeliveryError) as long_wait:
        await adapter.send(alert())
    assert long_wait.value.retry_after == 120 and not long_wait.value.pause
    standin.rate_limit_next("chat.postMessage", retry_after="0", times=3)  # more than 2 retries
    with pytest.raises(DeliveryError) as exhausted:
        await adapter.send(alert())
    assert exhausted.value.retry_after == 0
    assert standin.messages("C0001") == []


async def test_server_errors_are_retried_with_backoff(standin: SlackStandIn, make_adapter: Factory) -> None:
    adapter = await make_adapter(start=False)
    standin.fail_next("chat.postMessage", "internal_error", status=500, times=2)
    await adapter.send(alert())
    assert [c.status for c in standin.calls_to("chat.postMessage")] == [500, 500, 200]
    assert len(standin.messages("C0001")) == 1


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (lambda s: None, "channel_not_found"),
        (lambda s: s.add_channel("C0009", archived=True), "is_archived"),
        (lambda s: s.add_channel("C0009", member=False, public=False), "not_in_channel"),
    ],
)
async def test_unusable_channel_pauses_instead_of_retrying(
    standin: SlackStandIn, make_adapter: Factory, setup: Callable[[SlackStandIn], object], error: str
) -> None:
    setup(standin)
    adapter = await make_adapter(start=False)
    with pytest.raises(DeliveryError) as caught:
        await adapter.send(alert(channel="C0009"))
    assert caught.value.pause and not caught.value.fatal and caught.value.retry_after is None
    assert error in str(caught.value)
    assert len(standin.calls_to("chat.postMessage")) == 1


async def test_revoked_token_is_fatal_and_never_logged(
    standin: SlackStandIn, make_adapter: Factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # even the SDK's request logs
    adapter = await make_adapter(start=False)
    monkeypatch.setenv("TEST_SLACK_BOT", "xoxb-revoked-token")
    stale = await make_adapter(start=False)
    with pytest.raises(DeliveryError) as caught:
        await stale.send(alert())
    assert caught.value.fatal and "invalid_auth" in str(caught.value)
    with pytest.raises(DeliveryError) as at_start:
        await stale.start(FakeCore())
    assert at_start.value.fatal
    await adapter.send(alert())  # the good token still works
    assert "xoxb-revoked-token" not in caplog.text and standin.bot_token not in caplog.text
    assert "xoxb" not in repr(stale)


async def test_posts_are_paced_per_channel(standin: SlackStandIn, make_adapter: Factory) -> None:
    adapter = await make_adapter(start=False, messages_per_second=10)
    await asyncio.gather(*(adapter.send(alert()) for _ in range(3)), adapter.send(alert(channel="C0002")))
    c1 = [c.at for c in standin.calls_to("chat.postMessage") if c.args["channel"] == "C0001"]
    (c2,) = [c.at for c in standin.calls_to("chat.postMessage") if c.args["channel"] == "C0002"]
    assert len(c1) == 3
    assert c1[1] - c1[0] >= 0.08 and c1[2] - c1[1] >= 0.08  # about 10 per second
    assert c2 - c1[0] < 0.08  # another channel does not wait for this one


async def test_refused_blocks_fall_back_to_plain_text(standin: SlackStandIn, make_adapter: Factory) -> None:
    adapter = await make_adapter(start=False)
    standin.fail_next("chat.postMessage", "invalid_blocks")
    await adapter.send(alert())
    refused, plain = standin.calls_to("chat.postMessage")
    assert "blocks" in refused.args and "blocks" not in plain.args
    assert standin.messages("C0001")[0]["text"] == "Liu Zhongyi wins the final (SCMP)"


async def test_edit_of_a_deleted_message_is_given_up_not_retried(standin: SlackStandIn, make_adapter: Factory) -> None:
    adapter = await make_adapter(start=False)
    result = await adapter.send(alert(MessageKind.UPDATE, target_ref="1699999999.000100", also_reported_by=("AP",)))
    assert result.message_ref == "1699999999.000100"
    assert [c.error for c in standin.calls_to("chat.update")] == ["message_not_found"]


# ----------------------------------------------------------------------------- commands over HTTP


async def test_signed_command_is_acked_before_the_core_answers(standin: SlackStandIn, make_adapter: Factory) -> None:
    core = FakeCore()
    core.gate = asyncio.Event()  # the core is slow: it answers only when the test says so
    adapter = await make_adapter(core)
    started = time.monotonic()
    status, body, form = await post_command(adapter, standin, "subscribe  #LiuZhongyi OR Myanmar", channel_id="C0002")
    assert status == 200 and body == "" and time.monotonic() - started < 2.0
    assert standin.responses == []  # acked, not yet answered
    core.gate.set()
    answer = await response_for(standin, form)
    assert answer["response_type"] == "in_channel"
    assert answer["blocks"][0]["text"]["text"] == "Subscribed C0002 to: #LiuZhongyi OR Myanmar"
    (command,) = core.commands
    assert command == Command(
        name="subscribe",
        args="#LiuZhongyi OR Myanmar",
        destination=Destination("slack", "C0002", "T0001"),
        user="U0001",
        is_admin=False,
    )


@pytest.mark.parametrize(
    ("secret", "age"),
    [("not-the-signing-secret", 0), (None, 600)],  # wrong key; right key but a replayed old request
    ids=["bad-signature", "stale-timestamp"],
)
async def test_unsigned_or_stale_requests_are_refused(
    standin: SlackStandIn, make_adapter: Factory, secret: str | None, age: int
) -> None:
    core = FakeCore()
    adapter = await make_adapter(core)
    status, _, _ = await post_command(
        adapter, standin, "sources add https://evil.example/rss", secret=secret, timestamp=int(time.time()) - age
    )
    assert status == 401
    await asyncio.sleep(0.05)
    assert core.commands == [] and standin.responses == []


async def test_core_refusal_is_shown_only_to_the_user(standin: SlackStandIn, make_adapter: Factory) -> None:
    core = FakeCore(lambda c: Reply(text="Only workspace admins can add or remove sources.", ok=False, ephemeral=True))
    adapter = await make_adapter(core)
    _, _, form = await post_command(adapter, standin, "sources add https://f.example/rss")
    answer = await response_for(standin, form)
    assert answer["response_type"] == "ephemeral"
    assert answer["blocks"][0]["text"]["text"] == ":warning: Only workspace admins can add or remove sources."


async def test_unknown_subcommand_answers_with_help_privately(standin: SlackStandIn, make_adapter: Factory) -> None:
    core = FakeCore()
    adapter = await make_adapter(core)
    _, _, form = await post_command(adapter, standin, "subscirbe #Typo")
    answer = await response_for(standin, form)
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("Unknown subcommand “subscirbe”. subscribe QUERY")
    assert [c.name for c in core.commands] == ["help"]


async def test_core_crash_becomes_a_private_error(standin: SlackStandIn, make_adapter: Factory) -> None:
    def boom(command: Command) -> Reply:
        raise RuntimeError("database is locked")

    adapter = await make_adapter(FakeCore(boom))
    _, _, form = await post_command(adapter, standin, "latest #Foo")
    answer = await response_for(standin, form)
    assert answer["response_type"] == "ephemeral" and "went wrong" in answer["text"]
    assert "database" not in json.dumps(answer)


async def test_admin_fact_comes_from_users_info_or_config_and_is_cached(
    standin: SlackStandIn, make_adapter: Factory
) -> None:
    core = FakeCore()
    adapter = await make_adapter(core, admins=["ULISTED"])
    for user in ("UADMIN", "UOWNER", "U0001", "ULISTED", "UADMIN", "UNOBODY"):
        _, _, form = await post_command(adapter, standin, "sources list", user_id=user)
        await response_for(standin, form)
    assert [(c.user, c.is_admin) for c in core.commands] == [
        ("UADMIN", True),
        ("UOWNER", True),
        ("U0001", False),
        ("ULISTED", True),
        ("UADMIN", True),
        ("UNOBODY", False),  # users.info failed: not an admin
    ]
    asked = [c.args["user"] for c in standin.calls_to("users.info")]
    assert asked == ["UADMIN", "UOWNER", "U0001", "UNOBODY"]  # cached; config admins need no lookup


async def test_http_mode_needs_its_signing_secret(standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLACK_BOT", standin.bot_token)
    monkeypatch.delenv("TEST_SLACK_SECRET", raising=False)
    config = SlackConfig(mode="http", bot_token_env="TEST_SLACK_BOT", signing_secret_env="TEST_SLACK_SECRET")
    with pytest.raises(ConfigError, match="TEST_SLACK_SECRET is not set"):
        SlackAdapter(config)


# ----------------------------------------------------------------------------- Socket Mode


async def test_socket_mode_round_trip(
    standin: SlackStandIn, make_adapter: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    core = FakeCore(lambda c: Reply(text="This channel follows 1 tag(s):", lines=("#LiuZhongyi",), ephemeral=True))
    core.gate = asyncio.Event()
    await make_adapter(core, mode="socket")
    (opened,) = standin.calls_to("apps.connections.open")
    assert opened.token == standin.app_token  # asked our stand-in (base_url), with the app-level token
    envelope_id = await standin.push_slash_command(text="subscriptions", channel_id="C0002", user_id="U0001")
    ack = await standin.wait_for(lambda: [a for a in standin.acks if a.get("envelope_id") == envelope_id])
    assert ack == [{"envelope_id": envelope_id}]
    assert standin.responses == []  # acknowledged while the core is still working
    core.gate.set()
    answer = await standin.wait_for(lambda: standin.responses)
    assert answer[0]["json"]["response_type"] == "ephemeral"
    assert answer[0]["json"]["blocks"][1]["text"]["text"] == "#LiuZhongyi"
    assert core.commands[0].name == "subscriptions"
    assert core.commands[0].destination == Destination("slack", "C0002", "T0001")
    assert standin.app_token not in caplog.text and standin.bot_token not in caplog.text


async def test_socket_mode_with_a_bot_token_instead_of_app_token_fails_clearly(
    standin: SlackStandIn, make_adapter: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SLACK_APP", "xapp-wrong-app-token")
    with pytest.raises(DeliveryError, match=r"apps\.connections\.open failed \(invalid_auth\)") as caught:
        await make_adapter(mode="socket")
    assert caught.value.fatal
    monkeypatch.setenv("TEST_SLACK_APP", standin.bot_token)
    with pytest.raises(ConfigError, match="app-level token"):
        await make_adapter(mode="socket")
