"""The subscription query language: what a query matches, how it is echoed back, how errors read."""

from __future__ import annotations

import random
import sqlite3

import pytest

from bot.match import Document, Query, QueryError, contains_term, document, fts_columns, parse_query


def matches(query: str, title: str, body: str = "", source: str = "") -> bool:
    return parse_query(query).matches(document(title, body, source))


# ------------------------------------------------------------------------------------------- hashtags


@pytest.mark.parametrize(
    "text",
    [
        "Liu Zhongyi",
        "LIU ZHONGYI",
        "Liu Zhong-yi",
        "Liú Zhōngyì",
        "#liuzhongyi",
        "LiuZhongyi",
        "ＬＩＵ ＺＨＯＮＧＹＩ",
        "Police say Liu Zhongyi's network ran the compounds.",
    ],
)
def test_hashtag_matches_every_spelling_of_the_name(text: str) -> None:
    assert matches("#LiuZhongyi", text)


@pytest.mark.parametrize(
    "text",
    ["Liu Yang", "zhongyi clinics", "Liu met Zhongyi", "Liuzhong yi", "Liu Zhongyin", "Zhongyi Liu"],
)
def test_hashtag_does_not_match_near_misses(text: str) -> None:
    assert not matches("#LiuZhongyi", text)


def test_hashtag_splits_acronyms_and_digits() -> None:
    assert matches("#NASAMission", "The NASA mission launched")
    assert matches("#COVID19", "COVID-19 cases rise")
    assert matches("#COVID19", "covid19 cases rise")
    assert not matches("#COVID19", "covid cases rise")


# --------------------------------------------------------------------------------- words and phrases


def test_words_match_whole_words_only() -> None:
    assert matches("sport", "Sport news")
    assert not matches("sport", "Sports news")
    assert not matches("liu", "Liuyang province")
    assert not matches("myanmar", "Myanmarese")


def test_diacritics_fold_both_ways() -> None:
    assert matches("Zhōngyì", "zhongyi said")
    assert matches("zhongyi", "Zhōngyì said")
    assert matches("Łódź", "Lodz police")
    assert matches("strasse", "Die Straße")


def test_full_width_text_and_query() -> None:
    assert matches("myanmar", "ＭＹＡＮＭＡＲ ｃｒａｃｋｄｏｗｎ")
    assert matches("ＭＹＡＮＭＡＲ", "Myanmar crackdown")


def test_cjk_matches_as_substring_without_word_boundaries() -> None:
    assert matches("刘忠义", "", "据报道刘忠义周三在仰光被捕")
    assert not matches("刘忠义", "", "据报道刘忠周三")
    assert matches("東京", "東京都で地震")
    assert matches("서울", "서울시는")


def test_phrase_ignores_punctuation_between_its_words() -> None:
    """Decision: hyphens and punctuation separate words, so a phrase matches across them."""
    assert matches('"scam centres"', "Scam-centres raided")
    assert matches('"scam centres"', "Scam centres raided")
    assert not matches('"scam centres"', "Scamcentres raided")
    assert not matches('"scam centres"', "Centres for scam victims")


def test_hyphenated_word_also_matches_joined_spelling() -> None:
    for text in ("scam-centres", "scam centres", "scamcentres"):
        assert matches("scam-centres", text)
    assert matches("email", "send an e-mail")
    assert matches("e-mail", "send an email")


def test_overlapping_terms_all_count() -> None:
    query = parse_query('liu "liu zhongyi" zhongyi')
    doc = document("Liu Zhongyi arrested", "")
    assert query.matches(doc)
    assert query.matched_terms(doc) == ("liu", '"liu zhongyi"', "zhongyi")


# ------------------------------------------------------------------------------------------- fields


def test_field_prefixes_restrict_where_a_term_may_occur() -> None:
    assert matches("title:myanmar", "Myanmar raids", "")
    assert not matches("title:myanmar", "Raids", "in Myanmar")
    assert matches('title:"scam centres"', "Scam centres shut", "")
    assert matches("source:reuters", "x", "", "Reuters")
    assert matches("source:#AlJazeera", "x", "", "Al Jazeera English")
    assert matches("source:aljazeera", "x", "", "Al-Jazeera")


def test_words_without_field_do_not_search_the_source_name() -> None:
    assert not matches("reuters", "Markets fall", "Stocks fell on Monday.", "Reuters")
    assert matches("reuters", "Markets fall", "Stocks fell, Reuters reported.", "AP")


# ------------------------------------------------------------------------------------------ boolean


@pytest.mark.parametrize(
    ("query", "normal_form"),
    [
        ('"Scam Centres" Myanmar -sport', '"scam centres" AND myanmar AND NOT sport'),
        ("a OR b c", "a OR (b AND c)"),
        ("a b OR c", "(a AND b) OR c"),
        ("NOT a b", "NOT a AND b"),
        ("(a OR b) c", "(a OR b) AND c"),
        ("a AND (b OR c) AND NOT (d OR e)", "a AND (b OR c) AND NOT (d OR e)"),
        ("a -(b c)", "a AND NOT (b AND c)"),
        ("NOT NOT a", "a"),
        ("a a", "a"),
        ("Liú   #LiuZhongyi title:BBC", "liu AND #LiuZhongyi AND title:bbc"),
        ("U.S.", '"u s"'),
        ("COVID-19", "covid-19"),
        ("＃ＬｉｕＺｈｏｎｇｙｉ （myanmar）", "#LiuZhongyi AND myanmar"),
    ],
)
def test_normal_form_shows_precedence(query: str, normal_form: str) -> None:
    assert parse_query(query).normal_form == normal_form


def test_precedence_not_and_or() -> None:
    # a OR b c == a OR (b AND c)
    assert matches("a OR b c", "a")
    assert not matches("a OR b c", "b")
    assert matches("a OR b c", "b c")
    # NOT binds to the next term only
    assert matches("NOT a b", "b")
    assert not matches("NOT a b", "a b")


def test_lower_case_operators_are_words_with_a_warning() -> None:
    query = parse_query("china or taiwan")
    assert query.normal_form == "china AND or AND taiwan"
    assert query.warnings == ("'or' at column 7 is searched as a word; write OR in capitals for the operator",)
    assert not query.matches(document("China", ""))
    assert parse_query("china OR taiwan").warnings == ()


def test_terms_are_the_distinct_positive_terms() -> None:
    query = parse_query('#LiuZhongyi OR (title:"scam centres" myanmar -sport) OR myanmar')
    assert query.terms == ("#LiuZhongyi", '"scam centres"', "myanmar")


def test_contains_term_finds_the_sentence_for_a_summary() -> None:
    sentences = ["Police raided compounds on Tuesday.", "The network of Liu Zhong-yi ran them."]
    found = [s for s in sentences if contains_term(s, "#LiuZhongyi")]
    assert found == ["The network of Liu Zhong-yi ran them."]


def test_same_text_parses_to_one_shared_query() -> None:
    assert parse_query("#LiuZhongyi") is parse_query("#LiuZhongyi")
    assert parse_query("Myanmar  scam") == parse_query('myanmar AND "scam"')


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "empty query"),
        ("   ", "empty query"),
        ("(myanmar OR thailand", "unbalanced parenthesis at column 1"),
        ("myanmar OR thailand)", "unbalanced parenthesis at column 20"),
        ("scam (centres OR) x", "OR needs a term after it at column 15"),
        ("OR myanmar", "OR needs a term before it at column 1"),
        ("scam AND", "AND needs a term after it at column 6"),
        ("scam NOT", "NOT needs a term after it at column 6"),
        ("scam - sport", "'-' needs a term right after it at column 6 (write -sport)"),
        ("()", "empty parentheses at column 1"),
        ('scam "centres', "unterminated quote at column 6"),
        ('scam ""', "empty phrase at column 6 (a phrase needs letters or digits)"),
        ("foo:bar", "unknown field 'foo:' at column 1 (use title: or source:, or put the words in quotes)"),
        ("scam title: x", "title: needs a word, phrase or hashtag right after it at column 6"),
        (
            "title:(a OR b)",
            "title: applies to one word, phrase or hashtag at column 1 (write (title:a OR title:b) or -title:a)",
        ),
        ("# x", "'#' needs a tag name right after it at column 1 (write #LiuZhongyi)"),
        ("scam &&", "'&&' has no letters or digits to search for at column 6"),
        (
            "-sport",
            "a query needs a word to look for: with only exclusions it would match almost every item "
            "(write e.g. myanmar -sport)",
        ),
        (
            "myanmar OR -sport",
            "this part only excludes words, so the query would match almost every item "
            "at column 12 (every OR branch needs a word to look for)",
        ),
        ("(" * 40 + "a" + ")" * 40, "query nested too deeply (at most 32 levels) at column 33"),
        ("a " * 600, "query too long (1200 characters, at most 1000)"),
    ],
)
def test_errors_say_what_and_where(query: str, error: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(query)
    assert str(info.value) == error


def test_error_column_points_at_the_problem() -> None:
    text = "scam AND (myanmar OR thailand"
    with pytest.raises(QueryError) as info:
        parse_query(text)
    assert info.value.column is not None
    assert text[info.value.column - 1] == "("


def test_words_with_colons_that_are_not_fields() -> None:
    assert parse_query("10:30 update: raids").normal_form == '"10 30" AND update AND raids'


# -------------------------------------------------------------------- random queries and documents

WORD_FORMS = (
    "Liu LIU Liú Zhongyi Zhōngyì Zhong-yi LiuZhongyi #liuzhongyi Liuyang Myanmar Myanmar's ＭＹＡＮＭＡＲ "
    "scam Scam-centres centres scamcentres sport sports e-mail email COVID-19 covid19 Łódź Lodz Straße "
    "police China 刘忠义 据报道刘忠义周三 東京 東京2020 or Москва МОСКВЫ Ελλάδα हिन्दी ไทย Ørsted"
).split()
SEPARATORS = [" ", " ", " ", ", ", ". ", "-", " — ", "'", "", "\n", " #"]
SOURCES = ["BBC", "Al-Jazeera", "Reuters", "Liu Zhongyi Daily", "東京新聞"]
QUERY_WORDS = (
    "liu Zhongyi zhōngyì myanmar scam centres sport e-mail email covid-19 刘忠义 東京 lodz Łódź strasse "
    "police china or yi s москва ελλαδα हिन्दी ไทย orsted"
).split()
QUERY_PHRASES = ['"scam centres"', '"liu zhongyi"', '"zhong yi"', '"myanmar s"', '"東京 2020"', '"police china"']
QUERY_TAGS = ["#LiuZhongyi", "#ScamCentres", "#COVID19", "#Myanmar", "#東京2020", "#liu_zhongyi", "#EMail"]


def random_text(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        out.append(rng.choice(WORD_FORMS))
        out.append(rng.choice(SEPARATORS))
    return "".join(out)


def random_document(rng: random.Random) -> tuple[str, str, str]:
    return random_text(rng, rng.randint(0, 4)), random_text(rng, rng.randint(0, 12)), rng.choice(SOURCES)


def random_term(rng: random.Random) -> str:
    r = rng.random()
    term = rng.choice(QUERY_WORDS if r < 0.5 else QUERY_PHRASES if r < 0.75 else QUERY_TAGS)
    f = rng.random()
    if f < 0.1:
        return "title:" + term
    if f < 0.15:
        return "source:" + term
    return term


def random_query(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth > 2 or r < 0.35:
        return random_term(rng)
    if r < 0.55:
        return f"{random_query(rng, depth + 1)} {random_query(rng, depth + 1)}"
    if r < 0.7:
        return f"{random_query(rng, depth + 1)} OR {random_query(rng, depth + 1)}"
    if r < 0.8:
        return f"({random_query(rng, depth + 1)})"
    if r < 0.9:
        return f"-{random_term(rng)}"
    return f"NOT ({random_query(rng, depth + 1)})"


def random_queries(rng: random.Random, n: int) -> list[Query]:
    out: list[Query] = []
    while len(out) < n:
        try:
            out.append(parse_query(random_query(rng)))
        except QueryError:
            continue
    return out


def test_normal_form_round_trips_on_random_queries() -> None:
    rng = random.Random(3)
    docs = [document(*random_document(rng)) for _ in range(150)]
    for query in random_queries(rng, 300):
        again = parse_query(query.normal_form)
        assert again.normal_form == query.normal_form, query.text
        assert [again.matches(d) for d in docs] == [query.matches(d) for d in docs], query.text


def fts_table(docs: list[Document]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE items_fts USING fts5(title, body, source, tokenize='unicode61 remove_diacritics 2')"
    )
    db.executemany(
        "INSERT INTO items_fts (rowid, title, body, source) VALUES (?, ?, ?, ?)",
        [(i, *fts_columns(d)) for i, d in enumerate(docs)],
    )
    return db


def test_fts_prefilter_is_a_superset_of_exact_matches() -> None:
    """Every document a query matches passes its FTS5 prefilter (the archive narrows, never loses)."""
    rng = random.Random(5)
    docs = [document(*random_document(rng)) for _ in range(300)]
    db = fts_table(docs)
    with_prefilter = narrowed = 0
    for query in random_queries(rng, 400):
        exact = {i for i, d in enumerate(docs) if query.matches(d)}
        prefilter = query.fts_prefilter()
        if prefilter is None:
            continue
        with_prefilter += 1
        found = {row[0] for row in db.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH ?", (prefilter,))}
        assert exact <= found, (query.text, prefilter)
        narrowed += len(found) < len(docs)
    assert with_prefilter > 250  # most queries get a prefilter ...
    assert narrowed > 0.9 * with_prefilter  # ... and it narrows the search


def test_fts_prefilter_examples() -> None:
    assert parse_query("#LiuZhongyi -sport").fts_prefilter() == '{title body} : ("liu zhongyi" OR "liuzhongyi")'
    assert parse_query("title:myanmar OR source:bbc").fts_prefilter() == '(title : "myanmar" OR source : "bbc")'
    assert parse_query("刘忠义").fts_prefilter() is None  # substring match: FTS5 cannot prefilter it
    assert parse_query("刘忠义 myanmar").fts_prefilter() == '{title body} : "myanmar"'


def test_fts_prefilter_finds_folded_spellings() -> None:
    docs = [document("Liú Zhōng-yì arrested", "", "BBC"), document("Unrelated", "", "BBC")]
    db = fts_table(docs)
    prefilter = parse_query("#LiuZhongyi").fts_prefilter()
    assert [r[0] for r in db.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH ?", (prefilter,))] == [0]
