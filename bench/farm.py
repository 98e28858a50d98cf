"""The feed farm: N distinct feeds on 127.0.0.1 that behave like real news feeds.

    python -m bench.farm --feeds 1000 [--share 0.1] [--round 20] [--ports 64] [--cpu 1]

Each feed holds its newest ``items`` (default 50) entries, with HTML descriptions built from real
headlines (shared/data/stories) and real feed text (shared/data/feeds): 30-80 KB per feed, two feeds
in three RSS 2.0 (some with ``content:encoded``), one in three Atom, RFC 822 / RFC 3339 dates.
Every item is a pure function of (seed, feed, sequence number), so the bench can compute what the
farm serves without asking it (the seeded store, the latency bookkeeping).

Time is cut into rounds of ``round`` seconds from ``start`` (given, or set by ``POST /_start``).
In each round a share ``share`` of the feeds, drawn afresh every round, gains 1-3 new items at a
moment inside the round; before ``start`` every feed shows its first ``items`` entries, dated
back from ``epoch`` every 25 minutes. A small share of items are syndicated
copies of another feed's item (same title and text, another URL), as news wires produce.

HTTP: ``GET /feeds/{n}.xml`` (any of the listening ports serves any feed; the bench spreads
feeds over the ports so that the fetcher's per-host limit applies as it would to many sites).
``ETag`` is ``"{n:x}-{seq}"`` (seq = number of items the feed ever published) and ``Last-Modified``
the time of the latest change; ``If-None-Match`` / ``If-Modified-Since`` are honoured with 304;
bodies are gzipped when the client accepts it. ``GET /_stats`` returns request counters as JSON.

Run as a process of its own (`FarmProcess`), pinned to another CPU than the bot where possible.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import html
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MASK64 = (1 << 64) - 1
INITIAL_SPACING = 1500.0  # seconds between the initial items' publication dates

_TAGS = re.compile(r"<[^>]+>")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")

# used only when shared/data is not there (the farm must still serve something sensible)
_FALLBACK_HEADLINES = [
    ("Port authority closes eastern terminal for flood repairs", "Harbour Daily"),
    ("Central bank holds rates as inflation cools", "Northern Ledger"),
    ("Rice exports rise for a third month", "Mekong Wire"),
    ("City council approves new cycle lanes", "Northern Ledger"),
    ("Storm surge damages coastal defences", "Harbour Daily"),
]
_FALLBACK_SENTENCES = [
    "Officials said the work would take three weeks and cost more than expected.",
    "Shipping lines were told to divert vessels to the western quays.",
    "The decision was welcomed by business groups but criticised by unions.",
    "Analysts expect the figures to be revised next month.",
    "Residents were asked to avoid the area while repairs continue.",
    "The minister said the government would publish a full report in the spring.",
]


def mix(*values: int) -> int:
    """A well-spread 64-bit hash of some integers (splitmix64 steps)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & MASK64)) & MASK64
        h = (h + 0x9E3779B97F4A7C15) & MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
        h ^= h >> 31
    return h


def unit(*values: int) -> float:
    return mix(*values) / float(1 << 64)


@dataclass(frozen=True, slots=True)
class FarmSpec:
    feeds: int
    share: float = 0.1  # share of feeds that gain items in each round
    round_seconds: float = 20.0
    items: int = 50
    epoch: float = 0.0  # the initial items are dated back from here; 0: when the farm starts
    start: float | None = None  # round 0 (epoch seconds); None: no rounds until set (``POST /_start``)
    seed: int = 1
    dup_share: float = 0.02  # items that copy another feed's item (syndication)


@dataclass(slots=True)
class Corpus:
    headlines: list[tuple[str, str]]  # (title, publisher)
    sentences: list[str]

    @classmethod
    def load(cls, data: Path = DATA) -> Corpus:
        headlines: list[tuple[str, str]] = []
        for path in sorted((data / "stories").glob("*.csv")):
            with path.open(newline="", encoding="utf-8") as f:
                headlines.extend((row["TITLE"], row["PUBLISHER"]) for row in csv.DictReader(f))
        sentences: list[str] = []
        feeds = sorted((data / "feeds").glob("*.xml"))
        if feeds:
            import feedparser

            for path in feeds:
                for entry in feedparser.parse(path.read_bytes()).entries:
                    text = " ".join(html.unescape(_TAGS.sub(" ", entry.get("summary", ""))).split())
                    sentences.extend(s for s in _SENTENCE.split(text) if 40 <= len(s) <= 400)
        # headlines read as sentences too (news text repeats its own and related headlines)
        sentences.extend(t.rstrip(".") + "." for t, _ in headlines[::3] if len(t) > 30)
        return cls(headlines or list(_FALLBACK_HEADLINES), sentences or list(_FALLBACK_SENTENCES))


class Farm:
    """The farm's state and content; `app()` wraps it in an aiohttp application."""

    def __init__(self, spec: FarmSpec, corpus: Corpus | None = None) -> None:
        self.spec = spec
        self.corpus = corpus or Corpus.load()
        self.epoch = spec.epoch or time.time()
        self.start = spec.start if spec.start is not None else float("inf")
        n = spec.feeds
        self._seq = [spec.items] * n
        self._next_round = [0] * n
        self._last_change = [self.epoch - INITIAL_SPACING] * n
        self._changes: dict[int, list[tuple[int, float]]] = {}  # feed -> [(seq after change, when)]
        self._bodies: OrderedDict[tuple[int, int, bool], bytes] = OrderedDict()
        self.max_cached_bodies = 2048
        self.base = "http://127.0.0.1"
        self.stats = {"requests": 0, "full": 0, "not_modified": 0, "bytes": 0}

    # -- what a feed holds at a given time --------------------------------------------------------
    def change(self, feed: int, rnd: int) -> tuple[bool, float, int]:
        """Does ``feed`` change in round ``rnd``; when; how many items it gains."""
        s = self.spec
        h = mix(s.seed, feed, rnd)
        changed = (h & 0xFFFFFFFF) / float(1 << 32) < s.share
        at = self.start + (rnd + ((h >> 32) & 0xFFFF) / 65536.0) * s.round_seconds
        return changed, at, 1 + (h >> 48) % 3

    def state(self, feed: int, now: float) -> tuple[int, float]:
        """(seq, last change time) of ``feed`` at ``now``; advances the feed lazily."""
        rs = self.spec.round_seconds
        while True:
            rnd = self._next_round[feed]
            if self.start + rnd * rs > now:
                break
            changed, at, gained = self.change(feed, rnd)
            if changed:
                if at > now:
                    break  # this round's change has not happened yet
                self._seq[feed] += gained
                self._last_change[feed] = at
                hist = self._changes.setdefault(feed, [])
                hist.append((self._seq[feed], at))
                if len(hist) > self.spec.items + 1:
                    del hist[0]
            self._next_round[feed] = rnd + 1
        return self._seq[feed], self._last_change[feed]

    def published(self, feed: int, seq: int) -> float:
        items = self.spec.items
        if seq <= items:
            return self.epoch - (items - seq + 1) * INITIAL_SPACING
        for after, at in self._changes.get(feed, ()):
            if after >= seq:
                return at
        return self._last_change[feed]

    # -- content ----------------------------------------------------------------------------------
    def etag(self, feed: int, seq: int) -> str:
        return f'"{feed:x}-{seq}"'

    @staticmethod
    def parse_etag(etag: str | None) -> tuple[int, int] | None:
        if not etag:
            return None
        try:
            f, _, s = etag.strip().strip("W/").strip('"').partition("-")
            return int(f, 16), int(s)
        except ValueError:
            return None

    def feed_path(self, feed: int) -> str:
        return f"/feeds/{feed}.xml"

    def article_url(self, feed: int, seq: int) -> str:
        return f"{self.base}/a/{feed}/{seq}"

    @staticmethod
    def parse_article_url(url: str) -> tuple[int, int] | None:
        m = re.search(r"/a/(\d+)/(\d+)", url)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def guid(self, feed: int, seq: int) -> str:
        return f"tag:farm.example,2024:{feed}-{seq}" if self.is_atom(feed) else f"farm-{feed}-{seq}"

    def is_atom(self, feed: int) -> bool:
        return feed % 3 == 2

    def outlet(self, feed: int) -> str:
        _, publisher = self.corpus.headlines[mix(self.spec.seed, feed, 7) % len(self.corpus.headlines)]
        return f"{publisher} {feed}"

    def content(self, feed: int, seq: int) -> tuple[str, str, list[str]]:
        """(title, description HTML, categories) of an item; copies take another feed's content."""
        s = self.spec
        if s.feeds > 1 and unit(s.seed, feed, seq, 3) < s.dup_share:
            feed = (feed + 1 + mix(s.seed, feed, seq, 4) % (s.feeds - 1)) % s.feeds
        rng = random.Random(mix(s.seed, feed, seq))
        c = self.corpus
        title, publisher = c.headlines[rng.randrange(len(c.headlines))]
        paragraphs: list[str] = []
        lead = f"{html.escape(title)}, {html.escape(publisher)} reported on {['Monday', 'Tuesday', 'Friday'][seq % 3]}."
        paragraphs.append(f"<p>{lead} {html.escape(rng.choice(c.sentences))}</p>")
        if rng.random() < 0.4:
            paragraphs.append(
                f'<figure><img src="{self.base}/img/{feed}/{seq}.jpg" alt="photo"/>'
                f"<figcaption>Photo: {html.escape(publisher)} / Reuters</figcaption></figure>"
            )
        target = rng.randint(350, 1100)
        size = sum(len(p) for p in paragraphs)
        while size < target:
            sentences = [html.escape(rng.choice(c.sentences)) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.3:
                sentences[0] = f'<a href="{self.base}/a/{feed}/{rng.randrange(1, seq + 1)}">{sentences[0]}</a>'
            if rng.random() < 0.15:
                sentences[-1] = f"<strong>{sentences[-1]}</strong>"
            p = f"<p>{' '.join(sentences)}</p>"
            paragraphs.append(p)
            size += len(p)
            if rng.random() < 0.05:
                paragraphs.append("<p>Advertisement</p>")
        categories = [["World", "Business", "Politics", "Technology", "Health"][rng.randrange(5)]]
        return title, "".join(paragraphs), categories

    def render(self, feed: int, seq: int) -> bytes:
        items = self.spec.items
        first = max(1, seq - items + 1)
        outlet = escape(self.outlet(feed))
        home = f"{self.base}/site/{feed}/"
        parts: list[str] = []
        if self.is_atom(feed):
            updated = datetime.fromtimestamp(self.published(feed, seq), UTC).isoformat(timespec="seconds")
            parts.append(
                '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">'
                f"<title>{outlet}</title><id>tag:farm.example,2024:feed-{feed}</id>"
                f'<link rel="alternate" href="{home}"/><link rel="self" href="{self.base}{self.feed_path(feed)}"/>'
                f"<updated>{updated}</updated>"
            )
            for s in range(seq, first - 1, -1):
                title, body, cats = self.content(feed, s)
                when = datetime.fromtimestamp(self.published(feed, s), UTC).isoformat(timespec="seconds")
                parts.append(
                    f"<entry><title>{escape(title)}</title><id>{self.guid(feed, s)}</id>"
                    f'<link rel="alternate" href="{escape(self.article_url(feed, s))}'
                    '?utm_source=atom&amp;utm_medium=feed"/>'
                    f"<published>{when}</published><updated>{when}</updated>"
                    f"<author><name>Staff reporter</name></author>"
                    + "".join(f'<category term="{escape(c)}"/>' for c in cats)
                    + f'<summary type="html">{escape(body)}</summary></entry>'
                )
            parts.append("</feed>")
        else:
            full = feed % 5 == 0  # some RSS feeds carry a teaser plus content:encoded
            last = format_datetime(datetime.fromtimestamp(self.published(feed, seq), UTC), usegmt=True)
            parts.append(
                '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
                'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
                'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
                f"<title>{outlet}</title><link>{home}</link><description>News from {outlet}</description>"
                f"<language>en</language><lastBuildDate>{last}</lastBuildDate>"
            )
            for s in range(seq, first - 1, -1):
                title, body, cats = self.content(feed, s)
                when = format_datetime(datetime.fromtimestamp(self.published(feed, s), UTC), usegmt=True)
                if full:
                    teaser = escape(_TAGS.sub("", body)[:200])
                    desc = f"<description>{teaser}</description><content:encoded><![CDATA[{body}]]></content:encoded>"
                else:
                    desc = f"<description>{escape(body)}</description>"
                parts.append(
                    f"<item><title>{escape(title)}</title>"
                    f"<link>{escape(self.article_url(feed, s))}?utm_source=rss&amp;utm_campaign=feed</link>"
                    f'<guid isPermaLink="false">{self.guid(feed, s)}</guid><pubDate>{when}</pubDate>'
                    f"<dc:creator>Staff reporter</dc:creator>"
                    + "".join(f"<category>{escape(c)}</category>" for c in cats)
                    + f"{desc}</item>"
                )
            parts.append("</channel></rss>")
        return "".join(parts).encode("utf-8")

    def body(self, feed: int, seq: int, gz: bool) -> bytes:
        key = (feed, seq, gz)
        cached = self._bodies.get(key)
        if cached is not None:
            self._bodies.move_to_end(key)
            return cached
        data = self.render(feed, seq)
        if gz:
            data = gzip.compress(data, compresslevel=6, mtime=0)
        self._bodies[key] = data
        while len(self._bodies) > self.max_cached_bodies:
            self._bodies.popitem(last=False)
        return data

    # -- HTTP -------------------------------------------------------------------------------------
    async def serve_feed(self, request: web.Request) -> web.StreamResponse:
        try:
            feed = int(request.match_info["n"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= feed < self.spec.feeds:
            raise web.HTTPNotFound()
        self.stats["requests"] += 1
        seq, changed_at = self.state(feed, time.time())
        etag = self.etag(feed, seq)
        last_modified = format_datetime(datetime.fromtimestamp(int(changed_at), UTC), usegmt=True)
        headers = {"ETag": etag, "Last-Modified": last_modified}
        if self._not_modified(request, etag, int(changed_at)):
            self.stats["not_modified"] += 1
            return web.Response(status=304, headers=headers)
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        data = self.body(feed, seq, gz)
        if gz:
            headers["Content-Encoding"] = "gzip"
        ctype = "application/atom+xml" if self.is_atom(feed) else "application/rss+xml"
        headers["Content-Type"] = f"{ctype}; charset=utf-8"
        self.stats["full"] += 1
        self.stats["bytes"] += len(data)
        return web.Response(body=data, headers=headers)

    @staticmethod
    def _not_modified(request: web.Request, etag: str, changed_at: int) -> bool:
        inm = request.headers.get("If-None-Match")
        if inm is not None:
            return any(tag.strip() in (etag, "*", "W/" + etag) for tag in inm.split(","))
        ims = request.headers.get("If-Modified-Since")
        if ims:
            try:
                return changed_at <= int(parsedate_to_datetime(ims).timestamp())
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
        return False

    async def serve_stats(self, request: web.Request) -> web.Response:
        start = None if self.start == float("inf") else self.start
        return web.json_response({**self.stats, "spec": asdict(self.spec), "epoch": self.epoch, "start": start})

    async def serve_start(self, request: web.Request) -> web.Response:
        """Start the rounds now (or at ``?at=epoch seconds``); only once."""
        if self.start != float("inf"):
            raise web.HTTPConflict(text="rounds already started")
        self.start = float(request.query.get("at") or time.time())
        return web.json_response({"start": self.start})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/feeds/{n}.xml", self.serve_feed)
        app.router.add_get("/_stats", self.serve_stats)
        app.router.add_post("/_start", self.serve_start)
        return app


async def serve(farm: Farm, ports: int, host: str = "127.0.0.1") -> tuple[web.AppRunner, list[int]]:
    """Listen on ``ports`` ephemeral ports of ``host``; returns the runner and the port numbers."""
    runner = web.AppRunner(farm.app(), access_log=None)
    await runner.setup()
    bound: list[int] = []
    for _ in range(ports):
        site = web.TCPSite(runner, host, 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        bound.append(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    farm.base = f"http://{host}:{bound[0]}"
    return runner, bound


def peak_rss_mb() -> float:
    """This process's own peak RSS: ``VmHWM``, the high-water mark of its address space. Not
    ``ru_maxrss``: on Linux a child starts with its parent's high-water mark (the orchestrator's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def pin_to_cpu(cpu: int | None) -> int | None:
    """Pin this process to one CPU if the OS allows it and the CPU is ours; returns it or None."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2 or cpu not in allowed:
        return None
    os.sched_setaffinity(0, {cpu})
    return cpu


class FarmProcess:
    """The farm in a child process (``python -m bench.farm``); use as a context manager."""

    def __init__(self, spec: FarmSpec, *, ports: int = 64, cpu: int | None = 1) -> None:
        self.spec = spec
        self.ports_wanted = ports
        self.cpu = cpu
        self.proc: subprocess.Popen[str] | None = None
        self.ports: list[int] = []
        self.pinned: int | None = None
        self.epoch = spec.epoch

    def __enter__(self) -> FarmProcess:
        s = self.spec
        args = [
            sys.executable, "-m", "bench.farm", "--feeds", str(s.feeds), "--share", str(s.share),
            "--round", str(s.round_seconds), "--items", str(s.items), "--epoch", repr(s.epoch),
            "--seed", str(s.seed), "--dup-share", str(s.dup_share), "--ports", str(self.ports_wanted),
        ]
        if s.start is not None:
            args += ["--start", repr(s.start)]
        if self.cpu is not None:
            args += ["--cpu", str(self.cpu)]
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env, cwd=root)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise RuntimeError(f"feed farm did not start (exit code {self.proc.returncode})")
        info = json.loads(line)
        self.ports = info["ports"]
        self.pinned = info["cpu"]
        self.epoch = info["epoch"]
        return self

    def url(self, feed: int) -> str:
        return f"http://127.0.0.1:{self.ports[feed % len(self.ports)]}/feeds/{feed}.xml"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.base}/_stats", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the farm exits when its stdin closes
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


async def _main_async(args: argparse.Namespace) -> None:
    spec = FarmSpec(
        feeds=args.feeds, share=args.share, round_seconds=args.round, items=args.items,
        epoch=args.epoch or time.time(), start=args.start, seed=args.seed, dup_share=args.dup_share,
    )
    cpu = pin_to_cpu(args.cpu)
    farm = Farm(spec)
    runner, ports = await serve(farm, args.ports)
    print(json.dumps({"ports": ports, "cpu": cpu, "epoch": farm.epoch, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not sys.stdin.isatty():
        # the parent closes our stdin to stop us (and if the parent dies, so do we)
        loop.run_in_executor(None, lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)))
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description="Serve a farm of realistic feeds on 127.0.0.1.")
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--share", type=float, default=0.1, help="share of feeds changed per round")
    ap.add_argument("--round", type=float, default=20.0, help="round length in seconds")
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--epoch", type=float, default=0.0, help="initial items are dated back from here (default: now)")
    ap.add_argument("--start", type=float, default=None,
                    help="round 0 in epoch seconds (default: when POST /_start is received)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dup-share", type=float, default=0.02)
    ap.add_argument("--ports", type=int, default=64)
    ap.add_argument("--cpu", type=int, default=None, help="pin the farm to this CPU")
    asyncio.run(_main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
