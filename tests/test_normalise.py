"""Normalise stage: canonical URLs, clean text without boilerplate, UTC dates, origin hints."""

from __future__ import annotations

import html
import random
import re
import string
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from bot import normalise
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


# --------------------------------------------------------------------------- fast paths = plain forms
# normalise runs for every new item, so its hot paths take shortcuts (no lxml for plain text, a
# recursive walk, lowercased matching, substring gates, URLs taken apart without urllib when they
# are plain). Each test below holds a shortcut to the straightforward form it replaces.


def _feed_markup() -> list[str]:
    """The HTML (and plain) summaries and contents of every captured feed."""
    out: list[str] = []
    for path in sorted(FEEDS.glob("*.xml")):
        for entry in parse_feed(path.read_bytes(), url="https://example.com/feed.xml").entries:
            out.extend(field for field in (entry.title, entry.summary, entry.content) if field)
    return out


TRICKY_MARKUP = [
    ARTICLE_HTML,
    "<p>a<br>b<br/><br>c</p><table><tr><td>x</td><th>y</td></tr></table>",
    '<div class="Related posts">gone</div>kept tail<script>x()</script>tail two<figcaption>c</figcaption>end',
    '<p id="share">gone</p><span class="photo-credit ad">gone</span> <em class="lede">kept</em>',
    "<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul><hr>after",
    "<p>  spaced \n\t out \u00a0 text  </p>\n\n<p></p><div> </div>last",
    "<html class='ad'><body><p>all noise</p></body></html>",
    "text <b>bold</b><br><br><br> more<svg><p>drawn</p></svg> tail",
]


def test_fast_markup_walk_gives_the_text_of_the_iterative_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recursive walk and the iterwalk one it falls back to (for very deep trees) agree."""
    samples = _feed_markup() + TRICKY_MARKUP
    fast = [html_to_text(m) for m in samples]
    monkeypatch.setattr(normalise, "_MAX_WALK_DEPTH", 0)  # every tree takes the iterative walk
    assert [html_to_text(m) for m in samples] == fast
    deep = "<div>" * 250 + "deep" + "</div>" * 250  # libxml2 keeps 255 levels
    assert html_to_text(deep) == "deep"


def _assemble_reference(joined: str) -> str:
    """Markers to breaks the plain way: squash whitespace, then map each run of markers."""
    def breaks(match: re.Match[str]) -> str:
        run = match.group()
        return "\n\n" if "\x00" in run or run.count("\x01") > 1 else "\n"
    return re.sub(" ?[\x00\x01][\x00\x01 ]*", breaks, re.sub(r"\s+", " ", joined)).strip()


def test_break_markers_and_whitespace_are_assembled_as_the_plain_regexes_do() -> None:
    rng = random.Random(6)
    alphabet = ["a", "bc", " ", "  ", "\t", "\n", "\x00", "\x01", "\xa0", "\u2028", "\x1c", "\u3000", "é"]
    for _ in range(20_000):
        joined = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert normalise._assemble(joined) == _assemble_reference(joined), repr(joined)


@pytest.mark.parametrize(
    ("plain", "markup"),
    [
        ("Hello   world\n\n  second  paragraph ", "<p>Hello   world</p>\n<p>  second  paragraph </p>"),
        ("Tabs\tand\u00a0no-break\u3000spaces", "<span>Tabs\tand\u00a0no-break\u3000spaces</span>"),
        ("In\u200bvis\u00adible\ufeff and con\x07trol", "<p>In\u200bvis\u00adible\ufeff and con\x07trol</p>"),
        ("AT&T’s “quotes” – dashes…", "<p>AT&amp;T’s “quotes” – dashes…</p>"),
    ],
)
def test_plain_text_and_the_same_text_in_markup_read_alike(plain: str, markup: str) -> None:
    assert html_to_text(plain) == html_to_text(markup) == html_to_text(html.escape(markup, quote=False))


def test_invisible_characters_go_before_parsing_so_they_cannot_hide_a_tag() -> None:
    assert html_to_text("<scr\u200bipt>alert(1)</scr\u00adipt><p>Hello</p>") == "Hello"
    assert html_to_text("<p>A\x00B\x01C\x02D</p>") == "ABCD"


def _boilerplate_reference(line: str) -> bool:
    """The boilerplate test as one case-insensitive pattern, "all rights reserved" included."""
    pattern = "(?:" + "|".join(normalise._BOILERPLATE_LINES) + r"|.*\ball rights reserved\.?)"
    return re.fullmatch(pattern + normalise._LINE_END, line, re.IGNORECASE) is not None


CASE_VARIANTS = [
    "Advertisement", "ADVERTISEMENT", "AdVeRtIsEmEnT", "ADVERT\u0130SEMENT", "advert\u0131\u017fement", "Sponsored",
    "\u017fponsored content", "Continue Reading…", "READ MORE »", "Story continues below advertisement",
    "© 2024 Example Media", "Copyright 2024 Example. ALL RIGHTS RESERVED.", "Example Ltd. All r\u0131ghts reserved.",
    "PHOTO: Jo Bloggs", "Image Caption, the scene", "(Photo by Kevin Frayer/Getty Images)", "Watch: the vote",
    "SIGN UP FOR OUR NEWSLETTER", "submitted by /u/someone", "[link] [comments]", "(Reporting by Jo; Editing by Al)",
    "See omnystudio.com/listener for privacy information.", "[…]", "The post A appeared first on B.",
    "The senator read more than 40 reports.", "Advertising revenue fell 4% in the quarter.",
    "All rights reserved, the company said, were waived.", "Photographers gathered outside.",
]


def test_boilerplate_lines_are_recognised_in_any_case_as_by_one_case_insensitive_pattern() -> None:
    """The lowercased fast path and the gates decide as the single IGNORECASE pattern, also for
    the letters IGNORECASE spells differently from str.lower ("İ", "ı", "ſ")."""
    lines = CASE_VARIANTS + [line for text in _feed_markup()[:400] for line in html_to_text(text).split("\n")]
    for line in {line.strip() for line in lines if line.strip()}:
        for variant in (line, line.upper(), line.lower(), line.swapcase()):
            if len(variant) <= normalise._MAX_BOILERPLATE_LINE:
                expected = _boilerplate_reference(variant)
                assert (strip_boilerplate(variant) == "") == expected, repr(variant)


@pytest.mark.parametrize("line", CASE_VARIANTS[:24])
def test_boilerplate_in_odd_case_or_entity_encoded_is_still_stripped(line: str) -> None:
    encoded = "".join(f"&#{ord(ch)};" if ch.isalpha() and i % 3 == 0 else html.escape(ch)
                      for i, ch in enumerate(line))
    assert strip_boilerplate(html_to_text(f"<p>{encoded}</p><p>The body.</p>")) == "The body."
    assert strip_boilerplate(f"The body.\n\n{line}\n") == "The body."


def test_lowercasing_matches_ignorecase_for_every_character_but_three() -> None:
    """Why `_BOILERPLATE_LOWERED` may run on ``line.lower()``: IGNORECASE equates a character with
    an ASCII letter exactly when str.lower makes it that letter, except "İ", "ı", "ſ"; and
    lowercasing keeps every character's word / space / digit class."""
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    ignorecase_letters = set(re.findall("[a-z]", "".join(chars), re.IGNORECASE))
    lowered_to_letters = {ch for ch in chars if ch.lower() in set(string.ascii_lowercase)}
    assert ignorecase_letters ^ lowered_to_letters == {"\u0130", "\u0131", "\u017f"}
    single = [ch for ch in chars if len(ch.lower()) == 1]
    text, lowered = "".join(single), "".join(ch.lower() for ch in single)
    for cls in (r"\w", r"\s", r"\d"):
        assert [m.start() for m in re.finditer(cls, text)] == [m.start() for m in re.finditer(cls, lowered)]
    assert {ch for ch in chars if len(ch.lower()) != 1} == {"\u0130"}
    assert set(normalise._CASE_SPECIALS) == {"\u0130", "\u0131", "\u017f"}


def test_origin_prefilters_cover_every_gate_word_and_credits_read_in_any_case() -> None:
    for prefilter, gate in zip(normalise._ORIGIN_PREFILTERS, normalise._ORIGIN_GATES, strict=True):
        assert all(any(short in word for short in prefilter) for word in gate)
    for credit in ("This article originally appeared in Foreign Policy.",
                   "THIS ARTICLE ORIGINALLY APPEARED in Foreign Policy.", "It First Appeared on Foreign Policy.",
                   "REPUBLISHED with permission from Foreign Policy."):
        assert origin_hint(f"The body.\n\n{credit}") == "Foreign Policy", credit


def test_dateline_credit_is_read_up_to_sixty_characters_in() -> None:
    assert origin_hint("A" * 60 + " (Reuters) - Talks resumed.") is None  # "(" at 61
    assert origin_hint("A" * 59 + " (Reuters) - Talks resumed.") == "Reuters"
    assert origin_hint("Intro\n\n  WASHINGTON (AP) — Talks resumed.") == "AP"


def test_twelve_hour_clock_is_read_however_am_pm_is_written() -> None:
    misread = datetime(2023, 12, 16, 2, 2, 33).timetuple()  # what feedparser makes of it
    for suffix in ("PM", "pm", "P.M.", "p.m"):
        item = _item(_entry(published=misread, published_raw=f"Sat, Dec 16 2023 02:02:33 {suffix}"))
        assert item is not None and item.published == datetime(2023, 12, 16, 14, 2, 33, tzinfo=UTC), suffix


LINKS = [
    "https://example.com/a/b?x=1#f", "http://example.com", "https://Example.COM/Path", "HTTPS://example.com/a",
    "https://example.com/a;params?x=1", "https://example.com/a?", "https://example.com/a#", "https://example.com/a?#",
    "https://example.com:8443/a", "https://example.com:99999/a", "https://example.com:x/a", "https://user:pw@example.com/",
    "https://[::1]:8080/a", "https://[::1/a", "https://ex%41mple.com/", "https://exämple.com/", "https://example.com/ä",
    "https://exa\tmple.com/", "https:///path", "https://:80/", "//example.com/a", "/relative/path", "relative",
    "?page=2", "#top", "mailto:desk@example.com", "ftp://example.com/f", "https://example.com/a b",
]
BASES = ["https://example.com/feed.xml", "http://127.0.0.1:8080/feeds/1.xml", "", "https://[::1/feed", "ftp://x/"]


def test_absolute_links_are_what_urljoin_gives() -> None:
    def reference(link: str, base: str) -> str:
        link = link.strip()
        if not link:
            return ""
        try:
            absolute = urljoin(base, link) if base else link
            parts = urlsplit(absolute)
        except ValueError:
            return ""
        return absolute if parts.scheme.lower() in ("http", "https") and parts.hostname else ""

    feed_links = [e.link for path in sorted(FEEDS.glob("*.xml"))
                  for e in parse_feed(path.read_bytes(), url="https://example.com/feed.xml").entries]
    for link in LINKS + feed_links:
        for base in BASES:
            assert normalise._absolute_http(link, base) == reference(link, base), (link, base)


def test_plain_urls_are_taken_apart_as_urlsplit_does() -> None:
    for url in LINKS + [canonical_url(link) for link in LINKS]:
        try:
            parts = urlsplit(url)
            expected: object = (parts.scheme.lower(), parts.hostname, parts.port, parts.path, parts.query,
                                parts.fragment)
        except ValueError:
            expected = ValueError
        try:
            got: object = normalise._url_parts(url)
        except ValueError:
            got = ValueError
        assert got == expected, url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Example.com:80/a?utm_source=rss", "http://example.com/a"),
        ("https://example.com:8443/x?b=2&a=1#frag", "https://example.com:8443/x?a=1&b=2"),
        ("https://example.com:99999/x", "https://example.com:99999/x"),  # not a port: left alone
        ("https://user:secret@Example.com/x", "https://example.com/x"),
        ("https://example.com/x;v=1?", "https://example.com/x;v=1"),
    ],
)
def test_canonical_url_ports_credentials_and_empty_parts(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_stripping_boilerplate_never_lengthens_a_text() -> None:
    """`_body_text` relies on it: content longer than the raw summary wins without stripping the summary."""
    rng = random.Random(3)
    lines = [*CASE_VARIANTS, "", "  ", "Body text (Photo by Jo/AP) goes on.", "Ends here. Read more »",
             "Story ADVERTISEMENT continues", "He said so. The post X appeared first on Y."]
    for _ in range(3_000):
        text = "\n".join(rng.choice(lines) for _ in range(rng.randint(1, 8)))
        assert len(strip_boilerplate(text)) <= len(text)
