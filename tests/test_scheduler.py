"""Scheduling: spread-out slots, backoff, one dispatcher picking due sources from the store."""

from __future__ import annotations

import statistics

import pytest

from bot.config import FetchConfig
from bot.scheduler import failure_delay, next_slot, slot_offset, success_delay


def test_slots_are_stable_per_url_and_spread_across_the_interval():
    urls = [f"https://news{i}.example/feed.xml" for i in range(2000)]
    offsets = [slot_offset(u, 300) for u in urls]
    assert offsets == [slot_offset(u, 300) for u in urls], "deterministic"
    assert all(0 <= o < 300 for o in offsets)
    # roughly uniform: each 30-second bucket holds 5-15% of the feeds, none of them all
    buckets = [sum(1 for o in offsets if b * 30 <= o < (b + 1) * 30) for b in range(10)]
    assert min(buckets) > 100 and max(buckets) < 300
    assert statistics.pstdev(offsets) > 60


def test_next_slot_is_in_the_future_and_one_interval_apart():
    url = "https://a.example/rss"
    t1 = next_slot(url, 300, 1_000_000.0)
    assert 1_000_000.0 < t1 <= 1_000_300.0
    assert next_slot(url, 300, t1) == pytest.approx(t1 + 300)


def test_server_hints_stretch_the_interval_within_bounds():
    cfg = FetchConfig(default_interval=300, max_interval=3600)
    assert success_delay(300, None, cfg) == 300
    assert success_delay(300, 60, cfg) == 300, "a shorter hint never makes us poll more often"
    assert success_delay(300, 900, cfg) == 900
    assert success_delay(300, 86400, cfg) == 1200, "at most four times the configured interval"


def test_failures_back_off_exponentially_up_to_a_cap_and_honour_retry_after():
    cfg = FetchConfig(backoff_base=60, backoff_max=3600)
    assert [failure_delay(n, None, cfg) for n in range(1, 8)] == [60, 120, 240, 480, 960, 1920, 3600]
    assert failure_delay(1, 600, cfg) == 600
    assert failure_delay(1, 10**9, cfg) == 3600


async def test_one_dispatcher_polls_only_due_sources_and_never_the_same_one_twice_at_once(tmp_path):
    """The dispatcher reads next_poll from the store: due sources start, others wait; a slow poll
    is not started again while it is still in flight."""
    import asyncio

    from bot.app import Tagwire
    from bot.config import config_from_dict
    from bot.fetch import FetchResult

    cfg = config_from_dict({
        "storage": {"path": str(tmp_path / "t.db")},
        "sources": [{"name": n, "url": f"https://{n}.example/feed"} for n in ("due", "later", "slow")],
    })
    app = await Tagwire.create(cfg, adapters=[])
    fetched: list[str] = []
    release = asyncio.Event()

    async def fake_fetch(url, **_):  # the network is not what this test is about
        fetched.append(url)
        if "slow" in url:
            await release.wait()
        return FetchResult(status="not_modified", url=url, body=None, content_type=None, etag=None,
                           last_modified=None, body_hash="", http_status=304, retry_after=None, max_age=None)

    app.fetcher.fetch = fake_fetch  # type: ignore[method-assign]
    try:
        sources = {s.name: s for s in await app.core.store.all_sources()}
        now = app.scheduler.clock()
        await app.core.store.postpone_source(sources["later"].id, now + 3600)
        assert await app.scheduler.dispatch() == 2
        await asyncio.sleep(0.05)
        assert sorted(fetched) == ["https://due.example/feed", "https://slow.example/feed"]
        assert await app.scheduler.dispatch() == 0, "the slow poll is still in flight; due is not due again"
        release.set()
        await app.scheduler.wait_idle()
        after = {s.name: s for s in await app.core.store.all_sources()}
        due = after["due"]
        assert due.next_poll == pytest.approx(max(due.last_poll + 1, next_slot(due.url, 300, due.last_poll))), \
            "the next poll goes to the source's own slot in its (default, 5-minute) interval"
        assert now < due.next_poll <= due.last_poll + 300
        assert after["later"].last_poll is None
    finally:
        release.set()
        await app.close()
