"""Discord rendering: untrusted feed text made inert, Discord's limits always respected."""

from __future__ import annotations

from datetime import UTC, datetime

import discord

from adapters.discord import render
from adapters.discord.adapter import ChannelPacer
from bot.models import Destination, MessageKind, OutgoingMessage, Reply, StoryView

DEST = Destination("discord", "222222222222222222", "111111111111111111")
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def alert(**kw: object) -> OutgoingMessage:
    base: dict[str, object] = dict(
        delivery_id=1,
        kind=MessageKind.ALERT,
        destination=DEST,
        story_id=7,
        url="https://news.example/a",
        title="Flood waters rise",
        source="BBC News",
        published=WHEN,
        summary="Rivers burst their banks overnight.",
        categories=("World", "Weather"),
        tags=("#Floods",),
    )
    base.update(kw)
    return OutgoingMessage(**base)  # type: ignore[arg-type]


def fields(embed: discord.Embed) -> dict[str, str]:
    return {f.name or "": f.value or "" for f in embed.fields}


def test_alert_embed_links_title_and_shows_source_date_category_and_tag() -> None:
    e = render.alert_embed(alert())
    assert e.title == "Flood waters rise"
    assert e.url == "https://news.example/a"
    assert e.description == "Rivers burst their banks overnight."
    f = fields(e)
    assert f["Source"] == "BBC News"
    assert f["Published"] == f"<t:{int(WHEN.timestamp())}:f>"  # shown in each reader's time zone
    assert f["Category"] == "World, Weather"
    assert e.footer.text == "Tag: #Floods"


def test_mentions_in_feed_text_are_defused_everywhere() -> None:
    e = render.alert_embed(
        alert(
            title="@everyone look",
            summary="ping @here and <@&123456789012345678> and <@123456789012345678>",
            source="@everyone Times",
            categories=("@here",),
            tags=("@everyone",),
        )
    )
    rendered = " ".join([e.title or "", e.description or "", e.footer.text or "", *fields(e).values()])
    for mention in ("@everyone", "@here", "<@&123456789012345678>", "<@123456789012345678>"):
        assert mention not in rendered
    assert "@\u200beveryone look" in (e.title or "")


def test_markdown_in_feed_text_is_shown_literally() -> None:
    e = render.alert_embed(alert(title="**Big** _news_", summary="# Header\n[click me](https://evil.example) `x`"))
    assert e.title == r"\*\*Big\*\* \_news\_"
    assert e.description is not None
    assert e.description.startswith(r"\# Header")
    assert r"\[click me](https://evil.example)" in e.description  # no masked link
    assert r"\`x\`" in e.description


def test_links_that_are_not_http_are_dropped_from_the_title() -> None:
    assert render.alert_embed(alert(url="javascript:alert(1)")).url is None
    assert render.alert_embed(alert(url="https://ok.example/" + "a" * 3000)).url is None


def test_oversize_text_is_cut_with_an_ellipsis_within_every_limit() -> None:
    e = render.alert_embed(
        alert(
            title="word " * 200,
            summary="sentence " * 2000,
            source="S" * 2000,
            categories=tuple(f"cat{i}" for i in range(500)),
            tags=tuple(f"#tag{i}" for i in range(1000)),
            also_reported_by=tuple(f"Outlet {i}" for i in range(500)),
        )
    )
    data = e.to_dict()
    assert len(data["title"]) <= 256 and data["title"].endswith("…")
    assert not data["title"].endswith(" …")  # cut at a word boundary, no dangling space
    assert len(data.get("description", "")) <= 4096
    assert len(data["footer"]["text"]) <= 2048
    assert all(len(f["value"]) <= 1024 and len(f["name"]) <= 256 for f in data["fields"])
    assert render.embed_total(data) <= 6000
    assert len(e) <= 6000  # discord.py's own count agrees


def test_fit_embed_keeps_at_most_25_fields_and_says_how_many_were_left_out() -> None:
    e = discord.Embed(title="t")
    for i in range(40):
        e.add_field(name=f"n{i}", value="v")
    fitted = render.fit_embed(e)
    assert len(fitted.fields) == 25
    assert fitted.fields[-1].value == "16 more not shown"


def test_fit_embed_shrinks_the_description_first_to_meet_the_total() -> None:
    e = discord.Embed(title="t", description="d" * 4000)
    for i in range(3):
        e.add_field(name="n", value=str(i) * 1000)
    fitted = render.fit_embed(e)
    assert render.embed_total(fitted.to_dict()) <= 6000
    assert [f.value for f in fitted.fields] == [str(i) * 1000 for i in range(3)]
    assert (fitted.description or "").endswith("…")


def test_clip_never_leaves_a_backslash_before_the_ellipsis() -> None:
    text = render.escape("a" * 9 + "*" * 20)
    clipped = render.clip(text, 12)
    assert len(clipped) <= 12 and clipped.endswith("…") and not clipped.endswith("\\…")


def test_update_lists_the_outlets_that_also_reported() -> None:
    e = render.alert_embed(alert(kind=MessageKind.UPDATE, also_reported_by=("Yahoo News", "MSN")))
    assert fields(e)["Also reported by"] == "Yahoo News, MSN"


def test_thread_name_is_one_line_and_at_most_100_characters() -> None:
    name = render.thread_name("Line one\nline two " + "x" * 200)
    assert "\n" not in name and len(name) <= 100 and name.endswith("…")
    assert render.thread_name("   ") == "Story"


def test_reply_text_and_lines_are_escaped_and_errors_are_ephemeral() -> None:
    out = render.reply_payload(Reply("Bad query: *oops* @everyone", ok=False, lines=("#a_b",)))
    assert out.ephemeral
    assert out.content == "Bad query: \\*oops\\* @\u200beveryone\n• #a\\_b"


def test_reply_with_many_stories_uses_ten_embeds_and_lists_the_rest() -> None:
    stories = tuple(
        StoryView(i, f"Story {i}", f"https://n.example/{i}", ("BBC", "NPR"), WHEN, "summary " * 100) for i in range(14)
    )
    out = render.reply_payload(Reply("Newest 14 stories:", stories=stories))
    assert len(out.embeds) <= 10
    assert sum(render.embed_total(e.to_dict()) for e in out.embeds) <= 6000
    shown = {e.title for e in out.embeds}
    for s in stories:
        assert s.title in shown or f"• {s.title} (BBC, NPR) <{s.url}>" in out.content
    assert len(out.content) <= 2000


def test_empty_reply_still_says_something() -> None:
    assert render.reply_payload(Reply("")).content == "Done."


def test_pacer_spaces_sends_in_one_channel_but_not_across_channels() -> None:
    now = [100.0]
    pacer = ChannelPacer(rate=2.0, clock=lambda: now[0])
    assert [pacer.reserve(1) for _ in range(3)] == [0.0, 0.5, 1.0]
    assert pacer.reserve(2) == 0.0
    now[0] = 110.0  # long after: no wait
    assert pacer.reserve(1) == 0.0


def test_pacer_memory_is_bounded() -> None:
    pacer = ChannelPacer(rate=1.0, max_channels=3)
    for channel in range(10):
        pacer.reserve(channel)
    assert len(pacer._next) == 3
