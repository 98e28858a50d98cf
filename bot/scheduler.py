"""The scheduler: one APScheduler job that picks due sources from the store and polls them.

Not one job per feed: a single dispatcher tick reads ``sources.next_poll`` and starts a bounded
number of polls. Each source has its own interval and a deterministic slot inside it (a hash of its
URL), so a thousand feeds with the same interval spread out instead of firing together. A failure
backs off exponentially (or by the server's Retry-After); after ``fetch.failing_after`` failures in
a row the source is marked ``failing`` with its last error, and the first success brings it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import EllipsisType

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.config import FetchConfig
from bot.fetch import Fetcher, FetchError
from bot.parse import FeedParseError
from bot.pipeline import Pipeline
from bot.store import SourceRecord
from bot.store.sqlite import SQLiteStore

log = logging.getLogger("tagwire.scheduler")


def slot_offset(url: str, interval: float) -> float:
    """A stable offset in [0, interval) for this URL."""
    digest = hashlib.blake2b(url.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % 1_000_000) / 1_000_000 * interval


def next_slot(url: str, interval: float, now: float) -> float:
    """The first time after ``now`` at this URL's slot in a grid of ``interval`` seconds."""
    offset = slot_offset(url, interval)
    periods = (now - offset) // interval + 1
    return periods * interval + offset


def success_delay(interval: float, hint: float | None, cfg: FetchConfig) -> float:
    """Seconds until the next poll: the interval, stretched by a server's TTL/max-age hint within bounds."""
    delay = interval
    if hint is not None and hint > interval:
        delay = min(hint, interval * 4, cfg.max_interval)
    return max(cfg.min_interval, min(delay, cfg.max_interval))


def failure_delay(failures: int, retry_after: float | None, cfg: FetchConfig) -> float:
    """Exponential backoff after ``failures`` consecutive failures (1 = the first)."""
    delay = min(cfg.backoff_max, cfg.backoff_base * (2 ** max(0, failures - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cfg.backoff_max))
    return delay


# Seconds between dispatcher runs. Sources are due on their own slots all through the second; a
# shorter tick starts them in smaller groups, so their bodies reach the parser spread out rather
# than all at once (lower detection-to-alert latency), for a cheap indexed query per tick.
TICK = 0.25


@dataclass(slots=True)
class PollOutcome:
    source_id: int
    ok: bool
    status: str  # ok | not_modified | unchanged | error
    new_items: int = 0
    error: str | None = None


class Scheduler:
    def __init__(
        self,
        store: SQLiteStore,
        fetcher: Fetcher,
        pipeline: Pipeline,
        cfg: FetchConfig,
        *,
        tick: float = TICK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.pipeline = pipeline
        self.cfg = cfg
        self.tick = tick
        self.clock = clock
        self._in_flight: dict[int, asyncio.Task[PollOutcome]] = {}
        self._held: dict[int, float] = {}  # source id -> not before (when even recording failed)
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._aps: AsyncIOScheduler | None = None
        self._dispatching = False
        self.polls = 0

    # -- APScheduler wiring ----------------------------------------------------------------------
    def start(self) -> None:
        self._aps = AsyncIOScheduler(timezone="UTC")
        self._aps.add_job(
            self.dispatch, "interval", seconds=self.tick, id="dispatch", max_instances=1, coalesce=True,
            misfire_grace_time=None, next_run_time=datetime.now(UTC),
        )
        self._aps.start()

    async def stop(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        tasks = list(self._in_flight.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- dispatch --------------------------------------------------------------------------------
    async def dispatch(self) -> int:
        """Start polls for due sources not already in flight. Returns how many started."""
        if self._dispatching:
            return 0
        self._dispatching = True
        try:
            free = self.cfg.concurrency * 2 - len(self._in_flight)
            if free <= 0:
                return 0
            due = await self.store.due_sources(self.clock(), free + len(self._in_flight))
            started = 0
            for src in due:
                if src.id in self._in_flight:
                    continue
                if self._held.get(src.id, 0.0) > self.clock():
                    continue
                task = asyncio.create_task(self.poll(src), name=f"poll-{src.id}")
                self._in_flight[src.id] = task
                task.add_done_callback(lambda t, s=src: self._poll_done(s, t))
                started += 1
            return started
        finally:
            self._dispatching = False

    def _poll_done(self, src: SourceRecord, task: asyncio.Task[PollOutcome]) -> None:
        self._in_flight.pop(src.id, None)
        if task.cancelled() or task.exception() is None:
            self._held.pop(src.id, None)
            return
        # even recording the outcome failed (e.g. the database is locked): hold the source in memory
        # for a backoff, so a stuck next_poll cannot make us hit the feed every tick
        delay = failure_delay(src.consecutive_failures + 1, None, self.cfg)
        self._held[src.id] = self.clock() + delay
        if len(self._held) > 100_000:
            self._held.pop(next(iter(self._held)))
        log.error("poll could not be recorded; holding the source", extra={
            "source": src.name, "error": repr(task.exception()), "retry_in": delay})

    async def poll_all_once(self) -> list[PollOutcome]:
        """Poll every source now, once (``tagwire run --once``)."""
        sources = await self.store.all_sources()
        return list(await asyncio.gather(*(self.poll(s) for s in sources)))

    async def wait_idle(self) -> None:
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    # -- one poll --------------------------------------------------------------------------------
    async def poll(self, src: SourceRecord) -> PollOutcome:
        async with self._slots:
            return await self._poll(src)

    async def _poll(self, src: SourceRecord) -> PollOutcome:
        interval = src.interval or self.cfg.default_interval
        self.polls += 1
        started = self.clock()
        try:
            result = await self.fetcher.fetch(
                src.url, etag=src.etag, last_modified=src.last_modified, previous_hash=src.body_hash
            )
            new_items = 0
            hint = result.max_age
            seen_entries: bytes | EllipsisType | None = ...  # kept as stored unless a body was processed
            if result.status == "ok" and result.body is not None:
                processed = await self.pipeline.process(
                    src, result.body, url=result.url, content_type=result.content_type
                )
                new_items = processed.new_items
                seen_entries = processed.seen_entries
                if processed.ttl is not None:
                    hint = max(hint or 0.0, processed.ttl)
            now = self.clock()
            await self.store.record_poll_success(
                src.id,
                now=now,
                next_poll=max(now + self.cfg.min_interval,
                              next_slot(src.url, success_delay(interval, hint, self.cfg), now)),
                etag=result.etag,
                last_modified=result.last_modified,
                body_hash=result.body_hash,
                baseline_done=result.status == "ok",
                seen_entries=seen_entries,
            )
            if src.state == "failing":
                log.info("source recovered", extra={"source": src.name, "url": src.url})
            log.debug(
                "polled",
                extra={"source": src.name, "status": result.status, "new_items": new_items,
                       "ms": round((self.clock() - started) * 1000)},
            )
            return PollOutcome(src.id, True, result.status, new_items)
        except asyncio.CancelledError:
            raise
        except (FetchError, FeedParseError) as e:
            return await self._failed(src, str(e), getattr(e, "retry_after", None))
        except Exception as e:
            log.exception("poll failed unexpectedly", extra={"source": src.name})
            return await self._failed(src, f"internal error: {type(e).__name__}: {e}", None)

    async def _failed(self, src: SourceRecord, error: str, retry_after: float | None) -> PollOutcome:
        failures = src.consecutive_failures + 1
        now = self.clock()
        failing = failures >= self.cfg.failing_after
        await self.store.record_poll_failure(
            src.id,
            now=now,
            next_poll=now + failure_delay(failures, retry_after, self.cfg),
            error=error,
            failing=failing,
        )
        log.warning(
            "source failed",
            extra={"source": src.name, "error": error, "failures": failures, "failing": failing},
        )
        return PollOutcome(src.id, False, "error", error=error)
