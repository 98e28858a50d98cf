"""The outbox: durable, idempotent delivery of alerts, replies and updates to adapters.

Delivery rows are written by the pipeline in the same transaction as their item (see
`bot.store.sqlite.SQLiteStore.write_items`). This module claims due rows, turns each into a neutral
`OutgoingMessage`, hands it to the adapter for its platform, and records the platform's message ids,
so a thread reply can find its root and an update the message it edits.

Rules:
- Per destination, messages go out in the order they were queued; a reply waits for its root,
  an update for the message it edits.
- A failure is retried with exponential backoff (or the platform's Retry-After) and never posted
  twice; after ``max_attempts`` the delivery is marked failed. A reply whose root failed becomes the
  story's new root there.
- A destination the platform says is gone (deleted channel, bot removed) is paused with its
  subscriptions; a credentials error stops that adapter, leaving its deliveries pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from bot.adapter import Adapter
from bot.models import DeliveryError, MessageKind, OutgoingMessage
from bot.store import PendingDelivery
from bot.store.sqlite import SQLiteStore

log = logging.getLogger("tagwire.outbox")

WAIT_FOR_PARENT = 2.0  # seconds before looking again at a reply whose root is not sent yet
NO_ADAPTER_WAIT = 30.0  # seconds a destination waits while its platform's adapter is missing or stopped
FATAL_WAIT = 60.0  # seconds before trying again after the platform refused our credentials
DB_RETRY_WAIT = 1.0  # seconds before the loop tries again after a database error
MAX_LOGGED_IDS = 20  # delivery ids named in one "delivered" log line
MARK_SENT_TRIES = 5  # recording a posted message is retried this often before giving up for this pass


def backoff_delay(attempts: int, base: float = 5.0, cap: float = 3600.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with +-20% jitter: 5 s, 10 s, 20 s, … capped at an hour."""
    delay = min(cap, base * (2 ** max(0, attempts)))
    r = (rng or random).uniform(0.8, 1.2)
    return delay * r


def to_message(d: PendingDelivery) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=d.id,
        kind=MessageKind(d.kind),
        destination=d.destination,
        story_id=d.story_id,
        url=d.url,
        title=d.title,
        source=d.source,
        published=datetime.fromtimestamp(d.published, UTC) if d.published is not None else None,
        summary=d.summary,
        categories=d.categories,
        tags=d.tags,
        also_reported_by=d.also_reported_by,
        thread_ref=d.thread_ref,
        target_ref=d.target_ref,
    )


def _resolve(d: PendingDelivery, just_sent: dict[int, tuple[str, str | None, str]]) -> PendingDelivery:
    """Fill in a reply's thread or an update's target from a message sent earlier in this pass."""
    if d.target_delivery_id is None or d.target_delivery_id not in just_sent:
        return d
    message_ref, thread_ref, target_kind = just_sent[d.target_delivery_id]
    if d.kind == "reply" and d.thread_ref is None:
        return replace(d, thread_ref=thread_ref, root_state="sent")
    if d.kind == "update" and d.target_ref is None:
        # the target is a root (its own thread) or a reply (in its root's thread)
        return replace(d, target_ref=message_ref, thread_ref=thread_ref if target_kind == "reply" else None,
                       root_state="sent")
    return d


class Outbox:
    def __init__(
        self,
        store: SQLiteStore,
        *,
        max_attempts: int = 12,
        batch: int = 500,
        parallel_destinations: int = 64,  # destinations sending at once (each one in order)
        clock: Callable[[], float] = time.time,
        on_paused: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.adapters: dict[str, Adapter] = {}
        self.stopped_platforms: dict[str, str] = {}
        self.max_attempts = max_attempts
        self.batch = batch
        self.clock = clock
        self._parallel = asyncio.Semaphore(parallel_destinations)
        self._wake = asyncio.Event()
        self._pass = asyncio.Lock()  # passes never overlap: a destination's claimed rows are one pass's
        # posted but not yet recorded (the database refused): recorded, never re-posted, on the next try
        self._unrecorded: dict[int, tuple[str, str | None]] = {}
        self.on_paused = on_paused  # e.g. refresh the judge's paused subscriptions
        self._stop: asyncio.Event | None = None  # set by run_forever: shutting down, send nothing new
        self.sent = 0

    def register(self, adapter: Adapter) -> None:
        self.adapters[adapter.platform] = adapter
        self.stopped_platforms.pop(adapter.platform, None)

    def wake(self) -> None:
        """New deliveries were queued: send them now rather than at the next tick."""
        self._wake.set()

    async def run_once(self) -> int:
        """Send everything that is due now (repeating while more becomes due). Returns messages sent."""
        async with self._pass:
            sent_before = self.sent
            while True:
                if self._stopping():
                    break
                claimed = await self.store.claim_deliveries(self.clock(), self.batch)
                if not claimed:
                    break
                progressed = await self._send_claimed(claimed)
                if not progressed:
                    break
            return self.sent - sent_before

    async def run_forever(self, stop: asyncio.Event, idle: float = 5.0) -> None:
        """Deliver until ``stop`` is set. A failing pass (e.g. "database is locked") is logged and
        tried again shortly; it never ends the loop. A message being sent when ``stop`` is set is
        finished and recorded first; nothing new is started."""
        self._stop = stop
        while not stop.is_set():
            try:
                await self.run_once()
                due = await self.store.next_delivery_due()
                timeout = idle if due is None else max(0.05, min(idle, due - self.clock()))
            except Exception:
                log.exception("outbox pass failed; trying again shortly")
                timeout = DB_RETRY_WAIT
            self._wake.clear()
            waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _send_claimed(self, claimed: list[PendingDelivery]) -> bool:
        groups: dict[str, list[PendingDelivery]] = {}
        for d in claimed:
            groups.setdefault(str(d.destination), []).append(d)
        sent_before = self.sent
        results = await asyncio.gather(*(self._send_group(g) for g in groups.values()), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                log.error("delivery to a destination failed", exc_info=r)
        # one info line per batch claimed (at a thousand messages a second, a line per destination
        # was a measurable share of the bot's CPU); each destination's line is at debug level
        if self.sent > sent_before:
            log.info("delivered", extra={"messages": self.sent - sent_before, "claimed": len(claimed),
                                         "destinations": sum(r is True for r in results)})
        return any(r is True for r in results)

    async def _send_group(self, group: list[PendingDelivery]) -> bool:
        """Send one destination's deliveries in order. Returns True if anything was sent.

        Whatever happens, no claimed row is left 'sending': rows not settled go back to pending."""
        just_sent: dict[int, tuple[str, str | None, str]] = {}  # id -> (message_ref, thread_ref, kind)
        destination = group[0].destination
        platform = destination.platform
        settled = False
        async with self._parallel:
            try:
                for d in group:
                    if self._stopping():  # shutting down: the rest waits for the next start
                        await self.store.requeue_destination(destination, self.clock())
                        settled = True
                        break
                    if platform not in self.adapters or platform in self.stopped_platforms:
                        # the whole destination waits, in one write
                        await self.store.requeue_destination(destination, self.clock() + NO_ADAPTER_WAIT)
                        settled = True
                        break
                    d = _resolve(d, just_sent)
                    outcome, hold_until = await self._send_one(d, just_sent)
                    if outcome == "sent":
                        pass
                    elif outcome == "paused":
                        settled = True  # mark_paused paused the rest of the destination too
                        break
                    elif outcome == "stop":
                        # keep order: everything after this message in the destination waits as long
                        await self.store.requeue_destination(destination, hold_until)
                        settled = True
                        break
                else:
                    settled = True
            finally:
                if not settled:
                    with contextlib.suppress(Exception):  # if this fails too, start-up releases claims
                        await self.store.requeue_destination(destination, self.clock() + WAIT_FOR_PARENT)
                if just_sent and log.isEnabledFor(logging.DEBUG):  # per destination: debug
                    ids = list(just_sent)
                    named = ",".join(map(str, ids[:MAX_LOGGED_IDS])) + (",…" if len(ids) > MAX_LOGGED_IDS else "")
                    log.debug("delivered", extra={
                        "destination": str(destination), "messages": len(ids), "deliveries": named,
                        "stories": len({d.story_id for d in group if d.id in just_sent}),
                    })
        return bool(just_sent)

    async def _send_one(
        self, d: PendingDelivery, just_sent: dict[int, tuple[str, str | None, str]]
    ) -> tuple[str, float]:
        """Settle one claimed delivery. Returns (outcome, hold_until): "sent", "skipped", "paused",
        or "stop": this delivery and the rest of the destination wait until ``hold_until`` (the
        caller puts them back in one write)."""
        now = self.clock()
        platform = d.destination.platform
        adapter = self.adapters[platform]
        if d.kind == "reply" and d.thread_ref is None:
            # no root any more (failed for good, or its item deleted with its source): become the root
            if d.root_state in ("failed", None) or d.target_delivery_id is None:
                await self.store.promote_to_alert(d.id)
                log.warning("root alert missing; reply promoted to root", extra={"delivery": d.id})
            return "stop", now + WAIT_FOR_PARENT
        if d.kind == "update" and d.target_ref is None:
            if d.root_state in ("failed", None):
                await self.store.mark_retry(d.id, "the message to update was never posted", now, give_up=True)
                return "skipped", now
            return "stop", now + WAIT_FOR_PARENT
        message = to_message(d)
        if d.id in self._unrecorded:  # posted earlier, the database refused to record it: record only
            message_ref, thread_ref = self._unrecorded[d.id]
        else:
            try:
                result = await adapter.send(message)
            except DeliveryError as e:
                return await self._failed(d, e)
            except Exception as e:  # an adapter bug must not lose the delivery
                log.exception("adapter raised unexpectedly", extra={"delivery": d.id, "platform": platform})
                return await self._failed(d, DeliveryError(f"{type(e).__name__}: {e}"))
            message_ref = result.message_ref
            thread_ref = result.thread_ref if result.thread_ref is not None else message.thread_ref
            self._unrecorded[d.id] = (message_ref, thread_ref)
        await self._record_sent(d.id, message_ref, thread_ref)
        del self._unrecorded[d.id]
        just_sent[d.id] = (message_ref, thread_ref, d.kind)
        self.sent += 1
        return "sent", now

    async def _record_sent(self, delivery_id: int, message_ref: str, thread_ref: str | None) -> None:
        """The message is out: record it, retrying a few times (a lost record means a second post)."""
        for attempt in range(MARK_SENT_TRIES):
            try:
                # committed together with other destinations' records meanwhile (group commit);
                # returns once this one is committed, before the destination's next message goes
                await self.store.mark_sent([(delivery_id, message_ref, thread_ref)], self.clock())
                return
            except Exception:
                if attempt == MARK_SENT_TRIES - 1:
                    raise  # kept in _unrecorded: the next pass records it without posting again
                log.warning("could not record a sent message; retrying", extra={"delivery": delivery_id})
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _failed(self, d: PendingDelivery, e: DeliveryError) -> tuple[str, float]:
        now = self.clock()
        dest = str(d.destination)
        if e.fatal:
            self.stopped_platforms[d.destination.platform] = str(e)
            log.error(
                "adapter stopped: credentials refused", extra={"platform": d.destination.platform, "error": str(e)}
            )
            return "stop", now + FATAL_WAIT
        if e.pause:
            await self.store.mark_paused(d.destination, str(e))
            log.warning("destination paused", extra={"destination": dest, "error": str(e)})
            if self.on_paused is not None:
                try:
                    await self.on_paused()  # stop judging items into the paused subscriptions
                except Exception:
                    log.exception("could not refresh subscriptions after a pause")
            return "paused", now
        attempts = d.attempts + 1
        give_up = attempts >= self.max_attempts
        delay = e.retry_after if e.retry_after is not None else backoff_delay(attempts - 1)
        await self.store.mark_retry(d.id, str(e), now + delay, give_up)
        log.warning(
            "delivery failed" + ("; giving up" if give_up else "; will retry"),
            extra={"delivery": d.id, "destination": dest, "error": str(e), "retry_in": round(delay, 1)},
        )
        return ("skipped", now) if give_up else ("stop", now + delay)
