"""A programmable feed server on 127.0.0.1 for integration tests.

Each path serves an RSS 2.0 feed built from the entries the test puts there. It honours
If-None-Match (ETag = hash of the body) and counts requests, so tests can see 304s, failures
(a path can be switched to answer 500 or garbage) and recovery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web


@dataclass
class Entry:
    guid: str
    title: str
    body: str
    link: str = ""
    published: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=1))
    categories: tuple[str, ...] = ()


@dataclass
class Feed:
    title: str
    entries: list[Entry] = field(default_factory=list)
    status: int = 200
    raw: bytes | None = None  # serve these bytes instead of the feed (e.g. garbage)
    etag: bool = True
    requests: int = 0
    conditional_hits: int = 0  # requests answered 304


def rss(feed: Feed, base: str) -> bytes:
    items = []
    for e in feed.entries:
        published = e.published
        link = e.link or f"{base}/articles/{e.guid}"
        cats = "".join(f"<category>{escape(c)}</category>" for c in e.categories)
        items.append(
            f"<item><title>{escape(e.title)}</title><link>{escape(link)}</link>"
            f'<guid isPermaLink="false">{escape(e.guid)}</guid><pubDate>{format_datetime(published)}</pubDate>'
            f"{cats}<description>{escape(e.body)}</description></item>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{escape(feed.title)}</title>'
        f"<link>{escape(base)}</link><description>test</description>{''.join(items)}</channel></rss>"
    ).encode()


class FeedServer:
    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""

    def feed(self, path: str, title: str = "") -> Feed:
        return self.feeds.setdefault(path, Feed(title or path))

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        feed = self.feeds.get(path)
        if feed is None:
            raise web.HTTPNotFound()
        feed.requests += 1
        if feed.status != 200:
            return web.Response(status=feed.status, text="server error")
        body = feed.raw if feed.raw is not None else rss(feed, self.base)
        headers = {}
        if feed.etag:
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers["ETag"] = etag
            if request.headers.get("If-None-Match") == etag:
                feed.conditional_hits += 1
                return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers, content_type="application/rss+xml")

    async def start(self) -> FeedServer:
        app = web.Application()
        app.router.add_get("/{path}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
