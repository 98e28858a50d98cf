"""Matching: the subscription query language and the index that matches items against all queries.

Typical use::

    query = parse_query('#LiuZhongyi OR "scam centres" -sport')   # QueryError points at mistakes
    index = MatchIndex({sub_id: query})
    doc = document(item.title, item.text, item.source_name)       # once per item
    for sub_id, result in index.match(doc).items(): ...           # result.terms: what fired

See `bot.match.query` for the language, `bot.match.text` for normalisation and `bot.match.index`
for the automaton and its thread-safety.
"""

from __future__ import annotations

from bot.match.index import MatchIndex, MatchResult
from bot.match.query import Query, QueryError, contains_term, parse_query
from bot.match.text import Document, document, fts_columns

__all__ = [
    "Document",
    "MatchIndex",
    "MatchResult",
    "Query",
    "QueryError",
    "contains_term",
    "document",
    "fts_columns",
    "parse_query",
]
