"""``tagwire demo``: a self-contained, offline tour.

Serves three small sample feeds written for this project (invented outlets, invented news) on
127.0.0.1, runs the real bot against them with a console destination, and publishes new items
over about a minute: a new story (alert), another outlet's coverage of it (thread reply), a
syndicated copy (the alert is updated: "also reported by"), a second tag's story, an item the
query excludes, and a follow-up. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

from bot.config import config_from_dict


@dataclass(frozen=True)
class DemoItem:
    outlet: str
    guid: str
    title: str
    body: str
    category: str
    at: float  # seconds after start when it is published; < 0: already there at the first fetch


OUTLETS = {
    "harbour": "Harbour Daily",
    "mekong": "Mekong Wire",
    "ledger": "Northern Ledger",
}

_LIU_BODY = (
    "<p>Liu Zhongyi, the port authority chair, announced on Tuesday that the eastern container terminal "
    "will close for three weeks of flood repairs after last month's storm surge.</p>"
    "<p>Shipping lines were told to divert vessels to the western quays, where extra night shifts will run "
    "until the terminal reopens. Liu said the repair bill would be shared with the provincial government.</p>"
    "<p>Advertisement</p>"
    "<p>Dock workers' representatives welcomed the extra shifts but asked for guarantees on overtime pay "
    "during the closure.</p>"
)

ITEMS: list[DemoItem] = [
    # already in the feeds at the first fetch: the baseline, stored but not alerted
    DemoItem("harbour", "hd-100", "Ferry timetable changes for the winter season",
             "<p>The harbour ferry will run every forty minutes from November, the operator said.</p>",
             "Transport", -3600),
    DemoItem("mekong", "mw-200", "Rice exports rise for a third month",
             "<p>Exporters shipped more rice in October than in any month since spring, trade data showed.</p>",
             "Business", -5400),
    DemoItem("ledger", "nl-300", "City council approves new cycle lanes",
             "<p>The council voted to add twelve kilometres of protected cycle lanes by next summer.</p>",
             "Local", -7200),
    # the timeline
    DemoItem("harbour", "hd-101", "Liu Zhongyi orders three-week closure of eastern container terminal",
             _LIU_BODY, "Ports", 6),
    DemoItem("mekong", "mw-201", "Port chief Liú Zhōngyì: western quays to take diverted ships during repairs",
             "<p>Diverted container ships will berth at the western quays from next week, port chief Liú "
             "Zhōngyì told reporters, as repairs begin at the storm-damaged eastern terminal.</p>"
             "<p>Freight forwarders warned of delays of two to three days for some cargo while the terminal "
             "is closed.</p>", "Ports", 14),
    DemoItem("ledger", "nl-301", "Liu Zhongyi orders three-week closure of eastern container terminal",
             _LIU_BODY + "<p>This article originally appeared in Harbour Daily.</p>", "Syndicated", 22),
    DemoItem("mekong", "mw-202", "Police raid scam centres near Myanmar border, free 40 workers",
             "<p>Police raided two compounds used as scam centres close to the Myanmar border on Thursday and "
             "freed forty workers who said they had been forced to run online fraud schemes.</p>"
             "<p>Officers seized phones and laptops and arrested six suspected managers.</p>",
             "Crime", 30),
    DemoItem("harbour", "hd-102", "Myanmar beat Laos 2-0 as scam centres row overshadows sport",
             "<p>Myanmar's footballers won 2-0 in a friendly overshadowed by protests over scam centres.</p>",
             "sport", 38),
    DemoItem("ledger", "nl-302", "Freed workers from Myanmar scam centres describe months of forced fraud",
             "<p>Workers freed from scam centres near the Myanmar border this week described months of forced "
             "work running online fraud, as police widened the raid on the compounds.</p>"
             "<p>Several said their passports had been taken on arrival.</p>", "Crime", 46),
]

SUBSCRIPTIONS = [
    ("console:#news", "#LiuZhongyi"),
    ("console:#asia", '"scam centres" AND Myanmar -sport'),
]


def render_feed(outlet: str, items: list[DemoItem], start: datetime, base_url: str) -> bytes:
    """An RSS 2.0 document for one outlet with the items published so far, newest first."""
    entries = []
    for it in sorted(items, key=lambda i: i.at, reverse=True):
        published = start + timedelta(seconds=it.at)
        link = f"{base_url}/{outlet}/articles/{it.guid}?utm_source=rss&utm_medium=feed"
        entries.append(
            "<item>"
            f"<title>{escape(it.title)}</title>"
            f"<link>{escape(link)}</link>"
            f'<guid isPermaLink="false">{escape(it.guid)}</guid>'
            f"<pubDate>{format_datetime(published)}</pubDate>"
            f"<category>{escape(it.category)}</category>"
            f"<description>{escape(it.body)}</description>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{escape(OUTLETS[outlet])}</title><link>{escape(base_url)}/{outlet}/</link>"
        f"<description>Demo feed</description>{''.join(entries)}</channel></rss>"
    ).encode()


class DemoFeeds:
    """The sample feeds on 127.0.0.1; items appear when their time comes."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.start = datetime.now(UTC)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def elapsed(self) -> float:
        return (datetime.now(UTC) - self.start).total_seconds() * self.speed

    def published(self, outlet: str) -> list[DemoItem]:
        now = self.elapsed()
        return [it for it in ITEMS if it.outlet == outlet and it.at <= now]

    async def _feed(self, request: web.Request) -> web.Response:
        outlet = request.match_info["outlet"]
        if outlet not in OUTLETS:
            raise web.HTTPNotFound()
        body = render_feed(outlet, self.published(outlet), self.start, self.base_url)
        return web.Response(body=body, content_type="application/rss+xml")

    async def start_server(self) -> str:
        app = web.Application()
        app.router.add_get("/{outlet}/feed.xml", self._feed)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def demo_config(base_url: str, db_path: str, jsonl: str | None, interval: float) -> dict[str, object]:
    return {
        "storage": {"path": db_path},
        "fetch": {"allow_private_addresses": True, "default_interval": interval, "min_interval": 0.2},
        "sources": [{"name": name, "url": f"{base_url}/{key}/feed.xml"} for key, name in OUTLETS.items()],
        "console": {"enabled": True, "jsonl": jsonl},
        "subscriptions": [{"destination": d, "query": q} for d, q in SUBSCRIPTIONS],
    }


async def run_demo(speed: float = 1.0, jsonl: str | None = None, out: object = None) -> int:
    from adapters.console import ConsoleAdapter
    from bot.app import Tagwire

    stream = out or sys.stdout
    feeds = DemoFeeds(speed)
    base = await feeds.start_server()
    say = stream.write  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="tagwire-demo-") as tmp:
        cfg = config_from_dict(demo_config(base, str(Path(tmp) / "demo.db"), jsonl, max(0.2, 2.0 / speed)))
        app = await Tagwire.create(cfg, adapters=[ConsoleAdapter(jsonl=jsonl, stream=stream)])  # type: ignore[arg-type]
        say(f"Tagwire demo: three sample feeds on {base}, polled every {cfg.fetch.default_interval:g}s.\n")
        for dest, query in SUBSCRIPTIONS:
            say(f"  {dest} follows {query}\n")
        say("The first fetch of each feed is a baseline (stored, searchable, not posted). Watch:\n\n")
        runner = asyncio.create_task(app.run())
        try:
            # the timeline starts once every feed has had its baseline fetch
            for _ in range(200):
                if all(s.baseline_done for s in await app.core.store.all_sources()):
                    break
                await asyncio.sleep(0.05)
            feeds.start = datetime.now(UTC)
            for it in sorted((i for i in ITEMS if i.at >= 0), key=lambda i: i.at):
                delay = it.at / speed - feeds.elapsed() / speed
                if delay > 0:
                    await asyncio.sleep(delay)
                say(f"[demo] {OUTLETS[it.outlet]} publishes: {it.title}\n")
            await asyncio.sleep(max(1.0, 6.0 / speed))
        finally:
            app.stop()
            await runner
            counts = await app.core.store.delivery_counts()
            await app.close()
            await feeds.stop()
        say(f"\nDemo finished: {counts.get('sent', 0)} messages posted. Next: copy config.example.toml to "
            "tagwire.toml and run `tagwire run`.\n")
    return 0
