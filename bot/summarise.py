"""Summarise stage: an extractive summary of an item's clean text.

`summarise` takes the lead sentences of the text (skipping a first sentence that only
repeats the headline) and, when the lead does not mention any of the matched terms, adds the
first sentence that does, so the reader sees why the item matched. The result is at most
``limit`` characters, never cut inside a word, and ends in "…" when something was cut.

`split_sentences` is a small rule-based splitter: it knows common abbreviations (Mr., Dr.,
U.S., e.g., Jan.), initials, decimals, ellipses, closing quotes and CJK full stops.
Both are pure functions over text (the text should already be plain: see `bot.normalise`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from itertools import chain, islice

from bot.normalise import strip_boilerplate

__all__ = ["LEAD_SENTENCES", "split_sentences", "summarise"]

LEAD_SENTENCES = 3  # a summary, not the article

# Abbreviations after which a period does not end a sentence (compared lowercased, no final dot).
_NEVER_FINAL = frozenset({
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "st", "mt", "ft", "gen", "col", "lt", "sgt", "capt",
    "cmdr", "adm", "maj", "gov", "sen", "rep", "rev", "hon", "pres", "supt", "insp", "det", "fr", "messrs",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "vs", "v", "cf", "e.g", "i.e", "eg", "ie", "approx", "dept", "univ", "assn", "ave", "blvd", "hwy",
    "mme", "mlle", "bzw", "evtl", "ggf", "inkl", "sog", "usw", "vgl", "z.b", "d.h", "u.a", "sra",
    "dra", "srta",
})
# Abbreviations that only precede a number: "No. 5", "Art. 3", "p. 12", "ca. 1900".
_BEFORE_NUMBER = frozenset({"no", "nos", "nr", "art", "sec", "ch", "fig", "figs", "vol", "p", "pp",
                            "para", "op", "ca", "ed", "tel"})
# Abbreviations that can also end a sentence: a boundary only before a typical sentence opener.
_MAYBE_FINAL = frozenset({
    "u.s", "u.k", "u.n", "e.u", "u.s.a", "d.c", "a.m", "p.m", "etc", "inc", "ltd", "co", "corp",
    "jr", "plc", "llc", "bros", "al",
})
_OPENERS = frozenset({
    "the", "a", "an", "he", "she", "it", "they", "we", "i", "you", "but", "and", "in", "on", "at", "this",
    "that", "these", "those", "there", "his", "her", "its", "their", "our", "my", "meanwhile", "however",
    "after", "before", "when", "while", "if", "as", "for", "since", "some", "many", "most", "officials",
    "police", "critics", "according", "last", "earlier", "later", "now", "then", "still", "so", "yet",
})
# Candidate sentence ends. The pattern opens with a character class so that the regex engine skips
# quickly to the next mark (an alternation of groups would be tried at every position); the
# lookbehinds then pick the branch for the mark just read.
_CANDIDATE = re.compile(
    r"[.!?…。！？\n]"
    r"(?:(?<=[.!?])[.!?]*[\"'”’»)\]]*(?=\s+\S)"  # terminal punctuation, closing quotes, then space
    r"|(?<=…)[\"'”’»)\]]*(?=\s+\S)"
    r"|(?<=[。！？])[」』”’）]*"  # CJK sentence ends need no space
    r"|(?<=\n)\n*)"
)
_WORD_BEFORE = re.compile(r"([\w.]+)[.]$")
_NEXT_WORD = re.compile(r"\s*([\"'“‘«(\[]?)(\w+)")
_WORD = re.compile(r"\w+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|^#")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def split_sentences(text: str) -> list[str]:
    """Sentences of a plain text, in order, stripped; line breaks always end a sentence."""
    return list(_iter_sentences(text))


def _iter_sentences(text: str) -> Iterator[str]:
    """`split_sentences`, one at a time (a summary rarely needs more than the first few)."""
    start = 0
    for match in _CANDIDATE.finditer(text):
        end = match.end()
        if match.group()[0] != "\n" and not _is_boundary(text, match.start(), end):
            continue
        sentence = text[start:end].strip()
        if sentence:
            yield " ".join(sentence.split())
        start = end
    rest = text[start:].strip()
    if rest:
        yield " ".join(rest.split())


def _is_boundary(text: str, punct_start: int, punct_end: int) -> bool:
    mark = text[punct_start]
    if mark in "。！？":
        return True
    following = _NEXT_WORD.match(text, punct_end)
    if following is None:
        return True
    opener, next_word = following.group(1), following.group(2)
    first = next_word[0]
    if first.islower():
        return False  # '"Stop!" he said', 'e.g. apples', '… and then'
    if mark == "." and text[punct_start:punct_start + 3] != "...":
        before = _WORD_BEFORE.search(text, max(0, punct_start - 12), punct_start + 1)
        if before:
            word = before.group(1).lower().lstrip(".")
            if word in _NEVER_FINAL:
                return False
            if word in _BEFORE_NUMBER and first.isdigit():
                return False
            if word in _MAYBE_FINAL:
                return bool(opener) or next_word.lower() in _OPENERS
            if len(word) == 1 and word.isalpha() and text[punct_start - 1].isupper():
                return False  # an initial: "John F. Kennedy"
    return True


def summarise(title: str, text: str, terms: Sequence[str] = (), limit: int = 400) -> str:
    """An extractive summary of at most ``limit`` characters (see module docstring).

    ``terms``: the matched query terms; matching is case- and accent-insensitive.
    Returns "" when the text has nothing beyond the headline.
    """
    if limit <= 1:
        return ""
    clean = strip_boilerplate(text)
    title_key = _tokens(title)
    sentences = _iter_sentences(clean)
    first = next(sentences, None)
    while first is not None and _repeats_title(first, title_key):
        first = next(sentences, None)
    if first is None:
        return ""
    # the lead: only the first sentences are looked at unless a term has to be found further on
    rest = (_terminated(s) for s in sentences)
    head = [_terminated(first), *islice(rest, LEAD_SENTENCES - 1)]

    folded_terms = [t for t in (_fold(_CAMEL.sub(" ", term)) for term in terms) if t]
    lead = _take(head, limit)
    if not folded_terms or any(_mentions(s, folded_terms) for s in lead):
        return _join(lead, head, limit)
    # a sentence can only mention a term the whole text mentions: look no further when it does not
    compact_text = _fold(clean).replace(" ", "")
    if not any(t.replace(" ", "") in compact_text for t in folded_terms):
        return _join(lead, head, limit)

    found = next(((i, s) for i, s in enumerate(chain(head, rest)) if _mentions(s, folded_terms)), None)
    if found is None:
        return _join(lead, head, limit)
    term_index, term_sentence = found
    chosen: list[str] = []
    used = len(term_sentence) if len(term_sentence) <= limit else limit
    for sentence in head[: min(term_index, LEAD_SENTENCES)]:
        extra = len(sentence) + 3  # " … " or " " separator
        if used + extra > limit:
            break
        chosen.append(sentence)
        used += extra
    if not chosen:
        room = limit - len(term_sentence) - 3
        if room >= 60:  # a shortened lead still helps; otherwise show the term's sentence alone
            return _cut(head[0], room) + " " + term_sentence
        return _cut(term_sentence, limit)
    gap = len(chosen) < term_index
    return " ".join(chosen) + (" … " if gap else " ") + term_sentence


def _terminated(sentence: str) -> str:
    """A standfirst or list item without a full stop gets one, so joined sentences read well."""
    last = sentence[-1]
    if last.isalnum() and not _CJK.match(last):
        return sentence + "."
    return sentence


def _take(sentences: list[str], limit: int) -> list[str]:
    taken: list[str] = []
    used = 0
    for sentence in sentences[:LEAD_SENTENCES]:
        extra = len(sentence) + (1 if taken else 0)
        if used + extra > limit:
            break
        taken.append(sentence)
        used += extra
    return taken


def _join(lead: list[str], sentences: list[str], limit: int) -> str:
    if lead:
        return " ".join(lead)
    return _cut(sentences[0], limit)


def _cut(text: str, limit: int) -> str:
    """``text`` if it fits, else its longest whole-word prefix that fits with "…"."""
    if len(text) <= limit:
        return text
    window = text[: limit - 1]
    if text[limit - 1].isspace():
        cut = window
    else:
        space = window.rfind(" ")
        if space > 0:
            cut = window[:space]
        elif _CJK.search(window):
            cut = window  # no spaces in CJK text: any character is a word edge
        else:
            cut = window  # one giant token (a URL): nothing better is possible
    return cut.rstrip(" ,;:-–—([{\"'“‘") + "…"


def _fold(text: str) -> str:
    if text.isascii():  # NFKD changes no ASCII text, casefold() is lower(), nothing is combining
        stripped = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        # combining marks dropped; only non-ASCII runs are looked at (no ASCII character is one)
        stripped = decomposed if decomposed.isascii() else _NON_ASCII.sub(_drop_marks, decomposed)
    return " ".join(_WORD.findall(stripped.replace("_", " ")))


def _drop_marks(run: re.Match[str]) -> str:
    return "".join(ch for ch in run.group() if not unicodedata.combining(ch))


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_fold(text).split())


def _mentions(sentence: str, folded_terms: list[str]) -> bool:
    folded = _fold(sentence)
    padded = f" {folded} "
    compact = None
    for term in folded_terms:
        if f" {term} " in padded:
            return True
        if " " in term or _CJK.search(term):  # "Liu Zhongyi" also as "Liu Zhong-yi", CJK inside words
            if compact is None:
                compact = folded.replace(" ", "")
            if term.replace(" ", "") in compact:
                return True
    return False


def _repeats_title(sentence: str, title_key: tuple[str, ...]) -> bool:
    """True if the sentence says nothing the headline does not (same words, maybe fewer)."""
    if not title_key:
        return False
    words = _tokens(sentence)
    if not words:
        return True
    title_words = set(title_key)
    novel = sum(1 for w in words if w not in title_words)
    return novel <= len(words) // 10 and len(words) <= len(title_key) + 3
