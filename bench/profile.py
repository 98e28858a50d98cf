"""Summarise py-spy's raw (collapsed) stacks: where the bot process spends its CPU.

    python -m bench.profile STACKS.txt [--top 30]

`python -m bench --profile DIR` records with ``py-spy record --gil``: each sample is the stack of
the thread holding the GIL, so the shares below are shares of the process's Python CPU time
(C code that releases the GIL, such as SQLite's statements or zlib, is not counted; a process that
is idle gives no samples). "inclusive" counts a function whenever it is on the stack, "self" only
when it is the innermost frame.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_key(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({path})"


# Pipeline stages: the share of samples with one of these functions on the stack ("bot/..." paths
# as _frame_key shortens them). Stages nest in places (the pipeline's write is inside process).
STAGES = [
    ("fetch (aiohttp, conditional GET)", ("Fetcher.fetch (bot/fetch.py)",)),
    ("parse (feedparser)", ("parse_feed (bot/parse.py)",)),
    ("normalise", ("normalise_entries (bot/pipeline.py)", "normalise_with_origin (bot/normalise.py)")),
    ("judge: dedupe, story, match, summarise", ("Judge.judge (bot/pipeline.py)",)),
    ("store: write items, deliveries, decisions", ("SQLiteStore.write_items (bot/store/sqlite.py)",
                                                   "_write_items (bot/store/sqlite.py)")),
    ("store: poll bookkeeping", ("SQLiteStore.record_poll_success (bot/store/sqlite.py)",
                                 "SQLiteStore.record_poll_failure (bot/store/sqlite.py)",
                                 "SQLiteStore.due_sources (bot/store/sqlite.py)")),
    ("store: group commits (poll outcomes, sent records)", ("_run_grouped (bot/store/sqlite.py)",)),
    ("outbox (claim, send, mark sent)", ("Outbox.run_once (bot/outbox.py)", "Outbox._send_group (bot/outbox.py)",
                                         "_claim_deliveries (bot/store/sqlite.py)")),
    ("logging", ("Logger._log (logging/__init__.py)",)),
    ("database thread (aiosqlite: the store's SQL functions)", ("_connection_worker_thread (aiosqlite/core.py)",)),
    ("event loop waiting in epoll", ("EpollSelector.select (selectors.py)",)),
    ("process start (imports, store open)", ("_find_and_load (<frozen importlib._bootstrap>)",
                                             "Core.open (bot/app.py)")),
]


def summarise(path: Path, top: int = 30) -> str:
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    stage_samples: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_key(f) for f in stack.split(";") if f]
        unique = set(frames)
        for key in unique:
            inclusive[key] += n
        for label, keys in STAGES:
            if any(k in unique for k in keys):
                stage_samples[label] += n
        if frames:
            self_[frames[-1]] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (py-spy --gil: the thread holding the GIL, i.e. Python CPU time)", "",
             "stage %     stage"]
    for label, _keys in STAGES:
        lines.append(f"{100 * stage_samples[label] / total:10.1f}  {label}")
    lines += ["", "inclusive %  function"]
    lines += [f"{100 * n / total:10.1f}  {k}" for k, n in inclusive.most_common(top)]
    lines += ["", "self %      function"]
    lines += [f"{100 * n / total:10.1f}  {k}" for k, n in self_.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stacks", type=Path)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    print(summarise(args.stacks, args.top), end="")


if __name__ == "__main__":
    main()
