"""Parse stage: real feed captures parse; things that are not feeds are refused clearly.

Tests that parse a feed run twice: through `parse_feed` as the bot calls it (lxml fast path first,
feedparser for what it declines) and through feedparser alone; both must behave as described."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.parse import FeedParseError, ParsedFeed, RawEntry, parse_feed

FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"
FEED_FILES = sorted(FEEDS.glob("*.xml"))
ParseNamed = Callable[[str], ParsedFeed]


@pytest.fixture(params=[True, False], ids=["fast-path", "feedparser-only"])
def fast(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def parse_named(fast: bool) -> ParseNamed:
    """Parses a shared capture by file name, with or without the fast path."""

    def parse(name: str) -> ParsedFeed:
        return parse_feed((FEEDS / name).read_bytes(), url=f"https://feeds.example.org/{name}", fast=fast)

    return parse


@pytest.mark.parametrize("path", FEED_FILES, ids=lambda p: p.name)
def test_every_captured_feed_parses_into_entries(path: Path, fast: bool) -> None:
    feed = parse_feed(path.read_bytes(), url=f"https://feeds.example.org/{path.name}", fast=fast)
    assert feed.title
    assert feed.entries
    assert all(isinstance(e, RawEntry) and (e.title or e.link) for e in feed.entries)


def test_rss_ttl_is_reported_in_seconds(parse_named: ParseNamed) -> None:
    assert parse_named("bbc.rss.xml").ttl == 15 * 60  # <ttl>15</ttl>
    assert parse_named("guardian.rss.xml").ttl is None


def test_iso_8859_1_feed_is_decoded(parse_named: ParseNamed) -> None:
    entry = parse_named("rss_1.0_iso8859.xml").entries[0]
    assert "Glasfaserförderung" in entry.title
    assert "Förderung" in entry.summary


def test_undeclared_latin1_feed_is_decoded_and_accepted_with_a_warning(parse_named: ParseNamed) -> None:
    """UOL sends windows-1252 without saying so: a minor error, not a refusal."""
    feed = parse_named("uol-noticias.rss.xml")
    assert "simulações" in feed.entries[0].title
    assert feed.warning


def test_declared_charset_in_content_type_is_used(fast: bool) -> None:
    body = (
        '<rss version="2.0"><channel><title>Notícias</title>'
        "<item><title>Eleição em São Paulo</title><link>https://example.com.br/a</link></item>"
        "</channel></rss>"
    ).encode("iso-8859-1")
    feed = parse_feed(body, url="https://example.com.br/rss",
                      content_type="application/rss+xml; charset=ISO-8859-1", fast=fast)
    assert feed.entries[0].title == "Eleição em São Paulo"


def test_feedburner_original_link_is_preferred_over_the_redirector(parse_named: ParseNamed) -> None:
    entry = parse_named("feedburner.atom.xml").entries[0]
    assert entry.link.startswith("http://googleadsdeveloper.blogspot.com/")
    assert "feedproxy" not in entry.link


def test_rss_photo_caption_in_media_description_is_not_taken_as_content(parse_named: ParseNamed) -> None:
    """The NYT feed's media:description is a photo caption ("Gaza City. Hamas seized ...")."""
    entry = parse_named("nytimes.rss.xml").entries[0]
    assert entry.content == ""
    assert entry.summary.startswith("Considered authoritarian")


def test_rss_content_encoded_is_kept(parse_named: ParseNamed) -> None:
    entry = parse_named("npr.rss.xml").entries[0]
    assert "<p>" in entry.content


def test_atom_ids_are_kept_as_the_feed_wrote_them(parse_named: ParseNamed) -> None:
    entry = parse_named("atom_mediarss_reddit_1.xml").entries[0]
    assert entry.id == "t3_157kyrd"


def test_feed_with_a_minor_error_that_still_yields_entries_is_accepted(fast: bool) -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title>'
        b"<item><title>Council&nbsp;votes</title><link>https://example.com/1</link></item>"
        b"<item><title>Road closed</title><link>https://example.com/2</link></item>"
        b"</channel></rss>"
    )
    feed = parse_feed(body, url="https://example.com/rss", content_type="application/rss+xml", fast=fast)
    assert [e.link for e in feed.entries] == ["https://example.com/1", "https://example.com/2"]
    assert feed.warning


def test_valid_feed_without_items_is_an_empty_feed_not_an_error(fast: bool) -> None:
    body = b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    feed = parse_feed(body, url="https://example.com/rss", fast=fast)
    assert feed.title == "Quiet"
    assert feed.entries == ()


def test_html_page_is_refused_and_its_advertised_feed_is_named() -> None:
    body = (
        b"<!DOCTYPE html><html><head><title>Example News</title>"
        b'<link rel="alternate" type="application/rss+xml" title="RSS" href="/news/rss.xml">'
        b"</head><body><h1>Example News</h1><p>Welcome.</p></body></html>"
    )
    with pytest.raises(FeedParseError) as info:
        parse_feed(body, url="https://www.example.com/news/", content_type="text/html; charset=utf-8")
    assert info.value.feed_links == ("https://www.example.com/news/rss.xml",)
    assert "https://www.example.com/news/rss.xml" in str(info.value)


def test_html_page_without_feed_links_is_refused() -> None:
    body = b"<!doctype html><html><body><p>Just a page</p></body></html>"
    with pytest.raises(FeedParseError, match="HTML page"):
        parse_feed(body, url="https://www.example.com/")


@pytest.mark.parametrize(
    "body",
    [b"", b"   \n", b"\x00\x01\x02 not xml at all", b'{"items": [{"title": "json"}]}', b"Service Unavailable"],
    ids=["empty", "blank", "binary", "json", "plain-text"],
)
def test_bodies_that_are_not_feeds_are_refused(body: bytes) -> None:
    with pytest.raises(FeedParseError, match="not a feed"):
        parse_feed(body, url="https://example.com/feed")


def test_a_body_naming_a_local_file_is_not_read_from_disk(tmp_path: Path) -> None:
    """A hostile server answering with a path must not make the parser open that file."""
    local = tmp_path / "feed.xml"
    local.write_bytes((FEEDS / "bbc.rss.xml").read_bytes())
    with pytest.raises(FeedParseError):
        parse_feed(str(local).encode(), url="https://evil.example/feed")

