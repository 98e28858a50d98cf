"""Story grouping: online, single-pass clustering of news items into stories.

Each new item either joins the most similar open story or opens a new one. Plain code over data (no
database, no network); the bot (`bot.pipeline`) and the benchmark (`bench.stories`) run this class.

Two steps, so the caller can allocate story ids from its database::

    match = clusterer.find(title, lead, ts)    # Match(story_id | None, similarity); changes nothing
    story_id = match.story_id if match.story_id is not None else allocate_story_id()
    clusterer.add(story_id, title, lead, ts)   # joins the story, or opens it under that id

`assign()` does both in one call (new ids from ``story_id_if_new`` or an internal counter).
`add_to_story()` is `add()` under the name that reads best at its other call sites: a syndicated
copy joining its original's story, or the items of the last window replayed oldest first at startup,
which rebuilds the whole state (document frequencies, centroids, recency) exactly.

Similarity (each choice measured on ``uci-news-dev.csv``; the numbers are in bench/README.md):

- Terms: the folded tokens of title and lead (`bot.match.text`), English stopwords and one-character
  tokens dropped, a plural/third-person ``s`` stripped (``stocks`` -> ``stock``). Tokens of scripts
  written without spaces (Chinese, Japanese, ...) give character bigrams. Lead terms count half as much
  as title terms; only the first `LEAD_TOKENS` lead tokens are read. (Character n-grams of words are
  available, ``char_n``; they scored no better and cost four times as much.)
- Weights: TF-IDF (``1 + ln tf``, smoothed IDF), document frequencies counted online over the items of
  the last window, each item's vector L2-normalised.
- Linkage: a story keeps the sum of its items' vectors (its centroid). Its score for a new item is the
  item's cosine to the centroid divided by the story's cohesion, the mean cosine of its own items to
  the centroid (``|centroid| / size``), raised to ``cohesion_power`` (1: the item must be at least
  ``threshold`` times as close to the story as its average member). A single-item story is matched by
  plain cosine; a broad, many-sided story as loosely as its own members match it.
- Recency: the score is divided by ``1 + idle / pace``, where ``idle`` is the time since the story's
  newest item and ``pace`` the story's mean gap between items, counting ``new_story_gap`` as one more
  gap (so a new story's pace is that gap). A busy story that went quiet, or a story idle for longer
  than its usual rhythm, needs a closer match; a slow story stays joinable for longer.
- Support: an item with a lead (at least ``long_item_terms`` distinct terms) must have more than one
  word in common with a story: its score without its strongest shared term must still reach
  ``min_support``. Otherwise two reports that share only the place or company they are about (the
  very word a channel subscribes to) would thread together. Headlines alone are exempt: in six words,
  one shared rare word is good evidence (on the dev file such joins are right 87% of the time).
- An item joins the best-scoring open story if the score reaches ``threshold``, else opens a story.

Bounds: a story closes once its newest item is more than ``window_seconds`` older than the newest
item seen (checked on every `add`, so calling `expire` is optional); at most ``max_open`` stories stay
open (the one whose newest item is oldest closes first); a centroid that reaches twice
``max_terms_per_story`` terms is cut back to its heaviest ``max_terms_per_story``; document
frequencies cover the window only. Candidates come from an
inverted index (term -> stories with their centroid weights): the query's rarest terms propose
candidates until there are ``max_candidates`` of them, and terms in more than ``max_postings``
stories never propose any (every shared term still counts in a candidate's score). So the cost of an
item depends on its terms, not on how many stories are open. Timestamps are the caller's clock
(seconds): an item dated far in the future closes every story older than the window before it.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from bot.match.text import fold, is_unspaced, tokens

LEAD_TOKENS = 80  # lead tokens read per item (the rest of a long summary adds little and costs time)

# Function words carry no story. Folded forms (no apostrophes: "don't" -> "don", "t").
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing don down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves says said say new via vs amp
    """.split()
)


def _stem(word: str) -> str:
    """Strip a plural or third-person ``s`` (``stocks`` -> ``stock``), keeping ``-ss``/``-us``/``-is``."""
    if len(word) > 3 and word[-1] == "s" and word[-2] not in "sui" and not word[-2].isdigit():
        return word[:-1]
    return word


def _add_token_terms(out: dict[str, float], token: str, weight: float, char_n: int) -> None:
    if is_unspaced(token):
        grams = [token] if len(token) < 2 else [token[i : i + 2] for i in range(len(token) - 1)]
        for g in grams:
            out[g] = out.get(g, 0.0) + weight
        return
    if len(token) < 2 or token in STOPWORDS:
        return
    word = _stem(token)
    out[word] = out.get(word, 0.0) + weight
    if char_n:
        padded = f"<{word}>"
        for i in range(len(padded) - char_n + 1):
            gram = "#" + padded[i : i + char_n]  # "#" keeps grams apart from words
            out[gram] = out.get(gram, 0.0) + weight


def _add_tokens(out: dict[str, float], folded: str, weight: float, char_n: int, limit: int | None) -> None:
    """`_add_token_terms` for each of the first ``limit`` tokens of ``folded``, in order."""
    toks = tokens(folded)
    if limit is not None:
        toks = toks[:limit]
    if char_n or not folded.isascii():
        for token in toks:
            _add_token_terms(out, token, weight, char_n)
        return
    # ASCII words only (no token of a script without spaces), no n-grams: the same steps, inlined
    get = out.get
    for token in toks:
        if len(token) < 2 or token in STOPWORDS:
            continue
        if len(token) > 3 and token[-1] == "s" and token[-2] not in "sui" and not token[-2].isdigit():
            token = token[:-1]
        out[token] = get(token, 0.0) + weight


def item_terms(title: str, lead: str = "", *, lead_weight: float = 0.5, char_n: int = 0) -> dict[str, float]:
    """Weighted term frequencies of an item: title terms count 1, lead terms ``lead_weight``.

    The terms come in reading order (title, then lead); the clusterer's sums follow that order."""
    out: dict[str, float] = {}
    _add_tokens(out, fold(title), 1.0, char_n, None)
    if lead and lead_weight > 0:
        _add_tokens(out, fold(lead), lead_weight, char_n, LEAD_TOKENS)
    return out


_BOUND_FROM_TERMS = 8  # `StoryClusterer._best` bounds scores from this many non-proposing terms on
_SLACK = 1.0 + 1e-9  # relative margin on the score bounds in `StoryClusterer._best`


_first = itemgetter(0)


class Match(NamedTuple):
    """Result of `StoryClusterer.find`: the best open story (None: open a new one) and its score."""

    story_id: int | None
    similarity: float


@dataclass(frozen=True, slots=True)
class Assignment:
    """Result of `StoryClusterer.assign`."""

    story_id: int
    is_new: bool
    similarity: float  # score of the joined story; for a new story, the best score that fell short


class _Story:
    __slots__ = ("first_ts", "last_ts", "norm2", "pace", "scale", "seq", "size", "terms")

    def __init__(self) -> None:
        self.terms: set[str] = set()  # centroid terms; their weights live in the postings
        self.norm2 = 0.0  # squared length of the centroid (sum of the members' unit vectors)
        self.size = 0
        self.first_ts = math.inf
        self.last_ts = -math.inf
        self.seq = 0  # add() counter value at the last change, to spot stale heap entries
        self.scale = 0.0  # score = dot(item, centroid) * scale / recency decay
        self.pace = 1.0  # seconds: mean gap between items, counting a new story's as one gap

    def update(self, cohesion_power: float, new_story_gap: float) -> None:
        norm = math.sqrt(self.norm2)
        # cosine to the centroid, divided by cohesion ** power (cohesion: mean member cosine, |c| / size)
        self.scale = 1.0 / (norm * (norm / self.size) ** cohesion_power) if norm > 0 else 0.0
        self.pace = (self.last_ts - self.first_ts + new_story_gap) / self.size


class _DocumentFrequencies:
    """How many items of the last `window` seconds contain each term (counted in time buckets)."""

    def __init__(self, window: float, buckets: int = 16) -> None:
        self._width = window / buckets
        self._keep = buckets
        self._buckets: deque[tuple[int, Counter[str]]] = deque()
        self._sizes: deque[int] = deque()
        self.counts: Counter[str] = Counter()
        self.items = 0

    def add(self, terms: Iterable[str], ts: float) -> None:
        slot = math.floor(ts / self._width)
        if not self._buckets or slot > self._buckets[-1][0]:
            self._buckets.append((slot, Counter()))
            self._sizes.append(0)
            while self._buckets[0][0] <= slot - self._keep:
                _, old = self._buckets.popleft()
                self.items -= self._sizes.popleft()
                counts = self.counts
                for term, n in old.items():
                    left = counts[term] - n
                    if left > 0:
                        counts[term] = left
                    else:
                        del counts[term]
        # an item older than the newest bucket is counted there: frequencies only need to be recent
        terms = list(terms)
        self._buckets[-1][1].update(terms)
        self._sizes[-1] += 1
        self.counts.update(terms)
        self.items += 1

    def idf(self, term: str) -> float:
        return math.log((self.items + 1) / (self.counts.get(term, 0) + 1)) + 1.0


class StoryClusterer:
    """Online single-pass story clustering (see the module docstring for the method and its bounds)."""

    def __init__(
        self,
        *,
        window_seconds: float = 2 * 86400.0,
        threshold: float = 0.09,
        max_open: int = 50_000,
        cohesion_power: float = 1.0,
        new_story_gap: float = 4 * 3600.0,
        min_support: float = 0.03,
        long_item_terms: int = 12,
        lead_weight: float = 0.5,
        char_n: int = 0,
        max_terms_per_story: int = 200,
        max_postings: int = 500,
        max_candidates: int = 100,
    ) -> None:
        if min(window_seconds, max_open, new_story_gap, max_terms_per_story, max_postings, max_candidates) <= 0:
            raise ValueError("window, max_open, new_story_gap and the max_* bounds must be positive")
        self.window = float(window_seconds)
        self.threshold = threshold
        self.max_open = max_open
        self.cohesion_power = cohesion_power
        self.new_story_gap = new_story_gap
        self.min_support = min_support
        self.long_item_terms = long_item_terms
        self.lead_weight = lead_weight
        self.char_n = char_n
        self.max_terms = max_terms_per_story
        self.max_postings = max_postings
        self.max_candidates = max_candidates
        self._df = _DocumentFrequencies(self.window)
        self._stories: dict[int, _Story] = {}
        self._postings: dict[str, dict[int, float]] = {}  # term -> {story id: centroid weight}
        self._by_age: list[tuple[float, int, int]] = []  # heap of (last_ts, seq, story id); stale entries ok
        self._seq = 0  # items added so far
        self._newest_ts = -math.inf
        self._next_id = 1
        self._cached: tuple[str, str, int, dict[str, float]] | None = None

    # -- queries --------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of open stories."""
        return len(self._stories)

    def __contains__(self, story_id: object) -> bool:
        return story_id in self._stories

    def stats(self) -> dict[str, int]:
        """Sizes of the state, for logs and metrics: open stories, indexed terms, index entries,
        terms with a document frequency, items those frequencies count."""
        return {
            "open_stories": len(self._stories),
            "indexed_terms": len(self._postings),
            "index_entries": sum(len(p) for p in self._postings.values()),
            "frequency_terms": len(self._df.counts),
            "frequency_items": self._df.items,
        }

    def find(self, title: str, lead: str, timestamp: float) -> Match:
        """The open story this item should join, or ``Match(None, best score)``. Changes no state."""
        best_id, best = self._best(self._vector(title, lead), timestamp)
        if best_id is not None and best >= self.threshold:
            return Match(best_id, best)
        return Match(None, best)

    # -- updates --------------------------------------------------------------------------------

    def add(self, story_id: int, title: str, lead: str, timestamp: float) -> None:
        """Add an item to story ``story_id``, opening it if it is not open (new, closed or evicted)."""
        vector = self._vector(title, lead)
        self._df.add(vector, timestamp)
        self._seq += 1
        self._newest_ts = max(self._newest_ts, timestamp)
        story = self._stories.get(story_id)
        if story is None:
            story = self._stories[story_id] = _Story()
        postings = self._postings
        dot = 0.0
        for term, w in vector.items():
            posting = postings.get(term)
            if posting is None:
                posting = postings[term] = {}
            old = posting.get(story_id)
            if old is None:
                posting[story_id] = w
                story.terms.add(term)
            else:
                dot += old * w
                posting[story_id] = old + w
        story.norm2 += 2.0 * dot + sum(w * w for w in vector.values())
        story.size += 1
        story.first_ts = min(story.first_ts, timestamp)
        story.last_ts = max(story.last_ts, timestamp)
        story.seq = self._seq
        if len(story.terms) > 2 * self.max_terms:
            self._prune(story_id, story)
        story.update(self.cohesion_power, self.new_story_gap)
        heapq.heappush(self._by_age, (story.last_ts, story.seq, story_id))
        self._next_id = max(self._next_id, story_id + 1)
        self.expire(self._newest_ts)
        while len(self._stories) > self.max_open:
            self._close_oldest()
        if len(self._by_age) > 2 * len(self._stories) + 1024:  # drop stale heap entries
            self._by_age = [(st.last_ts, st.seq, sid) for sid, st in self._stories.items()]
            heapq.heapify(self._by_age)

    def add_to_story(self, story_id: int, title: str, lead: str, timestamp: float) -> None:
        """Same as `add`: for a copy joining its original's story, or replaying items at startup."""
        self.add(story_id, title, lead, timestamp)

    def assign(self, title: str, lead: str, timestamp: float, *, story_id_if_new: int | None = None) -> Assignment:
        """`find`, then `add` to the story found or to a new one (``story_id_if_new``, else the next
        id after the largest one seen)."""
        match = self.find(title, lead, timestamp)
        if match.story_id is not None:
            self.add(match.story_id, title, lead, timestamp)
            return Assignment(match.story_id, False, match.similarity)
        story_id = self._next_id if story_id_if_new is None else story_id_if_new
        if story_id in self._stories:
            raise ValueError(f"story {story_id} is already open")
        self.add(story_id, title, lead, timestamp)
        return Assignment(story_id, True, match.similarity)

    def expire(self, now: float) -> int:
        """Close the stories whose newest item is more than the window older than ``now``; how many."""
        horizon = now - self.window
        heap = self._by_age
        closed = 0
        while heap and heap[0][0] < horizon:
            _, seq, story_id = heapq.heappop(heap)
            story = self._stories.get(story_id)
            if story is not None and story.seq == seq:
                self._close(story_id)
                closed += 1
        return closed

    # -- internals ------------------------------------------------------------------------------

    def _vector(self, title: str, lead: str) -> dict[str, float]:
        """The item's unit TF-IDF vector under the current frequencies (kept for find-then-add)."""
        cached = self._cached
        if cached is not None and cached[2] == self._seq and cached[0] == title and cached[1] == lead:
            return cached[3]
        tf = item_terms(title, lead, lead_weight=self.lead_weight, char_n=self.char_n)
        # the smoothed IDF of `_DocumentFrequencies.idf`, inlined (same expression, same float)
        items = self._df.items + 1
        count = self._df.counts.get
        log = math.log
        vector = {t: (1.0 + log(c) if c >= 1.0 else c) * (log(items / (count(t, 0) + 1)) + 1.0) for t, c in tf.items()}
        norm = math.sqrt(sum(w * w for w in vector.values()))
        if norm > 0:
            vector = {t: w / norm for t, w in vector.items()}
        self._cached = (title, lead, self._seq, vector)  # valid until the next add
        return vector

    def _best(self, vector: dict[str, float], timestamp: float) -> tuple[int | None, float]:
        """The best-scoring open story (ties: the lower id, so runs are deterministic) and its score.

        Each candidate's dot product is summed term by term, rarest term first (ties in the item's
        term order): the order fixes the float, so every change here must keep it."""
        postings = self._postings
        shared: list[tuple[int, dict[int, float], float, str]] = []
        for term, w in vector.items():
            posting = postings.get(term)
            if posting is not None:
                shared.append((len(posting), posting, w, term))
        shared.sort(key=_first)  # rarest terms first: they propose the candidates (stable: ties keep term order)
        dots: dict[int, float] = {}
        tops: dict[int, float] = {}  # each candidate's largest single-term share of the dot product
        max_candidates, max_postings = self.max_candidates, self.max_postings
        proposing = len(shared)
        for i, (size, posting, w, _) in enumerate(shared):
            if len(dots) >= max_candidates or size > max_postings:
                proposing = i  # this term and every later one (more common) only add to scores
                break
            get_dot, get_top = dots.get, tops.get
            for story_id, cw in posting.items():
                x = w * cw
                dots[story_id] = get_dot(story_id, 0.0) + x
                if x > get_top(story_id, 0.0):
                    tops[story_id] = x
        long_item = len(vector) >= self.long_item_terms
        horizon = timestamp - self.window
        min_support = self.min_support
        stories = self._stories
        best_id: int | None = None
        best = 0.0
        rest = shared[proposing:]
        # each open candidate's scale for cohesion and recency (the stories closed by now drop out)
        factors: list[tuple[int, float]] = []
        for story_id in dots:
            story = stories[story_id]
            last = story.last_ts
            if last < horizon:
                continue
            factor = story.scale
            if timestamp > last:
                factor /= 1.0 + (timestamp - last) / story.pace
            factors.append((story_id, factor))
        if len(rest) < _BOUND_FROM_TERMS:
            # few other terms (a headline): add their shares to every candidate, term by term (so
            # each candidate's sum runs rarest term first); a set intersection finds who has the term
            candidates = dots.keys()
            for _, posting, w, _ in rest:
                for story_id in candidates & posting.keys():
                    x = w * posting[story_id]
                    dots[story_id] += x
                    if x > tops[story_id]:
                        tops[story_id] = x
            for story_id, factor in factors:
                dot = dots[story_id]
                score = dot * factor
                if long_item and (dot - tops[story_id]) * factor < min_support:
                    continue  # one shared word (the place, the company) is all this long item has in common
                if score > best or (score == best and best_id is not None and story_id < best_id):
                    best_id, best = story_id, score
            return best_id, best
        # Many other terms (an item with a lead): they only add to the candidates' scores, and most
        # candidates cannot win whatever they add: by Cauchy-Schwarz, their share is at most |those
        # terms' weights| * |the centroid|. So candidates are scored in order of that bound until it
        # falls below the best score. The pick is the same as scoring them all (the highest score,
        # ties to the lower id), and each sum runs in the same order as above, so the floats are too.
        rest_norm = math.sqrt(sum(w * w for _, _, w, _ in rest))
        sqrt = math.sqrt
        # a little slack for rounding: the bound must never cut a candidate that could win
        bounds = [((dots[story_id] + rest_norm * sqrt(stories[story_id].norm2)) * factor * _SLACK + 1e-12,
                   story_id, factor) for story_id, factor in factors]
        bounds.sort(key=_first, reverse=True)
        where = {term: (posting, w) for _, posting, w, term in rest}
        rest_terms = where.keys()
        rank = {term: i for i, term in enumerate(where)}.__getitem__
        for bound, story_id, factor in bounds:
            if bound < best:
                break
            dot = dots[story_id]
            top = tops[story_id]
            common = stories[story_id].terms & rest_terms  # a story's terms are the postings it is in
            for term in sorted(common, key=rank) if len(common) > 1 else common:
                posting, w = where[term]
                x = w * posting[story_id]
                dot += x
                if x > top:
                    top = x
            score = dot * factor
            if long_item and (dot - top) * factor < min_support:
                continue  # one shared word (the place, the company) is all this long item has in common
            if score > best or (score == best and best_id is not None and story_id < best_id):
                best_id, best = story_id, score
        return best_id, best

    def _prune(self, story_id: int, story: _Story) -> None:
        """Keep the story's `max_terms` heaviest terms."""
        postings = self._postings
        # heaviest first, ties in term order: sort by term, then stably by weight, descending
        ranked = sorted(story.terms)
        weights = {t: postings[t][story_id] for t in ranked}
        ranked.sort(key=weights.__getitem__, reverse=True)
        for term in ranked[self.max_terms :]:
            self._unpost(term, story_id)
        kept = ranked[: self.max_terms]
        story.terms = set(kept)
        # summed in rank order, not set order: the same floats in every process (hash seeds differ)
        story.norm2 = sum(weights[t] ** 2 for t in kept)

    def _unpost(self, term: str, story_id: int) -> None:
        posting = self._postings.get(term)
        if posting is not None:
            posting.pop(story_id, None)
            if not posting:
                del self._postings[term]

    def _close(self, story_id: int) -> None:
        story = self._stories.pop(story_id)
        for term in story.terms:
            self._unpost(term, story_id)

    def _close_oldest(self) -> None:
        heap = self._by_age
        while heap:
            _, seq, story_id = heapq.heappop(heap)
            story = self._stories.get(story_id)
            if story is not None and story.seq == seq:
                self._close(story_id)
                return
