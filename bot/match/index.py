"""One Aho-Corasick automaton over the terms of all subscriptions.

Matching an item: the automaton runs once over each normalised stream of the item (title, body,
source; see `bot.match.text`) and reports every key that occurs, overlapping ones included ("liu" and
"liu zhongyi" both fire). A key in a field is an *atom*. Each distinct query (by normal form; many
subscriptions share one) has an *anchor*: atoms one of which must occur for the query to be true.
Every query needs a positive term (see `parse_query`), so candidate selection by anchor is exact.
Single-term queries (most of them) need no evaluation: their ready results are copied in one step.
Other queries are evaluated only when their anchor fired, and an AND of clauses only tests the clauses
other than its anchor.

Concurrency: a *snapshot* (automaton and tables) is immutable once built. ``set()``/``remove()`` are
cheap: they record the change, and ``match()`` applies recorded changes at once by evaluating those
queries directly. ``rebuild()`` folds them into a new snapshot built without holding any lock, then
swaps it in; matching never waits for it. See `MatchIndex` for when that happens by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

import ahocorasick

from bot.match.query import And, Node, Not, Query, Term, positive_terms
from bot.match.text import Document

K = TypeVar("K", bound=Hashable)

_SCOPES = {"": 0, "title": 1, "source": 2}
_TERM, _AND, _OR, _NOT = 0, 1, 2, 3

# Compiled expressions: (_TERM, atoms, display, cost) | (_AND | _OR, tuple[Expr, ...]) | (_NOT, Expr).
# An atom is key_id * 3 + scope (0: title or body, 1: title, 2: source).
TermExpr = tuple[int, tuple[int, ...], str, float]
Expr = tuple


class MatchResult(tuple):  # an immutable value; a tuple keeps creating one cheap
    """Why a subscription matched: its ``query`` and the positive ``terms`` that occur in the item.

    ``terms`` (query syntax without field, as in `Query.terms`) is worked out when read: an item can
    match thousands of subscriptions, and most callers only look at a few results' terms.
    """

    __slots__ = ()

    def __new__(cls, query: Query, terms: tuple[str, ...]) -> MatchResult:
        return tuple.__new__(cls, (query, terms, (), None))

    @property
    def query(self) -> Query:
        return self[0]

    @property
    def terms(self) -> tuple[str, ...]:
        terms = self[1]
        if terms is None:  # built by the index: (query, None, term expressions, fired atoms)
            fired = self[3]
            terms = tuple(t[2] for t in self[2] if not fired.isdisjoint(t[1]))
        return terms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatchResult) and (other.query, other.terms) == (self.query, self.terms)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.query, self.terms))

    def __repr__(self) -> str:
        return f"MatchResult(query={self.query.normal_form!r}, terms={self.terms!r})"


_new_result = tuple.__new__


class _Builder:
    """Compiles queries for one snapshot: dense key ids, one shared expression per distinct Term."""

    __slots__ = ("keys", "strs", "term_exprs")

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.strs: list[str] = []
        self.term_exprs: dict[tuple[Term, str], TermExpr] = {}

    def key_id(self, key: str) -> int:
        i = self.keys.get(key)
        if i is None:
            i = self.keys[key] = len(self.strs)
            self.strs.append(key)
        return i

    def term(self, term: Term) -> TermExpr:
        # Equal terms (same keys and field) may be displayed differently: #東京2020 and "東京 2020".
        expr = self.term_exprs.get((term, term.display))
        if expr is None:
            scope = _SCOPES[term.field]
            atoms = tuple(self.key_id(k) * 3 + scope for k in term.keys)
            expr = self.term_exprs[(term, term.display)] = (_TERM, atoms, term.display, self.cost(atoms))
        return expr

    def compile(self, node: Node) -> Expr:
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Not):
            return (_NOT, self.compile(node.child))
        op = _AND if isinstance(node, And) else _OR
        return (op, tuple(self.compile(c) for c in node.children))

    def cost(self, atoms: tuple[int, ...]) -> float:
        """A guess at how often a clause occurs: long keys and phrases are rarer, source names common."""
        total = 0.0
        for atom in atoms:
            core = self.strs[atom // 3].strip()
            cost = 1.0 / (1 + len(core))
            if " " in core:
                cost *= 0.3
            total += cost * (1.0, 0.5, 5.0)[atom % 3]
        return total


def _anchor(expr: Expr) -> tuple[float, tuple[int, ...]] | None:
    """(cost, atoms): the query can only be true if one of ``atoms`` occurred; None under NOT."""
    op = expr[0]
    if op == _TERM:
        return expr[3], expr[1]
    if op == _NOT:
        return None
    found = [_anchor(c) for c in expr[1]]
    options = [f for f in found if f is not None]
    if op == _OR:
        if len(options) < len(found):
            return None
        return sum(f[0] for f in options), tuple({a for f in options for a in f[1]})
    return min(options, key=lambda f: f[0]) if options else None


def _clause(expr: Expr) -> tuple[int, ...] | None:
    """The atoms of a term or of an OR of terms (true iff one of them fired), else None."""
    if expr[0] == _TERM:
        return expr[1]
    if expr[0] == _OR and all(c[0] == _TERM for c in expr[1]):
        return tuple(dict.fromkeys(a for c in expr[1] for a in c[1]))
    return None


def _cnf(expr: Expr) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]] | None:
    """(positive clauses, negative clauses) when the query is an AND of terms, ORs of terms and their
    negations (nearly every real query); None for other shapes."""
    pos: list[tuple[int, ...]] = []
    neg: list[tuple[int, ...]] = []
    for child in expr[1] if expr[0] == _AND else (expr,):
        clause = _clause(child[1]) if child[0] == _NOT else _clause(child)
        if clause is None:
            return None
        (neg if child[0] == _NOT else pos).append(clause)
    return tuple(pos), tuple(neg)


def _result_terms(query: Query, builder: _Builder) -> tuple[TermExpr, ...]:
    """Per entry of ``query.terms``: the atoms of every positive term shown that way."""
    atoms: dict[str, tuple[int, ...]] = dict.fromkeys(query.terms, ())
    for term in positive_terms(query.root):
        atoms[term.display] += builder.term(term)[1]
    return tuple((_TERM, a, display, 0.0) for display, a in atoms.items())


class _Compiled:
    """One distinct query of more than one term (by normal form) in a snapshot.

    Nearly every query is an AND of clauses (a term, or an OR of terms) and negated clauses. One
    positive clause is its anchor: the query is a candidate when an atom of the anchor fired, which
    makes that clause true, so only the other clauses (``checks``) and ``neg`` remain to be tested.
    Other shapes keep the whole expression (``expr``) and an anchor found by `_anchor`.
    """

    __slots__ = ("anchor", "checks", "expr", "neg", "query", "terms")

    def __init__(self, query: Query, builder: _Builder) -> None:
        self.query = query
        expr = builder.compile(query.root)
        self.terms = _result_terms(query, builder)
        cnf = _cnf(expr)
        self.expr: Expr | None = None
        self.checks: tuple[tuple[int, ...], ...] = ()
        self.neg: tuple[tuple[int, ...], ...] = ()
        if cnf is not None and cnf[0]:
            pos, self.neg = cnf
            best = min(range(len(pos)), key=lambda i: builder.cost(pos[i]))
            self.anchor = pos[best]
            self.checks = pos[:best] + pos[best + 1 :]
        else:
            anchor = _anchor(expr)
            if anchor is None:  # pragma: no cover - parse_query rejects such queries
                raise ValueError(f"query needs no positive term: {query.normal_form}")
            self.anchor = anchor[1]
            self.expr = expr


def _evaluate(expr: Expr, fired: set[int]) -> bool:
    op = expr[0]
    if op == _TERM:
        return not fired.isdisjoint(expr[1])
    if op == _NOT:
        return not _evaluate(expr[1], fired)
    if op == _AND:
        for child in expr[1]:
            if not _evaluate(child, fired):
                return False
        return True
    for child in expr[1]:
        if _evaluate(child, fired):
            return True
    return False


class _Snapshot(Generic[K]):
    """Immutable once built: automaton, compiled queries, anchors, subscribers.

    Single-term queries (most of them) are resolved without any evaluation: ``direct[atom]`` holds the
    ready results of every subscription whose query is one term with that atom. Other queries are
    listed under each atom of their anchor in ``anchors`` and evaluated when one of those fires.
    """

    __slots__ = ("anchors", "automaton", "compiled", "direct", "queries", "subscribers")

    def __init__(self, queries: dict[K, Query]) -> None:
        # Subscriptions typed alike share one Query object, so the index keeps one per distinct text.
        same_text: dict[str, Query] = {}
        self.queries = {key: same_text.setdefault(query.text, query) for key, query in queries.items()}
        queries = self.queries
        builder = _Builder()
        qids: dict[str, int] = {}
        single: dict[str, MatchResult] = {}
        self.compiled: list[_Compiled] = []
        self.subscribers: list[list[K]] = []
        self.direct: dict[int, dict[K, MatchResult]] = {}
        self.anchors: dict[int, list[int]] = {}
        for key, query in queries.items():
            root = query.root
            if isinstance(root, Term):
                result = single.get(query.normal_form)
                if result is None:
                    result = single[query.normal_form] = MatchResult(query, (root.display,))
                for atom in builder.term(root)[1]:
                    self.direct.setdefault(atom, {})[key] = result
                continue
            qid = qids.get(query.normal_form)
            if qid is None:
                qid = qids[query.normal_form] = len(self.compiled)
                compiled = _Compiled(query, builder)
                self.compiled.append(compiled)
                self.subscribers.append([])
                for atom in compiled.anchor:
                    self.anchors.setdefault(atom, []).append(qid)
            self.subscribers[qid].append(key)
        self.automaton: ahocorasick.Automaton | None = None
        if builder.strs:
            automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for i, k in enumerate(builder.strs):
                automaton.add_word(k, 3 * i)  # the atom of the key in title or body
            automaton.make_automaton()
            self.automaton = automaton

    def fired_atoms(self, doc: Document) -> set[int]:
        automaton = self.automaton
        if automaton is None:
            return set()
        title: set[int] = set()
        text: set[int] = set()
        source: set[int] = set()
        for s in doc.title:
            title.update([v for _, v in automaton.iter(s)])
        for s in doc.body:
            text.update([v for _, v in automaton.iter(s)])
        for s in doc.source:
            source.update([v for _, v in automaton.iter(s)])
        text |= title
        fired = text
        fired.update([v + 1 for v in title])
        fired.update([v + 2 for v in source])
        return fired


class MatchIndex(Generic[K]):
    """Subscriptions (any hashable key -> Query) matched against items in one pass.

    Thread-safety: ``match()`` may run in worker threads while ``set()``/``remove()``/``rebuild()``
    happen on another thread (e.g. the event loop). Readers and writers share one lock, held only for
    pointer swaps (and one copy of the pending changes after a burst of them), never for matching or
    building. Every ``match()`` sees one consistent state that includes every change made before it.

    Maintenance: pending changes are folded into a new automaton by ``rebuild()``. With
    ``auto_rebuild`` (the default) ``match()`` arranges that itself: in a background thread once
    `REBUILD_AFTER_CHANGES` changes are pending or the oldest is `REBUILD_AFTER_SECONDS` old (matching
    carries on with the old automaton plus the changes meanwhile), and inline, on the calling thread,
    when `REBUILD_INLINE_CHANGES` are pending (a bulk load, where the old automaton is of no use).
    """

    REBUILD_AFTER_CHANGES = 64
    REBUILD_AFTER_SECONDS = 30.0
    REBUILD_INLINE_CHANGES = 2048

    def __init__(
        self, subscriptions: Mapping[K, Query] | Iterable[tuple[K, Query]] = (), *, auto_rebuild: bool = True
    ) -> None:
        items = subscriptions.items() if isinstance(subscriptions, Mapping) else subscriptions
        self.auto_rebuild = auto_rebuild
        self._lock = threading.Lock()  # guards the fields below
        self._snapshot: _Snapshot[K] = _Snapshot(dict(items))
        self._changes: dict[K, tuple[int, Query | None]] = {}  # key -> (version, query; None: removed)
        self._view: dict[K, tuple[int, Query | None]] | None = {}  # frozen copy of _changes for readers
        self._version = 0
        self._dirty_since = 0.0
        self._rebuilding = False
        self._rebuild_lock = threading.Lock()  # one rebuild at a time

    # -- changes (cheap; safe on the event loop) ---------------------------------------------------

    def set(self, key: K, query: Query) -> None:
        """Add or replace a subscription; effective for the next ``match()``."""
        self._change(key, query)

    def remove(self, key: K) -> bool:
        """Remove a subscription; False if there was none."""
        with self._lock:
            entry = self._changes.get(key)
            present = entry[1] is not None if entry is not None else key in self._snapshot.queries
            if present:
                self._change_locked(key, None)
        return present

    def _change(self, key: K, query: Query | None) -> None:
        with self._lock:
            self._change_locked(key, query)

    def _change_locked(self, key: K, query: Query | None) -> None:
        if not self._changes:
            self._dirty_since = time.monotonic()
        self._version += 1
        self._changes[key] = (self._version, query)
        self._view = None

    def _read(self) -> tuple[_Snapshot[K], dict[K, tuple[int, Query | None]], int]:
        with self._lock:
            view = self._view
            if view is None:
                view = self._view = dict(self._changes)
            return self._snapshot, view, self._version

    @property
    def pending(self) -> int:
        """Changes not yet folded into the automaton (each costs a little per match until then)."""
        return len(self._changes)

    def rebuild(self) -> None:
        """Fold pending changes into a new automaton and swap it in. CPU-bound: run it off the loop."""
        with self._rebuild_lock:
            snapshot, changes, version = self._read()
            if not changes:
                return
            merged = dict(snapshot.queries)
            for key, (_, query) in changes.items():
                if query is None:
                    merged.pop(key, None)
                else:
                    merged[key] = query
            new = _Snapshot(merged)  # no lock held: set() and match() carry on meanwhile
            with self._lock:
                self._snapshot = new
                self._changes = {k: e for k, e in self._changes.items() if e[0] > version}
                self._view = None
                self._dirty_since = time.monotonic()

    def _maintain(self, pending: int) -> None:
        if pending >= self.REBUILD_INLINE_CHANGES:
            self.rebuild()
            return
        if pending < self.REBUILD_AFTER_CHANGES and time.monotonic() - self._dirty_since < self.REBUILD_AFTER_SECONDS:
            return
        with self._lock:
            if self._rebuilding:
                return
            self._rebuilding = True

        def run() -> None:
            try:
                self.rebuild()
            finally:
                self._rebuilding = False

        threading.Thread(target=run, name="match-index-rebuild", daemon=True).start()

    # -- reading -------------------------------------------------------------------------------------

    def get(self, key: K) -> Query | None:
        snapshot, changes, _ = self._read()
        if key in changes:
            return changes[key][1]
        return snapshot.queries.get(key)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        snapshot, changes, _ = self._read()
        n = len(snapshot.queries)
        for key, (_, query) in changes.items():
            n += (query is not None) - (key in snapshot.queries)
        return n

    def match(self, doc: Document) -> dict[K, MatchResult]:
        """The subscriptions that match ``doc``, with the terms that fired. A new dict each call."""
        snapshot, changes, _ = self._read()
        if changes and self.auto_rebuild:
            self._maintain(len(changes))
            snapshot, changes, _ = self._read()
        fired = snapshot.fired_atoms(doc)
        results: dict[K, MatchResult] = {}
        if fired:
            direct, anchors = snapshot.direct, snapshot.anchors
            compiled, subscribers = snapshot.compiled, snapshot.subscribers
            for atom in fired:
                ready = direct.get(atom)
                if ready is not None:
                    results.update(ready)
                qids = anchors.get(atom)
                if qids is None:
                    continue
                for qid in qids:  # a query may come twice (two atoms of its anchor): same result
                    c = compiled[qid]
                    if c.expr is not None:
                        if not _evaluate(c.expr, fired):
                            continue
                    else:  # inlined: this loop runs for every candidate of every item
                        ok = True
                        for clause in c.checks:
                            if fired.isdisjoint(clause):
                                ok = False
                                break
                        if ok:
                            for clause in c.neg:
                                if not fired.isdisjoint(clause):
                                    ok = False
                                    break
                        if not ok:
                            continue
                    result = _new_result(MatchResult, (c.query, None, c.terms, fired))
                    for key in subscribers[qid]:
                        results[key] = result
        for key, (_, query) in changes.items():
            results.pop(key, None)
            if query is not None and (terms := query.matched_terms(doc)) is not None:
                results[key] = MatchResult(query, terms)
        return results
