"""Block Kit rendering and command parsing for Slack: pure functions, no network."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from adapters.slack.commands import split_subcommand, unwrap_slack_text
from adapters.slack.render import (
    MAX_BLOCKS,
    MAX_SECTION,
    escape,
    escape_clipped,
    link,
    render_alert,
    render_reply,
    time_ago,
)
from bot.models import Destination, MessageKind, OutgoingMessage, Reply, StoryView

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
DEST = Destination("slack", "C0001", "T0001")


def message(**kw: object) -> OutgoingMessage:
    base: dict[str, object] = {
        "delivery_id": 1,
        "kind": MessageKind.ALERT,
        "destination": DEST,
        "story_id": 7,
        "url": "https://news.example/liu-zhongyi-wins",
        "title": "Liu Zhongyi wins the final",
        "source": "SCMP",
        "published": WHEN,
        "summary": "Liu Zhongyi won the final on Sunday. It was his first title.",
        "categories": ("Sport", "Badminton"),
        "tags": ("#LiuZhongyi",),
    }
    base.update(kw)
    return OutgoingMessage(**base)  # type: ignore[arg-type]


def control_sequences(payload: object) -> list[str]:
    """Every ``<…>`` control sequence Slack would interpret in the payload's text."""
    return re.findall(r"<[^<>]*>", json.dumps(payload, ensure_ascii=False))


def test_escape_leaves_no_mention_or_link_syntax() -> None:
    hostile = "Tom & Jerry <!channel> <!here> <@U123> <https://evil.example|click me> @here @Channel"
    out = escape(hostile)
    assert "<" not in out and ">" not in out
    assert "&amp;" in out and "&lt;!channel&gt;" in out
    assert "@here" not in out and "@Channel" not in out
    assert "@\u200bhere" in out  # still readable, no longer a mass mention


def test_headline_is_the_only_link_in_a_hostile_alert() -> None:
    payload = render_alert(
        message(
            title="<!channel> BREAKING <@U1> see <https://evil.example|here> @here",
            source="<!everyone> Wire",
            summary="Click <https://evil.example/login|your bank> now <!subteam^S1>",
            categories=("<#C1>",),
            tags=("<@U2>",),
        )
    )
    sequences = control_sequences(payload)
    links = [s for s in sequences if not s.startswith("<!date^")]
    assert links == [links[0]] and links[0].startswith("<https://news.example/liu-zhongyi-wins|")
    assert "@here" not in json.dumps(payload, ensure_ascii=False)


def test_link_label_and_url_cannot_break_out_of_the_link() -> None:
    out = link("https://x.example/a b|c>d?q=1&r=2", "A | B *bold* > C")
    assert out.count("<") == 1 and out.count(">") == 1 and out.count("|") == 1
    assert out.startswith("<https://x.example/a%20b%7Cc%3Ed?q=1&amp;r=2|")
    assert "∗bold∗" in out and "&gt;" in out


def test_non_http_url_is_not_linked() -> None:
    out = link("javascript:alert(1)", "Innocent title")
    assert out == "Innocent title"


def test_alert_layout_headline_meta_summary_tag() -> None:
    payload = render_alert(message())
    blocks = payload["blocks"]
    texts = [b["text"]["text"] if b["type"] == "section" else b["elements"][0]["text"] for b in blocks]
    assert texts[0] == "*<https://news.example/liu-zhongyi-wins|Liu Zhongyi wins the final>*"
    assert texts[1].startswith("SCMP · <!date^1714566600^")
    assert texts[1].endswith("|2024-05-01 12:30 UTC> · Sport, Badminton")
    assert texts[2] == "Liu Zhongyi won the final on Sunday. It was his first title."
    assert texts[3] == "Tag: #LiuZhongyi"
    assert payload["text"] == "Liu Zhongyi wins the final (SCMP)"


def test_update_lists_also_reported_by() -> None:
    payload = render_alert(message(kind=MessageKind.UPDATE, also_reported_by=("Yahoo", "AP")))
    last = payload["blocks"][-1]
    assert last["type"] == "context" and last["elements"][0]["text"] == "Also reported by: Yahoo, AP"
    assert "also reported by Yahoo, AP" in payload["text"]


def test_undated_alert_without_categories_has_short_meta() -> None:
    payload = render_alert(message(published=None, categories=()))
    assert payload["blocks"][1]["elements"][0]["text"] == "SCMP"


def test_overlong_text_is_cut_with_an_ellipsis_within_limits() -> None:
    payload = render_alert(message(title="Headline " * 800, summary="word " * 2000))
    for block in payload["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION
    assert payload["blocks"][0]["text"]["text"].endswith("…>*")
    assert payload["blocks"][2]["text"]["text"].endswith("word…")


def test_clipping_never_splits_an_entity() -> None:
    out = escape_clipped("&" * 5000, 3000)
    assert len(out) <= 3000 and out.endswith("&amp;…")
    assert re.fullmatch(r"(&amp;)+…", out)


def test_reply_errors_are_ephemeral_and_confirmations_in_channel() -> None:
    error = render_reply(Reply(text="Unknown tag #Nope", ok=False))
    assert error["response_type"] == "ephemeral"
    assert error["blocks"][0]["text"]["text"] == ":warning: Unknown tag #Nope"
    confirm = render_reply(Reply(text="Subscribed to #LiuZhongyi"))
    assert confirm["response_type"] == "in_channel"
    personal = render_reply(Reply(text="Your subscriptions", ephemeral=True, lines=("#A", "#B")))
    assert personal["response_type"] == "ephemeral"
    assert personal["blocks"][1]["text"]["text"] == "#A\n#B"


def test_reply_stories_show_link_sources_time_ago_and_summary() -> None:
    now = WHEN + timedelta(hours=2)
    story = StoryView(7, "Liu <b>wins</b>", "https://news.example/a", ("SCMP", "Yahoo"), WHEN, "He won.")
    payload = render_reply(Reply(text="Latest on #LiuZhongyi", stories=(story,)), now=now)
    headline, meta = payload["blocks"][1], payload["blocks"][2]
    assert headline["text"]["text"] == "*<https://news.example/a|Liu &lt;b&gt;wins&lt;/b&gt;>*\nHe won."
    assert meta["elements"][0]["text"] == "SCMP, Yahoo · <!date^1714566600^{ago}|2 h ago>"


def test_many_stories_stay_within_the_block_limit_and_say_how_many_are_hidden() -> None:
    stories = tuple(StoryView(i, f"Story {i}", f"https://n.example/{i}", ("S",), WHEN, "x") for i in range(60))
    payload = render_reply(Reply(text="Latest", stories=stories), now=WHEN)
    blocks = payload["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    shown = sum(1 for b in blocks if b["type"] == "section" and b["text"]["text"].startswith("*<"))
    assert blocks[-1]["elements"][0]["text"] == f"… {60 - shown} more stories not shown"
    assert blocks[-2]["type"] == "context"  # the last story shown keeps its meta line


def test_many_lines_are_packed_into_sections_under_the_limit() -> None:
    lines = tuple(f"https://feeds.example/{i}/rss.xml  (Source number {i})" for i in range(400))
    payload = render_reply(Reply(text="Sources", lines=lines))
    sections = [b["text"]["text"] for b in payload["blocks"][1:]]
    assert all(len(s) <= MAX_SECTION for s in sections)
    assert "\n".join(sections).count("https://feeds.example/") == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('subscribe #LiuZhongyi OR "Liu Zhongyi"', ("subscribe", '#LiuZhongyi OR "Liu Zhongyi"')),
        ("  LATEST   #Foo 5 ", ("latest", "#Foo 5")),
        ("", ("help", "")),
        ("why <https://news.example/a?b=1&amp;c=2|news.example/a>", ("why", "https://news.example/a?b=1&c=2")),
        ("subscribe AT&amp;T -&lt;x&gt;", ("subscribe", "AT&T -<x>")),
        ("sources add https://f.example/rss My Feed", ("sources", "add https://f.example/rss My Feed")),
        ("frobnicate now", ("frobnicate", "now")),
    ],
)
def test_split_subcommand(text: str, expected: tuple[str, str]) -> None:
    assert split_subcommand(text) == expected


def test_unwrap_channel_and_user_references() -> None:
    assert unwrap_slack_text("<#C123|general> <@U42|bob>") == "#general @U42"


def test_time_ago() -> None:
    assert time_ago(WHEN, WHEN + timedelta(seconds=30)) == "just now"
    assert time_ago(WHEN, WHEN + timedelta(minutes=5)) == "5 min ago"
    assert time_ago(WHEN, WHEN + timedelta(days=3)) == "3 d ago"
    assert time_ago(None, WHEN) == "undated"
