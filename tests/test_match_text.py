"""Text normalisation: what the matcher sees of an item's title, body and source."""

from __future__ import annotations

import random
import unicodedata

import pytest

from bot.match.text import _FOLD, document, fold, fts_columns, streams, term_key, tokens


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("LIU Zhongyi", "liu zhongyi"),
        ("Liú Zhōngyì", "liu zhongyi"),  # accents
        ("ＬＩＵ　Ｚｈｏｎｇｙｉ", "liu zhongyi"),  # full-width letters and ideographic space
        ("Straße", "strasse"),
        ("Łódź", "lodz"),  # a letter without decomposition
        ("İstanbul", "istanbul"),
        ("ﬁnance", "finance"),  # ligature
        ("ｶﾞｲｼﾞﾝ", "ガイジン"),  # half-width katakana, voicing marks kept
        ("서울", "서울"),  # Hangul survives decomposition
        ("Zhong\u00adyi", "zhongyi"),  # soft hyphen is invisible
    ],
)
def test_fold_is_case_accent_and_width_insensitive(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_fold_is_idempotent_across_unicode() -> None:
    """Queries are re-parsed from their normal form, so folding folded text must change nothing."""
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(6))
        if any(0xD800 <= ord(c) < 0xE000 for c in text):
            continue
        once = fold(text)
        assert fold(once) == once, repr(text)


def test_stream_is_space_padded_whole_words() -> None:
    assert streams("Liu Zhongyi's visit, #LiuZhongyi!") == (" liu zhongyi s visit liuzhongyi ",)


def test_hyphenated_compound_gets_a_joined_stream() -> None:
    assert streams("Liu Zhong-yi said") == (" liu zhong yi said ", " liu zhongyi said ")


def test_dashes_between_words_do_not_join() -> None:
    assert streams("Paris – London, 1990—2000") == (" paris london 1990 2000 ",)


def test_scripts_without_spaces_form_their_own_tokens() -> None:
    assert tokens(fold("据报道刘忠义周三在Yangon说")) == ["据报道刘忠义周三在", "yangon", "说"]
    assert tokens(fold("東京２０２０年")) == ["東京", "2020", "年"]


def test_term_keys_have_word_boundaries_only_for_spaced_scripts() -> None:
    assert term_key(["liu", "zhongyi"]) == " liu zhongyi "
    assert term_key(["刘忠义"]) == "刘忠义"
    assert term_key(["東京", "2020"]) == "東京 2020 "
    body = streams("据报道刘忠义周三抵达")[0]
    assert term_key(["刘忠义"]) in body
    assert term_key(["liu"]) not in streams("Liuyang province")[0]


def test_document_normalises_each_field_separately() -> None:
    doc = document("Scam centres", "Raids in Myanmar's border towns", "Al-Jazeera")
    assert doc.title == (" scam centres ",)
    assert doc.body == (" raids in myanmar s border towns ",)
    assert doc.source == (" al jazeera ", " aljazeera ")


def test_fts_columns_store_normalised_text_with_joined_variant() -> None:
    doc = document("Liú Zhong-yi", "Body text.", "BBC")
    assert fts_columns(doc) == ("liu zhong yi\nliu zhongyi", "body text", "bbc")
    assert fts_columns("Liú Zhong-yi", "Body text.", "BBC") == fts_columns(doc)


def test_fold_drops_accents_and_maps_punctuation_exactly_as_its_table_says() -> None:
    """fold() applies the folding table with regular expressions (fast on news text); the result is
    what translating every character through the table gives, on text of any script."""
    def by_table(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
        return unicodedata.normalize("NFC", decomposed.translate(_FOLD))

    rng = random.Random(8)
    alphabet = [chr(c) for c in (*range(0x20, 0x250), *range(0x300, 0x370), *range(0x1E00, 0x1F00),
                                 *range(0x2000, 0x2070), 0xAD, 0x200B, 0xFEFF, 0x4E2D, 0x3042, 0xFF21)]
    texts = ["Tiếng Việt “quoted” — Łódź, œuvre, ħ, Straße\u00a0and\u2011so", "plain ascii"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    for text in texts:
        assert fold(text) == by_table(text), repr(text)
