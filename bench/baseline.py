"""The baseline: a feed bot written the way typical feed bots are.

For each feed in turn: ``feedparser.parse(url)`` (feedparser fetches the URL itself, with no
conditional headers, so every poll downloads and parses the whole feed), then every keyword is
checked against the entry's title and summary with its own compiled regular expression, then the
entry's id is looked up in a seen-set; an entry that matched a keyword and was not seen before is
an alert. One process, one thread, no database.

    python -m bench.baseline --job job.json --out result.json   (run by ``python -m bench``)

Keywords come from the same subscriptions Tagwire gets: each query becomes the one keyword a user
of such a bot would type (`keyword_of`). Latency is measured as in Tagwire: from the moment the
poll's response was parsed (feedparser returns) to the moment the alert is produced.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import feedparser

from bench.farm import peak_rss_mb

_PHRASE = re.compile(r'"([^"]+)"')
_CAMEL = re.compile(r"[A-Z][a-z]+|[A-Z]+(?![a-z])|[a-z]+|\d+|[^\x00-\x7f]+")
_OPERATORS = frozenset({"AND", "OR", "NOT"})


def keyword_of(query: str) -> str:
    """The single keyword a typical bot's user would have typed for this Tagwire query.

    A quoted phrase wins; else the first positive term, with field prefixes and parentheses
    dropped and a ``#CamelCase`` hashtag written out as words ("#LiuZhongyi" -> "Liu Zhongyi")."""
    m = _PHRASE.search(query)
    if m:
        return m.group(1).strip()
    for token in query.replace("(", " ").replace(")", " ").split():
        if token in _OPERATORS or token.startswith("-"):
            continue
        token = token.split(":", 1)[1] if ":" in token and not token.startswith("#") else token
        if token.startswith("#"):
            return " ".join(_CAMEL.findall(token[1:])) or token[1:]
        if token:
            return token
    return query.strip()


def compile_keywords(keywords: Iterable[str]) -> list[tuple[str, re.Pattern[str]]]:
    return [(k, re.compile(r"\b" + re.escape(k) + r"\b", re.IGNORECASE)) for k in keywords]


class TypicalBot:
    def __init__(self, keywords: Sequence[str]) -> None:
        self.patterns = compile_keywords(keywords)
        self.seen: set[str] = set()
        self.alerts = 0
        self.entries = 0
        self.latencies: list[float] = []

    def check(self, entry: Any, detected: float) -> None:
        """Keywords first (one regex each), then the seen-set, as such bots do."""
        text = f"{entry.get('title', '')} {entry.get('summary', '')}"
        hits = [k for k, rx in self.patterns if rx.search(text)]
        key = entry.get("id") or entry.get("link", "")
        if hits and key not in self.seen:
            self.seen.add(key)
            self.alerts += 1
            self.latencies.append(time.monotonic() - detected)
        self.entries += 1

    def poll(self, url: str) -> int:
        parsed = feedparser.parse(url, agent="typical-feed-bot/1.0")
        detected = time.monotonic()
        for entry in parsed.entries:
            self.check(entry, detected)
        return int(parsed.get("status", 0) or 0)


def run_polls(urls: Sequence[str], keywords: Sequence[str], seconds: float, min_polls: int = 3) -> dict[str, Any]:
    """Poll ``urls`` in turn (wrapping round) for about ``seconds`` of wall time."""
    bot = TypicalBot(keywords)
    statuses: dict[str, int] = {}
    cpu0, wall0 = time.process_time(), time.monotonic()
    polls = 0
    while polls < min_polls or time.monotonic() - wall0 < seconds:
        status = bot.poll(urls[polls % len(urls)])
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        polls += 1
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    lat = sorted(bot.latencies)
    return {
        "keywords": len(keywords),
        "polls": polls,
        "entries": bot.entries,
        "alerts": bot.alerts,
        "cpu_s": cpu,
        "wall_s": wall,
        "polls_per_cpu_s": polls / cpu,
        "items_per_cpu_s": bot.entries / cpu,
        "not_modified_share": statuses.get("304", 0) / polls,
        "statuses": statuses,
        "latency_p50_ms": _pct(lat, 0.50) * 1000,
        "latency_p99_ms": _pct(lat, 0.99) * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


def match_rate(texts: Sequence[str], keywords: Sequence[str], min_seconds: float = 1.0) -> dict[str, float]:
    """Items per CPU-second for the regex-per-keyword check alone (compile time reported apart)."""
    t0 = time.process_time()
    patterns = compile_keywords(keywords)
    compile_s = time.process_time() - t0
    done = 0
    hits = 0
    t0 = time.process_time()
    while True:
        for text in texts:
            hits += sum(1 for _, rx in patterns if rx.search(text))
            done += 1
            if done >= 3 and time.process_time() - t0 >= min_seconds:
                break
        else:
            continue
        break
    cpu = time.process_time() - t0
    return {"keywords": len(keywords), "items": done, "items_per_cpu_s": done / cpu, "compile_s": compile_s,
            "hits_per_item": hits / done}


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description="Run the typical-bot baseline for the bench.")
    ap.add_argument("--job", required=True, help="JSON: urls, keywords, seconds, cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.job, encoding="utf-8") as f:
        job = json.load(f)
    from bench.farm import pin_to_cpu

    pinned = pin_to_cpu(job.get("cpu"))
    result = run_polls(job["urls"], job["keywords"], float(job.get("seconds", 10.0)))
    result["cpu_pinned"] = pinned
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
