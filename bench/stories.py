"""Story grouping benchmark: stream labelled headlines through the bot's `StoryClusterer`, score it.

    python -m bench.stories --input ../shared/data/stories/uci-news-dev.csv --assignments /tmp/dev.csv

Rows (columns ID, TITLE, TIMESTAMP in ms, STORY) are streamed in TIMESTAMP order (ties by ID) through
`bot.story.StoryClusterer.assign` with the headline as title and no lead, exactly as the bot calls it.
Writes ``ID,cluster`` rows to ``--assignments`` and prints B-cubed precision, recall and F1 against the
STORY labels, the number of clusters and the throughput. See bench/README.md ("Story grouping").
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.story import StoryClusterer


@dataclass(frozen=True, slots=True)
class BCubed:
    precision: float
    recall: float
    f1: float


def bcubed(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> BCubed:
    """B-cubed precision, recall and F1 (Amigó et al. 2009), averaged over items.

    An item's precision is the share of the items in its predicted cluster that carry its true label
    (itself included); its recall, the share of the items with its label that are in its cluster.
    F1 is the harmonic mean of the two averages.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    if not truth:
        raise ValueError("nothing to score")
    pairs = Counter(zip(truth, predicted, strict=True))
    label_sizes = Counter(truth)
    cluster_sizes = Counter(predicted)
    # the k items sharing (label, cluster) each have precision k/|cluster| and recall k/|label|
    precision = sum(k * k / cluster_sizes[c] for (_, c), k in pairs.items()) / len(truth)
    recall = sum(k * k / label_sizes[t] for (t, _), k in pairs.items()) / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BCubed(precision, recall, f1)


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    title: str
    timestamp: float  # seconds
    story: str


def read_rows(path: Path) -> list[Row]:
    """The CSV's rows in stream order: TIMESTAMP (ms), then numeric ID."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = [Row(r["ID"], r["TITLE"], int(r["TIMESTAMP"]) / 1000.0, r["STORY"]) for r in csv.DictReader(f)]
    rows.sort(key=lambda r: (r.timestamp, int(r.id) if r.id.isdigit() else 0, r.id))
    return rows


@dataclass(frozen=True, slots=True)
class Result:
    scores: BCubed
    clusters: int
    items_per_second: float
    assignments: list[tuple[str, int]]  # (ID, story id) in stream order


def add_background(clusterer: StoryClusterer, rows: Sequence[Row], count: int, *, seed: int = 0) -> None:
    """Open ``count`` one-item stories before the stream starts, to measure speed with many open stories.

    Their headlines are seven words drawn from the words of ``rows``' own headlines (so the index has
    realistic term frequencies), dated over the day before the first row, inside the window. They
    share words with the real items and capture many of them, so the scores of such a run say nothing
    about quality; the throughput is the point.
    """
    if count <= 0 or not rows:
        return
    words = [w for r in rows for w in r.title.split()]
    rng = random.Random(seed)
    start = rows[0].timestamp - 86400.0
    for n in range(count):
        title = " ".join(rng.choices(words, k=7))
        clusterer.add(-(n + 1), title, "", start + 86000.0 * n / count)  # negative ids: never a real story


def run(rows: Sequence[Row], clusterer: StoryClusterer | None = None) -> Result:
    """Cluster ``rows`` (already in stream order) and score the result against their labels."""
    clusterer = clusterer if clusterer is not None else StoryClusterer()
    assignments: list[tuple[str, int]] = []
    start = time.perf_counter()
    for row in rows:
        assignments.append((row.id, clusterer.assign(row.title, "", row.timestamp).story_id))
    elapsed = time.perf_counter() - start
    predicted = [story for _, story in assignments]
    return Result(
        scores=bcubed([r.story for r in rows], predicted),
        clusters=len(set(predicted)),
        items_per_second=len(rows) / elapsed if elapsed > 0 else float("inf"),
        assignments=assignments,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stories", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="CSV with ID, TITLE, TIMESTAMP (ms), STORY")
    parser.add_argument("--assignments", type=Path, required=True, help="where to write ID,cluster rows")
    defaults = StoryClusterer()
    # the defaults are the bot's; these switches only exist to reproduce the table in bench/README.md
    parser.add_argument("--threshold", type=float, default=defaults.threshold)
    parser.add_argument(
        "--cohesion-power", type=float, default=defaults.cohesion_power, help="0: plain cosine to the centroid"
    )
    parser.add_argument(
        "--new-story-gap",
        type=float,
        default=defaults.new_story_gap,
        help="seconds; a huge value switches the recency decay off",
    )
    parser.add_argument("--char-n", type=int, default=defaults.char_n, help="character n-grams too (0: words only)")
    parser.add_argument(
        "--background",
        type=int,
        default=0,
        metavar="N",
        help="open N made-up stories first, to measure speed with many open stories",
    )
    args = parser.parse_args(argv)

    rows = read_rows(args.input)
    clusterer = StoryClusterer(
        threshold=args.threshold,
        cohesion_power=args.cohesion_power,
        new_story_gap=args.new_story_gap,
        char_n=args.char_n,
    )
    add_background(clusterer, rows, args.background)
    open_before = len(clusterer)
    result = run(rows, clusterer)
    with args.assignments.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "cluster"])
        writer.writerows(result.assignments)
    s = result.scores
    print(f"input        {args.input} ({len(rows)} items, {len(set(r.story for r in rows))} labelled stories)")
    print(
        f"config       threshold={clusterer.threshold} cohesion_power={clusterer.cohesion_power} "
        f"new_story_gap={clusterer.new_story_gap:g} char_n={clusterer.char_n} min_support={clusterer.min_support} "
        f"(items with >= {clusterer.long_item_terms} terms)"
    )
    note = "  (not a quality score: the made-up stories reuse these headlines' words)" if args.background else ""
    print(f"B-cubed      precision {s.precision:.4f}  recall {s.recall:.4f}  F1 {s.f1:.4f}{note}")
    print(f"clusters     {result.clusters}")
    print(
        f"throughput   {result.items_per_second:,.0f} items/s ({open_before} stories open at the start, "
        f"{len(clusterer)} at the end)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
