"""Parse stage: feed bytes -> `ParsedFeed` of typed `RawEntry` records.

Pure and synchronous (feedparser is CPU-bound; the caller runs `parse_feed` in a thread).
feedparser is only ever handed an in-memory stream, never a URL or a string, so it cannot
fetch anything or read a local file named by a hostile body. The feed URL is passed as the
``Content-Location`` header so that feedparser resolves relative links against it.

`RawEntry` keeps what the feed said (HTML left in place, dates as feedparser parsed them,
plus the raw date strings for a fallback); `bot.normalise` turns it into an `Item`.

feedparser is the reference parser. `parse_feed` first tries `bot.parse_fast` (lxml), which
handles plain well-formed RSS 2.0 and Atom 1.0 and declines (None) anything it cannot reproduce
exactly; feedparser parses everything it declines. ``ParsedFeed.parser`` says which one ran.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import feedparser

log = logging.getLogger("tagwire.parse")

__all__ = ["FeedParseError", "ParsedFeed", "RawEntry", "parse_feed", "parse_with_feedparser"]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_FEED_LINK_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml",
                              "application/feed+json", "application/xml", "text/xml"})


class FeedParseError(ValueError):
    """The body is not a feed at all (HTML page, garbage, empty).

    ``feed_links``: for an HTML page that advertises feeds (``<link rel="alternate"
    type="application/rss+xml">``), their absolute URLs, so the user can be told which URL to use.
    """

    def __init__(self, message: str, *, feed_links: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.feed_links = feed_links


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One feed entry as the feed gave it (text fields may hold HTML; nothing is cleaned yet)."""

    id: str = ""
    link: str = ""  # absolute when feedparser could resolve it; FeedBurner's origLink preferred
    title: str = ""
    summary: str = ""  # <description>/<summary>, usually HTML
    content: str = ""  # longest <content:encoded>/<content>, usually HTML; "" if none
    published: time.struct_time | None = None  # UTC, as feedparser parsed it
    published_raw: str = ""
    updated: time.struct_time | None = None  # UTC
    updated_raw: str = ""
    tags: tuple[str, ...] = ()
    author: str = ""

    @classmethod
    def from_feedparser(cls, entry: Mapping[str, Any], *, version: str = "") -> RawEntry:
        """Build from one of feedparser's entry dicts.

        ``version`` is feedparser's feed version ("rss20", "atom10", ...). In RSS feeds a
        ``text/plain`` content value comes from ``media:description`` and similar elements
        (photo captions, e.g. the New York Times feed), not from the article, so it is ignored.
        """
        is_rss = version.startswith("rss")
        content = ""
        for part in entry.get("content") or ():
            value = _str(part.get("value"))
            ctype = _str(part.get("type")).lower()
            if is_rss and ctype not in _HTML_TYPES:
                continue
            if len(value) > len(content):
                content = value
        link = _str(entry.get("feedburner_origlink")) or _str(entry.get("link"))
        if not link:
            for candidate in entry.get("links") or ():
                if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
                    link = _str(candidate.get("href"))
                    break
        tags: list[str] = []
        for tag in entry.get("tags") or ():
            term = _str(tag.get("term")) or _str(tag.get("label"))
            if term:
                tags.append(term)
        author_detail = entry.get("author_detail") or {}
        author = _str(author_detail.get("name")) or _str(entry.get("author"))
        return cls(
            id=_str(entry.get("id")).strip(),
            link=link.strip(),
            title=_str(entry.get("title")),
            summary=_str(entry.get("summary")),
            content=content,
            published=_struct(entry.get("published_parsed")),
            published_raw=_str(entry.get("published")),
            # `in` first: feedparser's .get("updated") falls back to "published" with a warning.
            updated=_struct(entry["updated_parsed"]) if "updated_parsed" in entry else None,
            updated_raw=_str(entry["updated"]) if "updated" in entry else "",
            tags=tuple(tags),
            author=author.strip(),
        )


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed: its title, its entries in feed order, and hints for the scheduler."""

    title: str
    entries: tuple[RawEntry, ...]
    ttl: int | None = None  # RSS <ttl> in seconds, if present and sane
    link: str = ""  # the site's home page, if given
    version: str = ""  # feedparser's name for the format: rss20, rss10, atom10, ...
    warning: str = ""  # a minor problem feedparser tolerated (bozo), "" if none
    parser: str = "feedparser"  # which parser produced it: "fast" (bot.parse_fast) or "feedparser"


def parse_feed(body: bytes, *, url: str, content_type: str | None = None, fast: bool = True) -> ParsedFeed:
    """Parse a fetched body. Raises `FeedParseError` if it is not a feed.

    A feed with a minor error that still yields entries (undefined entity, wrong declared
    encoding) is accepted; its problem is reported in ``warning``. A well-formed feed with
    no entries is accepted too (an empty feed is still a feed).

    ``fast``: try the lxml fast path first (same result, several times cheaper); feedparser
    parses whatever it declines, and everything when ``fast`` is False.
    """
    if not body or not body.strip():
        raise FeedParseError("empty response body: not a feed")
    if fast:
        fast_parse = _fast_parser()
        if fast_parse is not None:
            try:
                parsed = fast_parse(body, url=url, content_type=content_type)
            except Exception:  # any failure of the fast path only means "ask feedparser"
                parsed = None
            if parsed is not None:
                return parsed
    return parse_with_feedparser(body, url=url, content_type=content_type)


def parse_with_feedparser(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """`parse_feed` with the reference parser only (feedparser), never the fast path."""
    if not body or not body.strip():
        raise FeedParseError("empty response body: not a feed")
    # No Content-Location: feedparser would also "resolve" Atom ids against it, changing GUIDs.
    # Relative entry links are resolved by `bot.normalise` against the feed URL instead.
    headers = {"content-type": content_type} if content_type else {}
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers,
                              resolve_relative_uris=True, sanitize_html=True)
    version = _str(parsed.get("version"))
    raw_entries = parsed.get("entries") or []
    feed = parsed.get("feed") or {}
    bozo = parsed.get("bozo_exception") if parsed.get("bozo") else None

    if not version and not any(e.get("title") or e.get("link") for e in raw_entries):
        links = _advertised_feeds(feed, url)
        head = body.lstrip()[:512].lower()
        if links:
            raise FeedParseError(f"not a feed: an HTML page that links to the feed(s) {', '.join(links)}",
                                 feed_links=links)
        if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
            raise FeedParseError("not a feed: an HTML page")
        reason = f" ({bozo})" if bozo else ""
        raise FeedParseError(f"not a feed: no RSS, RDF or Atom document found{reason}")

    return build_parsed_feed(feed, raw_entries, version=version, bozo=bozo, content_type=content_type,
                             parser="feedparser")


def build_parsed_feed(feed: Mapping[str, Any], raw_entries: list[Any], *, version: str, bozo: object,
                      content_type: str | None, parser: str) -> ParsedFeed:
    """A `ParsedFeed` from feedparser-shaped data (its ``feed`` dict and entry dicts).

    Shared by both parsers so that the mapping to `RawEntry` cannot drift between them."""
    entries = tuple(RawEntry.from_feedparser(e, version=version) for e in raw_entries)
    return ParsedFeed(
        title=" ".join(_str(feed.get("title")).split()),
        entries=entries,
        ttl=_ttl_seconds(feed.get("ttl")),
        link=_str(feed.get("link")),
        version=version,
        warning=_warning(bozo, content_type),
        parser=parser,
    )


_FAST: list[Callable[..., ParsedFeed | None] | None] = []


def _fast_parser() -> Callable[..., ParsedFeed | None] | None:
    """`bot.parse_fast.parse_fast`, imported on first use; None if it cannot be imported (it leans
    on feedparser internals, so a feedparser upgrade may break it: feedparser then parses alone)."""
    if not _FAST:
        try:
            from bot.parse_fast import parse_fast
        except Exception as error:  # any import problem: feedparser alone
            log.warning("fast feed parser unavailable; feedparser parses every feed",
                        extra={"error": f"{type(error).__name__}: {error}"})
            _FAST.append(None)
        else:
            _FAST.append(parse_fast)
    return _FAST[0]


def _warning(bozo: object, content_type: str | None) -> str:
    if not bozo:
        return ""
    if content_type is None and "content-type" in str(bozo).lower():
        return ""  # the caller gave no headers; nothing to report
    return str(bozo)[:300]


def _advertised_feeds(feed: Mapping[str, Any], base: str) -> tuple[str, ...]:
    found: list[str] = []
    for link in feed.get("links") or ():
        if link.get("rel") == "alternate" and _str(link.get("type")).lower() in _FEED_LINK_TYPES:
            href = _str(link.get("href")).strip()
            if href:
                absolute = urljoin(base, href)
                if absolute.startswith(("http://", "https://")) and absolute not in found:
                    found.append(absolute)
    return tuple(found[:5])


def _ttl_seconds(value: object) -> int | None:
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60 if minutes > 0 else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _struct(value: object) -> time.struct_time | None:
    return value if isinstance(value, time.struct_time) else None
