"""MatchIndex: all subscriptions in one automaton, answering exactly what each Query.matches says."""

from __future__ import annotations

import random
import threading
import time

from bot.match import MatchIndex, MatchResult, document, parse_query
from tests.test_match_query import random_document, random_queries


def test_index_returns_matching_subscriptions_with_the_terms_that_fired() -> None:
    index = MatchIndex(
        {
            "liu": parse_query("liu"),
            "tag": parse_query("#LiuZhongyi"),
            "phrase": parse_query('"liu zhongyi" OR myanmar'),
            "other": parse_query("#LiuYang"),
        }
    )
    found = index.match(document("Liu Zhongyi arrested", "Police in Myanmar said ..."))
    assert set(found) == {"liu", "tag", "phrase"}  # overlapping terms all count
    assert found["tag"].terms == ("#LiuZhongyi",)
    assert found["phrase"].terms == ('"liu zhongyi"', "myanmar")
    assert found["phrase"].query == parse_query('"liu zhongyi" OR myanmar')


def test_near_misses_do_not_match() -> None:
    index = MatchIndex({1: parse_query("#LiuZhongyi")})
    assert index.match(document("Liu Yang visits", "zhongyi clinics open")) == {}


def test_exclusions_and_fields() -> None:
    index = MatchIndex(
        {
            "no-sport": parse_query("myanmar -sport"),
            "title": parse_query("title:myanmar"),
            "bbc": parse_query("source:bbc myanmar"),
        }
    )
    assert set(index.match(document("Myanmar sport", "", "BBC"))) == {"title", "bbc"}
    assert set(index.match(document("Raids", "in Myanmar", "Reuters"))) == {"no-sport"}


def test_many_subscriptions_to_one_query_all_match() -> None:
    index = MatchIndex({f"chan{i}": parse_query("#LiuZhongyi") for i in range(50)})
    found = index.match(document("LIU ZHONGYI", ""))
    assert len(found) == 50
    assert len(set(found.values())) == 1


def test_set_and_remove_take_effect_before_rebuild() -> None:
    index: MatchIndex[int] = MatchIndex(auto_rebuild=False)
    doc = document("Scam centres in Myanmar", "")
    assert index.match(doc) == {}
    index.set(1, parse_query("myanmar"))
    index.set(2, parse_query('"scam centres"'))
    assert set(index.match(doc)) == {1, 2}
    assert index.pending == 2
    index.rebuild()
    assert index.pending == 0
    assert set(index.match(doc)) == {1, 2}
    index.set(1, parse_query("thailand"))  # replace
    assert index.remove(2)
    assert not index.remove(99)
    assert index.match(doc) == {}
    assert len(index) == 1 and 2 not in index and index.get(1) == parse_query("thailand")
    index.rebuild()
    assert index.match(document("Thailand", "")) == {1: MatchResult(parse_query("thailand"), ("thailand",))}
    assert len(index) == 1


def test_index_agrees_with_query_matches_on_random_data() -> None:
    """Candidate selection by occurred terms loses nothing and adds nothing."""
    rng = random.Random(11)
    queries = random_queries(rng, 400)
    docs = [document(*random_document(rng)) for _ in range(200)]
    index = MatchIndex(dict(enumerate(queries)))
    for doc in docs:
        found = index.match(doc)
        assert set(found) == {i for i, q in enumerate(queries) if q.matches(doc)}
        for i, result in found.items():
            assert result.terms == queries[i].matched_terms(doc)


def test_index_agrees_after_changes_with_and_without_rebuild() -> None:
    rng = random.Random(12)
    queries = random_queries(rng, 300)
    docs = [document(*random_document(rng)) for _ in range(80)]
    current = dict(enumerate(queries[:150]))
    index = MatchIndex(current)
    for step in range(60):
        key = rng.randrange(200)
        if rng.random() < 0.3:
            index.remove(key)
            current.pop(key, None)
        else:
            current[key] = queries[rng.randrange(len(queries))]
            index.set(key, current[key])
        if step % 20 == 19:
            index.rebuild()
        doc = docs[step]
        assert set(index.match(doc)) == {k for k, q in current.items() if q.matches(doc)}
    assert len(index) == len(current)


def test_matching_in_a_worker_thread_never_stops_while_subscriptions_change() -> None:
    """match() runs off the event loop while set()/remove()/rebuild() happen elsewhere."""
    stable = parse_query("#LiuZhongyi")
    index = MatchIndex({"stable": stable, **{i: parse_query(f"word{i}") for i in range(2000)}})
    doc = document("Liu Zhongyi and word7", "")
    errors: list[str] = []
    stop = threading.Event()
    rounds = 0

    def matcher() -> None:
        nonlocal rounds
        while not stop.is_set():
            found = index.match(doc)
            if "stable" not in found:
                errors.append(f"stable subscription missing: {sorted(map(str, found))}")
            rounds += 1

    worker = threading.Thread(target=matcher)
    worker.start()
    try:
        for i in range(30):
            index.set(f"new{i}", parse_query(f"word{i} OR liu"))
            index.remove(i)
            if i % 10 == 9:
                index.rebuild()
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not errors
    assert rounds > 0
    index.rebuild()
    assert set(index.match(doc)) == {"stable", *(f"new{i}" for i in range(30))}


def test_match_rebuilds_in_the_background_after_enough_changes() -> None:
    index = MatchIndex({0: parse_query("myanmar")})
    index.REBUILD_AFTER_CHANGES = 3
    doc = document("Myanmar scam centres", "")
    for i in range(1, 4):
        index.set(i, parse_query('"scam centres"'))
    assert set(index.match(doc)) == {0, 1, 2, 3}  # answered at once, rebuild started meanwhile
    deadline = time.monotonic() + 10
    while index.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert index.pending == 0
    assert set(index.match(doc)) == {0, 1, 2, 3}


def test_bulk_load_is_folded_inline_by_the_first_match() -> None:
    index: MatchIndex[int] = MatchIndex()
    for i in range(index.REBUILD_INLINE_CHANGES):
        index.set(i, parse_query(f"word{i % 100}"))
    assert index.pending == index.REBUILD_INLINE_CHANGES
    found = index.match(document("word7", ""))
    assert index.pending == 0
    assert len(found) == index.REBUILD_INLINE_CHANGES // 100 + (7 < index.REBUILD_INLINE_CHANGES % 100)


def test_empty_index_and_empty_document() -> None:
    assert MatchIndex().match(document("anything", "")) == {}
    assert MatchIndex({1: parse_query("x")}).match(document("", "", "")) == {}
