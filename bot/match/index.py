"""One Aho-Corasick automaton over the terms of all subscriptions.

Matching an item: the automaton runs once over each normalised stream of the item (title, body,
source; see `bot.match.text`) and reports every key that occurs, overlapping ones included ("liu" and
"liu zhongyi" both fire). A key in a field is an *atom*. Each distinct query text (many subscriptions
share one: the same tag typed by many channels) is compiled once into a *form*; every query needs a
positive term (see `parse_query`), so each form has *anchor* atoms one of which must fire for it to
be true, and is only looked at when one does.

A snapshot files each form under its atoms, so that matching is mostly dict updates done in C:

- ``direct[atom]``: the subscriptions that match as soon as the atom fires, with ready results:
  single-term queries, ORs of terms, and either with exclusions (``myanmar -sport``), whose keys
  ``negs[atom]`` takes out again when an excluded atom fired too. An OR's ready result names the
  terms of the atom that fired; an OR reached through two of its atoms (``ors``) has its terms
  worked out.
- ``pairs[atom][other]``: an AND of clauses, filed under its two rarest clauses, so ``scam centres``
  costs a set intersection (``pairs[atom].keys() & fired``) unless both fired.
- ``slow[atom]``: other shapes, evaluated when an anchor atom fired.
- ``gates[atom]``: the partners of the atom's pairs and exclusions; ``pairs``/``negs`` are looked at
  only for fired atoms whose partner fired too (a minority of items), so most items cost one dict
  lookup per fired atom beyond ``direct``.

Forms are immutable and shared by successive snapshots, as are key ids (a key keeps its id while
it is in the automaton), so a rebuild compiles only new queries and builds a new automaton only when
a new key appears (or many are gone). The index keeps no `Query` objects: `get()` and
`MatchResult.query` parse the form's text again (`parse_query` caches).

Concurrency: a *snapshot* (automaton and tables) is immutable once built. ``set()``/``remove()`` are
cheap: they record the change, and ``match()`` applies recorded changes at once by evaluating those
queries directly. ``rebuild()`` folds them into a new snapshot built without holding any lock, then
swaps it in; matching never waits for it. See `MatchIndex` for when that happens by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from operator import itemgetter
from typing import Any, Generic, TypeVar

import ahocorasick

from bot.match.query import And, Node, Not, Or, Query, Term, parse_query, positive_terms
from bot.match.text import Document

K = TypeVar("K", bound=Hashable)

_SCOPES = {"": 0, "title": 1, "source": 2}
_TERM, _AND, _OR, _NOT = 0, 1, 2, 3  # compiled expressions of _EXPR forms
_DIRECT, _PAIR, _EXPR = 0, 1, 2  # kinds of _Form

# An atom is key id + scope (0: title or body, 1: title, 2: source); key ids are multiples of 3.
# Expressions: (_TERM, atoms) | (_AND | _OR, tuple[Expr, ...]) | (_NOT, Expr).
Atoms = tuple[int, ...]
Expr = tuple


class MatchResult:
    """Why a subscription matched: its ``query`` and the positive ``terms`` that occur in the item.

    ``terms`` is in query syntax without field, in the order of `Query.terms`. Subscriptions whose
    queries are typed alike share one result (an immutable value: compare with ``==``).
    """

    # Slots, not a tuple or a property: reading ``result.terms`` for every hit is part of matching.
    __slots__ = ("_atoms", "_query", "terms")

    _query: Query | str
    terms: tuple[str, ...]
    _atoms: Atoms | None  # for the index: the atoms of a single-term query this result stands for

    def __init__(self, query: Query | str, terms: Iterable[str], _atoms: Atoms | None = None) -> None:
        self._query = query
        self.terms = tuple(terms)
        self._atoms = _atoms

    @property
    def query(self) -> Query:
        query = self._query  # the index stores the query's text: it keeps no Query objects
        return query if isinstance(query, Query) else parse_query(query)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatchResult) and (other.query, other.terms) == (self.query, self.terms)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.query, self.terms))

    def __repr__(self) -> str:
        return f"MatchResult(query={self.query.normal_form!r}, terms={self.terms!r})"


_second = itemgetter(1)
_plus_1 = (1).__add__


class _Form:
    """A distinct query text, compiled; immutable and shared by successive snapshots.

    - ``result``: the ready result when the terms that fire do not vary (every positive term is
      required); else None, and ``terms`` ((display, atoms), ...) lets `_exact` work them out.
    - ``kind`` _DIRECT (one positive clause: a term or an OR of terms): ``anchor`` its atoms, and for
      an OR ``extra`` the ready result per anchor atom (naming the terms of that atom).
    - ``kind`` _PAIR (an AND of clauses): ``anchor`` the rarest clause, ``extra`` the others by rarity.
    - ``kind`` _EXPR (other shapes): ``anchor`` atoms one of which must fire, ``extra`` the expression.
    - ``neg``: atoms none of which may fire (excluded clauses of _DIRECT and _PAIR), or None.
    """

    __slots__ = ("anchor", "extra", "kind", "neg", "result", "terms", "text")

    def __init__(
        self,
        text: str,
        kind: int,
        anchor: Atoms,
        neg: Atoms | None,
        result: MatchResult | None,
        terms: tuple[tuple[str, Atoms], ...] | None,
        extra: Any,
    ) -> None:
        self.text = text
        self.kind = kind
        self.anchor = anchor
        self.neg = neg
        self.result = result
        self.terms = terms
        self.extra = extra

    def atoms(self) -> Iterable[int]:
        """Every atom the form uses."""
        yield from self.anchor
        if self.neg is not None:
            yield from self.neg
        if self.terms is not None:
            yield from (a for _, atoms in self.terms for a in atoms)
        if self.kind == _PAIR:
            yield from (a for clause in self.extra for a in clause)
        elif self.kind == _EXPR:
            yield from _expr_atoms(self.extra)


def _text(form: _Form | MatchResult) -> str:
    return form._query if type(form) is MatchResult else form.text  # type: ignore[union-attr,return-value]


def _atoms_of(form: _Form | MatchResult) -> Iterable[int]:
    """Every atom a form (or the result standing for a single-term query) uses."""
    return form._atoms if type(form) is MatchResult else form.atoms()  # type: ignore[union-attr,return-value]


def _exact(form: _Form, fired: set[int]) -> MatchResult:
    """The result of a matching form whose terms vary: those of its terms that fired."""
    return MatchResult(form.text, [d for d, atoms in form.terms if not fired.isdisjoint(atoms)])


class _Keys:
    """Key strings -> ids, shared by successive snapshots; a key keeps its id while an automaton has it.

    Ids are never reused; they are multiples of 3, so that an id is also the key's title-or-body atom.
    """

    __slots__ = ("ids", "next_id")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.next_id = 0

    def id(self, key: str) -> int:
        i = self.ids.get(key)
        if i is None:
            i = self.ids[key] = self.next_id
            self.next_id += 3
        return i

    def keep_only(self, live: set[int]) -> None:
        self.ids = {k: i for k, i in self.ids.items() if i in live}


class _Compiler:
    """Compiles queries into forms for one rebuild (the atoms of a Term are worked out once)."""

    def __init__(self, keys: _Keys) -> None:
        self.keys = keys
        self.term_atoms: dict[Term, Atoms] = {}  # equal Terms (same field and keys) have equal atoms
        self.strs: dict[int, str] = {}  # key id -> key, for `cost`

    def atoms(self, term: Term) -> Atoms:
        atoms = self.term_atoms.get(term)
        if atoms is None:
            scope = _SCOPES[term.field]
            ids = [self.keys.id(k) for k in term.keys]
            self.strs.update(zip(ids, term.keys, strict=True))
            atoms = self.term_atoms[term] = tuple(ids) if not scope else tuple(i + scope for i in ids)
        return atoms

    def cost(self, atoms: Iterable[int]) -> float:
        """A guess at how often a clause occurs: long keys and phrases are rarer, source names common."""
        total = 0.0
        for atom in atoms:
            core = self.strs[atom - atom % 3].strip()
            cost = 1.0 / (1 + len(core))
            if " " in core:
                cost *= 0.3
            total += cost * (1.0, 0.5, 5.0)[atom % 3]
        return total

    def expr(self, node: Node) -> Expr:
        if isinstance(node, Term):
            return (_TERM, self.atoms(node))
        if isinstance(node, Not):
            return (_NOT, self.expr(node.child))
        return (_AND if isinstance(node, And) else _OR, tuple(self.expr(c) for c in node.children))

    def form(self, query: Query) -> _Form | MatchResult:
        root, text = query.root, query.text
        # Per entry of query.terms: the atoms of every positive term shown that way.
        merged: dict[str, Atoms] = {}
        for term in positive_terms(root):
            atoms = self.atoms(term)
            seen = merged.get(term.display)
            merged[term.display] = atoms if seen is None or seen == atoms else seen + atoms
        shown = query.terms
        terms = tuple((d, merged[d]) for d in shown)
        pos: list[tuple[Term, ...]] = []
        neg: list[int] = []
        for child in root.children if isinstance(root, And) else (root,):
            node = child.child if isinstance(child, Not) else child
            if isinstance(node, Term):
                clause: tuple[Term, ...] = (node,)
            elif isinstance(node, Or) and all(isinstance(c, Term) for c in node.children):
                clause = node.children  # type: ignore[assignment]
            else:
                return self.expr_form(query, terms)
            if isinstance(child, Not):
                neg.extend(a for t in clause for a in self.atoms(t))
            else:
                pos.append(clause)
        if not pos:  # pragma: no cover - parse_query rejects such queries
            raise ValueError(f"query needs no positive term: {query.normal_form}")
        negs = tuple(dict.fromkeys(neg)) if neg else None
        if all(len(c) == 1 for c in pos):  # every positive term is required: the terms are all of them
            result: MatchResult | None = MatchResult(text, shown)
            kept = None
        else:
            result, kept = None, terms
        if len(pos) == 1:
            if len(pos[0]) == 1:
                if negs is None:  # one term (most queries): the result is all there is to it
                    return MatchResult(text, shown, self.atoms(pos[0][0]))
                return _Form(text, _DIRECT, self.atoms(pos[0][0]), negs, result, kept, None)
            anchor = tuple(dict.fromkeys(a for t in pos[0] for a in self.atoms(t)))
            # an OR: per atom, the result naming the terms of that atom
            made: dict[tuple[str, ...], MatchResult] = {}
            ready = []
            for atom in anchor:
                known = {t.display for t in pos[0] if atom in self.atoms(t)}
                names = tuple(d for d, _ in terms if d in known)
                ready.append(made.get(names) or made.setdefault(names, MatchResult(text, names)))
            return _Form(text, _DIRECT, anchor, negs, result, kept, tuple(ready))
        clauses = sorted((tuple(dict.fromkeys(a for t in c for a in self.atoms(t))) for c in pos), key=self.cost)
        return _Form(text, _PAIR, clauses[0], negs, result, kept, tuple(clauses[1:]))

    def expr_form(self, query: Query, terms: tuple[tuple[str, Atoms], ...]) -> _Form:
        expr = self.expr(query.root)
        anchor = _anchor(expr, self.cost)
        if anchor is None:  # pragma: no cover - parse_query rejects such queries
            raise ValueError(f"query needs no positive term: {query.normal_form}")
        return _Form(query.text, _EXPR, anchor[1], None, None, terms, expr)


def _anchor(expr: Expr, cost: Callable[[Atoms], float]) -> tuple[float, Atoms] | None:
    """(cost, atoms): the query can only be true if one of ``atoms`` occurred; None under NOT."""
    op = expr[0]
    if op == _TERM:
        return cost(expr[1]), expr[1]
    if op == _NOT:
        return None
    found = [_anchor(c, cost) for c in expr[1]]
    options = [f for f in found if f is not None]
    if op == _OR:
        if len(options) < len(found):
            return None
        return sum(f[0] for f in options), tuple(dict.fromkeys(a for f in options for a in f[1]))
    return min(options, key=lambda f: f[0]) if options else None


def _expr_atoms(expr: Expr) -> Iterable[int]:
    if expr[0] == _TERM:
        yield from expr[1]
    elif expr[0] == _NOT:
        yield from _expr_atoms(expr[1])
    else:
        for child in expr[1]:
            yield from _expr_atoms(child)


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


def _run_slow(entries: Iterable[tuple[_Form, tuple[Any, ...]]], fired: set[int], results: dict[Any, Any]) -> None:
    """Evaluate forms filed under a fired anchor (_EXPR) or a fired pair of clauses (_PAIR)."""
    for form, keys in entries:
        if form.kind == _PAIR:
            ok = True
            for clause in form.extra[1:]:  # the anchor and the second clause fired
                if fired.isdisjoint(clause):
                    ok = False
                    break
            if not ok or (form.neg is not None and not fired.isdisjoint(form.neg)):
                continue
        elif not _evaluate(form.extra, fired):
            continue
        result = form.result if form.result is not None else _exact(form, fired)
        for key in keys:
            results[key] = result


class _Snapshot(Generic[K]):
    """Immutable once built: the automaton, and per atom what its firing means (see the module doc).

    ``owners`` maps each subscription to its form; ``or_keys`` the subscribers of each OR; ``removed``
    counts subscriptions removed or replaced since the automaton was built.
    """

    __slots__ = (
        "ac_next", "automaton", "direct", "gates", "negs", "or_keys", "ors", "owners", "pairs", "removed", "slow"
    )

    owners: dict[K, _Form | MatchResult]

    def __init__(
        self, owners: dict[K, _Form | MatchResult], removed: int, keys: _Keys, previous: _Snapshot[K] | None
    ) -> None:
        self.owners = owners
        # (by id: a MatchResult standing for a single-term query hashes by value)
        grouped: dict[int, tuple[_Form | MatchResult, list[K]]] = {}
        for key, form in owners.items():
            entry = grouped.get(id(form))
            if entry is None:
                grouped[id(form)] = (form, [key])
            else:
                entry[1].append(key)
        members = [(form, tuple(keys)) for form, keys in grouped.values()]
        del grouped
        # A new automaton only for new keys, or once many subscriptions went (their keys may be
        # dead). Ids are never reused and a key keeps its id while an automaton has it, so the previous
        # automaton has every key whose id is below its ``ac_next``; keys it has that nobody uses any
        # more fire harmlessly (nothing is filed there).
        self.removed = removed + (previous.removed if previous is not None else 0)
        if (
            previous is not None
            and previous.automaton is not None
            and keys.next_id == previous.ac_next
            and self.removed <= max(1024, len(owners) // 8)
        ):
            self.automaton, self.ac_next = previous.automaton, previous.ac_next
        else:
            live = {a - a % 3 for form, _ in members for a in _atoms_of(form)}
            keys.keep_only(live)
            self.ac_next = keys.next_id
            self.removed = 0
            self.automaton = None
            if live:
                automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
                for key, i in keys.ids.items():
                    automaton.add_word(key, i)  # the atom of the key in title or body
                automaton.make_automaton()
                self.automaton = automaton
        self._file(members)

    def _file(self, members: list[tuple[_Form | MatchResult, tuple[K, ...]]]) -> None:
        # Atoms filed by one form only: the two atoms of a hashtag (split and compact) then share a dict.
        users: dict[int, int] = {}
        for form, _ in members:
            if type(form) is MatchResult or form.kind == _DIRECT:
                for atom in form._atoms if type(form) is MatchResult else form.anchor:
                    users[atom] = users.get(atom, 0) + 1
        direct: dict[int, dict[K, MatchResult]] = {}
        ors: dict[int, list[_Form]] = {}
        negs: dict[int, dict[int, list[K]]] = {}
        pairs: dict[int, dict[int, list[tuple[_Form, tuple[K, ...]]]]] = {}
        slow: dict[int, list[tuple[_Form, tuple[K, ...]]]] = {}
        self.or_keys: dict[_Form, tuple[K, ...]] = {}
        for form, keys in members:
            if type(form) is MatchResult:  # a single-term query
                kind, anchor, neg, extra, fixed = _DIRECT, form._atoms, None, None, form
            else:
                kind, anchor, neg, extra, fixed = form.kind, form.anchor, form.neg, form.extra, form.result
            if kind == _DIRECT:
                if extra is None and all(users[atom] == 1 for atom in anchor):
                    own = dict.fromkeys(keys, fixed)
                    for atom in anchor:
                        direct[atom] = own
                else:
                    for i, atom in enumerate(anchor):
                        result = fixed if extra is None else extra[i]
                        filed = direct.get(atom)
                        if filed is None:
                            direct[atom] = dict.fromkeys(keys, result)
                        else:
                            for key in keys:
                                filed[key] = result
                if extra is not None:  # an OR
                    self.or_keys[form] = keys  # type: ignore[index]
                    for atom in anchor:
                        ors.setdefault(atom, []).append(form)  # type: ignore[arg-type]
                if neg is not None:
                    for atom in anchor:
                        excluded = negs.setdefault(atom, {})
                        for x in neg:
                            excluded.setdefault(x, []).extend(keys)
            elif kind == _PAIR:
                item = (form, keys)  # type: ignore[assignment]
                for a in anchor:
                    filed_pairs = pairs.setdefault(a, {})
                    for b in extra[0]:
                        filed_pairs.setdefault(b, []).append(item)
            else:
                item = (form, keys)
                for atom in anchor:
                    slow.setdefault(atom, []).append(item)
        self.direct = direct
        # ORs reached through two of their atoms: found by counting (C does it), fixed rarely.
        self.ors = {atom: tuple(forms) for atom, forms in ors.items()}
        self.negs = {atom: {x: tuple(dict.fromkeys(keys)) for x, keys in n.items()} for atom, n in negs.items()}
        self.pairs = {atom: {b: tuple(items) for b, items in p.items()} for atom, p in pairs.items()}
        self.slow = {atom: tuple(items) for atom, items in slow.items()}
        # The other atom of every pair and exclusion filed under an atom: matching looks at
        # `pairs`/`negs` only for the atoms whose partner fired too (few items have any).
        gates: dict[int, Any] = dict(self.pairs)
        for atom, excluded in self.negs.items():
            gate = gates.get(atom)
            gates[atom] = excluded if gate is None else frozenset(gate).union(excluded)
        self.gates = gates

    def fired_atoms(self, doc: Document) -> set[int]:
        automaton = self.automaton
        if automaton is None:
            return set()
        it = automaton.iter  # yields (end, atom)
        title: set[int] = set()
        text: set[int] = set()
        for s in doc.title:
            title.update(map(_second, it(s)))
        for s in doc.body:
            text.update(map(_second, it(s)))
        text |= title
        if title:
            text.update(map(_plus_1, title))
        for s in doc.source:
            text.update([v + 2 for _, v in it(s)])
        return text

    def match(self, fired: set[int]) -> dict[K, MatchResult]:
        """The snapshot's subscriptions that match, given the atoms that fired."""
        results: dict[K, MatchResult] = {}
        update = results.update
        for ready in map(self.direct.get, fired):  # most of the work: C does it
            if ready is not None:
                update(ready)
        gates = [atom for atom in fired if (gate := self.gates.get(atom)) is not None and not fired.isdisjoint(gate)]
        if gates:
            self._pairs_and_negs(gates, fired, results)
        if self.slow:
            for entries in map(self.slow.get, fired):
                if entries is not None:
                    _run_slow(entries, fired, results)
        # An OR reached through two of its atoms may have had two of its terms fire.
        reached = [*filter(None, map(self.ors.get, fired))]
        if len(reached) > 1 and len(set().union(*reached)) < sum(map(len, reached)):
            self._fix_ors(reached, fired, results)
        return results

    def _pairs_and_negs(self, atoms: list[int], fired: set[int], results: dict[K, MatchResult]) -> None:
        """ANDs whose two rarest clauses fired, and exclusions that fired, for ``atoms`` (whose
        gates say that one of their partners fired)."""
        for atom in atoms:
            filed = self.pairs.get(atom)
            if filed is not None:
                for other in filed.keys() & fired:
                    _run_slow(filed[other], fired, results)
        pop = results.pop
        for atom in atoms:
            excluded = self.negs.get(atom)
            if excluded is not None:
                for x in excluded.keys() & fired:
                    for key in excluded[x]:
                        pop(key, None)

    def _fix_ors(self, reached: list[tuple[_Form, ...]], fired: set[int], results: dict[K, MatchResult]) -> None:
        seen: set[_Form] = set()
        done: set[_Form] = set()
        for forms in reached:
            for form in forms:
                if form not in seen:
                    seen.add(form)
                    continue
                if form in done:
                    continue
                done.add(form)
                if form.neg is not None and not fired.isdisjoint(form.neg):
                    continue  # excluded: its keys were taken out
                result = _exact(form, fired)
                for key in self.or_keys[form]:
                    results[key] = result


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
        self._rebuild_lock = threading.Lock()  # one rebuild at a time; guards _keys
        self._keys = _Keys()
        self._snapshot: _Snapshot[K] = self._build(None, ((key, query) for key, query in items))
        # key -> (version, query; None: removed; its text while a bulk load is compiled)
        self._changes: dict[K, tuple[int, Query | str | None]] = {}
        self._view: dict[K, tuple[int, Query | str | None]] | None = {}  # frozen copy of _changes for readers
        self._version = 0
        self._dirty_since = 0.0
        self._rebuilding = False

    # -- changes (cheap; safe on the event loop) ---------------------------------------------------

    def set(self, key: K, query: Query) -> None:
        """Add or replace a subscription; effective for the next ``match()``."""
        self._change(key, query)

    def remove(self, key: K) -> bool:
        """Remove a subscription; False if there was none."""
        with self._lock:
            entry = self._changes.get(key)
            present = entry[1] is not None if entry is not None else key in self._snapshot.owners
            if present:
                self._change_locked(key, None)
        return present

    def _change(self, key: K, query: Query | None) -> None:
        with self._lock:
            self._change_locked(key, query)

    def _change_locked(self, key: K, query: Query | str | None) -> None:
        if not self._changes:
            self._dirty_since = time.monotonic()
        self._version += 1
        self._changes[key] = (self._version, query)
        self._view = None

    def _read(self) -> tuple[_Snapshot[K], dict[K, tuple[int, Query | str | None]], int]:
        with self._lock:
            view = self._view
            if view is None:
                view = self._view = dict(self._changes)
            return self._snapshot, view, self._version

    @property
    def pending(self) -> int:
        """Changes not yet folded into the automaton (each costs a little per match until then)."""
        return len(self._changes)

    def _build(self, snapshot: _Snapshot[K] | None, changes: Iterable[tuple[K, Query | None]]) -> _Snapshot[K]:
        """A new snapshot: ``snapshot`` with ``changes`` (key, query or None: removed) applied. Call
        with ``_rebuild_lock`` held (or from ``__init__``)."""
        owners = dict(snapshot.owners) if snapshot is not None else {}
        forms: dict[str, _Form | MatchResult] | None = None  # by query text, made when needed
        compiler: _Compiler | None = None
        removed = 0
        for key, query in changes:
            if key in owners:
                removed += 1
            if query is None:
                owners.pop(key, None)
                continue
            if forms is None:
                forms = {_text(form): form for form in owners.values()}
            form = forms.get(query.text)
            if form is None:
                compiler = compiler or _Compiler(self._keys)
                form = forms[query.text] = compiler.form(query)
            owners[key] = form
        return _Snapshot(owners, removed, self._keys, snapshot)

    def rebuild(self) -> None:
        """Fold pending changes into a new snapshot and swap it in. CPU-bound: run it off the loop."""
        with self._rebuild_lock:
            snapshot, view, version = self._read()
            if not view:
                return
            pending = list(view.items())
            del view
            # no lock held: set() and match() carry on meanwhile
            new = self._build(snapshot, self._consume(pending))
            with self._lock:
                self._snapshot = new
                self._changes = {k: e for k, e in self._changes.items() if e[0] > version}
                self._view = None
                self._dirty_since = time.monotonic()

    def _consume(self, pending: list[Any]) -> Iterable[tuple[K, Query | None]]:
        """The pending changes, for `_build`. A big batch (a bulk load) lets go of its queries as they
        are compiled: the pending change then holds the query's text, which a reader parses again
        if it must, so that the memory of the queries is free for the compiled forms."""
        bulk = len(pending) >= self.REBUILD_INLINE_CHANGES
        done: list[tuple[K, int, str]] = []
        for i, (key, (version, query)) in enumerate(pending):
            pending[i] = None
            if isinstance(query, str):
                query = parse_query(query)
            yield key, query
            if bulk and query is not None:
                done.append((key, version, query.text))
                del query
                if len(done) == 1024:
                    self._release(done)
        if done:
            self._release(done)

    def _release(self, done: list[tuple[K, int, str]]) -> None:
        with self._lock:
            changes = self._changes
            for key, version, text in done:
                entry = changes.get(key)
                if entry is not None and entry[0] == version:
                    changes[key] = (version, text)
            self._view = None
        done.clear()

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
        """The query of a subscription (equal to the one set: same text), or None."""
        snapshot, changes, _ = self._read()
        if key in changes:
            query = changes[key][1]
            return parse_query(query) if isinstance(query, str) else query
        form = snapshot.owners.get(key)
        return parse_query(_text(form)) if form is not None else None

    def __contains__(self, key: object) -> bool:
        snapshot, changes, _ = self._read()
        if key in changes:
            query = changes[key][1]
            return parse_query(query) if isinstance(query, str) else query is not None  # type: ignore[index]
        return key in snapshot.owners

    def __len__(self) -> int:
        snapshot, changes, _ = self._read()
        owners = snapshot.owners
        n = len(owners)
        for key, (_, query) in changes.items():
            n += (query is not None) - (key in owners)
        return n

    def match(self, doc: Document) -> dict[K, MatchResult]:
        """The subscriptions that match ``doc``, with the terms that fired. A new dict each call."""
        if self.auto_rebuild and self._changes:
            self._maintain(len(self._changes))
        snapshot, changes, _ = self._read()
        fired = snapshot.fired_atoms(doc)
        results = snapshot.match(fired) if fired else {}
        for key, (_, query) in changes.items():
            results.pop(key, None)
            if isinstance(query, str):  # let go of while a bulk load is compiled (see _consume)
                query = parse_query(query)
            if query is not None and (terms := query.matched_terms(doc)) is not None:
                results[key] = MatchResult(query, terms)
        return results
