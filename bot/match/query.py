"""The query language of tag subscriptions: parse, echo back in a normal form, evaluate.

Syntax (precedence NOT > AND > OR; parentheses group)::

    scam centres                 both words (implicit AND), whole words, anywhere in title or body
    "scam centres"               the exact phrase (punctuation between the words does not matter)
    myanmar OR thailand          either
    myanmar -sport               NOT sport; also written  myanmar NOT sport
    (myanmar OR thailand) scam   parentheses group
    title:myanmar                in the title only; source:reuters matches the source name.
                                 A field applies to one word, "phrase" or #HashTag.
    #LiuZhongyi                  CamelCase split: "Liu Zhongyi", "LIU ZHONGYI", "Liu Zhong-yi",
                                 "Liú Zhōngyì", and the compact form "#liuzhongyi" / "LiuZhongyi"
    刘忠义                        scripts without spaces match as a substring

- Only upper-case ``OR``, ``AND`` and ``NOT`` are operators; ``or``/``and``/``not`` are searched as
  words (the query gets a warning, and the normal form shows ``AND or AND`` so the meaning is visible).
- Matching is case-, accent- and width-insensitive (see `bot.match.text`). A hyphenated word
  ``scam-centres`` matches ``scam-centres``, ``scam centres`` and ``scamcentres``; a quoted phrase
  ``"scam centres"`` matches the first two (hyphens in the text separate words like spaces do).
- Words without field search title and body, not the source name: use ``source:``.
- Every query must need at least one word to be present: ``-sport`` alone, or ``a OR -b``, would match
  almost every item and is rejected. This also makes candidate selection in `MatchIndex` exact.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from bot.match.text import (
    Document,
    fold,
    is_unspaced,
    join_hyphens,
    streams,
    term_key,
    tokens,
)

MAX_QUERY_LENGTH = 1000
MAX_DEPTH = 32  # nested parentheses and NOTs
FIELDS = ("title", "source")  # "" means title or body
FTS_COLUMNS = {"": "{title body}", "title": "title", "source": "source"}

# Full-width and typographic forms of the syntax characters, folded one-to-one so columns stay right.
_SYNTAX_WIDTH = str.maketrans(
    {
        "\uff08": "(",
        "\uff09": ")",
        "\uff02": '"',
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\uff03": "#",
        "\uff1a": ":",
        "\uff0d": "-",
        "\u2212": "-",
        "\u3000": " ",
    }
)
_SPECIAL = ' \t\r\n\f\v()"'
_COMPOUND = re.compile(r"[^\W_]+(?:-[^\W_]+)+")


class QueryError(ValueError):
    """A query that cannot be parsed; ``str()`` says what is wrong and where (1-based column)."""

    def __init__(self, message: str, column: int | None = None, hint: str = "") -> None:
        self.message = message
        self.column = column
        self.hint = hint
        text = f"{message} at column {column}" if column is not None else message
        super().__init__(f"{text} ({hint})" if hint else text)


# ---------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Term:
    """A word, phrase or hashtag: it occurs if any of its ``keys`` occurs in one of its fields."""

    field: str  # "" (title or body), "title" or "source"
    keys: tuple[str, ...]  # see bot.match.text.term_key; alternatives (e.g. split and compact hashtag)
    display: str = field(compare=False)  # the term in query syntax, without field prefix


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Not | And | Or


# --------------------------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # ( ) OR AND NOT - word phrase tag field end
    text: str
    column: int


def _lex(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    n = len(text)
    i = 0
    after_field = False
    while i < n:
        ch = text[i]
        col = i + 1
        if after_field and (ch.isspace() or ch == ")"):
            raise QueryError(f"{out[-1].text}: needs a word, phrase or hashtag right after it", out[-1].column)
        if ch.isspace():
            i += 1
            continue
        if after_field and ch in "(-":
            f = out[-1].text
            raise QueryError(
                f"{f}: applies to one word, phrase or hashtag",
                out[-1].column,
                f"write ({f}:a OR {f}:b) or -{f}:a",
            )
        if ch in "()":
            out.append(_Tok(ch, ch, col))
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QueryError("unterminated quote", col)
            out.append(_Tok("phrase", text[i + 1 : end], col))
            i = end + 1
        elif ch == "-" and not after_field:
            if i + 1 >= n or text[i + 1].isspace() or text[i + 1] == ")":
                raise QueryError("'-' needs a term right after it", col, "write -sport")
            out.append(_Tok("-", "-", col))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIAL and not text[j].isspace():
                j += 1
            word = text[i:j]
            if ch == "#":
                if len(word) == 1:
                    raise QueryError("'#' needs a tag name right after it", col, "write #LiuZhongyi")
                out.append(_Tok("tag", word[1:], col))
            elif not after_field and word in ("OR", "AND", "NOT"):
                out.append(_Tok(word, word, col))
            elif not after_field and (m := re.match(r"([^\W\d_]+):", word)):
                name = m.group(1).lower()
                rest_at = i + m.end()
                if name not in FIELDS:
                    if rest_at < n and not text[rest_at].isspace():
                        raise QueryError(
                            f"unknown field '{m.group(0)}'", col, "use title: or source:, or put the words in quotes"
                        )
                    out.append(_Tok("word", word, col))  # "update:" before a space is just a word
                else:
                    out.append(_Tok("field", name, col))
                    after_field = True
                    i = rest_at
                    if i >= n:
                        raise QueryError(f"{name}: needs a word, phrase or hashtag right after it", col)
                    continue
            else:
                out.append(_Tok("word", word, col))
            i = j
        after_field = False
    out.append(_Tok("end", "", n + 1))
    return out


# -------------------------------------------------------------------------------------------- terms


def _char_kind(c: str) -> str:
    if c.isdigit():
        return "d"
    if is_unspaced(c):
        return "u"
    if c.isupper() or c.istitle():
        return "U"
    if c.isalpha():
        return "l"
    return "m" if unicodedata.category(c)[0] == "M" else "-"


def _split_hashtag(body: str) -> list[str]:
    """CamelCase and separator split: LiuZhongyi -> Liu Zhongyi, NASAMission -> NASA Mission,
    COVID19 -> COVID 19, liu_zhongyi -> liu zhongyi, 東京2020 -> 東京 2020."""
    group = {"U": "a", "l": "a", "d": "d", "u": "u"}
    kinds = [_char_kind(c) for c in body]
    parts: list[str] = []
    cur: list[str] = []
    last = "-"  # kind of the last letter or digit in cur
    for i, (c, k) in enumerate(zip(body, kinds, strict=True)):
        if k == "-":
            if cur:
                parts.append("".join(cur))
            cur, last = [], "-"
            continue
        if k == "m":  # combining mark: stays with its letter
            cur.append(c)
            continue
        nxt = next((n for n in kinds[i + 1 :] if n != "m"), "-")
        if cur and (
            group[last] != group[k]  # letters | digits | scripts without spaces
            or (last == "l" and k == "U")  # liu|Zhongyi
            or (last == "U" and k == "U" and nxt == "l")  # NASA|Mission
        ):
            parts.append("".join(cur))
            cur = []
        cur.append(c)
        last = k
    if cur:
        parts.append("".join(cur))
    return parts


def _phrase_display(toks: list[str]) -> str:
    return toks[0] if len(toks) == 1 else '"' + " ".join(toks) + '"'


def _make_term(tok: _Tok, fld: str) -> Term:
    try:
        return _term(tok.kind, tok.text, fld)
    except QueryError as e:
        raise QueryError(e.message, tok.column, e.hint) from None


@lru_cache(maxsize=16384)
def _term(kind: str, text: str, fld: str) -> Term:
    """A Term from its lexeme; cached so that queries sharing a term share its objects."""
    if kind == "tag":
        body = unicodedata.normalize("NFKC", text)
        if any(c in _SPECIAL or c.isspace() for c in body):
            body = text
        parts = _split_hashtag(body)
        split = [t for part in parts for t in tokens(fold(part))]
        if not split:
            raise QueryError(f"'#{text}' has no letters or digits to search for")
        alts = [split, tokens(fold("".join(parts)))]
        display = "#" + body
    elif kind == "phrase":
        toks = tokens(fold(text))
        if not toks:
            raise QueryError("empty phrase", None, "a phrase needs letters or digits")
        alts = [toks]
        display = _phrase_display(toks)
    else:
        folded = fold(text)
        toks = tokens(folded)
        if not toks:
            raise QueryError(f"'{text}' has no letters or digits to search for")
        alts = [toks]
        display = _phrase_display(toks)
        if _COMPOUND.fullmatch(folded):
            compact = tokens(join_hyphens(folded))
            if compact != toks:
                alts.append(compact)
                display = folded
    keys = tuple(dict.fromkeys(term_key(a) for a in alts if a))
    return Term(field=fld, keys=keys, display=display)


# -------------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _lex(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise QueryError("empty query")
        node = self.or_expr()
        tok = self.peek()
        if tok.kind == ")":
            raise QueryError("unbalanced parenthesis", tok.column)
        if tok.kind != "end":  # pragma: no cover - every other token starts or joins an expression
            raise QueryError(f"unexpected {tok.text!r}", tok.column)
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.peek().kind == "OR":
            self.take()
            children.append(self.and_expr())
        return _flatten(Or, children)

    def and_expr(self) -> Node:
        children = [self.unary()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.take()
            elif kind not in ("NOT", "-", "(", "word", "phrase", "tag", "field"):
                break
            children.append(self.unary())
        return _flatten(And, children)

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind in ("NOT", "-"):
            self.take()
            self.enter(tok)
            child = self.unary()
            self.depth -= 1
            return child.child if isinstance(child, Not) else Not(child, tok.column)
        return self.primary()

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"query nested too deeply (at most {MAX_DEPTH} levels)", tok.column)

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "(":
            self.enter(tok)
            if self.peek().kind == ")":
                raise QueryError("empty parentheses", tok.column)
            node = self.or_expr()
            if self.take().kind != ")":
                raise QueryError("unbalanced parenthesis", tok.column)
            self.depth -= 1
            return node
        if tok.kind == "field":
            return _make_term(self.take(), tok.text)
        if tok.kind in ("word", "phrase", "tag"):
            return _make_term(tok, "")
        raise self.missing_term(tok)

    def missing_term(self, tok: _Tok) -> QueryError:
        prev = self.toks[self.pos - 2] if self.pos >= 2 else None
        if prev is not None and prev.kind in ("OR", "AND", "NOT", "-"):
            name = "'-'" if prev.kind == "-" else prev.kind
            return QueryError(f"{name} needs a term after it", prev.column)
        if tok.kind in ("OR", "AND"):
            return QueryError(f"{tok.kind} needs a term before it", tok.column)
        return QueryError("unbalanced parenthesis", tok.column)


def _flatten(kind: type[And] | type[Or], children: list[Node]) -> Node:
    if len(children) == 1:
        return children[0]
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, kind) else (child,))
    unique = tuple(dict.fromkeys(flat))  # a AND a == a
    return unique[0] if len(unique) == 1 else kind(unique)


# ------------------------------------------------------------------------------------ query object


def _render(node: Node, parent: str = "") -> str:
    if isinstance(node, Term):
        return (node.field + ":" if node.field else "") + node.display
    if isinstance(node, Not):
        return "NOT " + _render(node.child, "NOT")
    if isinstance(node, And):
        text = " AND ".join(_render(c, "AND") for c in node.children)
        return f"({text})" if parent else text  # clearer inside OR, needed inside NOT
    text = " OR ".join(_render(c, "OR") for c in node.children)
    return f"({text})" if parent else text


def positive_terms(node: Node, negated: bool = False) -> Iterator[Term]:
    if isinstance(node, Term):
        if not negated:
            yield node
    elif isinstance(node, Not):
        yield from positive_terms(node.child, not negated)
    else:
        for child in node.children:
            yield from positive_terms(child, negated)


def _requires_a_term(node: Node) -> Not | None:
    """None if ``node`` can only be true when one of its positive terms occurs, else a NOT to blame."""
    if isinstance(node, Term):
        return None
    if isinstance(node, Not):
        return node
    if isinstance(node, Or):
        return next((c for c in map(_requires_a_term, node.children) if c is not None), None)
    culprits = [_requires_a_term(c) for c in node.children]
    return None if any(c is None for c in culprits) else culprits[0]


def _term_occurs(term: Term, doc: Document) -> bool:
    fields = (doc.title + doc.body) if not term.field else doc.title if term.field == "title" else doc.source
    return any(key in s for key in term.keys for s in fields)


def _evaluate(node: Node, doc: Document, fired: dict[Term, bool]) -> bool:
    if isinstance(node, Term):
        hit = fired.get(node)
        if hit is None:
            hit = fired[node] = _term_occurs(node, doc)
        return hit
    if isinstance(node, Not):
        return not _evaluate(node.child, doc, fired)
    if isinstance(node, And):
        return all(_evaluate(c, doc, fired) for c in node.children)
    return any(_evaluate(c, doc, fired) for c in node.children)


def _fts_phrase(key: str) -> str | None:
    toks = key.split()
    if any(is_unspaced(t) or not any(c.isalnum() and ord(c) < 0x2000 for c in t) for t in toks):
        return None  # substring matches (CJK) and exotic tokens: FTS5 cannot prefilter them safely
    return '"' + " ".join(toks) + '"'


def _fts(node: Node) -> str | None:
    if isinstance(node, Term):
        phrases = [_fts_phrase(k) for k in node.keys]
        if any(p is None for p in phrases):
            return None
        inner = phrases[0] if len(phrases) == 1 else "(" + " OR ".join(p for p in phrases if p) + ")"
        return f"{FTS_COLUMNS[node.field]} : {inner}"
    if isinstance(node, Not):
        return None  # negation of a prefilter is not a prefilter
    parts = [_fts(c) for c in node.children]
    if isinstance(node, And):
        kept = [p for p in parts if p]
        return None if not kept else kept[0] if len(kept) == 1 else "(" + " AND ".join(kept) + ")"
    if any(p is None for p in parts):
        return None
    return "(" + " OR ".join(p for p in parts if p) + ")"


@dataclass(frozen=True, slots=True, eq=False)
class Query:
    """A parsed subscription query. Build with `parse_query`. Immutable and thread-safe.

    Two queries are equal when their normal forms are equal (they then match the same items).
    """

    text: str  # as the user typed it
    normal_form: str  # canonical rendering to echo back; parse_query(normal_form) is equivalent
    root: Node
    terms: tuple[str, ...]  # distinct positive terms in query syntax without field, e.g. #LiuZhongyi
    warnings: tuple[str, ...] = ()  # things the user probably did not mean (lower-case "or")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Query) and other.normal_form == self.normal_form

    def __hash__(self) -> int:
        return hash(self.normal_form)

    def matches(self, doc: Document) -> bool:
        """True if the item matches (same answer as `MatchIndex.match`)."""
        return _evaluate(self.root, doc, {})

    def matched_terms(self, doc: Document) -> tuple[str, ...] | None:
        """The positive terms that occur in a matching item, or None if it does not match."""
        fired: dict[Term, bool] = {}
        if not _evaluate(self.root, doc, fired):
            return None
        found = {t.display for t in positive_terms(self.root) if fired.get(t) or _term_occurs(t, doc)}
        return tuple(d for d in self.terms if d in found)

    def fts_prefilter(self) -> str | None:
        """An FTS5 MATCH expression satisfied by every item this query matches, or None.

        For a table ``fts5(title, body, source, tokenize='unicode61 remove_diacritics 2')`` filled
        with `fts_columns`. It is a superset: filter the candidates exactly with `matches`.
        None when no useful prefilter exists (scripts without spaces, or an OR with such a branch).
        """
        return _fts(self.root)


def _warnings(toks: list[_Tok]) -> tuple[str, ...]:
    out = []
    for tok in toks:
        if tok.kind == "word" and tok.text.upper() in ("OR", "AND", "NOT"):
            out.append(
                f"'{tok.text}' at column {tok.column} is searched as a word; "
                f"write {tok.text.upper()} in capitals for the operator"
            )
    return tuple(out)


@lru_cache(maxsize=4096)
def parse_query(text: str) -> Query:
    """Parse a subscription query; raises `QueryError` pointing at the problem.

    Identical texts give the same (immutable) Query object, so many subscriptions to one tag are cheap.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"query too long ({len(text)} characters, at most {MAX_QUERY_LENGTH})")
    parser = _Parser(text.translate(_SYNTAX_WIDTH))
    root = parser.parse()
    culprit = _requires_a_term(root)
    if culprit is not None:
        if next(positive_terms(root), None) is None:
            raise QueryError(
                "a query needs a word to look for: with only exclusions it would match almost every item",
                None,
                "write e.g. myanmar -sport",
            )
        raise QueryError(
            "this part only excludes words, so the query would match almost every item",
            culprit.column,
            "every OR branch needs a word to look for",
        )
    terms = tuple(dict.fromkeys(t.display for t in positive_terms(root)))
    normal_form = _render(root)
    if normal_form == text:
        normal_form = text  # one string object instead of two
    return Query(text=text, normal_form=normal_form, root=root, terms=terms, warnings=_warnings(parser.toks))


def contains_term(text: str, term: str) -> bool:
    """True if plain ``text`` (e.g. one sentence) contains ``term`` (an entry of `Query.terms`)."""
    node = parse_query(term).root
    if not isinstance(node, Term):
        return False
    return any(key in s for key in node.keys for s in streams(text))
