"""Matching throughput: document() + MatchIndex.match() over realistic items and subscriptions.

    python -m bench.match_bench [--subs 1000,10000,100000] [--items 3000] [--seed 1]

Items: real headlines (shared/data/stories) as titles, with bodies made of real feed summaries
(shared/data/feeds), so lengths and vocabulary look like news. Subscriptions: named entities and words
taken from the same text (as hashtags, words, phrases, AND/OR/NOT combinations, title:/source:
fields, some CJK; the 300 most frequent words are left out: nobody subscribes to "after"), plus a
long tail of made-up names that rarely match, as real users' niche tags do.
Prints items per CPU-second (one core; process time, so other load on the machine matters less) for
document(), match() and both; the parse and index build CPU time; memory (tracemalloc) of the parsed
queries alone ("query MB") and of what a running bot keeps: the index with its queries ("bot MB");
the resident memory a fresh process gains by loading the subscriptions the way the pipeline does
(parse each, `set()` it, first `match()`: "RSS MB", and its high-water mark "peak MB"); and a
calibration figure to compare machines.
"""

from __future__ import annotations

import argparse
import csv
import gc
import html
import random
import re
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import feedparser

from bot.match import MatchIndex, Query, document, parse_query
from bot.match.query import _term

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_TAGS = re.compile(r"<[^>]+>")
_ENTITY = re.compile(r"\b(?:[A-Z][a-z]+(?:\s+|-)){1,2}[A-Z][a-z]+\b")
_WORD = re.compile(r"\b[A-Za-z][a-z]{4,}\b")
_SYLLABLES = "li liu zhong yi wang ka ta mo ra ne su ki no ha be ro mi ze xu an lo pe vi".split()
_CJK = ["刘忠义", "东京", "北京", "台湾", "選挙", "地震", "서울", "経済", "上海", "香港"]


def load_text(data: Path) -> tuple[list[str], list[str], list[str]]:
    """(headlines, summaries, sources) from the shared data."""
    headlines, sources = [], []
    for path in sorted((data / "stories").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                headlines.append(row["TITLE"])
                sources.append(row["PUBLISHER"])
    summaries = []
    for path in sorted((data / "feeds").glob("*.xml")):
        for entry in feedparser.parse(path.read_bytes()).entries:
            text = html.unescape(_TAGS.sub(" ", entry.get("summary", "")))
            text = " ".join(text.split())
            if len(text) > 40:
                summaries.append(text[:1500])
    return headlines, summaries, sources


def make_items(n: int, rng: random.Random, headlines: list[str], summaries: list[str], sources: list[str]):
    items = []
    for _ in range(n):
        body = rng.choice(summaries)
        if len(body) < 300:
            body += " " + " ".join(rng.sample(headlines, 3))
        if rng.random() < 0.03:
            body += " " + rng.choice(_CJK) + "。"
        items.append((rng.choice(headlines), body, rng.choice(sources)))
    return items


def make_queries(n: int, rng: random.Random, headlines: list[str], sources: list[str]) -> list[str]:
    entities = sorted({m.group(0) for h in headlines for m in _ENTITY.finditer(h)})
    counts = Counter(w.lower() for h in headlines for w in _WORD.findall(h))
    common = {w for w, _ in counts.most_common(300)}  # "after", "report": nobody subscribes to these
    words = sorted(set(counts) - common)

    def entity() -> str:
        return rng.choice(entities)

    def tail() -> str:  # made-up names: the long tail of niche tags
        return "".join(rng.choice(_SYLLABLES).title() for _ in range(rng.randint(2, 3)))

    def camel(name: str) -> str:
        return "#" + "".join(p.title() for p in re.split(r"[\s-]+", name))

    makers = [
        (30, lambda: camel(entity())),
        (25, lambda: "#" + tail()),
        (12, lambda: rng.choice(words)),
        (10, lambda: f'"{entity()}"'),
        (8, lambda: f"{rng.choice(words)} {rng.choice(words)}"),
        (5, lambda: f"{camel(entity())} OR {camel(entity())} OR {rng.choice(words)}"),
        (4, lambda: f"{rng.choice(words)} -{rng.choice(words)}"),
        (2, lambda: f'title:"{entity()}" (source:"{rng.choice(sources)}" OR {rng.choice(words)})'),
        (2, lambda: f"({rng.choice(words)} OR {rng.choice(words)}) NOT title:{rng.choice(words)}"),
        (2, lambda: rng.choice(_CJK) + ("" if rng.random() < 0.5 else f" OR {rng.choice(_CJK)}")),
    ]
    weights = [w for w, _ in makers]
    return [rng.choices(makers, weights)[0][1]() for _ in range(n)]


def memory(query_texts: list[str]) -> tuple[float, float]:
    """(MB of the parsed queries alone, MB the index retains with its queries), traced by tracemalloc.

    The pipeline parses each stored query and hands it to the index without keeping it, so the second
    figure is what 100k subscriptions cost a running bot.
    """
    parse_query.cache_clear()
    _term.cache_clear()  # shared terms count once, in this measurement
    gc.collect()
    tracemalloc.start()
    queries = [parse_query(q) for q in query_texts]
    parse_query.cache_clear()
    _term.cache_clear()
    gc.collect()
    parsed = tracemalloc.get_traced_memory()[0]
    index = MatchIndex(enumerate(queries))
    del queries
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del index
    return parsed / 1e6, retained / 1e6


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")  # not Linux


def load_rss(query_texts: list[str], doc: tuple[str, str, str]) -> tuple[float, float]:
    """(MB of resident memory gained, MB of its high-water mark) by loading the subscriptions as the
    pipeline does. Run in a fresh process (see `rss_in_child`): RSS never shrinks back."""
    keys = list(range(len(query_texts)))  # the store's ids exist before the queries are parsed
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark
    except OSError:
        pass
    before = _status_mb("VmRSS")
    index: MatchIndex[int] = MatchIndex()
    for key, text in zip(keys, query_texts, strict=True):
        index.set(key, parse_query(text))
    index.match(document(*doc))
    gc.collect()
    return _status_mb("VmRSS") - before, _status_mb("VmHWM") - before


def rss_in_child(n: int, args: argparse.Namespace) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.match_bench", "--rss-child", str(n), "--seed", str(args.seed),
         "--items", str(args.items), "--data", str(args.data)],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout.split()
    return float(out[0]), float(out[1])


def run(items: list[tuple[str, str, str]], query_texts: list[str]) -> dict[str, float]:
    clock = time.process_time
    parse_query.cache_clear()
    gc.collect()
    t0 = clock()
    subs: dict[int, Query] = {i: parse_query(q) for i, q in enumerate(query_texts)}
    t1 = clock()
    index = MatchIndex(subs)
    t2 = clock()
    # What the app does once its subscriptions are loaded: long-lived objects leave the GC's young
    # generations, so collections during matching do not walk 100k queries again and again.
    gc.collect()
    gc.freeze()
    t3 = clock()
    docs = [document(t, b, s) for t, b, s in items]
    t4 = clock()
    matched = sum(len(index.match(d)) for d in docs)
    t5 = clock()
    gc.unfreeze()
    return {
        "distinct": len({q.normal_form for q in subs.values()}),
        "parse_s": t1 - t0,
        "build_s": t2 - t1,
        "doc_per_s": len(items) / (t4 - t3),
        "match_per_s": len(items) / (t5 - t4),
        "items_per_s": len(items) / (t5 - t3),
        "matches_per_item": matched / len(items),
    }


def calibration() -> float:
    """Microseconds for 1000 set insertions: compare machines (about 25 on a typical idle laptop core)."""
    clock = time.process_time
    t = clock()
    for _ in range(200):
        s: set[int] = set()
        for j in range(1000):
            s.add(j)
    return (clock() - t) / 200 * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subs", default="1000,10000,100000")
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    headlines, summaries, sources = load_text(args.data)
    items = make_items(args.items, rng, headlines, summaries, sources)
    sizes = [int(s) for s in args.subs.split(",")]
    if args.rss_child:  # the same queries as the parent's first n
        texts = make_queries(max(max(sizes), args.rss_child), rng, headlines, sources)[: args.rss_child]
        del headlines, summaries, sources
        print(*(f"{mb:.1f}" for mb in load_rss(texts, items[0])))
        return
    query_texts = make_queries(max(sizes), rng, headlines, sources)
    avg = sum(len(t) + len(b) for t, b, _ in items) / len(items)
    print(
        f"{len(items)} items, {avg:.0f} characters of title+body on average; "
        f"calibration: {calibration():.0f} us per 1000 set insertions"
    )
    print("CPU seconds and items per CPU second (one core); MB traced by tracemalloc, RSS of a fresh process")
    print(
        f"{'subs':>7} {'distinct':>8} {'parse s':>7} {'build s':>7} {'query MB':>8} {'bot MB':>8} "
        f"{'RSS MB':>7} {'peak MB':>7} {'doc/s':>7} {'match/s':>7} {'items/s':>7} {'hits/item':>9}"
    )
    for n in sizes:
        r = run(items, query_texts[:n])
        q_mb, i_mb = memory(query_texts[:n])
        rss, peak = rss_in_child(n, args)
        print(
            f"{n:>7} {r['distinct']:>8.0f} {r['parse_s']:>7.2f} {r['build_s']:>7.2f} {q_mb:>8.1f} {i_mb:>8.1f} "
            f"{rss:>7.1f} {peak:>7.1f} {r['doc_per_s']:>7.0f} {r['match_per_s']:>7.0f} {r['items_per_s']:>7.0f} "
            f"{r['matches_per_item']:>9.1f}"
        )


if __name__ == "__main__":
    main()
