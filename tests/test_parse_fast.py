"""Parse stage, fast path (bot.parse_fast): on every feed it takes, the bot sees exactly what
feedparser would have given it; everything it is not sure about goes to feedparser.

"The same" is judged where it matters (`differences`): feed title, link, ttl, version and warning,
the entry count, and for every entry its guid and the normalised `Item` (guid, URLs, title, text,
date, categories, author) with its origin hint, plus the raw id/link/dates/tags/author."""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from bench.farm import Farm, FarmSpec
from bot.parse import FeedParseError, ParsedFeed, parse_feed, parse_with_feedparser
from bot.parse_fast import compare_parsed, differences, parse_fast

FEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds"
SHARED = sorted(FEEDS.glob("*.xml"))

# Shared feeds the fast path declines (feedparser parses them), and why:
DECLINED = {
    "rss_1.0_biorxiv.xml",  # RSS 1.0 / RDF: not handled by the fast path
    "rss_1.0_debian.xml",  # RSS 1.0 / RDF
    "rss_1.0_iso8859.xml",  # RSS 1.0 / RDF (and ISO-8859-1)
    "npr.rss.xml",  # <img alt='... it's ...'>: a broken quote the two HTML parsers would split differently
    "rss_2.0_nbcny.xml",  # "Sat, Dec 16 2023 02:02:33 PM" is neither an RFC 822 nor an RFC 3339 date
    "uol-noticias.rss.xml",  # Portuguese dates ("Seg, 24 Set 2018"): only feedparser knows what it makes of them
}


def _url(name: str) -> str:
    return f"https://feeds.example.org/{name}"


def rss(items: str, *, channel: str = "<title>Example</title><link>https://example.org/</link>",
        namespaces: str = 'xmlns:content="http://purl.org/rss/1.0/modules/content/"', head: str = "") -> bytes:
    return (f'{head}<?xml version="1.0" encoding="utf-8"?><rss version="2.0" {namespaces}><channel>{channel}'
            f"{items}</channel></rss>").encode()


def item(extra: str = "", *, n: int = 1) -> str:
    return (f"<item><title>Story {n}</title><link>https://example.org/a/{n}</link><guid>https://example.org/a/{n}</guid>"
            f"<pubDate>Tue, 05 Mar 2024 14:0{n % 10}:00 GMT</pubDate>"
            f"<description>&lt;p&gt;Text of story {n}.&lt;/p&gt;</description>{extra}</item>")


def atom(entries: str, *, head: str = '<title>Atom example</title><link href="https://example.org/"/>') -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">{head}{entries}</feed>'
            ).encode()


def assert_same_as_feedparser(body: bytes, *, url: str = "https://example.org/feed",
                              content_type: str | None = None) -> ParsedFeed:
    """The fast path takes ``body`` and the bot sees nothing different from feedparser's result."""
    fast = parse_fast(body, url=url, content_type=content_type)
    assert fast is not None, "the fast path declined"
    assert fast.parser == "fast"
    assert differences(body, url=url, content_type=content_type) == []
    return fast


def assert_left_to_feedparser(body: bytes, *, url: str = "https://example.org/feed",
                              content_type: str | None = None) -> None:
    """The fast path declines ``body``; parse_feed then behaves exactly as feedparser alone does."""
    assert parse_fast(body, url=url, content_type=content_type) is None
    try:
        expected: ParsedFeed | str = parse_with_feedparser(body, url=url, content_type=content_type)
    except FeedParseError as error:
        expected = str(error)
    try:
        got: ParsedFeed | str = parse_feed(body, url=url, content_type=content_type)
    except FeedParseError as error:
        got = str(error)
    assert got == expected


# --------------------------------------------------------------------------- the shared captures


@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.name)
@pytest.mark.parametrize("content_type", [None, "application/rss+xml; charset=utf-8", "text/xml"])
def test_shared_feed_is_taken_and_identical_or_left_to_feedparser(path: Path, content_type: str | None) -> None:
    body = path.read_bytes()
    if path.name in DECLINED:
        assert_left_to_feedparser(body, url=_url(path.name), content_type=content_type)
    else:
        assert_same_as_feedparser(body, url=_url(path.name), content_type=content_type)


def test_parse_feed_reports_which_parser_ran() -> None:
    body = (FEEDS / "bbc.rss.xml").read_bytes()
    assert parse_feed(body, url=_url("bbc.rss.xml")).parser == "fast"
    assert parse_feed(body, url=_url("bbc.rss.xml"), fast=False).parser == "feedparser"
    rdf = (FEEDS / "rss_1.0_debian.xml").read_bytes()
    assert parse_feed(rdf, url=_url("rss_1.0_debian.xml")).parser == "feedparser"


def test_most_shared_feeds_take_the_fast_path() -> None:
    taken = [p.name for p in SHARED if parse_fast(p.read_bytes(), url=_url(p.name), content_type=None)]
    assert sorted(taken) == sorted(p.name for p in SHARED if p.name not in DECLINED)
    assert len(taken) >= 10


# --------------------------------------------------------------------------- the bench farm


@pytest.fixture(scope="module")
def farm() -> Farm:
    return Farm(FarmSpec(feeds=200, items=6, epoch=1_700_000_000))


def test_every_farm_feed_is_taken_and_identical(farm: Farm) -> None:
    """200 feeds (RSS, RSS with content:encoded, Atom) at two points in time, 6 items each
    (the full-size feeds below have 50; the content varies per item, not per feed size)."""
    kinds = set()
    for feed in range(200):
        for seq in (6, 9):
            body = farm.render(feed, seq)
            ctype = f"application/{'atom' if farm.is_atom(feed) else 'rss'}+xml; charset=utf-8"
            parsed = assert_same_as_feedparser(body, url=f"{farm.base}{farm.feed_path(feed)}", content_type=ctype)
            assert len(parsed.entries) == 6
            kinds.add((parsed.version, any(e.content for e in parsed.entries)))
    assert kinds == {("rss20", False), ("rss20", True), ("atom10", False)}


@pytest.mark.parametrize("feed", [0, 1, 2])
def test_full_size_farm_feeds_are_taken_and_identical(feed: int) -> None:
    farm = Farm(FarmSpec(feeds=3, epoch=1_700_000_000))
    body = farm.render(feed, 50)
    assert len(body) > 30_000
    assert len(assert_same_as_feedparser(body, url=f"{farm.base}{farm.feed_path(feed)}").entries) == 50


# --------------------------------------------------------------------------- hostile and odd input

XXE = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       b'<rss version="2.0"><channel><title>&xxe;</title><item><title>&xxe;</title>'
       b"<link>https://example.org/a</link></item></channel></rss>")
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
          b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
          b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>'
          b'<rss version="2.0"><channel><title>&f;</title><item><title>&f;</title>'
          b"<link>https://example.org/a</link></item></channel></rss>")
NETSCAPE = (b'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
            b'"http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss version="0.91"><channel><title>N</title>'
            b"<item><title>Old</title><link>https://example.org/old</link></item></channel></rss>")

DECLINES = {
    "xxe-entity": XXE,
    "billion-laughs": LAUGHS,
    "doctype": NETSCAPE,
    "truncated": rss(item(n=1) + item(n=2))[:-60],
    "html-page": b"<!DOCTYPE html><html><head><title>Shop</title></head><body><p>Hi</p></body></html>",
    "xhtml-page": b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head><body/></html>',
    "json": b'{"items": [{"title": "json"}]}',
    "undefined-entity": rss("<item><title>Council&nbsp;votes</title><link>https://example.org/1</link></item>"),
    "rdf": (FEEDS / "rss_1.0_iso8859.xml").read_bytes(),
    "undeclared-windows-1252-with-odd-dates": (FEEDS / "uol-noticias.rss.xml").read_bytes(),
    "date-without-zone": rss(item("<pubDate>2024-03-05 14:03</pubDate>").replace(
        "<pubDate>Tue, 05 Mar 2024 14:01:00 GMT</pubDate>", "")),
    "date-12-hour-clock": rss(item().replace("14:01:00 GMT", "02:01:00 PM GMT")),
    "date-two-digit-year": rss(item().replace("Mar 2024", "Mar 24")),
    "date-impossible": rss(item().replace("05 Mar", "31 Feb")),
    "xml-base": atom('<entry xml:base="https://other.example/"><title>x</title><id>i</id><link href="a"/></entry>'),
    "xhtml-content": atom('<entry><title>x</title><id>i</id><content type="xhtml">'
                          '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content></entry>'),
    "base64-content": atom('<entry><title>x</title><id>i</id><content type="application/pdf">aGk=</content></entry>'),
    "html-feed-title": rss(item(), channel="<title>&lt;b&gt;Bold&lt;/b&gt; news</title>"),
    "iframe-with-text": rss(item().replace("Text of story 1.", "a &lt;iframe&gt;Fallback text&lt;/iframe&gt; b")),
    "cp1252-character-reference": rss(item().replace("Text of story 1.", "smart &amp;#147;quotes&amp;#148;")),
    "unknown-entity-in-html": rss(item().replace("Text of story 1.", "R&amp;D;-ish &amp;foo;")),
    "markup-inside-title-element": rss("<item><title>a <b>b</b></title><link>https://example.org/1</link></item>"),
    "entry-that-sets-updated-oddly": rss(item("<date>2024-01-01</date>")),
}


@pytest.mark.parametrize("body", DECLINES.values(), ids=DECLINES.keys())
def test_odd_input_is_left_to_feedparser(body: bytes) -> None:
    assert_left_to_feedparser(body)


def test_entities_are_never_expanded() -> None:
    started = time.process_time()
    assert parse_fast(LAUGHS, url="https://example.org/feed", content_type=None) is None
    assert parse_fast(XXE, url="https://example.org/feed", content_type=None) is None
    assert time.process_time() - started < 1.0


def test_not_a_feed_raises_the_same_error_as_before() -> None:
    with pytest.raises(FeedParseError, match="HTML page"):
        parse_feed(DECLINES["html-page"], url="https://example.org/")
    with pytest.raises(FeedParseError, match="not a feed"):
        parse_feed(DECLINES["json"], url="https://example.org/")


TAKES = {
    "relative-links": rss(item().replace("https://example.org/a/1</link>", "/a/1</link>").replace(
        "<guid>https://example.org/a/1</guid>", "<guid isPermaLink=\"false\">x1</guid>")),
    "cdata-description": rss(item().replace("&lt;p&gt;Text of story 1.&lt;/p&gt;",
                                            "<![CDATA[<p>Text <b>of</b> story &amp; more</p>]]>")),
    "entities-in-titles": rss(
        item().replace("Story 1", "AT&amp;T &amp;amp; Q&amp;A &#8217;s &lt;b&gt;big&lt;/b&gt; day")
        + item(n=2).replace("Story 2", "Tom &amp; Jerry")),
    "missing-guid": rss(item().replace("<guid>https://example.org/a/1</guid>", "")),
    "guid-without-link": rss("<item><title>G</title><guid>https://example.org/g</guid></item>"),
    "duplicate-guids": rss(item(n=1) + item(n=2).replace("https://example.org/a/2</guid>", "https://example.org/a/1</guid>")),
    "bom": b"\xef\xbb\xbf" + rss(item()),
    "other-content-prefix": rss(item("<c:encoded><![CDATA[<p>Full text, longer than the summary.</p>]]></c:encoded>"),
                                namespaces='xmlns:c="http://purl.org/rss/1.0/modules/content/"'),
    "atom-html-and-text": atom(
        '<entry><title type="html">&lt;b&gt;Bold&lt;/b&gt; &amp;amp; co</title><id>tag:e,1</id>'
        '<link href="https://example.org/1"/><updated>2024-03-05T14:03:00Z</updated>'
        '<summary type="text">5 &lt; 6 &amp; &lt;p&gt; stays text</summary></entry>'
        '<entry><title type="text">a &lt;b&gt; b</title><id>tag:e,2</id><link href="https://example.org/2"/>'
        '<published>2024-03-05T14:03:00.5+01:00</published>'
        '<summary type="html">&lt;p&gt;Para&lt;/p&gt;&lt;p class="caption"&gt;Photo: x&lt;/p&gt;</summary>'
        '<content type="html">&lt;p&gt;Longer content &amp;amp; more&lt;/p&gt;'
        '&lt;iframe src="v"&gt;&lt;/iframe&gt;</content></entry>'),
    "iso-8859-1": rss(item().replace("Story 1", "Eleição em São Paulo")).replace(b"utf-8", b"ISO-8859-1").decode(
        "utf-8").encode("iso-8859-1"),
    "undeclared-windows-1252": rss(item().replace("Story 1", "Notícias “hoje”")).replace(
        b'<?xml version="1.0" encoding="utf-8"?>', b"").decode("utf-8").encode("cp1252"),
    "rss-0.92-no-namespace": rss(item()).replace(b'version="2.0"', b'version="0.92"'),
    "feedburner-origlink": rss(item('<feedburner:origLink>https://origin.example/a</feedburner:origLink>'),
                               namespaces='xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0"'),
    "author-with-email": rss(item("<author>jane@example.org (Jane Roe)</author><category>World</category>"
                                  '<category domain="x">world</category>')),
    "syndication-footer": rss(item().replace("Text of story 1.", "Story. This article originally appeared in "
                                             "The Example Times.")),
}


@pytest.mark.parametrize("body", TAKES.values(), ids=TAKES.keys())
def test_odd_but_understood_input_is_taken_and_identical(body: bytes) -> None:
    assert_same_as_feedparser(body)


def test_undeclared_windows_1252_gives_feedparsers_warning() -> None:
    body = TAKES["undeclared-windows-1252"]
    parsed = assert_same_as_feedparser(body)
    assert "windows-1252" in parsed.warning
    assert parsed.entries[0].title == "Notícias “hoje”"


def test_content_under_another_prefix_is_found() -> None:
    parsed = assert_same_as_feedparser(TAKES["other-content-prefix"])
    assert "Full text" in parsed.entries[0].content


# --------------------------------------------------------------------------- generated variations

_PIECES = [
    "Hello world.", " ", "\n\n", "AT&T", "AT&amp;T", "&nbsp;", "&copy;", "&copy 2020", "&#8217;", "&#150;", "&foo;",
    "&am ", "&ampx", "& ", "&lt;b&gt;", "&amp;amp;", "é", "Ã©", "€", "\x96", "<p>", "</p>", "<div>", "</div>", "<br>",
    "<br/>", "</br>", "<b>", "</b>", '<a href="/rel">link</a>', "<a href='x'>y</a>", "<a href=x>z</a>",
    '<span class="ad">Ad text</span>', '<div id="related">Rel</div>', '<p class="a" class="ad">dup</p>',
    "<img src='x.jpg' alt='it's'/>", '<img src="x.jpg" alt="a>b">', "<figure><img src='a.jpg'/><figcaption>Photo: X"
    "</figcaption></figure>", "<ul><li>one</li><li>two</li></ul>", "<table><tr><td>c1</td><td>c2</td></tr></table>",
    '<iframe src="https://y/e"></iframe>', "<iframe>fallback</iframe>", "<iframe src='z'/>", "<script>a=1;</script>",
    '<script src="s.js"></script>', "<style></style>", '<embed src="e">', "<main>M</main>", "<svg><text>S</text></svg>",
    "<o:p>O</o:p>", "<!-- c -->", "<!-- a -- b -->", "<![CDATA[x]]>", "a < b", "a > b", "<p/>", "<wbr>", "<P>Up</P>",
    "<noscript>ns</noscript>", "<video>v</video>", "<font color=red>f</font>", "Advertisement", "<p>Advertisement</p>",
    "This article originally appeared in The Example Times.", "LONDON (Reuters) - Stuff happened.", "Read more",
    "<input value='x'>", "&#39;", "&#34;", "&apos;", "&eacute", "&hellip;", "&NewLine;", "&#65",
]


def _generated_feeds(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        html = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 8)))
        if i % 3 == 0:
            extra = f"<description>{escape(html)}</description>"
        elif i % 3 == 1 and "]]>" not in html:
            extra = f"<content:encoded><![CDATA[{html}]]></content:encoded>"
        else:
            extra = f"<title>{escape(html)}</title>"
        bodies.append(rss(f"<item>{extra}<title>T</title><link>https://example.org/a</link><guid>g</guid></item>"
                          if i % 3 == 2 else item(extra)))
    return bodies


def test_generated_html_is_taken_only_when_the_text_stays_the_same() -> None:
    """Random HTML fragments (entities, broken quotes, elements the sanitiser removes, comments, ...)
    as description, content:encoded and title: whatever the fast path takes reads the same."""
    bodies = _generated_feeds(seed=7, count=600)
    taken = [b for b in bodies if parse_fast(b, url="https://example.org/feed", content_type=None)]
    assert len(taken) > 150  # the variations exercise both sides, not only the fallback
    assert len(taken) < len(bodies)
    for body in taken:
        assert differences(body, url="https://example.org/feed") == [], body


def test_shared_feeds_mutated_stay_identical_or_are_declined() -> None:
    """Each shared RSS 2.0/Atom capture with titles, links, guids, dates, categories and content
    types perturbed: every variation the fast path takes reads the same as feedparser's."""
    rng = random.Random(3)
    mutations = [
        (b"<title>", b"<title>  &amp; "), (b"</title>", b" &lt;i&gt;x&lt;/i&gt;</title>"), (b"<link>", b"<link> /r"),
        (b"GMT</pubDate>", b"+0100</pubDate>"), (b"<guid", b"<guid isPermaLink=\"false\""),
        (b"<category", b"<dc:subject"), (b"</category>", b"</dc:subject>"), (b"Z</updated>", b"-05:30</updated>"),
        (b'type="html"', b'type="text"'),
    ]
    taken = 0
    for path in SHARED:
        if path.name in DECLINED:
            continue
        original = path.read_bytes()
        for _ in range(4):
            body = original
            for old, new in rng.sample(mutations, 3):
                body = body.replace(old, new, rng.randint(1, 5))
            if parse_fast(body, url=_url(path.name), content_type=None) is not None:
                taken += 1
                assert differences(body, url=_url(path.name)) == [], (path.name, body[:200])
    assert taken >= 10


# --------------------------------------------------------------------------- the comparison itself


def test_comparison_names_what_differs() -> None:
    """`differences` is only as good as its comparison: a changed text, date or link is reported."""
    body = (FEEDS / "bbc.rss.xml").read_bytes()
    url = _url("bbc.rss.xml")
    reference = parse_with_feedparser(body, url=url)
    assert compare_parsed(reference, reference, url=url) == []
    first = reference.entries[0]
    changed = dataclasses.replace(
        reference,
        title=reference.title + "!",
        entries=(dataclasses.replace(first, summary=first.summary + "<p>extra</p>", published=None,
                                     published_raw="", link="https://elsewhere.example/a"),
                 *reference.entries[1:]),
    )
    found = "\n".join(compare_parsed(changed, reference, url=url))
    for what in ("feed title", "entry 0 text", "entry 0 published", "entry 0 url", "entry 0 raw link"):
        assert what in found
    shorter = dataclasses.replace(reference, entries=reference.entries[:-1])
    assert any("entry count" in line for line in compare_parsed(shorter, reference, url=url))
