"""Normalise stage: canonical URLs, clean text without boilerplate, UTC dates, origin hints."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.models import Item
from bot.normalise import (
    canonical_url,
    html_to_text,
    normalise_entry,
    normalise_with_origin,
    origin_hint,
    parse_date_text,
    strip_boilerplate,
)
from bot.parse import RawEntry, parse_feed

FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"
NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)

# A news article body as a CMS puts it into <content:encoded>: figure, ads, captions, footers.
ARTICLE_HTML = """
<div class="article-body">
  <figure>
    <img src="https://img.example.com/liu.jpg" alt="Liu Zhongyi at the podium">
    <figcaption>Liu Zhongyi speaks in Beijing on Monday. Photo: Xinhua</figcaption>
  </figure>
  <p>BEIJING &ndash; Liu Zhongyi, the former provincial official, was named to lead the
     country&#8217;s new data-protection agency on Monday, state media reported.</p>
  <div class="ad-slot"><script>loadAd("mpu-1")</script><p>Sponsored</p></div>
  <p>ADVERTISEMENT</p>
  <p>The appointment, announced by the State Council, follows months of speculation.
     &ldquo;He has the experience,&rdquo; said one official.</p>
  <style>.x { color: red }</style>
  <iframe src="https://www.youtube.com/embed/abc"></iframe>
  <p>Image source, Getty Images</p>
  <p>Image caption, Liu Zhongyi has served in three provinces</p>
  <p>(Photo by Kevin Frayer/Getty Images)</p>
  <p>Liu, 58, previously ran the cyber administration in Guangdong.</p>
  <ul><li>Born in 1965</li><li>Joined the party in 1987</li></ul>
  <p>Video caption: Watch the announcement</p>
  <p>Watch: Liu Zhongyi takes the oath</p>
  <p>Media caption Officials gather in Beijing</p>
  <p>Sign up for our China newsletter</p>
  <p><a href="https://example.com/story">Read more</a></p>
  <p>Click here to get the app</p>
  <p>&copy; 2024 Example Media Ltd</p>
  <p>Copyright 2024 Example Media. All rights reserved.</p>
  <p>This article originally appeared in the South China Morning Post.</p>
</div>
"""

BOILERPLATE_LINES = [
    "Advertisement", "ADVERTISEMENT", "Sponsored", "Continue reading...", "Read more",
    "Click here to", "Image source", "Image caption", "Photo by", "Video caption", "Watch:",
    "Media caption", "Sign up", "©", "Copyright", "originally appeared", "loadAd", "color: red",
    "Photo: Xinhua",
]


# --------------------------------------------------------------------------- canonical_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.bbc.co.uk/news/uk-politics-43532916?at_medium=RSS&at_campaign=KARANGA",
         "https://www.bbc.co.uk/news/uk-politics-43532916"),
        ("https://example.com/a?utm_source=twitter&utm_medium=social&utm_campaign=x&id=42",
         "https://example.com/a?id=42"),
        ("https://example.com/a?fbclid=IwAR0abc&gclid=EAIa&msclkid=1&dclid=2&igshid=3",
         "https://example.com/a"),
        ("https://news.yahoo.com/story-123.html?guccounter=1&guce_referrer=aHR0cHM6Ly9&guce_referrer_sig=AQAA",
         "https://news.yahoo.com/story-123.html"),
        ("https://example.com/a?mc_cid=1&mc_eid=2&_ga=2.1&ref_src=twsrc&cmpid=rss&ocid=msn&spm=a2c&sr_share=tw",
         "https://example.com/a"),
        ("http://www.heise.de/meldung/WildFly-10-3088438.html?wt_mc=rss.developer.beitrag.atom",
         "http://www.heise.de/meldung/WildFly-10-3088438.html"),
        ("HTTPS://WWW.Example.COM:443/Path/Story?b=2&a=1#comments", "https://www.example.com/Path/Story?a=1&b=2"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/article.php?id=7&page=2", "https://example.com/article.php?id=7&page=2"),
        ("https://app.example.com/#!/story/12", "https://app.example.com/#!/story/12"),
        ("https://example.com/search?q=liu%20zhongyi&utm_term=x&lang=zh-CN",
         "https://example.com/search?lang=zh-CN&q=liu%20zhongyi"),
        ("https://www.biorxiv.org/content/10.1101/2023.12.16.571984v1?rss=1",
         "https://www.biorxiv.org/content/10.1101/2023.12.16.571984v1"),
    ],
)
def test_canonical_url_drops_tracking_and_normalises(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    ("amp_url", "expected"),
    [
        ("https://www.example.com/news/amp/liu-named-agency-head-123", "https://www.example.com/news/liu-named-agency-head-123"),
        ("https://www.example.com/2024/01/01/liu-named/amp/", "https://www.example.com/2024/01/01/liu-named/"),
        ("https://www.example.com/world/liu-named.amp", "https://www.example.com/world/liu-named"),
        ("https://www.example.com/world/liu-named.amp.html", "https://www.example.com/world/liu-named.html"),
        ("https://www.example.com/world/liu-named?amp=1", "https://www.example.com/world/liu-named"),
        ("https://www.example.com/world/liu-named?amp", "https://www.example.com/world/liu-named"),
        ("https://amp.example.com/world/liu-named", "https://example.com/world/liu-named"),
        ("https://www.example.com/world/liu-named?outputType=amp&id=5", "https://www.example.com/world/liu-named?id=5"),
        ("https://www-example-com.cdn.ampproject.org/c/s/www.example.com/world/liu-named.amp",
         "https://www.example.com/world/liu-named"),
        ("https://www.google.com/amp/s/www.example.com/world/amp/liu-named", "https://www.example.com/world/liu-named"),
    ],
)
def test_amp_forms_map_to_the_article(amp_url: str, expected: str) -> None:
    assert canonical_url(amp_url) == expected


def test_words_containing_amp_are_left_alone() -> None:
    url = "https://www.example.com/champions/campaign-ampersand?example=1"
    assert canonical_url(url) == url


def test_non_http_urls_come_back_unchanged() -> None:
    assert canonical_url("  mailto:desk@example.com ") == "mailto:desk@example.com"
    assert canonical_url("not a url") == "not a url"


# --------------------------------------------------------------------------- html_to_text


def test_html_to_text_keeps_paragraphs_and_drops_non_text() -> None:
    text = html_to_text(ARTICLE_HTML)
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == (
        "BEIJING – Liu Zhongyi, the former provincial official, was named to lead the country’s "
        "new data-protection agency on Monday, state media reported."
    )
    assert "“He has the experience,” said one official." in text
    assert "Born in 1965\n\nJoined the party in 1987" in text
    for gone in ("loadAd", "color: red", "youtube", "Photo: Xinhua", "Sponsored", "<", "&"):
        assert gone not in text


def test_html_to_text_line_breaks_and_entities() -> None:
    assert html_to_text("First line<br>second&nbsp;line<br/><br/>New paragraph") == (
        "First line\nsecond line\n\nNew paragraph"
    )
    assert html_to_text("AT&amp;T &amp; Verizon") == "AT&T & Verizon"
    assert html_to_text("AT&amp;amp;T") == "AT&T"  # double-escaped by the feed
    assert html_to_text("  plain\t text\n wrapped  ") == "plain text wrapped"
    assert html_to_text("") == ""


def test_entity_escaped_markup_is_converted_but_escaped_code_inside_markup_stays_text() -> None:
    assert html_to_text("&lt;p&gt;Hello &lt;b&gt;world&lt;/b&gt;&lt;/p&gt;") == "Hello world"
    assert html_to_text("<p>Use <code>&lt;div&gt;</code> here.</p>") == "Use <div> here."


def test_html_to_text_ignores_a_stray_less_than_sign() -> None:
    assert html_to_text("Why 3 < 5 matters") == "Why 3 < 5 matters"


# --------------------------------------------------------------------------- boilerplate


def test_strip_boilerplate_removes_ads_captions_and_footers_from_a_news_article() -> None:
    text = strip_boilerplate(html_to_text(ARTICLE_HTML))
    for line in BOILERPLATE_LINES:
        assert line not in text, line
    assert text.startswith("BEIJING – Liu Zhongyi")
    assert "follows months of speculation" in text
    assert "previously ran the cyber administration in Guangdong." in text


@pytest.mark.parametrize(
    "footer",
    [
        "The post Ten tips for autumn gardens appeared first on Garden Weekly.",
        "This article originally appeared on Yahoo Finance.",
        "This story was originally published by ProPublica.",
        "This article is republished from The Conversation under a Creative Commons license.",
        "Continue reading...",
        "Read more »",
    ],
)
def test_syndication_footers_are_removed_on_their_own_line_and_at_a_paragraph_end(footer: str) -> None:
    body = "Gardeners should plant bulbs before the first frost."
    assert strip_boilerplate(f"{body}\n\n{footer}") == body
    assert strip_boilerplate(f"{body} {footer}") == body


@pytest.mark.parametrize(
    "line",
    [
        "The advertisement campaign was pulled after complaints.",
        "Reading the report, the minister said nothing.",
        "Watchdog groups criticised the decision.",
        "Copyright law changed in 2019, the court noted.",
        "Photographers waited outside the court.",
        "Related parties must disclose their holdings.",
    ],
)
def test_ordinary_sentences_that_resemble_boilerplate_are_kept(line: str) -> None:
    assert strip_boilerplate(line) == line


def test_reddit_submission_footer_is_removed() -> None:
    raw = (
        '<div class="md"><p>Hello all, I recently bought a 40G switch.</p></div> &#32; submitted by &#32; '
        '<a href="https://www.reddit.com/user/x"> /u/x </a> <br/> <span><a href="#">[link]</a></span> '
        '&#32; <span><a href="#">[comments]</a></span>'
    )
    assert strip_boilerplate(html_to_text(raw)) == "Hello all, I recently bought a 40G switch."


# --------------------------------------------------------------------------- origin_hint


@pytest.mark.parametrize(
    ("text", "outlet"),
    [
        ("Liu was named on Monday.\n\nThis article originally appeared in the South China Morning Post (SCMP).",
         "South China Morning Post"),
        ("Body.\nThis article first appeared in The Conversation.", "The Conversation"),
        ("Body. This story was originally published by ProPublica.", "ProPublica"),
        ("Body.\nThe post Ten tips appeared first on Garden Weekly.", "Garden Weekly"),
        ("Republished with permission from Nikkei Asia.", "Nikkei Asia"),
        ("Originally published at example.com on June 3.", "example.com"),
        ("WASHINGTON (Reuters) - The U.S. Senate voted on Tuesday.", "Reuters"),
        ("(CNN) — A storm hit the coast.", "CNN"),
    ],
)
def test_origin_hint_names_the_outlet_credited(text: str, outlet: str) -> None:
    assert origin_hint(text) == outlet


@pytest.mark.parametrize(
    "text",
    [
        "The report appeared in 2019 and was widely read.",
        "Liu (58) - a former official - was named.",
        "He first appeared on television in 1998.",
        "",
    ],
)
def test_origin_hint_is_none_without_a_clear_credit(text: str) -> None:
    assert origin_hint(text) is None


def test_origin_hint_needs_the_text_before_boilerplate_is_stripped() -> None:
    raw = html_to_text(ARTICLE_HTML)
    assert origin_hint(raw) == "South China Morning Post"
    assert origin_hint(strip_boilerplate(raw)) is None


# --------------------------------------------------------------------------- dates


def test_portuguese_and_twelve_hour_dates_are_read() -> None:
    assert parse_date_text("Seg, 24 Set 2018 19:42:40 -0300") == datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)
    assert parse_date_text("Sat, Dec 16 2023 02:02:33 PM") == datetime(2023, 12, 16, 14, 2, 33, tzinfo=UTC)
    assert parse_date_text("Di, 05 Mär 2024 08:00:00 +0100") == datetime(2024, 3, 5, 7, 0, tzinfo=UTC)
    assert parse_date_text("yesterday-ish") is None


def _entry(**fields: object) -> RawEntry:
    base: dict[str, object] = {"id": "urn:1", "link": "https://example.com/a", "title": "Headline"}
    base.update(fields)
    return RawEntry(**base)  # type: ignore[arg-type]


def _item(entry: RawEntry, feed_url: str = "https://example.com/feed.xml") -> Item | None:
    return normalise_entry(entry, source_name="Example", feed_url=feed_url, now=NOW)


def test_published_is_utc_aware_and_falls_back_to_updated() -> None:
    struct = datetime(2023, 11, 24, 15, 14, 50).timetuple()
    item = _item(_entry(updated=struct))
    assert item is not None and item.published == datetime(2023, 11, 24, 15, 14, 50, tzinfo=UTC)


def test_date_far_in_the_future_is_clamped_to_now_but_a_few_hours_ahead_is_kept() -> None:
    far = (NOW + timedelta(days=30)).timetuple()
    near = (NOW + timedelta(hours=3)).timetuple()
    far_item, near_item = _item(_entry(published=far)), _item(_entry(published=near))
    assert far_item is not None and far_item.published == NOW
    assert near_item is not None and near_item.published == NOW + timedelta(hours=3)


def test_missing_or_unreadable_date_is_none() -> None:
    item = _item(_entry(published_raw="sometime soon"))
    assert item is not None and item.published is None


# --------------------------------------------------------------------------- entries


def test_syndicated_copy_gets_canonical_url_and_clean_text() -> None:
    entry = _entry(
        id="",
        link="https://news.yahoo.com/amp/liu-zhongyi-named-data-agency-123.html?guccounter=1&utm_source=rss",
        title="Liu Zhongyi named to lead China&#8217;s data agency",
        summary="<p>Liu Zhongyi was named on Monday.</p>",
        content=ARTICLE_HTML,
        tags=("China", " Politics ", "china", "Technology"),
        author="Staff &amp; agencies",
    )
    item = _item(entry)
    assert item is not None
    assert item.url == "https://news.yahoo.com/liu-zhongyi-named-data-agency-123.html"
    assert item.original_url == entry.link
    assert item.guid == item.url  # no id: the canonical link stands in
    assert item.title == "Liu Zhongyi named to lead China’s data agency"
    assert item.text.startswith("BEIJING – Liu Zhongyi")  # the longer content wins over the summary
    assert "originally appeared" not in item.text and "Advertisement" not in item.text
    assert item.categories == ("China", "Politics", "Technology")
    assert item.author == "Staff & agencies"
    assert item.source_name == "Example"


def test_origin_credit_is_reported_although_the_footer_is_stripped() -> None:
    result = normalise_with_origin(_entry(content=ARTICLE_HTML), source_name="Yahoo News",
                                   feed_url="https://news.yahoo.com/rss", now=NOW)
    assert result is not None
    item, origin = result
    assert origin == "South China Morning Post"
    assert "South China Morning Post" not in item.text
    plain = normalise_with_origin(_entry(summary="<p>Nothing credited here.</p>"), source_name="X",
                                  feed_url="https://example.com/rss", now=NOW)
    assert plain is not None and plain[1] is None


def test_headlines_that_look_like_boilerplate_are_kept_as_titles() -> None:
    item = _item(_entry(title="Watch: Liu Zhongyi takes the oath"))
    assert item is not None and item.title == "Watch: Liu Zhongyi takes the oath"


def test_summary_is_used_when_content_is_shorter() -> None:
    item = _item(_entry(summary="<p>A long and informative summary of the story.</p>", content="<p>Short.</p>"))
    assert item is not None and item.text == "A long and informative summary of the story."


def test_relative_links_are_resolved_against_the_feed_url() -> None:
    item = _item(_entry(link="../2024/story.html?utm_medium=feed"), feed_url="https://example.com/news/rss/feed.xml")
    assert item is not None and item.url == "https://example.com/news/2024/story.html"


def test_entry_without_title_or_usable_link_is_dropped() -> None:
    assert _item(_entry(title="", link="")) is None
    assert _item(_entry(title="  ", link="javascript:alert(1)")) is None


def test_entry_with_title_only_is_kept_with_a_stable_hashed_guid() -> None:
    entry = _entry(id="", link="", title="Council meeting moved to Thursday",
                   published=datetime(2023, 5, 1, 9, 0).timetuple())
    first, second = _item(entry), _item(entry)
    assert first is not None and second is not None
    assert first.url == "" and first.guid == second.guid and first.guid.startswith("hash:")
    other = _item(_entry(id="", link="", title="Council meeting cancelled"))
    assert other is not None and other.guid != first.guid


def test_entry_without_title_gets_one_from_its_text() -> None:
    item = _item(_entry(title="", summary="<p>Flooding closed the A38 near Exeter on Sunday.</p>"))
    assert item is not None and item.title == "Flooding closed the A38 near Exeter on Sunday."


def test_feedparser_dicts_are_accepted_too() -> None:
    entry = {"title": "Headline", "link": "https://example.com/x?fbclid=1", "summary": "<b>Body</b> text"}
    item = normalise_entry(entry, source_name="Example", feed_url="https://example.com/rss", now=NOW)
    assert item is not None and item.url == "https://example.com/x" and item.text == "Body text"


# --------------------------------------------------------------------------- the captured feeds

_TAG = re.compile(r"<(?:p|div|img|br|span|a|b|i|table|td|script|iframe|figure)\b[^>]*>", re.I)
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z]+);", re.I)
_BOILERPLATE = re.compile(r"^(?:advertisement|continue reading|read more|submitted by)\b", re.I | re.M)


def _items(name: str) -> list[Item]:
    url = f"https://feeds.example.org/{name}"
    parsed = parse_feed((FEEDS / name).read_bytes(), url=url)
    items = [normalise_entry(e, source_name=name, feed_url=url, now=NOW) for e in parsed.entries]
    return [i for i in items if i is not None]


@pytest.mark.parametrize("path", sorted(FEEDS.glob("*.xml")), ids=lambda p: p.name)
def test_every_captured_feed_normalises_into_sensible_items(path: Path) -> None:
    items = _items(path.name)
    assert items
    for item in items:
        assert item.title.strip() and not _TAG.search(item.title) and not _ENTITY.search(item.title)
        assert "\n" not in item.title
        assert item.url.startswith(("http://", "https://")), item.url
        assert "utm_" not in item.url and "#" not in item.url
        assert item.guid
        assert not _TAG.search(item.text)
        assert not _BOILERPLATE.search(item.text)
        assert item.published is not None, item.title
        assert datetime(2000, 1, 1, tzinfo=UTC) < item.published <= NOW + timedelta(days=1)
        assert item.published.utcoffset() == timedelta(0)
    assert len({i.guid for i in items}) == len(items)


def test_uol_portuguese_dates_and_latin1_text() -> None:
    first = _items("uol-noticias.rss.xml")[0]
    assert first.title == "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno"
    assert first.published == datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)  # 19:42:40 -0300
    assert first.text.startswith("Líder na pesquisa Ibope")


def test_iso_8859_1_rss_1_0_is_decoded() -> None:
    item = _items("rss_1.0_iso8859.xml")[0]
    assert item.title == "Digitalministerium: Neue Glasfaserförderung mit Schnellkasse"
    assert item.published == datetime(2023, 1, 25, 18, 3, 2, tzinfo=UTC)


def test_guardian_continue_reading_link_and_bbc_tracking_are_gone() -> None:
    guardian = _items("guardian.rss.xml")[0]
    assert "Continue reading" not in guardian.text
    assert guardian.text.startswith("The president’s ‘new American moment’ speech")
    bbc = _items("bbc.rss.xml")[0]
    assert bbc.url == "https://www.bbc.co.uk/news/uk-politics-43532916"
    assert bbc.original_url.endswith("?at_medium=RSS&at_campaign=KARANGA")


def test_nbc_twelve_hour_clock_is_read_as_afternoon() -> None:
    item = _items("rss_2.0_nbcny.xml")[0]
    assert item.published == datetime(2023, 12, 16, 14, 2, 33, tzinfo=UTC)


def test_npr_image_credit_is_dropped() -> None:
    item = _items("npr.rss.xml")[0]
    assert "Image credit" not in item.text
    assert item.text.startswith("A South African corrections board")
