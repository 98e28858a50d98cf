"""Text normalisation for matching: done once per item, shared by queries and documents.

The normal form of a text is a *stream*: its tokens, case-folded and accent-folded, joined by single
spaces and padded with one space at each end, e.g. ``" liu zhongyi visits myanmar "``.

- Folding: NFKD (so full-width ``ＬＩＵ`` and ligatures become plain letters), case folding
  (``ß`` -> ``ss``), combining accents removed (``Liú Zhōngyì`` -> ``liu zhongyi``; only marks of the
  Combining Diacritical Marks blocks, so Japanese voicing marks and Indic vowel signs survive), a few
  letters without a decomposition folded by hand (``ł ø đ ħ ı ŧ æ œ``), invisible characters (soft
  hyphen, zero-width joiners) dropped, then NFC.
- Tokens: runs of letters, digits and combining marks; everything else (punctuation, ``#``, ``-``,
  apostrophes) separates tokens. Scripts written without spaces between words (Han, kana, Hangul,
  Thai, Lao, Khmer, Myanmar, Bopomofo) form their own tokens, so ``刘忠义Liu`` is ``刘忠义 liu``.
- A hyphenated compound is also indexed joined: ``Liu Zhong-yi`` has a second stream
  ``" liu zhongyi "``. So ``scam-centres`` matches both ``scam centres`` and ``scamcentres``, and
  ``e-mail`` matches ``email``.

A term of a query becomes a *key*: its tokens joined by spaces, with a space added on each side whose
token is in a spaced script. A key occurs in a stream exactly when the term occurs as whole words
(spaced scripts) or as a substring (scripts without spaces): ``" liu "`` is not in ``" liuyang "``,
but ``"刘忠义"`` is in ``" 据报道刘忠义周三 "``. Plain substring search (``key in stream``) and an
Aho-Corasick automaton over the same keys therefore agree by construction.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Scripts written without spaces between words: matched as substrings, without word boundaries.
_UNSPACED_RANGES = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3005-\u3007"  # 々 〆 〇
    "\u3021-\u3029"  # Hangzhou numerals
    "\u3031-\u3035"  # kana repeat marks
    "\u303b-\u303c"
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31a0-\u31ff"  # Bopomofo ext, CJK strokes, Katakana ext
    "\u3400-\u4dbf"  # CJK ext A
    "\u4e00-\u9fff"  # CJK unified
    "\ua960-\ua97f"  # Hangul Jamo ext A
    "\uac00-\ud7ff"  # Hangul syllables, Jamo ext B
    "\uf900-\ufaff"  # CJK compatibility
    "\uff66-\uff9f"  # half-width kana (NFKD folds most of it)
    "\U00020000-\U0003134f"  # CJK ext B..G
)

# Combining accents removed by folding: the Combining Diacritical Marks blocks (Latin, Greek, Cyrillic).
_ACCENT_BLOCKS = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))
_INVISIBLE = (0x00AD, 0x034F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, *range(0xFE00, 0xFE10))
# Letters with no Unicode decomposition that people nonetheless type without their stroke.
_LETTERS = {"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "ŧ": "t", "æ": "ae", "œ": "oe"}

_FOLD: dict[int, str | None] = {cp: None for lo, hi in _ACCENT_BLOCKS for cp in range(lo, hi + 1)}
_FOLD.update(dict.fromkeys(_INVISIBLE))
_FOLD.update({ord(k): v for k, v in _LETTERS.items()})
# Punctuation common in Latin text (curly quotes, dashes, guillemets) becomes a plain space: it separates
# tokens anyway, and this keeps most folded European text ASCII, which takes the fast path below.
_FOLD.update(
    {cp: " " for cp in (*range(0xA0, 0xC0), *range(0x2000, 0x2070)) if not chr(cp).isalnum() and cp not in _FOLD}
)
_FOLD.update({0x2010: "-", 0x2011: "-"})  # hyphens join compounds like the ASCII hyphen-minus


def _char_class(codepoints: Iterable[int]) -> str:
    """A regex character class of ``codepoints``, as ranges."""
    runs: list[list[int]] = []
    for cp in sorted(codepoints):
        if runs and cp == runs[-1][1] + 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return "[" + "".join(re.escape(chr(lo)) + (f"-{re.escape(chr(hi))}" if hi > lo else "") for lo, hi in runs) + "]"


# `str.translate(_FOLD)` spelled as two regular expressions: translate looks every character of a
# non-ASCII text up in the table (tens of ns each, 25 us for a typical news body with curly quotes),
# while a regex scans for the few that change (accented text mostly loses marks: the first pattern).
_FOLD_DROP = re.compile(_char_class(cp for cp, to in _FOLD.items() if to is None))
_FOLD_MAP = re.compile(_char_class(cp for cp, to in _FOLD.items() if to is not None))
_FOLD_TO = {chr(cp): to for cp, to in _FOLD.items() if to is not None}


def _fold_one(m: re.Match[str]) -> str:
    return _FOLD_TO[m.group()]


def _mark_class() -> str:
    """Combining marks that belong inside words (Indic vowel signs, Arabic and Hebrew points, ...)."""
    ranges: list[str] = []
    for lo, hi in ((0x0370, 0x1FFF), (0xA600, 0xABFF), (0xFB1E, 0xFB1E)):
        start = -1
        for cp in range(lo, hi + 2):
            is_mark = cp <= hi and unicodedata.category(chr(cp))[0] == "M" and cp not in _FOLD
            if is_mark and start < 0:
                start = cp
            elif not is_mark and start >= 0:
                ranges.append(f"\\u{start:04x}-\\u{cp - 1:04x}")
                start = -1
    return "".join(ranges)


_TOKEN = re.compile(f"[{_UNSPACED_RANGES}]+|(?:[^\\W_{_UNSPACED_RANGES}]|[{_mark_class()}])+")
_UNSPACED_CHAR = re.compile(f"[{_UNSPACED_RANGES}]")
# ASCII fast path: every byte that is not a lowercase letter or digit becomes a space.
_ASCII_SPACES = bytes(c if (0x30 <= c <= 0x39 or 0x61 <= c <= 0x7A) else 0x20 for c in range(256))
# A hyphen between two word characters (written with the literal first: the regex engine then
# scans for "-" quickly instead of trying the lookbehind at every position).
_HYPHEN = re.compile(r"-(?<=[^\W_]-)(?=[^\W_])")


def fold(text: str) -> str:
    """Case-, accent- and width-fold ``text`` (idempotent: ``fold(fold(t)) == fold(t)``)."""
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    # same as folded.translate(_FOLD): no replacement is itself in the table, so the order is free
    return unicodedata.normalize("NFC", _FOLD_MAP.sub(_fold_one, _FOLD_DROP.sub("", folded)))


def tokens(folded: str) -> list[str]:
    """The tokens of already folded text."""
    if folded.isascii():
        return folded.encode().translate(_ASCII_SPACES).decode().split()
    return _TOKEN.findall(folded)


def _stream_of(folded: str) -> str:
    if folded.isascii():
        toks = folded.encode().translate(_ASCII_SPACES).split()
        return " " + b" ".join(toks).decode() + " " if toks else " "
    return stream(_TOKEN.findall(folded))


def join_hyphens(folded: str) -> str:
    """``folded`` with hyphens inside compounds removed (``zhong-yi`` -> ``zhongyi``)."""
    return _HYPHEN.sub("", folded) if "-" in folded else folded


def is_unspaced(token: str) -> bool:
    """True for a token of a script written without spaces (matched as a substring)."""
    return bool(token) and _UNSPACED_CHAR.match(token) is not None


def stream(toks: Sequence[str]) -> str:
    """Tokens as a stream: ``" a b c "`` (a lone space for no tokens)."""
    return " " + " ".join(toks) + " " if toks else " "


def term_key(toks: Sequence[str]) -> str:
    """The key that occurs in a stream exactly where ``toks`` occur as a term (see module doc)."""
    key = " ".join(toks)
    if not is_unspaced(toks[0]):
        key = " " + key
    if not is_unspaced(toks[-1]):
        key += " "
    return key


def streams(text: str) -> tuple[str, ...]:
    """The stream of ``text``, then its hyphen-joined stream if that differs."""
    folded = fold(text)
    main = _stream_of(folded)
    joined_text = join_hyphens(folded)
    if joined_text == folded:
        return (main,)
    return (main, _stream_of(joined_text))


@dataclass(frozen=True, slots=True)
class Document:
    """An item's text, normalised once for matching. Build it with `document`.

    Each field holds one or two streams: the text, then its hyphen-joined variant if it has compounds.
    """

    title: tuple[str, ...]
    body: tuple[str, ...]
    source: tuple[str, ...]


def document(title: str, body: str = "", source: str = "") -> Document:
    """Normalise an item's title, body and source name for `Query.matches` and `MatchIndex.match`."""
    return Document(title=streams(title), body=streams(body), source=streams(source))


def fts_columns(doc_or_title: Document | str, body: str = "", source: str = "") -> tuple[str, str, str]:
    """Text for the archive's FTS5 ``(title, body, source)`` columns, for `Query.fts_prefilter`.

    Takes a `Document`, or the item's title, body and source name.

    Store the normalised streams (not the raw text), so that the FTS tokenizer sees the same tokens
    the matcher does; a field's hyphen-joined stream goes on a second line.
    """
    if isinstance(doc_or_title, Document):
        doc = doc_or_title
    else:
        doc = document(doc_or_title, body, source)
    title, body, source = ("\n".join(s.strip() for s in f) for f in (doc.title, doc.body, doc.source))
    return title, body, source
