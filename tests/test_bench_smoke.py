"""Smoke tests for the benchmark harness (bench/): the feed farm serves real-looking feeds that
honour conditional requests, and a tiny end-to-end run completes and writes sane results.
Nothing here asserts a timing: the numbers belong to `python -m bench`, not to the test suite."""

from __future__ import annotations

import asyncio
import calendar
import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.farm import Farm, FarmSpec, serve
from bot.normalise import entry_guid, normalise_with_origin
from bot.parse import parse_feed

ROOT = Path(__file__).resolve().parents[1]
SHARED_FEEDS = sorted((ROOT.parent / "shared" / "data" / "feeds").glob("*.xml"))


@pytest.fixture
async def farm():
    f = Farm(FarmSpec(feeds=12, share=1.0, round_seconds=0.5))
    runner, _ports = await serve(f, ports=2)
    yield f
    await runner.cleanup()


async def get(session: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, bytes, Any]:
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.copy()


async def test_farm_serves_realistic_rss_and_atom_feeds(farm):
    """About 50 items each, 30-80 KB, parseable by the bot's parser, with titles, links, dates and text."""
    async with aiohttp.ClientSession() as session:
        for feed, kind in ((0, "rss"), (2, "atom")):
            status, body, headers = await get(session, f"{farm.base}{farm.feed_path(feed)}")
            assert status == 200
            assert kind in headers["Content-Type"]
            assert 30_000 <= len(body) <= 80_000, len(body)
            parsed = parse_feed(body, url=f"{farm.base}{farm.feed_path(feed)}")
            assert parsed.version.startswith(kind)
            assert len(parsed.entries) == 50
            assert all(e.title and e.link and e.published for e in parsed.entries)
            assert all(len(e.content or e.summary) > 200 for e in parsed.entries)
            assert len({e.id for e in parsed.entries}) == 50
            assert "<p>" in (parsed.entries[0].content or parsed.entries[0].summary)  # HTML, as real feeds have


async def test_farm_answers_304_until_a_feed_gains_items(farm):
    url = f"{farm.base}{farm.feed_path(1)}"
    async with aiohttp.ClientSession() as session:
        status, body, headers = await get(session, url)
        etag, last_modified = headers["ETag"], headers["Last-Modified"]
        assert (await get(session, url, **{"If-None-Match": etag}))[0] == 304
        assert (await get(session, url, **{"If-Modified-Since": last_modified}))[0] == 304
        async with session.post(f"{farm.base}/_start") as resp:
            assert resp.status == 200
        await asyncio.sleep(1.2)  # share=1.0: every feed gains items in every round
        status, new_body, new_headers = await get(session, url, **{"If-None-Match": etag})
        assert status == 200 and new_headers["ETag"] != etag
        old_ids = {e.id for e in parse_feed(body, url=url).entries}
        new_entries = parse_feed(new_body, url=url).entries
        assert len(new_entries) == 50 and new_entries[0].id not in old_ids
        newest = new_entries[0].published
        assert newest is not None and calendar.timegm(newest) > time.time() - 60  # dated when published
        stats = json.loads((await get(session, f"{farm.base}/_stats"))[1])
        assert stats["not_modified"] == 2 and stats["full"] == 2


async def test_guid_shortcut_agrees_with_normalise(farm):
    """The pipeline skips normalising entries whose guid it already stored; the guid it computes
    without normalising must be the one normalising gives, on the shared real feeds and the farm."""
    now = datetime.now(UTC)
    bodies = [(p.read_bytes(), "https://example.org/feed.xml") for p in SHARED_FEEDS]
    bodies += [(farm.render(f, 50), f"{farm.base}{farm.feed_path(f)}") for f in range(3)]
    checked = 0
    for body, url in bodies:
        for entry in parse_feed(body, url=url).entries:
            guid = entry_guid(entry, url)
            normalised = normalise_with_origin(entry, source_name="x", feed_url=url, now=now)
            if guid is not None and normalised is not None:
                assert guid == normalised[0].guid
                checked += 1
    assert checked >= 150


def test_tiny_run_completes_and_writes_sane_results(tmp_path):
    """A `--quick`-style run, smaller still: every step runs and the JSON holds coherent figures."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "bench", "--quick", "--feeds", "40", "--subs", "200", "--match-subs", "200",
           "--duration", "1", "--warmup", "0.5", "--burst-feeds", "3", "--baseline-seconds", "0.5",
           "--ports", "4", "--no-plots", "--out", str(tmp_path), "--name", "smoke"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("tagwire bench: ")
    results = json.loads((tmp_path / "smoke.json").read_text())
    burst = next(p for p in results["points"] if p["phase"] == "burst")
    steady = next(p for p in results["points"] if p["phase"] == "steady")
    # burst: every item of every feed is new and goes through the whole pipeline
    assert burst["polls"] == 3 and burst["new_items"] == 150
    assert burst["alerts_and_replies"] > 0 and burst["latency_samples"] > 0
    # steady: conditional polls, most answered 304; the farm saw what the bot did
    assert steady["polls"] > 0 and steady["statuses"].get("not_modified", 0) > 0
    assert 0.0 < steady["not_modified_share"] <= 1.0
    assert steady["farm_stats"]["not_modified"] >= steady["statuses"]["not_modified"]
    for point in (burst, steady):
        assert point["cpu_s"] > 0 and point["polls_per_cpu_s"] > 0 and point["peak_rss_mb"] > 0
        if point["latency_samples"]:
            assert 0 <= point["latency_p50_ms"] <= point["latency_p99_ms"] <= point["latency_max_ms"]
    base = steady["baseline"]
    assert base["polls"] >= 3 and base["not_modified_share"] == 0.0  # no conditional requests
    assert steady["vs_baseline"]["polls_per_cpu_s"] > 0
    (match,) = results["match"]["match"]
    assert match["subscriptions"] == 200 and match["tagwire_items_per_cpu_s"] > 0
    assert not math.isnan(match["baseline_items_per_cpu_s"])
