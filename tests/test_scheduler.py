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
