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
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from bot.adapter import Adapter
from bot.models import DeliveryError, MessageKind, OutgoingMessage
from bot.store import PendingDelivery
from bot.store.sqlite import SQLiteStore

log = logging.getLogger("tagwire.outbox")

WAIT_FOR_PARENT = 2.0  # seconds before looking again at a reply whose root is not sent yet


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
        parallel_destinations: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.adapters: dict[str, Adapter] = {}
        self.stopped_platforms: dict[str, str] = {}
        self.max_attempts = max_attempts
        self.batch = batch
        self.clock = clock
        self._parallel = asyncio.Semaphore(parallel_destinations)
        self._wake = asyncio.Event()
        self.sent = 0

    def register(self, adapter: Adapter) -> None:
        self.adapters[adapter.platform] = adapter
        self.stopped_platforms.pop(adapter.platform, None)

    def wake(self) -> None:
        """New deliveries were queued: send them now rather than at the next tick."""
        self._wake.set()

    async def run_once(self) -> int:
        """Send everything that is due now (repeating while more becomes due). Returns messages sent."""
        sent_before = self.sent
        while True:
            claimed = await self.store.claim_deliveries(self.clock(), self.batch)
            if not claimed:
                break
            progressed = await self._send_claimed(claimed)
            if not progressed:
                break
        return self.sent - sent_before

    async def run_forever(self, stop: asyncio.Event, idle: float = 5.0) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("outbox pass failed")
            due = await self.store.next_delivery_due()
            timeout = idle if due is None else max(0.05, min(idle, due - self.clock()))
            self._wake.clear()
            waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
            _, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    async def _send_claimed(self, claimed: list[PendingDelivery]) -> bool:
        groups: dict[str, list[PendingDelivery]] = {}
        for d in claimed:
            groups.setdefault(str(d.destination), []).append(d)
        results = await asyncio.gather(*(self._send_group(g) for g in groups.values()))
        return any(results)

    async def _send_group(self, group: list[PendingDelivery]) -> bool:
        """Send one destination's deliveries in order. Returns True if anything was sent."""
        progressed = False
        just_sent: dict[int, tuple[str, str | None, str]] = {}  # id -> (message_ref, thread_ref, kind)
        async with self._parallel:
            for i, d in enumerate(group):
                d = _resolve(d, just_sent)
                outcome = await self._send_one(d, just_sent)
                if outcome == "sent":
                    progressed = True
                elif outcome == "stop":
                    # keep order: everything after a failed message in this destination waits too
                    for later in group[i + 1 :]:
                        await self.store.requeue(later.id, self.clock() + WAIT_FOR_PARENT)
                    break
        return progressed

    async def _send_one(self, d: PendingDelivery, just_sent: dict[int, tuple[str, str | None, str]]) -> str:
        now = self.clock()
        platform = d.destination.platform
        adapter = self.adapters.get(platform)
        if adapter is None or platform in self.stopped_platforms:
            await self.store.requeue(d.id, now + 30.0)
            return "stop"
        if d.kind == "reply" and d.thread_ref is None:
            if d.root_state == "failed" or d.target_delivery_id is None:
                await self.store.promote_to_alert(d.id)
                log.warning("root alert failed; reply promoted to root", extra={"delivery": d.id})
            else:
                await self.store.requeue(d.id, now + WAIT_FOR_PARENT)
            return "stop"
        if d.kind == "update" and d.target_ref is None:
            if d.root_state in ("failed", None):
                await self.store.mark_retry(d.id, "the message to update was never posted", now, give_up=True)
                return "skipped"
            await self.store.requeue(d.id, now + WAIT_FOR_PARENT)
            return "stop"
        message = to_message(d)
        try:
            result = await adapter.send(message)
        except DeliveryError as e:
            return await self._failed(d, e)
        except Exception as e:  # an adapter bug must not lose the delivery
            log.exception("adapter raised unexpectedly", extra={"delivery": d.id, "platform": platform})
            return await self._failed(d, DeliveryError(f"{type(e).__name__}: {e}"))
        thread_ref = result.thread_ref if result.thread_ref is not None else message.thread_ref
        await self.store.mark_sent(d.id, result.message_ref, thread_ref, self.clock())
        just_sent[d.id] = (result.message_ref, thread_ref, d.kind)
        self.sent += 1
        log.info(
            "delivered",
            extra={"delivery": d.id, "kind": d.kind, "destination": str(d.destination), "story": d.story_id},
        )
        return "sent"

    async def _failed(self, d: PendingDelivery, e: DeliveryError) -> str:
        now = self.clock()
        dest = str(d.destination)
        if e.fatal:
            self.stopped_platforms[d.destination.platform] = str(e)
            await self.store.requeue(d.id, now + 60.0)
            log.error(
                "adapter stopped: credentials refused", extra={"platform": d.destination.platform, "error": str(e)}
            )
            return "stop"
        if e.pause:
            await self.store.mark_paused(d.destination, str(e))
            log.warning("destination paused", extra={"destination": dest, "error": str(e)})
            return "stop"
        attempts = d.attempts + 1
        give_up = attempts >= self.max_attempts
        delay = e.retry_after if e.retry_after is not None else backoff_delay(attempts - 1)
        await self.store.mark_retry(d.id, str(e), now + delay, give_up)
        log.warning(
            "delivery failed" + ("; giving up" if give_up else "; will retry"),
            extra={"delivery": d.id, "destination": dest, "error": str(e), "retry_in": round(delay, 1)},
        )
        return "skipped" if give_up else "stop"
