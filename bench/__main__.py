"""``python -m bench``: throughput, latency and memory of Tagwire against the feed farm and a baseline.

    python -m bench --quick          # < 1 minute: small sizes, one-line summary
    python -m bench                  # the full run (1k, 10k, 50k feeds; 100k subscriptions; longer)
    python -m bench --feeds 1000,10000 --subs 10000 --duration 60

Every measured step runs in a child process of its own, pinned to CPU 0 where the OS allows it,
while the feed farm (`bench.farm`) runs in another process pinned to CPU 1, so "per CPU-second"
means CPU time of the process under test alone. Results: ``bench/results/<name>.json`` and PNG
plots beside it; see bench/README.md ("Throughput, latency and memory") for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.farm import FarmProcess, FarmSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BOT_CPU, FARM_CPU = 0, 1


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_queries(n: int, seed: int) -> list[str]:
    """Subscriptions as users write them, from the same vocabulary as the farm's items."""
    from bench.match_bench import DATA, load_text
    from bench.match_bench import make_queries as generate

    rng = random.Random(seed)
    headlines, _summaries, sources = load_text(DATA)
    return generate(n, rng, headlines, sources)


CACHE_DIR: str | None = None  # set by --cache: seeded fingerprints kept between runs
PROFILE_DIR: Path | None = None  # set by --profile: py-spy samples each bot run into this folder


def run_step(module: str, args: list[str], job: dict[str, Any], work: Path, name: str,
             timeout: float, profile: bool = False) -> dict[str, Any]:
    """Run one bench step in a child process; returns the JSON it wrote."""
    job_path = work / f"{name}.job.json"
    out_path = work / f"{name}.out.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", module, *args, "--job", str(job_path), "--out", str(out_path)]
    if profile and PROFILE_DIR is not None:
        spy = Path(sys.executable).with_name("py-spy")
        raw = PROFILE_DIR / f"{name}.stacks.txt"
        # --gil: sample the thread holding the GIL only, i.e. where Python CPU time goes (idle pool
        # threads blocked in C would otherwise count as busy)
        cmd = [str(spy if spy.exists() else "py-spy"), "record", "--gil", "-r", "250", "-f", "raw",
               "-o", str(raw), "--", *cmd]
    with (work / f"{name}.log").open("w", encoding="utf-8") as err:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, stderr=err, stdout=subprocess.DEVNULL, timeout=timeout, check=False,
        )
    if proc.returncode != 0:
        tail = (work / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"bench step {name} failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    return result


def bot_point(
    *, feeds: int, queries: list[str], phase: str, interval: float, share: float, warmup: float,
    duration: float, concurrency: int, per_host: int, ports: int, work: Path, baseline_s: float,
    baseline_feeds: int, role: str,
) -> dict[str, Any]:
    """One measurement: a fresh farm, a seeded store, the bot, then the baseline on the same farm."""
    name = f"{phase}-{feeds}f-{len(queries)}s"
    spec = FarmSpec(feeds=feeds, share=share, round_seconds=interval, epoch=time.time())
    with FarmProcess(spec, ports=ports, cpu=FARM_CPU) as farm:
        spec = FarmSpec(feeds=feeds, share=share, round_seconds=interval, epoch=farm.epoch)
        job: dict[str, Any] = {
            "db": str(work / f"{name}.db"), "farm": {k: getattr(spec, k) for k in
                                                     ("feeds", "share", "round_seconds", "items", "epoch",
                                                      "seed", "dup_share")},
            "base": farm.base, "ports": farm.ports, "phase": phase, "interval": interval,
            "queries": queries, "subscriptions": len(queries), "warmup": warmup, "duration": duration,
            "concurrency": concurrency, "per_host": per_host, "cpu": BOT_CPU, "cache": CACHE_DIR,
        }
        log(f"{name}: seeding the store")
        from bench.pipeline_bench import seed

        seeded = seed(job)  # here, not in the bot's process: its memory is not the bot's
        job["queries"] = []  # the bot reads its subscriptions from the store
        warm = f"warm-up {warmup:.0f} s, " if phase == "steady" else ""
        log(f"{name}: running the bot ({warm}{duration:.0f} s{' max' if phase == 'burst' else ''})")
        result = run_step("bench.pipeline_bench", ["run"], job, work, name + "-run",
                          timeout=warmup + duration + 1800, profile=True)
        if PROFILE_DIR is not None and (PROFILE_DIR / f"{name}-run.stacks.txt").exists():
            from bench.profile import summarise

            stacks = PROFILE_DIR / f"{name}-run.stacks.txt"
            (PROFILE_DIR / f"{name}-run.profile.txt").write_text(summarise(stacks), encoding="utf-8")
        result["seed"] = seeded
        result["role"] = role
        result["farm_cpu_pinned"] = farm.pinned
        result["farm_stats"] = {k: v for k, v in farm.stats().items() if k in ("requests", "full", "not_modified")}
        if baseline_s > 0:
            from bench.baseline import keyword_of

            log(f"{name}: running the baseline ({baseline_s:.0f} s)")
            urls = [farm.url(f) for f in range(0, feeds, max(1, feeds // baseline_feeds))][:baseline_feeds]
            bjob = {"urls": urls, "keywords": [keyword_of(q) for q in queries], "seconds": baseline_s,
                    "cpu": BOT_CPU}
            result["baseline"] = run_step("bench.baseline", [], bjob, work, name + "-baseline",
                                          timeout=baseline_s + 600)
    Path(job["db"]).unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(job["db"] + suffix).unlink(missing_ok=True)
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def pairs(point: dict[str, Any]) -> dict[str, float | None]:
    """Tagwire's figures as ratios to the baseline's, pair by pair (> 1: Tagwire better)."""
    b = point.get("baseline")
    if not b:
        return {}
    return {
        "polls_per_cpu_s": ratio(point["polls_per_cpu_s"], b["polls_per_cpu_s"]),
        "peak_rss": ratio(b["peak_rss_mb"], point["peak_rss_mb"]),
        "latency_p50": ratio(b["latency_p50_ms"], point["latency_p50_ms"]),
        "latency_p99": ratio(b["latency_p99_ms"], point["latency_p99_ms"]),
    }


def plot(results: dict[str, Any], out: Path, stem: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    files = []
    steady = [p for p in results["points"] if p["role"] == "scaling"]
    steady.sort(key=lambda p: p["feeds"])
    if steady:
        feeds = [p["feeds"] for p in steady]
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        ax = axes[0][0]
        ax.plot(feeds, [p["polls_per_cpu_s"] for p in steady], "o-", label="Tagwire")
        base = [p.get("baseline", {}).get("polls_per_cpu_s") for p in steady]
        if any(base):
            ax.plot(feeds, base, "s--", label="baseline (feedparser.parse(url) + regex per keyword)")
        ax.axhline(500, color="grey", ls=":", label="target 500")
        ax.set(xscale="log", yscale="log", xlabel="feeds", ylabel="polls per CPU-second",
               title=f"Polls per CPU-second ({results['subs']} subs, offered {results['rate']:.0f}/s, "
                     f"{results['share']:.0%} of feeds changed per round)")
        ax.legend(fontsize=7)
        ax = axes[0][1]
        ax.plot(feeds, [p["latency_p50_ms"] for p in steady], "o-", label="p50")
        ax.plot(feeds, [p["latency_p99_ms"] for p in steady], "o-", label="p99")
        ax.axhline(500, color="grey", ls=":", label="target p99 500 ms")
        ax.set(xscale="log", yscale="log", xlabel="feeds", ylabel="ms",
               title="Detection to adapter latency")
        ax.legend(fontsize=7)
        ax = axes[1][0]
        ax.plot(feeds, [p["peak_rss_mb"] for p in steady], "o-", label="Tagwire peak RSS")
        if any(base):
            ax.plot(feeds, [p.get("baseline", {}).get("peak_rss_mb") for p in steady], "s--", label="baseline")
        ax.axhline(200, color="grey", ls=":", label="target 200 MB")
        ax.set(xscale="log", xlabel="feeds", ylabel="MB", title="Peak RSS of the process")
        ax.legend(fontsize=7)
        ax = axes[1][1]
        ax.plot(feeds, [p["not_modified_share"] * 100 for p in steady], "o-", label="304 share %")
        ax.plot(feeds, [p["cpu_utilisation"] * 100 for p in steady], "o-", label="CPU use % of one core")
        ax.plot(feeds, [100 * p["polls_per_s"] / p["offered_polls_per_s"] for p in steady], "o-",
                label="polls done % of offered")
        ax.set(xscale="log", xlabel="feeds", ylabel="%", title="304 share, CPU use, polls kept up")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{stem}-scaling.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
    match = results.get("match", {}).get("match")
    if match:
        fig, ax = plt.subplots(figsize=(6, 4))
        subs = [m["subscriptions"] for m in match]
        ax.plot(subs, [m["tagwire_items_per_cpu_s"] for m in match], "o-", label="Tagwire normalise + match")
        ax.plot(subs, [m["baseline_items_per_cpu_s"] for m in match], "s--", label="baseline regex per keyword")
        ax.axhline(5000, color="grey", ls=":", label="target 5000 at 100k")
        ax.set(xscale="log", yscale="log", xlabel="subscriptions", ylabel="items per CPU-second",
               title="Match throughput")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{stem}-match.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
    return files


def summary_line(results: dict[str, Any]) -> str:
    steady = [p for p in results["points"] if p["role"] == "scaling"]
    burst = [p for p in results["points"] if p["role"] == "burst"]
    lat = [p for p in results["points"] if p["role"] == "latency"]
    parts = []
    if steady:
        p = max(steady, key=lambda p: p["feeds"])
        r = pairs(p)
        x = r.get("polls_per_cpu_s")
        parts.append(
            f"{p['feeds']} feeds/{p['subscriptions']} subs: {p['polls_per_cpu_s']:.0f} polls/CPU-s"
            + (f" ({x:.0f}x baseline)" if x else "")
            + f", {p['polls_per_s']:.0f} polls/s, 304 {p['not_modified_share']:.0%}, "
            f"latency p50 {p['latency_p50_ms']:.0f} ms p99 {p['latency_p99_ms']:.0f} ms, "
            f"peak RSS {p['peak_rss_mb']:.0f} MB"
        )
    if lat:
        q = lat[0]
        parts.append(f"at {q['offered_polls_per_s']:.0f} polls/s offered ({q['feeds']} feeds): latency p50 "
                     f"{q['latency_p50_ms']:.0f} ms p99 {q['latency_p99_ms']:.0f} ms")
    if burst:
        b = burst[0]
        parts.append(f"pipeline {b['items_per_cpu_s']:.0f} new items/CPU-s")
    match = results.get("match", {}).get("match")
    if match:
        m = match[-1]
        parts.append(f"match @{m['subscriptions']} subs {m['tagwire_items_per_cpu_s']:.0f} items/CPU-s "
                     f"({m['ratio']:.0f}x baseline)")
    return "tagwire bench: " + "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    ap.add_argument("--feeds", help="comma-separated feed counts for the steady phase (default 1000,10000,50000; "
                    "'none': no steady point)")
    ap.add_argument("--subs", type=int, help="subscriptions in the steady and burst phases (default 10000)")
    ap.add_argument("--rss-subs", type=int, help="one extra steady point at 10k feeds with this many subscriptions "
                                                 "(default 100000; 0: skip)")
    ap.add_argument("--match-subs", help="subscription counts for match throughput (default 1000,10000,100000)")
    ap.add_argument("--rate", type=float, default=500.0, help="offered polls per second (sets each feed's interval)")
    ap.add_argument("--latency-point", metavar="FEEDS:RATE",
                    help="one extra steady point at a lower offered rate (default 1000:50; 'none' to skip)")
    ap.add_argument("--share", type=float, default=0.1, help="share of feeds changed per round")
    ap.add_argument("--duration", type=float, help="measured seconds per steady point")
    ap.add_argument("--warmup", type=float, help="seconds before measuring (default: one interval + 2 s)")
    ap.add_argument("--burst-feeds", type=int, help="feeds in the burst phase (every item new)")
    ap.add_argument("--baseline-seconds", type=float, help="seconds of baseline polling per point")
    ap.add_argument("--concurrency", type=int, default=256, help="fetch.concurrency for the bot")
    ap.add_argument("--per-host", type=int, default=4, help="fetch.per_host_concurrency for the bot")
    ap.add_argument("--ports", type=int, default=64, help="farm listening ports (each one a 'host')")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", help="results file stem (default: quick or full)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, job files)")
    ap.add_argument("--no-plots", action="store_true", help="write the JSON only")
    ap.add_argument("--cache", type=Path,
                    help="keep the seeded fingerprints (the slow part of seeding) in DIR between runs; "
                         "they are remade when the farm or the fingerprinting code changes")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="sample every bot run with py-spy; stacks and a summary per run go to DIR")
    args = ap.parse_args()
    global PROFILE_DIR, CACHE_DIR
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = args.profile
    if args.cache:
        CACHE_DIR = str(args.cache.resolve())

    quick = args.quick
    feeds_arg = args.feeds or ("200" if quick else "1000,10000,50000")
    feeds = [] if feeds_arg == "none" else [int(x) for x in feeds_arg.split(",")]
    subs = args.subs or (1000 if quick else 10_000)
    rss_subs = args.rss_subs if args.rss_subs is not None else (0 if quick else 100_000)
    match_subs = [int(x) for x in (args.match_subs or ("1000" if quick else "1000,10000,100000")).split(",")]
    duration = args.duration or (8.0 if quick else 60.0)
    burst_feeds = args.burst_feeds if args.burst_feeds is not None else (30 if quick else 60)
    baseline_s = args.baseline_seconds if args.baseline_seconds is not None else (4.0 if quick else 20.0)
    stem = args.name or ("quick" if quick else "full")

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tagwire-bench-"))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    log(f"work directory {work}; CPUs available: {cpus}")
    queries = make_queries(max([subs, rss_subs, *match_subs]), args.seed)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "subs": subs, "share": args.share, "rate": args.rate, "points": [],
    }
    common = dict(share=args.share, concurrency=args.concurrency, per_host=args.per_host, ports=args.ports,
                  work=work)

    log(f"match throughput at {match_subs} subscriptions")
    results["match"] = run_step(
        "bench.pipeline_bench", ["match"],
        {"farm": {"feeds": 64}, "sample_feeds": 4 if quick else 40, "queries": queries[: max(match_subs)],
         "sizes": match_subs, "cpu": BOT_CPU, "baseline_s": 0.5 if quick else 3.0},
        work, "match", timeout=3600,
    )
    if burst_feeds:
        results["points"].append(bot_point(
            feeds=burst_feeds, queries=queries[:subs], phase="burst", interval=3600.0, warmup=0.0,
            duration=600.0, baseline_s=0.0, baseline_feeds=0, role="burst", **common,
        ))
    for n in feeds:
        interval = max(2.0, n / args.rate)
        results["points"].append(bot_point(
            feeds=n, queries=queries[:subs], phase="steady", interval=interval,
            warmup=args.warmup if args.warmup is not None else interval + 2.0,
            duration=max(duration, interval) if not quick else duration, baseline_s=baseline_s,
            baseline_feeds=min(n, 50), role="scaling", **common,
        ))
    latency_point = args.latency_point or ("none" if quick else "1000:50")
    if latency_point != "none":
        n_s, _, rate_s = latency_point.partition(":")
        n, rate = int(n_s), float(rate_s)
        interval = max(2.0, n / rate)
        results["points"].append(bot_point(
            feeds=n, queries=queries[:subs], phase="steady", interval=interval, warmup=interval + 2.0,
            duration=max(duration, 2 * interval), baseline_s=0.0, baseline_feeds=0, role="latency", **common,
        ))
    if rss_subs:
        n = 10_000
        interval = max(2.0, n / args.rate)
        results["points"].append(bot_point(
            feeds=n, queries=queries[:rss_subs], phase="steady", interval=interval, warmup=interval + 2.0,
            duration=max(duration / 2, interval), baseline_s=0.0, baseline_feeds=0, role="memory", **common,
        ))
    for p in results["points"]:
        p["vs_baseline"] = pairs(p)
    # items through the whole pipeline (burst: every item new) against the baseline's entries per
    # CPU-second (parse + one regex per keyword + seen-set), same subscriptions
    based = [p for p in results["points"] if p.get("baseline") and p["subscriptions"] == subs]
    burst_points = [p for p in results["points"] if p["role"] == "burst"]
    if based and burst_points:
        results["items_vs_baseline"] = ratio(burst_points[0]["items_per_cpu_s"],
                                             based[0]["baseline"]["items_per_cpu_s"])
    results["elapsed_s"] = time.monotonic() - t_start
    args.out.mkdir(parents=True, exist_ok=True)
    results["plots"] = [] if args.no_plots else plot(results, args.out, stem)
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    if not args.keep:
        for f in work.iterdir():
            f.unlink()
        work.rmdir()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(summary_line(results) + f" [{results['elapsed_s']:.0f} s; {shown}]")


if __name__ == "__main__":
    main()
