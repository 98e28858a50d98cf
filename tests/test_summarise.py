"""Summaries: lead sentences, the matched term's sentence, bounded, never cut mid-word."""

from __future__ import annotations

import pytest

from bot.summarise import split_sentences, summarise

ARTICLE = (
    "Liu Zhongyi named to lead China's data agency\n\n"
    "The State Council on Monday appointed a veteran official to run the new data-protection agency. "
    "The agency will oversee how companies collect and transfer personal data. "
    "It was created in March after a two-year debate.\n\n"
    "Advertisement\n\n"
    "Critics said the agency lacked independence. "
    "Liú Zhōngyì, 58, previously ran the cyber administration in Guangdong. "
    "He is expected to take office next week.\n\n"
    "This article originally appeared in the South China Morning Post."
)
TITLE = "Liu Zhongyi named to lead China's data agency"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith met Dr. Jones in Washington. They talked.",
         ["Mr. Smith met Dr. Jones in Washington.", "They talked."]),
        ("The U.S. economy grew 3.5 percent in Jan. 2024. Prices rose.",
         ["The U.S. economy grew 3.5 percent in Jan. 2024.", "Prices rose."]),
        ("Fruit, e.g. apples, is cheap. Vegetables are not.", ["Fruit, e.g. apples, is cheap.", "Vegetables are not."]),
        ('"We will win," he said. "Stop!" she shouted. Then she left.',
         ['"We will win," he said.', '"Stop!" she shouted.', "Then she left."]),
        ("He said: “It is over.” The crowd cheered.", ["He said: “It is over.”", "The crowd cheered."]),
        ("She paused... Then she spoke. It went on… and on.",
         ["She paused...", "Then she spoke.", "It went on… and on."]),
        ("He moved to the U.S. The next day he left.", ["He moved to the U.S.", "The next day he left."]),
        ("It ranked No. 5 on the list. I said no. Then he went.",
         ["It ranked No. 5 on the list.", "I said no.", "Then he went."]),
        ("John F. Kennedy spoke in Berlin. Crowds cheered.", ["John F. Kennedy spoke in Berlin.", "Crowds cheered."]),
        ("Headline without a stop\nFirst sentence here.", ["Headline without a stop", "First sentence here."]),
        ("刘忠义周一被任命。他今年五十八岁！", ["刘忠义周一被任命。", "他今年五十八岁！"]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_lead_sentences_skip_a_first_line_that_repeats_the_headline() -> None:
    summary = summarise(TITLE, ARTICLE)
    assert summary.startswith("The State Council on Monday appointed a veteran official")
    assert "named to lead China's data agency" not in summary


def test_sentence_with_the_matched_term_is_added_when_the_lead_lacks_it() -> None:
    summary = summarise(TITLE, ARTICLE, terms=["Liu Zhongyi"])
    assert summary.startswith("The State Council on Monday")
    assert summary.endswith("Liú Zhōngyì, 58, previously ran the cyber administration in Guangdong.")
    assert " … " in summary  # skipped sentences are marked
    assert len(summary) <= 400


def test_hashtag_style_terms_match_accents_and_case() -> None:
    summary = summarise(TITLE, ARTICLE, terms=["#LiuZhongyi"])
    assert "Liú Zhōngyì, 58" in summary


def test_no_extra_sentence_when_the_lead_already_mentions_the_term() -> None:
    with_term = summarise(TITLE, ARTICLE, terms=["data-protection agency"])
    assert with_term == summarise(TITLE, ARTICLE)


def test_summary_never_contains_boilerplate() -> None:
    summary = summarise(TITLE, ARTICLE, terms=["office"], limit=1000)
    assert "Advertisement" not in summary
    assert "originally appeared" not in summary
    assert "He is expected to take office next week." in summary


@pytest.mark.parametrize("limit", [40, 77, 120, 180])
def test_summary_fits_the_limit_and_never_cuts_a_word(limit: int) -> None:
    text = (
        "Emergency crews worked through the night to restore electricity to thousands of homes across the "
        "region after a powerful storm brought down power lines and uprooted trees on Sunday evening."
    )
    summary = summarise("Storm cuts power", text, limit=limit)
    assert len(summary) <= limit
    assert summary.endswith("…")
    assert text.startswith(summary[:-1])
    assert text[len(summary) - 1] == " "  # the cut falls between words


def test_term_sentence_fits_even_when_the_lead_sentence_is_long() -> None:
    lead = "Officials " + "met and talked about many routine matters " * 8 + "for hours."
    text = lead + " Later, Liu Zhongyi resigned."
    summary = summarise("Meeting", text, terms=["Liu Zhongyi"], limit=200)
    assert len(summary) <= 200
    assert summary.endswith("Later, Liu Zhongyi resigned.")
    assert summary.startswith("Officials met")


def test_text_that_only_repeats_the_title_gives_an_empty_summary() -> None:
    assert summarise("Storm cuts power to thousands", "Storm cuts power to thousands.") == ""
    assert summarise("Anything", "") == ""


def test_lead_is_at_most_three_sentences() -> None:
    text = "One is here. Two is here. Three is here. Four is here. Five is here."
    assert summarise("Numbers", text) == "One is here. Two is here. Three is here."


def test_cjk_text_is_summarised_within_the_limit() -> None:
    text = "刘忠义周一被任命为新成立的数据保护机构负责人。" * 5
    summary = summarise("任命", text, terms=["刘忠义"], limit=30)
    assert 0 < len(summary) <= 30
    assert summary.startswith("刘忠义周一被任命")


def test_a_standfirst_without_a_full_stop_gets_one_when_joined() -> None:
    text = "Defense department says wild weather could endanger 1,700 sites\n\nNearly half of US bases are at risk."
    assert summarise("Pentagon report", text) == (
        "Defense department says wild weather could endanger 1,700 sites. Nearly half of US bases are at risk."
    )


def test_a_term_mentioned_only_far_down_a_long_article_is_still_shown() -> None:
    """Only the lead is split unless it lacks the term; then the search goes as far as it takes,
    and accents or case in the article do not hide the term."""
    filler = " ".join(f"Paragraph {i} describes the harbour works in some detail." for i in range(80))
    text = f"The port opened on Monday. {filler} Critics said Zhōngyī Liú had ignored the safety report."
    summary = summarise("Port opens", text, ["#LiuZhongyi", "zhongyi liu"], limit=400)
    assert summary.startswith("The port opened on Monday.")
    assert summary.endswith("Critics said Zhōngyī Liú had ignored the safety report.")
    assert " … " in summary


def test_a_term_the_article_never_mentions_leaves_the_plain_lead() -> None:
    text = "The port opened on Monday. Ships queued all day. Officials praised the work. A fourth line."
    assert summarise("Port opens", text, ["ferry strike"], limit=400) == (
        "The port opened on Monday. Ships queued all day. Officials praised the work.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Really?! Yes. Wow!!! Done", ["Really?!", "Yes.", "Wow!!!", "Done"]),
        ("He waited… Then he left.", ["He waited…", "Then he left."]),
        ("She said “It works.” Then she left.", ["She said “It works.”", "Then she left."]),
        ("Dots...no space. Version 2.5 shipped.", ["Dots...no space.", "Version 2.5 shipped."]),
        ("Stop!But why? End.", ["Stop!But why?", "End."]),
        ("One\n\n\nTwo", ["One", "Two"]),
        ("前进。「好」！后退？）完", ["前进。", "「好」！", "后退？）", "完"]),
        ("Trailing marks only...", ["Trailing marks only..."]),
    ],
)
def test_sentence_ends_of_every_kind(text: str, expected: list[str]) -> None:
    """Runs of marks, ellipses, closing quotes, marks with no space after them, line breaks and CJK
    full stops each end a sentence (or do not) as a reader would expect."""
    assert split_sentences(text) == expected


def test_accents_in_a_sentence_do_not_hide_the_term_anywhere_in_it() -> None:
    """Marks are dropped wherever they stand (next to curly quotes, mid-word, at the end)."""
    text = "The port opened on Monday. Ships queued. Officials spoke. Then “Zürich’s” best café was shut."
    for term in ("zurich", "Cafe", "ZURICH’S"):
        summary = summarise("Port opens", text, [term], limit=400)
        assert summary.endswith("Then “Zürich’s” best café was shut.")
    lead = "The port opened on Monday. Ships queued. Officials spoke."
    assert summarise("Port opens", text, ["cafés"], limit=400) == lead
