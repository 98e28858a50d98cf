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


def test_subscriptions_typed_alike_share_a_result_and_outlive_each_other() -> None:
    """Many channels subscribe to one tag: one compiled query, one result; removing one leaves the rest."""
    index = MatchIndex({"a": parse_query("#LiuZhongyi"), "b": parse_query("#LiuZhongyi")}, auto_rebuild=False)
    doc = document("Liu Zhongyi arrested", "")
    found = index.match(doc)
    assert set(found) == {"a", "b"} and found["a"] is found["b"]
    assert index.remove("a")
    assert set(index.match(doc)) == {"b"}  # before the rebuild
    index.rebuild()
    assert set(index.match(doc)) == {"b"}
    assert index.get("b") == parse_query("#LiuZhongyi") and "a" not in index


def test_spellings_with_one_normal_form_match_alike_and_keep_their_own_text() -> None:
    spellings = {1: "scam centres", 2: "scam AND centres", 3: "SCAM centres"}
    index = MatchIndex({k: parse_query(text) for k, text in spellings.items()})
    found = index.match(document("Scam centres raided", ""))
    assert set(found) == {1, 2, 3}
    assert found[1] == found[2] == found[3]  # equal results: same normal form, same terms
    assert {k: index.get(k) for k in spellings} == {k: parse_query(text) for k, text in spellings.items()}
    assert [index.get(k).text for k in spellings] == list(spellings.values())  # type: ignore[union-attr]


def test_an_or_names_every_term_that_fired_however_it_was_reached() -> None:
    index = MatchIndex(
        {"or": parse_query("#LiuZhongyi OR myanmar OR thailand"), "x": parse_query("(myanmar OR laos) -sport")}
    )
    assert index.match(document("Myanmar", ""))["or"].terms == ("myanmar",)
    assert index.match(document("LiuZhongyi in Thailand", ""))["or"].terms == ("#LiuZhongyi", "thailand")
    assert index.match(document("Liu Zhongyi, LiuZhongyi", ""))["or"].terms == ("#LiuZhongyi",)  # two keys, one term
    assert index.match(document("Myanmar and Laos", ""))["x"].terms == ("myanmar", "laos")
    assert "x" not in index.match(document("Myanmar and Laos sport", ""))


def test_an_and_of_several_clauses_needs_every_one() -> None:
    index = MatchIndex(
        {"three": parse_query("myanmar scam #LiuZhongyi"), "or": parse_query("(myanmar OR laos) scam -sport")}
    )
    assert set(index.match(document("Myanmar scam", "LiuZhongyi"))) == {"three", "or"}
    assert set(index.match(document("Myanmar scam", "Liu Yang"))) == {"or"}
    assert index.match(document("Laos scam", "sport")) == {}
    found = index.match(document("Myanmar scam", "LiuZhongyi sport"))
    assert set(found) == {"three"} and found["three"].terms == ("myanmar", "scam", "#LiuZhongyi")


def test_words_gone_from_every_subscription_and_back_still_match() -> None:
    """Keys of removed subscriptions may stay in the automaton for a while; a key that comes back works."""
    index: MatchIndex[int] = MatchIndex({i: parse_query(f"word{i}") for i in range(50)}, auto_rebuild=False)
    for i in range(50):
        index.remove(i)
    index.rebuild()
    assert index.match(document("word7", "")) == {}
    index.set(7, parse_query("word7 OR newword"))
    index.rebuild()
    assert set(index.match(document("word7", ""))) == {7}
    assert set(index.match(document("newword", ""))) == {7}


def test_matching_during_a_bulk_load_sees_every_subscription() -> None:
    """A bulk load is compiled while another thread matches: each match sees all of it, before and after."""
    index: MatchIndex[int] = MatchIndex(auto_rebuild=False)  # the worker evaluates what is pending meanwhile
    n = index.REBUILD_INLINE_CHANGES * 2
    for i in range(n):
        index.set(i, parse_query(f"word{i % 100} OR #Tag{i}"))
    doc = document("word7 and Tag3", "")
    expected = {i for i in range(n) if i % 100 == 7 or i == 3}
    seen: list[set[int]] = []
    worker = threading.Thread(target=lambda: seen.extend(set(index.match(doc)) for _ in range(8)))
    worker.start()
    index.rebuild()
    worker.join(timeout=60)
    assert seen and all(found == expected for found in seen)
    found = index.match(doc)
    assert index.pending == 0 and set(found) == expected
    assert (found[3].terms, found[7].terms, found[107].terms) == (("#Tag3",), ("word7",), ("word7",))


def test_an_exclusion_takes_out_only_its_own_subscription_among_those_sharing_a_word() -> None:
    """Subscriptions filed under one word keep matching when another one's excluded word occurs."""
    index = MatchIndex(
        {
            "plain": parse_query("myanmar"),
            "no-sport": parse_query("myanmar -sport"),
            "no-rain": parse_query("myanmar NOT rain"),
            "pair": parse_query("myanmar sport"),
        },
        auto_rebuild=False,
    )
    doc = document("Myanmar sport", "")
    assert set(index.match(doc)) == {"plain", "no-rain", "pair"}
    assert set(index.match(document("Myanmar", "rain and sport"))) == {"plain", "pair"}
    assert set(index.match(document("Myanmar", "no news"))) == {"plain", "no-sport", "no-rain"}
    assert index.remove("plain") and index.remove("no-rain")
    index.rebuild()
    assert set(index.match(doc)) == {"pair"}
    index.set("plain", parse_query("myanmar"))  # back, pending then folded in
    assert set(index.match(doc)) == {"plain", "pair"}
    index.rebuild()
    assert set(index.match(doc)) == {"plain", "pair"}
    assert index.match(doc)["pair"].terms == ("myanmar", "sport")


def test_an_or_sharing_its_words_with_other_subscriptions_names_what_fired() -> None:
    index = MatchIndex(
        {
            "or": parse_query("myanmar OR thailand"),
            "myanmar": parse_query("myanmar"),
            "thailand": parse_query("thailand -sport"),
        }
    )
    found = index.match(document("Thailand and Myanmar", ""))
    assert found["or"].terms == ("myanmar", "thailand")
    assert (found["myanmar"].terms, found["thailand"].terms) == (("myanmar",), ("thailand",))
    found = index.match(document("Thailand sport", ""))
    assert set(found) == {"or"} and found["or"].terms == ("thailand",)


def test_a_match_result_is_a_value() -> None:
    query = parse_query('"liu zhongyi" OR myanmar')
    result = MatchResult(query, ['"liu zhongyi"'])
    assert result.terms == ('"liu zhongyi"',) and result.query == query
    assert result == MatchResult(parse_query('"Liu Zhongyi" OR myanmar'), ('"liu zhongyi"',))
    assert result != MatchResult(query, ("myanmar",))
    assert len({result, MatchResult(query, ('"liu zhongyi"',))}) == 1
    assert "liu zhongyi" in repr(result)
