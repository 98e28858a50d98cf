"""The outbox: durable delivery with threads, retries, pauses; never twice, never lost."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from bot import match
from bot import outbox as outbox_module
from bot.app import Core
from bot.config import config_from_dict
from bot.models import DeliveryError, Destination, Item, MessageKind, OutgoingMessage, SendResult
from bot.outbox import backoff_delay
from bot.store import DeliveryRequest, NewItem

NEWS = Destination.parse("console:#news")
WORLD = Destination.parse("console:#world")


class Recorder:
    """A platform that records what it was sent and can be told to fail."""

    platform = "console"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.fail_with: list[DeliveryError] = []
        self.calls = 0  # every attempt to post, failed or not

    async def start(self, commands) -> None: ...
    async def close(self) -> None: ...

    async def send(self, m: OutgoingMessage) -> SendResult:
        self.calls += 1
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.sent.append(m)
        ref = f"m{len(self.sent)}"
        return SendResult(ref, ref if m.kind is MessageKind.ALERT else m.thread_ref)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def core(tmp_path):
    c = await Core.open(config_from_dict({
        "storage": {"path": str(tmp_path / "t.db")},
        "sources": [{"name": "A", "url": "https://a.example/feed"}, {"name": "B", "url": "https://b.example/feed"}],
    }))
    c.outbox.clock = Clock()
    yield c
    await c.close()


_ids = iter(range(1, 10_000))


async def queue(core: Core, guid: str, story: int, dests: list[Destination], source: int = 0,
                duplicate_of: int | None = None) -> int:
    src = (await core.store.all_sources())[source]
    item_id = next(_ids)
    it = Item(source_name=src.name, guid=guid, url=f"https://{src.name.lower()}.example/{guid}", title=f"Title {guid}",
              text="Body", published=datetime.now(UTC))
    new = NewItem(item=it, source_id=src.id, seen=core.outbox.clock(), summary="Body", story_id=story,
                  story_is_new=duplicate_of is None, item_id=item_id, duplicate_of=duplicate_of,
                  fts=match.fts_columns(it.title, it.text, src.name))
    if duplicate_of is not None:
        new.deliveries.append(DeliveryRequest(None, "copy", original_item_id=duplicate_of))
    else:
        new.deliveries.extend(DeliveryRequest(d, "story", tags=("#t",)) for d in dests)
    await core.store.write_items([new])
    return item_id


async def test_first_item_of_a_story_is_the_root_later_ones_reply_in_its_thread(core):
    rec = Recorder()
    core.register_adapter(rec)
    await queue(core, "1", 7, [NEWS, WORLD])
    await queue(core, "2", 7, [NEWS])
    await queue(core, "3", 8, [NEWS])
    await core.deliver_pending()
    by_dest = [(str(m.destination), m.kind.value, m.story_id) for m in rec.sent]
    assert sorted(by_dest) == sorted([("console:#news", "alert", 7), ("console:#world", "alert", 7),
                                      ("console:#news", "reply", 7), ("console:#news", "alert", 8)])
    root = next(m for m in rec.sent if m.kind is MessageKind.ALERT and m.destination == NEWS and m.story_id == 7)
    reply = next(m for m in rec.sent if m.kind is MessageKind.REPLY)
    root_ref = f"m{rec.sent.index(root) + 1}"
    assert reply.thread_ref == root_ref
    assert await core.deliver_pending() == 0, "nothing is sent twice"


async def test_a_copy_updates_every_message_made_for_its_original(core):
    rec = Recorder()
    core.register_adapter(rec)
    original = await queue(core, "1", 3, [NEWS, WORLD])
    await core.deliver_pending()
    await queue(core, "copy", 3, [], source=1, duplicate_of=original)
    await core.deliver_pending()
    updates = [m for m in rec.sent if m.kind is MessageKind.UPDATE]
    assert {str(m.destination) for m in updates} == {"console:#news", "console:#world"}
    assert all(m.also_reported_by == ("B",) and m.source == "A" and m.title == "Title 1" for m in updates)
    assert {m.target_ref for m in updates} == {"m1", "m2"}
    await queue(core, "copy-again", 3, [], source=1, duplicate_of=original)
    await core.deliver_pending()
    assert len([m for m in rec.sent if m.kind is MessageKind.UPDATE]) == 2, "an outlet is listed once"


async def test_failures_are_retried_with_backoff_and_order_is_kept(core):
    rec = Recorder()
    core.register_adapter(rec)
    rec.fail_with = [DeliveryError("server error")]
    await queue(core, "1", 1, [NEWS])
    await queue(core, "2", 1, [NEWS])
    await core.deliver_pending()
    assert rec.sent == [], "the reply waits for its root"
    core.outbox.clock.t += 3
    await core.deliver_pending()
    assert rec.sent == [], "not before the backoff has passed"
    core.outbox.clock.t += 10
    await core.deliver_pending()
    assert [m.kind for m in rec.sent] == [MessageKind.ALERT, MessageKind.REPLY]


async def test_retry_after_is_honoured(core):
    rec = Recorder()
    core.register_adapter(rec)
    rec.fail_with = [DeliveryError("rate limited", retry_after=30)]
    await queue(core, "1", 1, [NEWS])
    await core.deliver_pending()
    core.outbox.clock.t += 29
    await core.deliver_pending()
    assert rec.sent == []
    core.outbox.clock.t += 2
    await core.deliver_pending()
    assert len(rec.sent) == 1


async def test_a_gone_channel_pauses_its_subscriptions(core):
    rec = Recorder()
    core.register_adapter(rec)
    await core.store.add_subscription(NEWS, "x", "x", "u")
    rec.fail_with = [DeliveryError("channel_not_found", pause=True)]
    await queue(core, "1", 1, [NEWS])
    await core.deliver_pending()
    [sub] = await core.store.subscriptions(NEWS)
    assert sub.paused_reason == "channel_not_found"
    assert (await core.store.delivery_counts()).get("paused") == 1
    core.outbox.clock.t += 10_000
    await core.deliver_pending()
    assert rec.sent == [], "a paused destination is not retried forever"
    # someone fixes the channel and subscribes there again: delivery resumes with what was held back
    from bot.models import Command

    reply = await core.commands.handle(Command("subscribe", "y", NEWS))
    assert "resumed" in reply.text
    await core.deliver_pending()
    assert len(rec.sent) == 1
    assert all(s.paused_reason is None for s in await core.store.subscriptions(NEWS))


async def test_bad_credentials_stop_the_platform_without_losing_anything(core):
    rec = Recorder()
    core.register_adapter(rec)
    rec.fail_with = [DeliveryError("invalid_auth", fatal=True)]
    await queue(core, "1", 1, [NEWS])
    await core.deliver_pending()
    assert "console" in core.outbox.stopped_platforms
    assert (await core.store.delivery_counts()).get("pending") == 1
    core.register_adapter(rec)  # e.g. restarted with a fixed token
    core.outbox.clock.t += 120
    await core.deliver_pending()
    assert len(rec.sent) == 1


async def test_a_reply_whose_root_failed_for_good_becomes_the_root(core):
    rec = Recorder()
    core.register_adapter(rec)
    core.outbox.max_attempts = 1
    rec.fail_with = [DeliveryError("message too weird")]
    await queue(core, "1", 1, [NEWS])
    await queue(core, "2", 1, [NEWS])
    for _ in range(3):
        await core.deliver_pending()
        core.outbox.clock.t += 5
    assert [m.kind for m in rec.sent] == [MessageKind.ALERT]
    assert rec.sent[0].title == "Title 2"


def test_backoff_grows_and_is_capped():
    import random

    rng = random.Random(1)
    delays = [backoff_delay(n, rng=rng) for n in range(12)]
    assert delays[0] < 10 < delays[3] and max(delays) <= 3600 * 1.2


async def _next_attempts(core: Core, status: str = "pending") -> dict[str, set[float]]:
    rows = await core.store.db.execute_fetchall(
        "SELECT destination, next_attempt FROM deliveries WHERE status=?", (status,)
    )
    out: dict[str, set[float]] = {}
    for dest, t in rows:
        out.setdefault(dest, set()).add(t)
    return out


async def test_a_reply_whose_root_row_is_gone_becomes_the_root_and_does_not_block_the_channel(core):
    """The root's item went with its source before it was posted: the reply is posted as the alert."""
    rec = Recorder()
    core.register_adapter(rec)
    await queue(core, "1", 1, [NEWS], source=0)
    await queue(core, "2", 1, [NEWS], source=1)
    await queue(core, "3", 2, [NEWS], source=1)
    assert await core.store.remove_source("", "A") is not None
    for _ in range(3):
        await core.deliver_pending()
        core.outbox.clock.t += 5
    assert [(m.kind, m.title) for m in rec.sent] == [(MessageKind.ALERT, "Title 2"), (MessageKind.ALERT, "Title 3")]


async def test_a_paused_channel_stays_paused_and_is_not_called_again(core):
    rec = Recorder()
    core.register_adapter(rec)
    await core.store.add_subscription(NEWS, "x", "x", "u")
    await core.pipeline.refresh_subscriptions()
    rec.fail_with = [DeliveryError("channel_not_found", pause=True)]
    for n in range(3):
        await queue(core, str(n), n + 1, [NEWS])
    await core.deliver_pending()
    assert (await core.store.delivery_counts()).get("paused") == 3, "held-back messages are not requeued"
    [sub] = await core.store.subscriptions(NEWS)
    judge = core.pipeline.judge
    assert judge is not None and sub.id in judge.paused, "new items are no longer queued for the paused channel"
    for _ in range(3):
        core.outbox.clock.t += 60
        await core.deliver_pending()
    assert rec.calls == 1 and rec.sent == []


async def test_without_an_adapter_a_destination_waits_in_one_write(core):
    """No adapter for the platform: nothing is lost, and the whole destination is put back at once."""
    writes = {"requeue_destination": 0}
    for name in writes:
        original = getattr(core.store, name)

        async def counted(*a, _name=name, _original=original):
            writes[_name] += 1
            return await _original(*a)

        setattr(core.store, name, counted)
    for n in range(20):
        await queue(core, str(n), n + 1, [NEWS, WORLD])
    now = core.outbox.clock()
    assert await core.deliver_pending() == 0
    assert (await core.store.delivery_counts()) == {"pending": 40}
    waits = await _next_attempts(core)
    assert all(len(ts) == 1 and min(ts) > now for ts in waits.values()), waits
    assert writes == {"requeue_destination": 2}, "one write per destination, none per row"
    assert await core.deliver_pending() == 0 and writes["requeue_destination"] == 2, "nothing spins meanwhile"
    core.register_adapter(rec := Recorder())
    core.outbox.clock.t += 60
    await core.deliver_pending()
    assert len(rec.sent) == 40


async def test_after_a_long_backoff_later_messages_wait_as_long(core):
    rec = Recorder()
    core.register_adapter(rec)
    rec.fail_with = [DeliveryError("rate limited", retry_after=600)]
    for n in range(3):
        await queue(core, str(n), n + 1, [NEWS])
    now = core.outbox.clock()
    await core.deliver_pending()
    assert (await _next_attempts(core))["console:#news"] == {now + 600}, "order holds, nothing spins"
    core.outbox.clock.t += 601
    await core.deliver_pending()
    assert [m.title for m in rec.sent] == ["Title 0", "Title 1", "Title 2"]


def _flaky_mark_sent(core: Core, failures: int) -> None:
    original = core.store.mark_sent
    left = [failures]

    async def mark_sent(*a):
        if left[0]:
            left[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return await original(*a)

    core.store.mark_sent = mark_sent  # type: ignore[method-assign]


async def test_a_message_posted_but_not_recorded_at_once_is_posted_once(core):
    rec = Recorder()
    core.register_adapter(rec)
    _flaky_mark_sent(core, failures=1)
    await queue(core, "1", 1, [NEWS])
    await core.deliver_pending()
    assert len(rec.sent) == 1
    assert await core.store.delivery_counts() == {"sent": 1}


async def test_a_message_the_database_keeps_refusing_to_record_is_recorded_later_not_reposted(core, monkeypatch):
    monkeypatch.setattr(outbox_module, "MARK_SENT_TRIES", 2)
    rec = Recorder()
    core.register_adapter(rec)
    _flaky_mark_sent(core, failures=2)
    await queue(core, "1", 1, [NEWS])
    await queue(core, "2", 1, [NEWS])
    await core.deliver_pending()
    assert await core.store.delivery_counts() == {"pending": 2}, "nothing is left claimed"
    core.outbox.clock.t += 5
    await core.deliver_pending()
    assert [m.kind for m in rec.sent] == [MessageKind.ALERT, MessageKind.REPLY]
    assert rec.sent[1].thread_ref == "m1"
    assert await core.store.delivery_counts() == {"sent": 2}


async def test_messages_posted_to_many_channels_at_once_are_recorded_together_and_never_reposted(core):
    """Group commit: while one record is being written, other channels' posts wait for the next
    write together, so 12 channels cost a handful of writes, not 24; every message is posted once
    and a second pass finds nothing left to send."""
    rec = Recorder()
    core.register_adapter(rec)
    channels = [Destination.parse(f"console:#c{i}") for i in range(12)]
    await queue(core, "1", 1, channels)
    await queue(core, "2", 1, channels)
    commits: list[str] = []  # one entry per write transaction, named by its function
    original = core.store._write_hop

    async def counting(fn):
        commits.append(fn.func.__name__)
        return await original(fn)

    core.store._write_hop = counting  # type: ignore[method-assign]
    assert await core.outbox.run_once() == 24
    records = [c for c in commits if c == "_run_grouped"]
    assert 1 <= len(records) < 12, commits
    assert await core.store.delivery_counts() == {"sent": 24}
    assert await core.outbox.run_once() == 0
    assert len(rec.sent) == 24
    replies = [m for m in rec.sent if m.kind is MessageKind.REPLY]
    assert len(replies) == 12 and all(m.thread_ref for m in replies), "each reply found its root's thread"


async def test_a_message_queued_after_a_failure_does_not_overtake_it(core):
    """A channel's messages go out in the order they were queued, also across a failure: an alert
    for a new story queued while an earlier message waits for its retry waits behind it. Other
    channels are not held."""
    rec = Recorder()
    core.register_adapter(rec)
    other = Destination.parse("console:#other")
    rec.fail_with = [DeliveryError("rate limited", retry_after=600)]
    await queue(core, "first", 1, [NEWS])
    await core.deliver_pending()  # refused: held for 10 minutes
    await queue(core, "second", 2, [NEWS, other])  # a new story, queued after the failure
    core.outbox.clock.t += 10
    await core.deliver_pending()
    assert [(m.destination, m.title) for m in rec.sent] == [(other, "Title second")]
    core.outbox.clock.t += 600
    await core.deliver_pending()
    assert [m.title for m in rec.sent if m.destination == NEWS] == ["Title first", "Title second"]
