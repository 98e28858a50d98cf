"""Story grouping (bot/story.py) and its benchmark (bench/stories.py): what a reader of the alerts sees
is one thread per story, so the tests are about which items end up together."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from bench.stories import BCubed, bcubed, main, read_rows
from bot.story import StoryClusterer

ROOT = Path(__file__).resolve().parents[1]
STORIES = ROOT.parent / "shared" / "data" / "stories"
DEV = STORIES / "uci-news-dev.csv"
HOUR = 3600.0
DAY = 24 * HOUR


# One event, three outlets, three wordings.
SPYWARE = [
    (
        "Apple fixes iPhone flaw that spyware used to break in",
        "Apple released an emergency software update on Thursday to close a security hole in the iPhone "
        "that researchers at a digital rights lab say was used to plant spyware on the phone of a "
        "journalist. The company urged all users to install iOS 17.0.3 right away.",
    ),
    (
        "Update your iPhone now: emergency patch closes spyware hole",
        "Researchers said the flaw let attackers install spyware without the victim tapping anything. "
        "Apple shipped the fix as iOS 17.0.3 and said it was aware of a report that the hole may have "
        "been actively exploited.",
    ),
    (
        "Spyware attack on journalist led to emergency Apple security update",
        "A digital rights lab that examined the journalist's phone found spyware that used a previously "
        "unknown iPhone flaw. Apple fixed the hole in an update released on Thursday, iOS 17.0.3.",
    ),
]
# Another story about the same company, the same week.
EU_FINE = (
    "EU fines Apple over music streaming rules in App Store",
    "The European Commission fined Apple on Monday for stopping music streaming services from telling "
    "iPhone users about cheaper subscriptions outside its App Store, the first antitrust penalty the "
    "bloc has imposed on the company.",
)
FLOOD = (
    "Heavy rain floods streets in Lisbon as storm batters Portugal",
    "Firefighters rescued drivers trapped in cars after torrential rain flooded parts of the Portuguese "
    "capital overnight; the weather service kept a red warning in place for the coast.",
)
RATES = (
    "Central bank holds interest rates, signals cuts later this year",
    "Policymakers left borrowing costs unchanged for a fifth meeting but said inflation was cooling fast "
    "enough to consider lowering rates in the summer.",
)


@cache
def dev_headlines() -> tuple[str, ...]:
    with DEV.open(newline="", encoding="utf-8") as f:
        return tuple(row["TITLE"] for row in csv.DictReader(f))


def after_a_day_of_news(clusterer: StoryClusterer, start: float) -> float:
    """Feed a day-old stream of real headlines, so document frequencies look like a running bot's
    (with only a handful of items, every shared word looks rare). Returns when that day ended."""
    headlines = dev_headlines()
    for i, title in enumerate(headlines):
        clusterer.assign(title, "", start + i)
    return start + len(headlines) + DAY


def unique_headline(n: int) -> str:
    """A headline sharing no word with any other made by this function."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    word = ""
    while True:
        word = letters[n % 26] + word
        n //= 26
        if n == 0:
            break
    return f"qz{word} vx{word} kw{word}"


# -- grouping -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("warm", [False, True], ids=["fresh start", "after a day of news"])
def test_same_event_from_different_outlets_joins_one_story(warm: bool) -> None:
    clusterer = StoryClusterer()
    now = after_a_day_of_news(clusterer, 0.0) if warm and DEV.exists() else 0.0
    first = clusterer.assign(*SPYWARE[0], now)
    assert first.is_new
    for minutes, item in ((12, SPYWARE[1]), (40, SPYWARE[2])):
        joined = clusterer.assign(*item, now + minutes * 60)
        assert (joined.story_id, joined.is_new) == (first.story_id, False), item[0]


def test_different_stories_on_the_same_company_stay_apart() -> None:
    """Both mention Apple and the iPhone, within the hour: still two stories, two alerts."""
    clusterer = StoryClusterer()
    now = after_a_day_of_news(clusterer, 0.0)
    stream = [FLOOD, SPYWARE[0], EU_FINE, SPYWARE[1], RATES, SPYWARE[2]]
    got = [clusterer.assign(title, lead, now + 300 * i) for i, (title, lead) in enumerate(stream)]
    flood, spy1, eu, spy2, rates, spy3 = got
    assert spy2.story_id == spy1.story_id and spy3.story_id == spy1.story_id
    assert eu.is_new and flood.is_new and rates.is_new
    assert len({flood.story_id, spy1.story_id, eu.story_id, rates.story_id}) == 4


def test_reports_sharing_only_the_place_they_are_about_stay_apart() -> None:
    """A channel subscribed to #Lisbon gets a flood and a tech summit: one shared word is not a story."""
    flood = (
        "Tagus bursts its banks as storm floods Lisbon",
        "The river Tagus overflowed on Tuesday night, flooding low-lying streets in Lisbon and forcing "
        "firefighters to rescue drivers from stranded cars. The weather service kept a red warning in place.",
    )
    flood_again = (
        "Lisbon flooding: firefighters rescue drivers as river overflows",
        "Emergency crews pulled people from cars trapped by floodwater after the Tagus rose overnight; "
        "schools in the riverside districts stayed shut on Wednesday.",
    )
    summit = (
        "Lisbon tech summit opens with record crowd",
        "More than seventy thousand visitors queued at the Lisbon conference centre for the opening talks "
        "on artificial intelligence, start-up funding and chip supply chains.",
    )
    for min_support, summit_joins in ((StoryClusterer().min_support, False), (0.0, True)):
        clusterer = StoryClusterer(min_support=min_support)
        clusterer.add(1, *flood, 0.0)
        assert (clusterer.find(*summit, 600.0).story_id == 1) is summit_joins  # on "Lisbon" alone
        assert clusterer.find(*flood_again, 600.0).story_id == 1


def test_headlines_in_chinese_group_by_characters() -> None:
    clusterer = StoryClusterer()
    visit = clusterer.assign("刘忠义周三访问缅甸，讨论边境电信诈骗问题", "", 0.0)
    storm = clusterer.assign("台风摩羯登陆海南，数十万人紧急撤离", "", 60.0)
    visit2 = clusterer.assign("刘忠义抵达缅甸，就电信诈骗问题举行会谈", "", 120.0)
    storm2 = clusterer.assign("海南台风过后 数十万人撤离 交通中断", "", 180.0)
    assert storm.story_id != visit.story_id
    assert visit2.story_id == visit.story_id and storm2.story_id == storm.story_id


def test_a_story_that_went_quiet_needs_a_closer_match() -> None:
    """Other coverage a few hours later joins; the same item after 18 quiet hours opens a new story,
    while an item that is nearly the same text still joins."""
    clusterer = StoryClusterer()
    clusterer.add(1, *SPYWARE[0], 0.0)
    follow_up = SPYWARE[1]
    assert clusterer.find(*follow_up, 3 * HOUR).story_id == 1
    assert clusterer.find(*follow_up, 18 * HOUR).story_id is None
    assert clusterer.find(SPYWARE[0][0], SPYWARE[0][1][:200], 18 * HOUR).story_id == 1


# -- the two-step API -------------------------------------------------------------------------------


def test_find_changes_nothing_and_add_opens_the_story_under_the_callers_id() -> None:
    clusterer = StoryClusterer()
    assert clusterer.find(*SPYWARE[0], 0.0) == (None, 0.0)
    assert clusterer.find(*SPYWARE[0], 0.0) == (None, 0.0)
    assert len(clusterer) == 0
    clusterer.add(4711, *SPYWARE[0], 0.0)  # the id the database allocated
    story_id, similarity = clusterer.find(*SPYWARE[1], 60.0)
    assert story_id == 4711 and similarity >= clusterer.threshold
    assert len(clusterer) == 1 and 4711 in clusterer


def test_assign_takes_the_id_offered_for_a_new_story_and_otherwise_counts_on() -> None:
    clusterer = StoryClusterer()
    assert clusterer.assign(*FLOOD, 0.0, story_id_if_new=42).story_id == 42
    assert clusterer.assign(*RATES, 10.0).story_id == 43
    joined = clusterer.assign(*FLOOD, 20.0, story_id_if_new=99)
    assert (joined.story_id, joined.is_new) == (42, False)
    with pytest.raises(ValueError, match="already open"):
        clusterer.assign(*SPYWARE[0], 30.0, story_id_if_new=43)


def test_a_copy_rejoins_its_originals_story_even_after_it_closed() -> None:
    clusterer = StoryClusterer(window_seconds=HOUR)
    clusterer.add(7, *FLOOD, 0.0)
    clusterer.add(8, *RATES, 2 * HOUR)  # story 7 closes
    assert 7 not in clusterer
    clusterer.add_to_story(7, *FLOOD, 2 * HOUR + 60)
    assert clusterer.find(FLOOD[0], "", 2 * HOUR + 120).story_id == 7


# -- bounds -----------------------------------------------------------------------------------------


def test_a_story_closes_when_its_newest_item_leaves_the_window() -> None:
    clusterer = StoryClusterer(window_seconds=HOUR, new_story_gap=1e9)  # no recency decay here
    first = clusterer.assign(*FLOOD, 0.0)
    assert clusterer.assign(*FLOOD, 50 * 60).story_id == first.story_id  # within the hour of the last
    assert clusterer.assign(*FLOOD, 105 * 60).story_id == first.story_id  # the window slides with it
    later = clusterer.assign(*FLOOD, 105 * 60 + HOUR + 1)
    assert later.is_new and first.story_id not in clusterer


def test_expire_closes_stories_older_than_the_window_and_says_how_many() -> None:
    clusterer = StoryClusterer(window_seconds=100.0)
    for n, ts in enumerate((0.0, 10.0, 20.0)):
        clusterer.add(n + 1, unique_headline(n), "", ts)
    assert clusterer.expire(115.0) == 2
    assert 3 in clusterer and len(clusterer) == 1
    assert clusterer.expire(115.0) == 0


def test_open_stories_never_exceed_max_open_and_the_oldest_close_first() -> None:
    clusterer = StoryClusterer(max_open=50)
    for n in range(500):
        clusterer.add(n + 1, unique_headline(n), "", float(n))
    assert len(clusterer) == 50
    assert 500 in clusterer and 451 in clusterer and 450 not in clusterer
    assert clusterer.stats()["indexed_terms"] == 50 * 3


def test_state_stays_bounded_over_a_long_stream() -> None:
    """Many items into one story and many stories over days: the index, the centroids and the
    document frequencies only hold what is still inside the window."""
    clusterer = StoryClusterer(window_seconds=HOUR, max_terms_per_story=40)
    for n in range(300):  # one story collecting ever new words
        clusterer.add(1, "lisbon flood " + unique_headline(n), "", float(n))
    assert clusterer.stats()["index_entries"] <= 2 * 40
    for n in range(3000):  # then a month of distinct items, one every 15 minutes
        clusterer.assign(unique_headline(1000 + n), "", 400.0 + n * 900.0)
    stats = clusterer.stats()
    assert stats["open_stories"] <= 5
    assert stats["indexed_terms"] <= 5 * 3
    assert stats["frequency_items"] <= 8 and stats["frequency_terms"] <= 8 * 3


# -- determinism and rebuild ------------------------------------------------------------------------


def test_replaying_the_window_at_startup_rebuilds_the_same_decisions() -> None:
    rows = read_rows(DEV)[:1200]
    live = StoryClusterer()
    decided = [(row, live.assign(row.title, "", row.timestamp).story_id) for row in rows[:600]]
    restarted = StoryClusterer()
    for row, story_id in decided:  # what the bot does with the items in its database
        restarted.add_to_story(story_id, row.title, "", row.timestamp)
    for row in rows[600:]:
        assert restarted.assign(row.title, "", row.timestamp) == live.assign(row.title, "", row.timestamp)


def test_the_same_stream_gives_the_same_stories_in_every_process(tmp_path: Path) -> None:
    """Hash randomisation must not change any decision: run the benchmark under two hash seeds."""
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}.csv"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "bench.stories", "--input", str(DEV), "--assignments", str(out)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == len(dev_headlines()) + 1


def test_a_vector_remembered_from_find_is_not_reused_for_another_lead_or_title() -> None:
    """find() then add() of the same item reuses its vector; add() of a different lead or title (or
    after another add) must not: the state afterwards is the one a fresh add of that item gives."""
    reused, fresh = StoryClusterer(), StoryClusterer()
    for clusterer in (reused, fresh):
        clusterer.add(1, *RATES, 0.0)
    reused.find(SPYWARE[0][0], SPYWARE[0][1], 60.0)
    reused.add(2, SPYWARE[0][0], SPYWARE[1][1], 60.0)  # same title, another lead
    fresh.add(2, SPYWARE[0][0], SPYWARE[1][1], 60.0)
    reused.find(*SPYWARE[1], 120.0)
    reused.add(3, SPYWARE[2][0], SPYWARE[1][1], 120.0)  # same lead, another title
    fresh.add(3, SPYWARE[2][0], SPYWARE[1][1], 120.0)
    reused.find(*FLOOD, 180.0)
    reused.add(4, *RATES, 180.0)  # state changed in between: the remembered vector is stale
    reused.add(5, *FLOOD, 180.0)
    fresh.add(4, *RATES, 180.0)
    fresh.add(5, *FLOOD, 180.0)
    assert reused.stats() == fresh.stats()
    for item in (*SPYWARE, EU_FINE, FLOOD, RATES):
        assert repr(reused.find(*item, 240.0)) == repr(fresh.find(*item, 240.0))


def _score_every_candidate(clusterer: StoryClusterer, title: str, lead: str, ts: float) -> tuple[int | None, float]:
    """The specification `find` must meet exactly (same story, same float): every candidate's
    score summed in full, term by term, rarest term first, then the best one picked."""
    vector = clusterer._vector(title, lead)
    postings = clusterer._postings
    shared = sorted(((postings[t], w) for t, w in vector.items() if t in postings), key=lambda pw: len(pw[0]))
    dots: dict[int, float] = {}
    tops: dict[int, float] = {}
    proposing = True
    for posting, w in shared:
        proposing = proposing and len(dots) < clusterer.max_candidates and len(posting) <= clusterer.max_postings
        for story_id, cw in posting.items():
            if proposing or story_id in dots:
                x = w * cw
                dots[story_id] = dots.get(story_id, 0.0) + x
                tops[story_id] = max(tops.get(story_id, 0.0), x)
    best_id, best = None, 0.0
    for story_id, dot in dots.items():
        story = clusterer._stories[story_id]
        if story.last_ts < ts - clusterer.window:
            continue
        factor = story.scale
        if ts > story.last_ts:
            factor /= 1.0 + (ts - story.last_ts) / story.pace
        if len(vector) >= clusterer.long_item_terms and (dot - tops[story_id]) * factor < clusterer.min_support:
            continue
        if dot * factor > best or (dot * factor == best and best_id is not None and story_id < best_id):
            best_id, best = story_id, dot * factor
    return best_id, best


def test_find_picks_exactly_what_scoring_every_candidate_picks() -> None:
    """Items with leads among thousands of open stories (where `find` skips candidates that cannot
    win): the same story and the same score, to the last bit, as scoring every candidate."""
    import random

    rng = random.Random(3)
    headlines = dev_headlines()
    words = [w for h in headlines for w in h.split()]
    clusterer = StoryClusterer(max_terms_per_story=60)
    for n in range(3000):  # one-item stories with made-up headlines and leads
        lead = " ".join(rng.choices(headlines, k=5))[:400] if n % 3 else ""
        clusterer.add(-(n + 1), " ".join(rng.choices(words, k=7)), lead, n * 20.0)
    next_id = 1
    for i, title in enumerate(headlines[:400]):
        lead = " ".join(rng.choices(headlines, k=5))[:400] if i % 4 else ""
        ts = 60_000.0 + i * 30.0
        expected = _score_every_candidate(clusterer, title, lead, ts)
        match = clusterer.find(title, lead, ts)
        joins = expected[0] if expected[1] >= clusterer.threshold else None
        assert (match.story_id, repr(match.similarity)) == (joins, repr(expected[1]))
        story_id = match.story_id if match.story_id is not None else next_id
        next_id += match.story_id is None
        clusterer.add(story_id, title, lead, ts)


# -- the benchmark ----------------------------------------------------------------------------------


def test_bcubed_of_a_perfect_clustering_is_one() -> None:
    assert bcubed(["a", "a", "b"], [7, 7, 3]) == BCubed(1.0, 1.0, 1.0)


def test_bcubed_of_one_big_cluster() -> None:
    # a, a: 2 of 3 in the cluster share their label; b: 1 of 3. Recall is perfect.
    score = bcubed(["a", "a", "b"], [1, 1, 1])
    assert score.precision == pytest.approx(5 / 9)
    assert score.recall == pytest.approx(1.0)
    assert score.f1 == pytest.approx(5 / 7)  # 2 * (5/9) / (5/9 + 1)


def test_bcubed_of_all_singletons() -> None:
    # each a finds 1 of its 2 label-mates in its cluster; b finds all of its 1
    score = bcubed(["a", "a", "b"], [1, 2, 3])
    assert score.precision == pytest.approx(1.0)
    assert score.recall == pytest.approx(2 / 3)
    assert score.f1 == pytest.approx(4 / 5)


def test_bcubed_of_a_mixed_clustering() -> None:
    # clusters {a, a} and {a, b, b}: precision 1, 1, 1/3, 2/3, 2/3; recall 2/3, 2/3, 1/3, 1, 1
    score = bcubed(["a", "a", "a", "b", "b"], [1, 1, 2, 2, 2])
    assert score.precision == pytest.approx(11 / 15)
    assert score.recall == pytest.approx(11 / 15)
    assert score.f1 == pytest.approx(11 / 15)
    # the cluster names do not matter, only who is with whom
    assert bcubed(["a", "a", "a", "b", "b"], ["x", "x", "y", "y", "y"]) == score


def test_bcubed_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="2 labels but 3"):
        bcubed(["a", "b"], [1, 2, 3])


def test_dev_file_end_to_end_scores_what_bench_readme_reports(tmp_path: Path, capsys) -> None:
    """Regression guard on the tuned file: measured B-cubed F1 0.925 (bench/README.md)."""
    out = tmp_path / "dev.csv"
    assert main(["--input", str(DEV), "--assignments", str(out)]) == 0
    printed = capsys.readouterr().out
    with out.open(newline="") as f:
        assigned = {row["ID"]: row["cluster"] for row in csv.DictReader(f)}
    with DEV.open(newline="", encoding="utf-8") as f:
        labels = {row["ID"]: row["STORY"] for row in csv.DictReader(f)}
    assert assigned.keys() == labels.keys()
    ids = sorted(labels)
    score = bcubed([labels[i] for i in ids], [assigned[i] for i in ids])
    assert score.f1 >= 0.90
    assert f"F1 {score.f1:.4f}" in printed
