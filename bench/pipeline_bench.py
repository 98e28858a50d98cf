"""Tagwire end to end against the feed farm, through the real scheduler, fetcher, pipeline and outbox.

Run by ``python -m bench`` in child processes (one per step, so each has its own CPU and memory
accounting), pinned to CPU 0 where possible while the farm runs on CPU 1:

    python -m bench.pipeline_bench seed  --job job.json   # build the store the bot starts from
    python -m bench.pipeline_bench run   --job job.json --out result.json
    python -m bench.pipeline_bench match --job job.json --out result.json

``seed`` writes, with plain SQL into a store created by the real migrations, what a bot that has
been running for a while would hold: the farm's sources (added by everyone, as ``/sources add``
in the console does), each one's ETag / Last-Modified from its last poll and its next poll on its
slot, the subscriptions (spread over 100 channels of the ``null`` platform), and, for the steady
phase, the items every feed showed before round 0 (so the bot knows them, as it would), with the
near-duplicate fingerprints of the newest of them, as many as the bot's index holds (200,000), made
from the farm's real content the way the judge makes them: the bot loads them at start-up, so its
memory is that of a bot whose index is full; and, per source, the digests of the entries of the
body it last processed (`bot.entryspans`), as the bot stores them after every changed poll.

``run`` starts the bot as `bot.app.Tagwire` does (`Core.open`, a `Fetcher`, the `Scheduler`
driven by APScheduler's one-second dispatch tick, the `Outbox` loop), with two bench-only
pieces: `TimedFetcher` (the real `Fetcher`, noting when each response completed) and
`NullAdapter` (platform ``null``: it records when each message reached it and sends nothing).

Detection time of an item: the moment the fetch response of the first poll whose body contained
the item completed (`TimedFetcher.fetch` returned). Latency: from there to `NullAdapter.send`
being called for the item's alert or thread reply ("also reported by" updates are not counted).

``match`` times normalise + match (``document()`` then ``MatchIndex.match()``) per item at
several subscription counts, and the baseline's regex-per-keyword check on the same items.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import resource
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from bench.farm import Corpus, Farm, FarmSpec, peak_rss_mb, pin_to_cpu
from bot.adapter import CommandPort
from bot.fetch import Fetcher, FetchError, FetchResult
from bot.models import MessageKind, OutgoingMessage, SendResult

ROOT = Path(__file__).resolve().parents[1]

CHANNELS = 100
SEEDED_AGE = 3 * 86400.0  # seeded items were first seen this long ago (outside the story window)
SEEDED_FINGERPRINTS = 200_000  # as many as `bot.dedupe.NearDuplicateIndex` keeps by default


def _fingerprint_rows(args: tuple[dict[str, Any], list[tuple[int, int, int]], float]) -> list[tuple[int, float, bytes]]:
    """Fingerprints of seeded items, (item id, feed, seq) each, as the judge would make them."""
    from bot import dedupe
    from bot.normalise import html_to_text, strip_boilerplate

    spec_kw, wanted, seen = args
    farm = _seed_farm(spec_kw)
    rows = []
    for item_id, feed, seq in wanted:
        title, description, _ = farm.content(feed, seq)
        fp = dedupe.fingerprint(title, strip_boilerplate(html_to_text(description)))
        if fp is not None:
            rows.append((item_id, seen, dedupe.fingerprint_to_bytes(fp)))
    return rows


def _fingerprint_cache(job: dict[str, Any], wanted: list[tuple[int, int, int]]) -> Path | None:
    """Where the seeded fingerprints of this farm are kept between runs (``--cache DIR``), named by
    everything they depend on: the farm's content parameters, the items wanted and the code that
    builds and fingerprints them (so a change to any of it makes new ones). None: no cache."""
    if not job.get("cache"):
        return None
    key = hashlib.sha256()
    for module in ("bot/dedupe.py", "bot/normalise.py", "bench/farm.py"):
        key.update((ROOT / module).read_bytes())
    content = {k: v for k, v in job["farm"].items() if k not in ("epoch", "start", "round_seconds", "share")}
    key.update(json.dumps([content, wanted[0], wanted[-1], len(wanted)], sort_keys=True).encode())
    return Path(job["cache"]) / f"fingerprints-{key.hexdigest()[:20]}.pickle"


def _seen_rows(args: tuple[dict[str, Any], str, list[int], int]) -> list[tuple[bytes | None, int]]:
    """What the store keeps of each feed's last processed body (`bot.entryspans.encode`)."""
    from bot import entryspans

    spec_kw, base, feeds, seq = args
    farm = _seed_farm(spec_kw)
    farm.base = base
    return [(entryspans.encode(entryspans.split(farm.render(f, seq))), f + 1) for f in feeds]


_FARMS: dict[str, Farm] = {}


def _seed_farm(spec_kw: dict[str, Any]) -> Farm:
    key = json.dumps(spec_kw, sort_keys=True)
    if key not in _FARMS:
        _FARMS[key] = Farm(FarmSpec(**spec_kw))
    return _FARMS[key]


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def cpu_seconds() -> float:
    """User + system CPU of the whole process (every thread: event loop, parse pool, judge, SQLite)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ------------------------------------------------------------------------------------------------
# bench-only pieces plugged into the real bot


class TimedFetcher(Fetcher):
    """The real `Fetcher`; notes when each response completed and which farm items it held."""

    def __init__(self, *args: Any, items_per_feed: int = 50, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.items_per_feed = items_per_feed
        self.statuses: Counter[str] = Counter()
        self.detected: dict[tuple[int, int], float] = {}

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None,
        previous_hash: str | None = None,
    ) -> FetchResult:
        try:
            result = await super().fetch(url, etag=etag, last_modified=last_modified, previous_hash=previous_hash)
        except FetchError as e:
            self.statuses["error:" + e.kind] += 1
            raise
        done = time.monotonic()
        self.statuses[result.status] += 1
        if result.status == "ok":
            now_ = Farm.parse_etag(result.etag)
            before = Farm.parse_etag(etag)
            if now_ is not None:
                feed, seq = now_
                prev = before[1] if before is not None and before[0] == feed else 0
                for s in range(max(prev, seq - self.items_per_feed) + 1, seq + 1):
                    self.detected.setdefault((feed, s), done)
        return result


@dataclass
class NullAdapter:
    """Platform ``null``: records when each message reached it; sends nothing."""

    fetcher: TimedFetcher
    platform: str = "null"
    counts: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    window_start: float = 0.0
    _n: int = 0

    async def start(self, commands: CommandPort) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        now = time.monotonic()
        self._n += 1
        ref = f"m{self._n}"
        self.counts[message.kind.value] += 1
        if message.kind is MessageKind.UPDATE:
            return SendResult(message_ref=message.target_ref or ref, thread_ref=message.thread_ref)
        key = Farm.parse_article_url(message.url)
        detected = self.fetcher.detected.get(key) if key else None
        if detected is not None and detected >= self.window_start:
            self.latencies.append(now - detected)
        else:
            self.counts["unmeasured"] += 1
        if message.kind is MessageKind.ALERT:
            return SendResult(message_ref=ref, thread_ref=ref)
        return SendResult(message_ref=ref, thread_ref=message.thread_ref)

    async def close(self) -> None:
        return None


# ------------------------------------------------------------------------------------------------
# jobs


def bench_config(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "storage": {"path": job["db"]},
        # the farm is on 127.0.0.1: the SSRF guard refuses loopback addresses unless told otherwise
        "fetch": {
            "allow_private_addresses": True,
            "default_interval": job["interval"],
            "min_interval": 1.0,
            "concurrency": job["concurrency"],
            "per_host_concurrency": job["per_host"],
            "timeout": 30.0,
        },
        "console": {"enabled": False},
        "log_level": "info",
    }


def seed(job: dict[str, Any]) -> dict[str, Any]:
    """Create the store the bot starts from (see the module docstring)."""
    from bot.match import QueryError, parse_query
    from bot.normalise import canonical_url
    from bot.scheduler import next_slot
    from bot.store.sqlite import SQLiteStore

    t0 = time.monotonic()

    async def migrate() -> None:
        store = SQLiteStore(job["db"])
        await store.open()
        await store.close()

    asyncio.run(migrate())
    spec = FarmSpec(**job["farm"])
    farm = Farm(spec, corpus=Corpus([("", "")], [""]))  # content is not needed, only names
    farm.base = job["base"]
    ports: list[int] = job["ports"]
    now = time.time()
    interval = float(job["interval"])
    db = sqlite3.connect(job["db"], isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    n = spec.feeds
    steady = job["phase"] == "steady"
    last_mod = format_datetime(datetime.fromtimestamp(int(farm.epoch - 1500), UTC), usegmt=True)
    src_rows = []
    for f in range(n):
        url = f"http://127.0.0.1:{ports[f % len(ports)]}{farm.feed_path(f)}"
        next_poll = now if not steady else next_slot(url, interval, now)  # the bot re-slots at start
        src_rows.append((
            f + 1, url, f"Farm {f}", "ok", next_poll, now - interval, now - interval,
            farm.etag(f, spec.items) if steady else None, last_mod if steady else None, now - 86400,
        ))
    db.executemany(
        "INSERT INTO sources (id, url, name, state, next_poll, last_poll, last_success, etag, last_modified, "
        "baseline_done, created) VALUES (?,?,?,?,?,?,?,?,?,1,?)",
        src_rows,
    )
    db.executemany(
        "INSERT INTO source_owners (source_id, workspace, name, added_by, created) VALUES (?, '', ?, 'bench', ?)",
        [(r[0], r[2], now) for r in src_rows],
    )
    subs = 0
    sub_rows = []
    for i, q in enumerate(job["queries"]):
        try:
            nf = parse_query(q).normal_form
        except QueryError:
            continue
        sub_rows.append((f"null:#c{i % CHANNELS}", q, nf, now))
    cur = db.executemany(
        "INSERT OR IGNORE INTO subscriptions (destination, workspace, query, normal_form, created_by, created) "
        "VALUES (?, '', ?, ?, 'bench', ?)",
        sub_rows,
    )
    subs = cur.rowcount
    items = fingerprints = 0
    if steady:
        seen = now - SEEDED_AGE
        batch = []
        item_id = 0
        for f in range(n):
            for s in range(1, spec.items + 1):
                item_id += 1
                batch.append((item_id, f + 1, farm.guid(f, s), canonical_url(farm.article_url(f, s)),
                              f"item {f}-{s}", farm.published(f, s), seen, item_id))
            if len(batch) >= 50_000:
                db.executemany(
                    "INSERT INTO items (id, source_id, guid, url, title, text, published, seen, story_id) "
                    "VALUES (?,?,?,?,?,'',?,?,?)", batch)
                items += len(batch)
                batch.clear()
        if batch:
            db.executemany(
                "INSERT INTO items (id, source_id, guid, url, title, text, published, seen, story_id) "
                "VALUES (?,?,?,?,?,'',?,?,?)", batch)
            items += len(batch)
        db.execute("UPDATE sources SET item_count=?", (spec.items,))
        # the newest items' fingerprints (fingerprinting is slow: both CPUs, before anything is measured)
        wanted = [(i, f, s) for i, (f, s) in enumerate(
            ((f, s) for f in range(n) for s in range(1, spec.items + 1)), start=1)][-SEEDED_FINGERPRINTS:]
        chunks = [(job["farm"], wanted[k:k + 5000], seen) for k in range(0, len(wanted), 5000)]
        cached = _fingerprint_cache(job, wanted)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            if cached is not None and cached.exists():
                with cached.open("rb") as fh:
                    made = [[(i, seen, data) for i, data in rows] for rows in pickle.load(fh)]
            else:
                made = list(pool.imap_unordered(_fingerprint_rows, chunks))
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    with cached.open("wb") as fh:
                        pickle.dump([[(i, data) for i, _, data in rows] for rows in made], fh)
            for rows in made:
                db.executemany("INSERT INTO fingerprints (item_id, created, data) VALUES (?,?,?)", rows)
                fingerprints += len(rows)
            # which entries each source's last body held: a changed feed is parsed without them
            feed_chunks = [(job["farm"], job["base"], list(range(k, min(n, k + 500))), spec.items)
                           for k in range(0, n, 500)]
            for seen_rows in pool.imap_unordered(_seen_rows, feed_chunks):
                db.executemany("UPDATE sources SET seen_entries=? WHERE id=?", seen_rows)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {"sources": n, "subscriptions": subs, "items": items, "fingerprints": fingerprints,
            "seed_s": time.monotonic() - t0}


async def thread_cpu(core: Any) -> dict[str, float]:
    """CPU seconds used so far by the event loop thread, the judge thread and the database thread,
    each read on the thread itself (``time.thread_time``); the rest of the process's CPU (the parse
    pool, mostly) is ``cpu_seconds()`` minus these."""
    loop = asyncio.get_running_loop()
    return {
        "event_loop": time.thread_time(),
        "judge": await loop.run_in_executor(core.pipeline._judge_thread, time.thread_time),
        "database": await core.store._hop(lambda _conn: time.thread_time()),
    }


async def run_bot(job: dict[str, Any]) -> dict[str, Any]:
    from bot.app import Core, Tagwire
    from bot.config import config_from_dict
    from bot.logs import setup_logging

    setup_logging("info")
    config = config_from_dict(bench_config(job))
    t_open = time.monotonic()
    cpu_open = cpu_seconds()
    core = await Core.open(config)
    fetcher = TimedFetcher(config.fetch, items_per_feed=job["farm"]["items"])
    adapter = NullAdapter(fetcher)
    app = Tagwire(core, fetcher, [adapter])  # type: ignore[list-item]
    phase = job["phase"]
    if phase == "steady":
        # the seeded slots were computed when the store was seeded: put each source on its slot
        # after now, as the scheduler itself would, so the first round is not one overdue burst
        await _reslot(core, float(job["interval"]))
        await _farm_post(job["base"] + "/_start")
    startup = {"wall_s": time.monotonic() - t_open, "cpu_s": cpu_seconds() - cpu_open, "rss_mb": current_rss_mb()}
    gc.collect()
    task = asyncio.create_task(app.run())
    farm_items = int(job["farm"]["items"])
    try:
        if phase == "steady":
            await asyncio.sleep(float(job["warmup"]))
        adapter.window_start = time.monotonic()
        polls0, statuses0 = app.scheduler.polls, Counter(fetcher.statuses)
        counts0 = Counter(adapter.counts)
        threads0 = await thread_cpu(core)
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        if phase == "steady":
            await asyncio.sleep(float(job["duration"]))
        else:  # burst: until every source was polled once and every delivery went out
            deadline = wall0 + float(job["duration"])
            while time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.2)
                if app.scheduler.polls - polls0 >= job["farm"]["feeds"] and not app.scheduler._in_flight:
                    counts = await core.store.delivery_counts()
                    if not counts.get("pending") and not counts.get("sending"):
                        break
        cpu1, wall1 = cpu_seconds(), time.monotonic()
        threads1 = await thread_cpu(core)
        polls = app.scheduler.polls - polls0
        statuses = Counter(fetcher.statuses)
        statuses.subtract(statuses0)
        sent = Counter(adapter.counts)
        sent.subtract(counts0)
        latencies = list(adapter.latencies)
        now = time.time()
        overdue = await core.store._one(
            "SELECT COUNT(*) FROM sources WHERE next_poll < ?", (now - 5.0,)
        )
        new_items_row = await core.store._one(
            "SELECT COUNT(*) FROM items WHERE seen >= ?", (now - (wall1 - wall0),)
        )
        deliveries = await core.store.delivery_counts()
    finally:
        app.stop()
        await task
        await app.close()
    cpu, wall = cpu1 - cpu0, wall1 - wall0
    by_thread = {k: threads1[k] - threads0[k] for k in threads0}
    by_thread["parse_pool_and_other"] = cpu - sum(by_thread.values())
    completed = sum(v for k, v in statuses.items() if not k.startswith("error"))
    full = statuses.get("ok", 0)
    new_items = int(new_items_row[0])
    alerts = sent.get("alert", 0) + sent.get("reply", 0)
    return {
        "phase": phase,
        "feeds": job["farm"]["feeds"],
        "subscriptions": job["subscriptions"],
        "interval_s": job["interval"],
        "offered_polls_per_s": job["farm"]["feeds"] / float(job["interval"]) if phase == "steady" else None,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_utilisation": cpu / wall if wall else float("nan"),
        "cpu_s_by_thread": by_thread,
        "polls": polls,
        "polls_per_s": polls / wall,
        "polls_per_cpu_s": polls / cpu if cpu else float("nan"),
        "statuses": dict(statuses),
        "not_modified_share": statuses.get("not_modified", 0) / completed if completed else float("nan"),
        "changed_share": full / completed if completed else float("nan"),
        "entries_parsed": full * farm_items,
        "new_items": new_items,
        "items_per_cpu_s": new_items / cpu if cpu else float("nan"),
        "entries_per_cpu_s": full * farm_items / cpu if cpu else float("nan"),
        "messages": dict(sent),
        "messages_per_s": sum(v for k, v in sent.items() if k != "unmeasured") / wall if wall else float("nan"),
        "deliveries_per_new_item": (sum(v for k, v in sent.items() if k != "unmeasured") / new_items
                                    if new_items else float("nan")),
        "alerts_and_replies": alerts,
        "latency_samples": len(latencies),
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p90_ms": percentile(latencies, 0.90) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "latency_max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "overdue_sources_at_end": int(overdue[0]),
        "deliveries_at_end": deliveries,
        "startup": startup,
        "story_module": getattr(sys.modules.get("bot.story"), "__file__", None),
        "peak_rss_mb": peak_rss_mb(),
        "rss_at_end_mb": current_rss_mb(),
    }


async def _reslot(core: Any, interval: float) -> None:
    from bot.scheduler import next_slot

    now = time.time()
    rows = await core.store._all("SELECT id, url FROM sources")
    db = core.store.db
    await db.execute("BEGIN")
    await db.executemany("UPDATE sources SET next_poll=? WHERE id=?",
                         [(next_slot(url, interval, now), sid) for sid, url in rows])
    await db.execute("COMMIT")


async def _farm_post(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(url, timeout=aiohttp.ClientTimeout(10)) as resp:
        resp.raise_for_status()


def match_throughput(job: dict[str, Any]) -> dict[str, Any]:
    """normalise + match per item at each subscription count, and the regex baseline on the same items."""
    from bench.baseline import keyword_of, match_rate
    from bot.match import MatchIndex, document, parse_query
    from bot.normalise import normalise_with_origin
    from bot.parse import parse_feed

    farm = Farm(FarmSpec(**job["farm"]))
    now = datetime.now(UTC)
    entries = []
    for f in range(job["sample_feeds"]):
        body = farm.render(f, farm.spec.items)
        url = f"http://127.0.0.1{farm.feed_path(f)}"
        parsed = parse_feed(body, url=url)
        entries.extend((e, url, farm.outlet(f)) for e in parsed.entries)
    queries: list[str] = job["queries"]
    out: list[dict[str, Any]] = []
    for n in job["sizes"]:
        subs = {}
        for i, q in enumerate(queries[:n]):
            subs[i] = parse_query(q)
        index = MatchIndex(subs)
        del subs
        gc.collect()
        gc.freeze()
        t0 = time.process_time()
        hits = 0
        for entry, url, outlet in entries:
            norm = normalise_with_origin(entry, source_name=outlet, feed_url=url, now=now)
            if norm is None:
                continue
            item = norm[0]
            hits += len(index.match(document(item.title, item.text, item.source_name)))
        cpu = time.process_time() - t0
        gc.unfreeze()
        del index
        texts = [f"{e.title} {e.summary}" for e, _, _ in entries]
        base = match_rate(texts, [keyword_of(q) for q in queries[:n]], min_seconds=float(job.get("baseline_s", 2.0)))
        out.append({
            "subscriptions": n,
            "items": len(entries),
            "tagwire_items_per_cpu_s": len(entries) / cpu,
            "tagwire_hits_per_item": hits / len(entries),
            "baseline_items_per_cpu_s": base["items_per_cpu_s"],
            "baseline_compile_s": base["compile_s"],
            "baseline_hits_per_item": base["hits_per_item"],
            "ratio": (len(entries) / cpu) / base["items_per_cpu_s"],
        })
    return {"match": out, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description="Bench steps run in child processes by `python -m bench`.")
    ap.add_argument("step", choices=["seed", "run", "match"])
    ap.add_argument("--job", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    job = json.loads(Path(args.job).read_text(encoding="utf-8"))
    pinned = pin_to_cpu(job.get("cpu"))
    if args.step == "seed":
        result = seed(job)
    elif args.step == "run":
        result = asyncio.run(run_bot(job))
    else:
        result = match_throughput(job)
    result["cpu_pinned"] = pinned
    out = json.dumps(result)
    if args.out:
        Path(args.out).write_text(out, encoding="utf-8")
    else:
        print(out)
    logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())

