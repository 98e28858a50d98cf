"""From a fetched feed body to stored items and queued deliveries.

parse → normalise (pure, in a worker thread) → known? (store) → judge (dedupe, match, story,
summarise: pure and stateful, in the single judge thread) → one write transaction (items, stories,
fingerprints, decisions, deliveries) → wake the outbox.

The judge owns the in-memory indexes (near-duplicate fingerprints, open stories, the subscription
automaton) and allocates item and story ids itself: there is one writer, so ids are known before
the write and a copy can point at an original written in the same batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bot import dedupe, entryspans, match, story
from bot.config import Config
from bot.models import Destination, Item
from bot.normalise import entry_guid, normalise_with_origin
from bot.parse import ParsedFeed, RawEntry, parse_feed, parse_with_feedparser
from bot.store import DeliveryRequest, NewItem, SourceRecord, SubscriptionRow
from bot.store.sqlite import SQLiteStore
from bot.summarise import summarise

log = logging.getLogger("tagwire.pipeline")

LEAD_CHARS = 400


@dataclass(slots=True)
class ParsedBatch:
    items: list[Item]
    hints: dict[str, str]  # guid -> outlet named as the origin
    ttl: float | None


def parse_with_guids(body: bytes, *, url: str, content_type: str | None, guard: ParseGuard | None = None,
                     source_id: int = 0, seen: bytes | None = None,
                     ) -> tuple[ParsedFeed, list[str | None], bytes | None]:
    """Parse, and say each entry's guid where it is known without normalising (see `entry_guid`).

    ``seen``: what `bot.entryspans.encode` gave for this source's previous body: the entries found
    there unchanged are cut out first and the feed comes back with only the others. Returns, last,
    what to remember of this body once it is processed (None: nothing; it was not cut into spans).

    Pure and CPU-bound: run in a worker thread. Raises parse.FeedParseError for a non-feed."""
    cut_ok = guard is None or source_id not in guard.no_cut
    spans = entryspans.split(body) if cut_ok else None
    reduced, kept = entryspans.reduce(body, spans, seen)
    if guard is None:
        feed = parse_feed(reduced, url=url, content_type=content_type)
    else:
        feed = guard.parse(source_id, reduced, url=url, content_type=content_type)
        if kept is not None:
            feed = guard.check_cut(source_id, feed, body, kept, url=url, content_type=content_type)
    if feed.parser != "fast" or (guard is not None and source_id in guard.no_cut):
        spans = None  # a body only the lenient parser reads is never cut
    return feed, [entry_guid(e, url) for e in feed.entries], entryspans.encode(spans)


class ParseGuard:
    """Keeps the fast parser honest at run time: one fast parse in ``every`` is parsed again by
    feedparser (the reference) and the two compared item by item; on any difference feedparser's
    result is used and that source is parsed by feedparser alone from then on (logged once).

    The differential tests cover the shared feeds and the farm; this covers the feeds out there
    and a feedparser upgrade changing what its internals do. Thread-safe enough for the parse pool:
    the counter may skip or repeat a check under a race, which costs nothing."""

    def __init__(self, every: int = 500, max_pinned: int = 100_000) -> None:
        self.every = every
        self.max_pinned = max_pinned
        self.pinned: set[int] = set()  # source ids parsed by feedparser only
        self.no_cut: set[int] = set()  # source ids whose bodies are always parsed whole
        self.checked = 0  # fast parses checked
        self.cut_checked = 0  # cut bodies checked
        self._fast = 0
        self._cuts = 0

    def parse(self, source_id: int, body: bytes, *, url: str, content_type: str | None) -> ParsedFeed:
        if source_id in self.pinned:
            return parse_with_feedparser(body, url=url, content_type=content_type)
        feed = parse_feed(body, url=url, content_type=content_type)
        if feed.parser != "fast":
            return feed
        self._fast += 1
        if not self._due(self._fast):
            return feed
        self.checked += 1
        reference = parse_with_feedparser(body, url=url, content_type=content_type)
        return self._settle(feed, reference, reference, self.pinned, source_id, url,
                            "fast parser disagrees with feedparser; this source is parsed by feedparser from now on")

    def check_cut(self, source_id: int, feed: ParsedFeed, body: bytes, kept: tuple[int, ...], *, url: str,
                  content_type: str | None) -> ParsedFeed:
        """One body in ``every`` that had seen entries cut out is also parsed whole, by feedparser,
        and the entries kept compared with the same entries of the whole feed. On a difference the
        whole feed is used and this source's bodies are never cut again (logged)."""
        self._cuts += 1
        if not self._due(self._cuts):
            return feed
        self.cut_checked += 1
        whole = parse_with_feedparser(body, url=url, content_type=content_type)
        if len(whole.entries) > max(kept, default=-1):
            expected = dataclasses.replace(whole, entries=tuple(whole.entries[i] for i in kept))
        else:  # the whole feed lacks an entry that was kept: any difference is one
            expected = dataclasses.replace(whole, entries=())
        return self._settle(feed, expected, whole, self.no_cut, source_id, url,
                            "parsing only the changed entries disagrees with parsing the whole feed; "
                            "this source's feeds are parsed whole from now on")

    def _due(self, count: int) -> bool:
        return self.every <= 1 or count % self.every == 1

    def _settle(self, feed: ParsedFeed, expected: ParsedFeed, fallback: ParsedFeed, barred: set[int],
                source_id: int, url: str, message: str) -> ParsedFeed:
        """``feed`` if it gives the items ``expected`` gives; else bar the source (log it) and use
        ``fallback``."""
        from bot.parse_fast import compare_parsed  # imported already: a fast parse came from it

        diffs = compare_parsed(feed, expected, url=url)
        if not diffs:
            return feed
        if len(barred) < self.max_pinned:
            barred.add(source_id)
        log.warning(message, extra={"url": url, "differences": len(diffs), "first": diffs[0]})
        return fallback


def normalise_entries(entries: Iterable[RawEntry], *, url: str, source_name: str, now: datetime,
                      ttl: float | None) -> ParsedBatch:
    """Normalise entries into unique items (the first of a guid wins). Pure and CPU-bound."""
    items: list[Item] = []
    hints: dict[str, str] = {}
    seen: set[str] = set()
    for entry in entries:
        normalised = normalise_with_origin(entry, source_name=source_name, feed_url=url, now=now)
        if normalised is None or normalised[0].guid in seen:
            continue
        item, hint = normalised
        seen.add(item.guid)
        items.append(item)
        if hint:
            hints[item.guid] = hint
    return ParsedBatch(items=items, hints=hints, ttl=ttl)


@dataclass(slots=True)
class Subscriber:
    id: int
    destination: Destination
    tag: str  # the query as the user typed it
    key: str = ""  # str(destination), made once: the judge names it in every decision

    def __post_init__(self) -> None:
        self.key = sys.intern(str(self.destination))  # one string per channel, not per subscription


@dataclass(slots=True)
class JudgeStats:
    new: int = 0
    duplicates: int = 0
    matched: int = 0
    queued: int = 0
    baseline: int = 0
    too_old: int = 0


class Judge:
    """The stateful, CPU-bound part of the pipeline. Only ever used from one thread at a time."""

    def __init__(self, config: Config, next_item_id: int, next_story_id: int,
                 load_fingerprints: dedupe.Loader | None = None) -> None:
        self.config = config
        self.next_item_id = next_item_id
        self.next_story_id = next_story_id
        # with a loader, the index keeps only what finds candidates in memory (~250 bytes an
        # entry); the shingles that confirm a candidate are read back from the store when needed
        self.dupes = dedupe.NearDuplicateIndex(load=load_fingerprints)
        self.stories = story.StoryClusterer(window_seconds=config.alerts.story_window)
        self.index = match.MatchIndex()
        self.subscribers: dict[int, Subscriber] = {}
        self.paused: set[int] = set()
        self.visibility: dict[int, frozenset[str]] = {}

    # -- state -----------------------------------------------------------------------------------
    def set_subscriptions(self, subs: list[SubscriptionRow]) -> None:
        """Make the index and subscribers those of ``subs`` ((id, destination, query, paused) each,
        `SQLiteStore.subscriptions_to_match`): compile what is new, drop what is gone."""
        if not self.subscribers and not len(self.index):
            # first load: the index compiles the queries as they are parsed and keeps none of the
            # parsed trees (tens of MB at 100k subscriptions)
            self.index = match.MatchIndex(self._parsed(subs))
            self.paused = {sid for sid, _, _, paused in subs if paused}
            return
        wanted = {sid for sid, _, _, _ in subs}
        for sid in list(self.subscribers):
            if sid not in wanted:
                self.index.remove(sid)
                del self.subscribers[sid]
        for sid, query in self._parsed([s for s in subs if s[0] not in self.subscribers]):
            self.index.set(sid, query)
        self.paused = {sid for sid, _, _, paused in subs if paused}

    def _parsed(self, subs: list[SubscriptionRow]) -> Iterator[tuple[int, match.Query]]:
        for sid, destination, text, _ in subs:
            try:
                query = match.parse_query(text)
            except match.QueryError as e:
                log.error("stored query no longer parses", extra={"subscription": sid, "error": str(e)})
                continue
            self.subscribers[sid] = Subscriber(sid, destination, text)
            yield sid, query

    def expire(self, now: float) -> None:
        self.dupes.evict_older_than(now - self.config.storage.retention_days * 86400.0)
        self.stories.expire(now)

    # -- judging ---------------------------------------------------------------------------------
    def judge(
        self,
        source: SourceRecord,
        batch: ParsedBatch,
        known_urls: dict[str, tuple[int, int]],
        now: float,
        stats: JudgeStats,
    ) -> list[NewItem]:
        """Decide, for each new item, duplicate/story/matches/deliveries. Mutates the indexes.

        The pipeline writes each judged batch before it judges the next (and rebuilds the judge
        if a write fails), so everything the index holds from earlier calls is in the store now."""
        self.dupes.persisted()
        baseline = not source.baseline_done
        max_age = self.config.alerts.max_age
        subscribers, paused = self.subscribers, self.paused
        out: list[NewItem] = []
        batch_urls: dict[str, tuple[int, int]] = {}
        # items that name another outlet as their origin go last, so an original in the same
        # batch is the one shown and the copy points at it
        ordered = sorted(batch.items, key=lambda it: it.guid in batch.hints)
        for item in ordered:
            item_id = self.next_item_id
            self.next_item_id += 1
            ts = item.published.timestamp() if item.published else now
            doc = match.document(item.title, item.text, item.source_name)
            new = NewItem(
                item=item,
                source_id=source.id,
                seen=now,
                summary="",
                story_id=0,
                story_is_new=False,
                item_id=item_id,
                origin=batch.hints.get(item.guid, ""),
                fts=match.fts_columns(doc),  # the same normalised streams the matcher reads
            )
            stats.new += 1
            # dedupe: same canonical URL, else near-duplicate text
            original: tuple[int, int] | None = known_urls.get(item.url) or batch_urls.get(item.url)
            why_dup = "same URL"
            # only originals are fingerprinted and remembered (a URL copy needs no fingerprint): what
            # is stored is exactly what the live index holds, so a restart rebuilds the same index
            fp = dedupe.fingerprint(item.title, item.text) if original is None else None
            if fp is not None:
                hit = self.dupes.find(fp)  # an original; its story id rides in the index entry
                if hit is not None:
                    original = (hit.key, hit.value)
                    why_dup = f"{hit.kind.replace('_', ' ')}, similarity {hit.similarity:.2f}"
            lead = item.text[:LEAD_CHARS]
            if original is not None:
                new.duplicate_of, new.story_id = original
                self.stories.add_to_story(new.story_id, item.title, lead, ts)
                new.decisions.append(("", "duplicate", f"of item {original[0]} ({why_dup})"))
                stats.duplicates += 1
            else:
                found, score = self.stories.find(item.title, lead, ts)
                if found is None:
                    new.story_id = self.next_story_id
                    self.next_story_id += 1
                    new.story_is_new = True
                    self.stories.add(new.story_id, item.title, lead, ts)
                    new.decisions.append(("", "opened story", f"story {new.story_id}"))
                else:
                    new.story_id = found
                    self.stories.add(found, item.title, lead, ts)
                    new.decisions.append(("", "joined story", f"story {found} (similarity {score:.2f})"))
                if fp is not None:
                    self.dupes.add(item_id, fp, ts, new.story_id)
                    new.fingerprint = dedupe.fingerprint_to_bytes(fp)
            batch_urls.setdefault(item.url, (new.duplicate_of or item_id, new.story_id))

            # match
            hits = self.index.match(doc)
            terms: list[str] = []
            per_destination: dict[str, tuple[Destination, list[str]]] = {}
            visible_to = self.visibility.get(source.id, frozenset())
            everyone = "" in visible_to
            decisions = new.decisions
            for sub_id, result in hits.items():
                sub = subscribers.get(sub_id)
                if sub is None:
                    continue
                terms.extend(result.terms)
                if not everyone and sub.destination.workspace not in visible_to:
                    decisions.append((sub.key, "not visible", "source not added here"))
                    continue
                if sub_id in paused:
                    decisions.append((sub.key, "paused", f"subscription {sub.tag!r} is paused"))
                    continue
                wanted = per_destination.get(sub.key)
                if wanted is None:
                    per_destination[sub.key] = (sub.destination, [sub.tag])
                else:
                    wanted[1].append(sub.tag)
                decisions.append((sub.key, "matched", f"query {sub.tag}"))
            new.summary = summarise(item.title, item.text, terms, limit=self.config.alerts.summary_chars)
            if per_destination:
                stats.matched += 1
            elif not hits:
                new.decisions.append(("", "no match", "no subscription's query matched"))

            # decide whether to post
            if baseline:
                new.decisions.append(("", "baseline", "first fetch of this source: stored, not alerted"))
                stats.baseline += 1
            elif item.published is not None and now - ts > max_age:
                new.decisions.append(
                    ("", "too old", f"published {item.published:%Y-%m-%d %H:%M} UTC, older than max age")
                )
                stats.too_old += 1
            elif new.duplicate_of is not None:
                new.deliveries.append(DeliveryRequest(destination=None, kind="copy",
                                                      original_item_id=new.duplicate_of))
                # a channel that never had the story (the original was from a source it cannot see,
                # or did not match its query) hears of it through this copy
                for dest, tags in per_destination.values():
                    new.deliveries.append(DeliveryRequest(destination=dest, kind="story_if_new", tags=tuple(tags)))
            else:
                for dest, tags in per_destination.values():
                    new.deliveries.append(DeliveryRequest(destination=dest, kind="story", tags=tuple(tags)))
                    stats.queued += 1
            out.append(new)
        return out


class FingerprintReader:
    """The near-duplicate index's loader: reads stored fingerprints by item id from the store's
    file with a read-only connection of its own, used only in the judge's thread (WAL lets it read
    what the writer has committed while the writer goes on). A read error is logged and the
    candidates count as no match: a copy may be missed, never invented."""

    CHUNK = 500  # ids per query (SQLite's variable limit is 999 on old builds)
    LOG_EVERY = 60.0  # seconds between log lines about failing reads

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self.failures = 0
        self._logged = -self.LOG_EVERY

    def __call__(self, keys: Sequence[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        try:
            if self._conn is None:
                uri = Path(self.path).resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            for start in range(0, len(keys), self.CHUNK):
                chunk = list(keys[start:start + self.CHUNK])
                found.update(self._conn.execute(
                    f"SELECT item_id, data FROM fingerprints WHERE item_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall())
        except sqlite3.Error as e:
            self.failures += 1
            now = time.monotonic()
            if now - self._logged >= self.LOG_EVERY:  # once a minute, not once per item
                self._logged = now
                log.error("could not read stored fingerprints; their candidates count as no match",
                          extra={"error": str(e), "candidates": len(keys), "failures": self.failures})
            self.close()
            return {}
        return found

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


@dataclass(slots=True)
class ProcessResult:
    items_in_feed: int
    new_items: int
    stats: JudgeStats = field(default_factory=JudgeStats)
    ttl: float | None = None
    seen_entries: bytes | None = None  # what to store for cutting the next body (bot.entryspans)


class Pipeline:
    """Owns the judge and its thread; serialises judge+write (the single writer)."""

    def __init__(self, config: Config, store: SQLiteStore, on_queued: Callable[[], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.on_queued = on_queued
        self.judge: Judge | None = None
        self._judge_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagwire-judge")
        self._parse_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tagwire-parse")
        self._lock = asyncio.Lock()
        self.parse_guard = ParseGuard()
        self._fingerprints = FingerprintReader(store.path)

    async def start(self) -> None:
        """Load ids and rebuild the in-memory indexes from the store (recent items, fingerprints)."""
        next_item, next_story = await self.store.next_ids()
        self._fingerprints.close()  # a rebuilt judge starts with a fresh connection in its thread
        judge = Judge(self.config, next_item, next_story,
                      self._fingerprints if self.store.path != ":memory:" else None)
        now = time.time()
        retention_start = now - self.config.storage.retention_days * 86400.0
        # the newest originals the index can hold, with the time the live judge indexed them by;
        # a batch at a time, indexed in the judge's thread (200,000 of them take seconds of CPU)
        loop = asyncio.get_running_loop()

        def index(rows: list[tuple[int, float, int, bytes]]) -> None:
            for item_id, ts, story_id, data in rows:
                try:
                    judge.dupes.add(item_id, dedupe.fingerprint_from_bytes(data), ts, story_id)
                except ValueError:
                    continue
            judge.dupes.persisted()  # these came from the store: never all 200,000 in memory at once

        async for rows in self.store.fingerprints_since(retention_start, judge.dupes.max_entries):
            await loop.run_in_executor(self._judge_thread, index, rows)
        for it in await self.store.recent_items(now - self.config.alerts.story_window):
            if it.story_id is None:
                continue
            ts = it.published if it.published is not None else it.seen
            judge.stories.add(it.story_id, it.title, it.text[:LEAD_CHARS], ts)
        self.judge = judge
        await self.refresh_subscriptions()

    async def refresh_subscriptions(self) -> None:
        """Re-read subscriptions and source visibility; the automaton is rebuilt off the loop."""
        subs = await self.store.subscriptions_to_match()
        visibility = await self.store.source_visibility()
        judge = self._require_judge()
        loop = asyncio.get_running_loop()

        def apply() -> None:
            judge.set_subscriptions(subs)
            judge.visibility = visibility

        await loop.run_in_executor(self._judge_thread, apply)

    def _require_judge(self) -> Judge:
        if self.judge is None:
            raise RuntimeError("pipeline not started")
        return self.judge

    async def process(self, source: SourceRecord, body: bytes, *, url: str, content_type: str | None) -> ProcessResult:
        loop = asyncio.get_running_loop()
        now_dt = datetime.now(UTC)
        feed, guids, seen = await loop.run_in_executor(
            self._parse_threads,
            lambda: parse_with_guids(body, url=url, content_type=content_type, guard=self.parse_guard,
                                     source_id=source.id, seen=source.seen_entries),
        )
        result = await self._process_parsed(source, feed, guids, url=url, now_dt=now_dt)
        # every entry of this body is now stored or known: the next poll need not parse them again
        # (the scheduler stores this with the poll's outcome)
        result.seen_entries = seen
        return result

    async def _process_parsed(self, source: SourceRecord, feed: ParsedFeed, guids: list[str | None], *,
                              url: str, now_dt: datetime) -> ProcessResult:
        loop = asyncio.get_running_loop()
        ttl = float(feed.ttl) if feed.ttl else None
        # Entries this source already gave us are dropped below anyway: skip normalising them (most
        # of a changed feed). One poll per source is in flight at a time, so this is race-free;
        # the check under the lock stays authoritative.
        stored: set[str] = set()
        wanted = {g for g in guids if g is not None}
        if wanted:
            stored, _ = await self.store.known_items(source.id, list(wanted), [])
        entries = [e for e, g in zip(feed.entries, guids, strict=True) if g is None or g not in stored]
        batch = ParsedBatch(items=[], hints={}, ttl=ttl)
        if entries:
            batch = await loop.run_in_executor(
                self._parse_threads,
                lambda: normalise_entries(entries, url=url, source_name=source.name, now=now_dt, ttl=ttl),
            )
        result = ProcessResult(items_in_feed=len(batch.items) + len(stored), new_items=0, ttl=batch.ttl)
        if not batch.items:
            return result
        judge = self._require_judge()
        async with self._lock:
            known_guids, known_urls = await self.store.known_items(
                source.id, [i.guid for i in batch.items], [i.url for i in batch.items]
            )
            fresh = [i for i in batch.items if i.guid not in known_guids]
            if not fresh:
                return result
            batch.items = fresh
            now = time.time()
            new_items = await loop.run_in_executor(
                self._judge_thread, judge.judge, source, batch, known_urls, now, result.stats
            )
            try:
                await self.store.write_items(new_items)
            except Exception:
                # the judge already remembered these items (fingerprints, stories, ids): rebuild it
                # from what is really stored, or the next poll would take them for copies of nothing
                log.exception("writing items failed; rebuilding the in-memory indexes from the store",
                              extra={"source": source.name})
                await self.start()
                raise
        result.new_items = len(new_items)
        if result.stats.queued or any(n.deliveries for n in new_items):
            if self.on_queued is not None:
                self.on_queued()
        return result

    async def housekeeping(self) -> None:
        judge = self._require_judge()
        now = time.time()
        await asyncio.get_running_loop().run_in_executor(self._judge_thread, judge.expire, now)
        removed = await self.store.prune(now - self.config.storage.retention_days * 86400.0)
        if removed:
            log.info("pruned old items", extra={"items": removed})

    def close(self) -> None:
        self._fingerprints.close()
        self._judge_thread.shutdown(wait=False, cancel_futures=True)
        self._parse_threads.shutdown(wait=False, cancel_futures=True)
