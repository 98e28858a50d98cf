"""Content fingerprints and a near-duplicate index: recognise syndicated copies of an article.

An item is a copy of an earlier one when its body text is a near-duplicate (Jaccard similarity of
word shingles) or when one text is a short summary contained in the other (containment). Plain
code over data: no database, no network, no clock.

Fingerprint
    The body is folded (NFKD accent folding, casefold, full-width forms, punctuation dropped; Han and
    kana characters count as one token each) after dropping lone boilerplate lines ("Advertisement")
    and trailing syndication/copyright lines ("This article originally appeared in ..."), which
    `bot.normalise` should already have removed. Consecutive tokens form word shingles
    (`SHINGLE_SIZE`), each hashed to 32 bits (CRC-32 per token, mixed per shingle with numpy).
    A fingerprint keeps:

    * ``signature``: a MinHash of all shingles in datasketch's ``affine32`` scheme (the MurmurHash3
      finalizer, then ``a*h + b mod 2**32`` per permutation, parameters from datasketch's own
      ``MinHash(num_perm, seed)``), computed for all permutations in one numpy operation instead of
      datasketch's per-value ``update_batch`` loop. The test suite checks it equals datasketch's.
    * ``lead_signature``: the same MinHash over the first `LEAD_SHINGLES` shingles only.
    * ``shingles``: the sorted, distinct shingle hashes of the first `MAX_SHINGLES` shingles
      (uint32; about 1,000 words), so candidates are confirmed by exact Jaccard and containment.
    * ``token_count`` and ``title_key`` (the folded title).

Index
    Candidates come from two banded LSH tables over the signatures, each banded (b bands of r
    rows) so that a pair at its target similarity becomes a candidate with probability >= 0.99
    (`_banding`; for 64 permutations: 21 x 3 at the default threshold 0.6, 21 x 3 for leads):

    * the full signatures, for near-duplicates of similar length;
    * the lead signatures, for containment. A feed summary or first paragraph of an article has a
      Jaccard similarity with the full text of roughly |summary| / |article|, far too low for any
      Jaccard LSH to find, but it shares the article's lead: the first shingles of both texts are
      the same, so their lead signatures collide. This finds containment when the short copy
      begins where the original begins (a truncated body, the first paragraph, the feed summary).
      A short copy of a paragraph from the middle of an article is not found.

    Every candidate is then confirmed on the shingle sets: ``near_duplicate`` when Jaccard
    >= ``threshold``; ``contained`` when the shorter text has at least `MIN_CONTAINED_SHINGLES`
    shingles and a fraction >= ``containment_threshold`` of them occur in the longer one. When the
    shorter body has fewer than `SHORT_TOKENS` tokens the titles must share words as well, so that
    short bodies made of the same stock phrases ("Watch the video for the latest on this story")
    do not turn different articles into copies.

    The band tables are ours rather than ``datasketch.MinHashLSH``: that class keeps a Python
    bytes key and a set per bucket, measured at about 4.7 kB per entry per table (64 permutations,
    14 bands), i.e. near 2 GB for 200,000 entries in two tables, and its own (b, r) optimiser
    leaves about half of the pairs at the threshold out. Ours keep sorted numpy arrays of
    (band hash, slot) pairs plus a bounded dict of recent inserts, 16 bytes per band per entry;
    the whole index measured about 1.5 kB per entry for 60-word texts, 2.5 kB for 300-word texts.

    A text that extends an indexed one (the old text is contained in the new) is reported as
    ``contained`` too: the same article re-issued with more paragraphs, or the full text of a
    summary seen before. A rewritten update (a new body on the same story) is not a copy.

Bounds: at most ``max_entries`` fingerprints (oldest timestamp evicted first), each shingle set at
most `MAX_SHINGLES` values; `NearDuplicateIndex.evict_older_than` applies the retention window.
The index is not thread-safe: use it from one thread (the pipeline's judge thread).
Callers should add originals only, so that a match's ``key`` is the item a copy is linked to.
"""

from __future__ import annotations

import heapq
import re
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "DuplicateMatch",
    "Fingerprint",
    "NearDuplicateIndex",
    "fingerprint",
    "fingerprint_from_bytes",
    "fingerprint_to_bytes",
    "fold_tokens",
]

SHINGLE_SIZE = 4  # words per shingle
NUM_PERM = 64  # MinHash permutations
SEED = 20_240_611  # MinHash seed; stored fingerprints are only valid with the same seed
MIN_TOKENS = 12  # fewer tokens than this: too short to judge, fingerprint() returns None
MAX_SHINGLES = 1024  # shingles kept for confirmation (the first ones, in text order)
LEAD_SHINGLES = 24  # shingles in the lead signature (the containment candidate path)
MIN_CONTAINED_SHINGLES = 16  # the shorter text needs this many shingles to count as contained
MIN_SHARED_SHINGLES = 8  # a near-duplicate shares at least this many shingles
SHORT_TOKENS = 50  # shorter bodies need agreeing titles too
TITLE_OVERLAP = 0.5  # shared title words / words of the shorter title, for short bodies
LEAD_LSH_THRESHOLD = 0.6  # lead-signature similarity the containment candidate path is built for
LSH_RECALL = 0.99  # chance that a pair at the threshold becomes a candidate

_FORMAT_VERSION = 1
_MAGIC = b"TWFP"
_HEADER = struct.Struct("<4sBBHHIII")  # magic, version, k, num_perm, lead, seed, token_count, title len
_COUNT = struct.Struct("<I")

# ---------------------------------------------------------------------------------------------
# Text folding
# ---------------------------------------------------------------------------------------------

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")

# A whole line that is page furniture, wherever it stands.
_FURNITURE_LINE = re.compile(
    r"^\W*(advertisement|advert|sponsored( content)?|story continues below( advertisement)?"
    r"|scroll (down )?to continue( with content)?|continue reading( below)?|read more|related:?"
    r"|share this (article|story)|click to (share|expand))\W*$",
    re.IGNORECASE,
)
# A trailing line or sentence that says where the text came from or who owns it.
_FOOTER = re.compile(
    r"\boriginally (appeared|published|ran|posted)\b"
    r"|\bappeared first (on|in)\b"
    r"|\bre(published|printed|posted|produced) (here )?(with|by|under|from|courtesy)\b"
    r"|\b(used|reproduced) with permission\b"
    r"|\ball rights reserved\b|^\W*(©|\(c\)|copyright\b)"
    r"|^\W*(a version of )?this (article|story|report|piece|content) (was|is|has been|first)\b"
    r"|\b(read|see|view) (the )?(full|original|complete) (article|story|report)\b"
    r"|^\W*(click|tap) here\b|^\W*(continue reading|read more)\b"
    r"|^\W*(sign up|subscribe) (for|to) (our|the)\b"
    r"|^\W*(reporting|writing|additional reporting|editing) by\b",
    re.IGNORECASE,
)
# Every footer contains one of these (casefolded): a cheap test before the regex, which is slow.
_FOOTER_HINTS = (
    "originally", "appeared first", "republished", "reprinted", "reposted", "reproduced", "with permission",
    "rights reserved", "©", "(c)", "copyright", "this article", "this story", "this report", "this piece",
    "this content", "full article", "full story", "full report", "original article", "original story",
    "original report", "complete article", "complete story", "complete report", "click here", "tap here",
    "continue reading", "read more", "sign up", "subscribe", "reporting by", "writing by", "editing by",
)
_FOOTER_MAX_WORDS = 60
_FOOTER_MAX_PARTS = 4


def _strip_furniture(text: str) -> str:
    """Drop boilerplate lines and trailing syndication/copyright lines or sentences."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not _FURNITURE_LINE.match(ln.strip())]
    for _ in range(_FOOTER_MAX_PARTS):
        if not lines:
            break
        last = lines[-1].strip()
        tail = _SENTENCE_END.split(last)[-1]  # the footer may run on in the last paragraph
        if not _is_footer(tail):
            break
        rest = last[: len(last) - len(tail)].rstrip()
        if rest:
            lines[-1] = rest
        elif len(lines) > 1:
            lines.pop()
        else:
            break  # never the whole text: a one-sentence item that mentions "copyright" is news
    return "\n".join(lines)


def _is_footer(part: str) -> bool:
    folded = part.casefold()
    return (
        any(hint in folded for hint in _FOOTER_HINTS)
        and len(part.split()) <= _FOOTER_MAX_WORDS
        and _FOOTER.search(part) is not None
    )


def fold_tokens(text: str) -> list[str]:
    """Tokens of ``text`` after folding: NFKD accents and full-width forms, casefold, no punctuation.

    Han and kana characters are one token each (those scripts have no spaces between words).
    """
    return [t.decode() for t in _folded_words(text)]


def _folded_words(text: str) -> list[bytes]:
    """`fold_tokens` as UTF-8 bytes. ASCII words (most of them) never meet the regex engine."""
    words: list[bytes] = []
    for word in text.casefold().encode().translate(_ASCII_PUNCTUATION_TO_SPACE).split():
        if word.isascii():
            words.append(word)
            continue
        # accents, full-width forms, typographic quotes and dashes, other scripts
        folded = word.decode()
        if not unicodedata.is_normalized("NFKD", folded):
            folded = unicodedata.normalize("NFKD", folded)
        folded = _COMBINING.sub("", folded)
        words.extend(t.encode() for t in _TOKEN.findall(folded))
    return words


_ASCII_PUNCTUATION_TO_SPACE = bytes(
    b if chr(b).isalnum() or b >= 0x80 else 0x20 for b in range(256)
)


# ---------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------

_U32 = np.uint32
_U64 = np.uint64
# Odd 64-bit multipliers that combine SHINGLE_SIZE token hashes into one shingle hash.
_SHINGLE_MULT = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD],
    dtype=_U64,
)[:SHINGLE_SIZE]
# The (a, b) of each permutation: datasketch's ``MinHash(num_perm=NUM_PERM, seed=SEED,
# scheme="affine32").permutations``, written out so that the bot does not import datasketch at run
# time (its package import pulls in scipy: about 45 MB of memory and half a second per start).
# tests/test_dedupe.py checks signatures against datasketch's MinHash, so a stale table fails there.
_PERM_A = np.array([
    266225093, 2663567693, 1851510321, 3447001035, 2222931817, 1849539619, 1947682651, 1169843093,
    2639673453, 3953612421, 2734962809, 1762313733, 2194032457, 888255713, 4094690429, 4183899879,
    3939737731, 3923606705, 18050703, 4106955553, 1540741809, 3787323713, 3855311281, 1801850435,
    251774147, 501800359, 2237231785, 3676640577, 3006240607, 3366128679, 2363613541, 1137111639,
    282305129, 1290285827, 2044266721, 3755755699, 727095195, 233319497, 1450334283, 3143583445,
    2112632519, 3224302767, 3261783675, 651638211, 4226434249, 1189237169, 3584577209, 1619775001,
    2635835873, 4095212423, 1761244447, 1757198475, 1404798185, 1924173953, 3906366761, 1345455541,
    99773929, 3417068317, 2933990629, 1942895347, 4046698393, 1714121297, 3310471925, 3915141663,
], dtype=_U32)
_PERM_B = np.array([
    2838026335, 1477132629, 3826281723, 2531790560, 2028672291, 581200067, 2915454919, 2988238050,
    3896761410, 2343326858, 1907261222, 2051554426, 786355395, 2293101644, 2468884970, 676334294,
    265407709, 1419381053, 1849249821, 845007758, 3092265320, 1968475413, 2813781283, 1626844280,
    1187350607, 146755107, 2777973897, 2081276325, 3980514403, 417473517, 3924365563, 968640763,
    1606098443, 1792608545, 3180600490, 2284625415, 3945370495, 3644050388, 3475685267, 1988654344,
    3987061594, 2754265847, 1277265516, 359219115, 3155142769, 3749102225, 1501984041, 314700403,
    2316105455, 1615328811, 1672127565, 565468121, 2944106483, 757114326, 3764967982, 1966546067,
    1633497601, 311717657, 1174539833, 3069584543, 2806328144, 1258789387, 2439020932, 3236170671,
], dtype=_U32)
assert len(_PERM_A) == len(_PERM_B) == NUM_PERM, "regenerate the permutation table for this NUM_PERM/SEED"


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, the pre-mix of datasketch's affine32 scheme."""
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> _U32(13))
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def _shingle_hashes(tokens: list[bytes]) -> np.ndarray:
    """32-bit hashes of the word shingles of ``tokens``, in text order (len(tokens) >= k)."""
    th = np.fromiter(map(zlib.crc32, tokens), dtype=_U64, count=len(tokens))
    n = len(tokens) - SHINGLE_SIZE + 1
    acc = th[:n] * _SHINGLE_MULT[0]
    for i in range(1, SHINGLE_SIZE):
        acc = acc + th[i : i + n] * _SHINGLE_MULT[i]
    return (_fmix64(acc) >> _U64(32)).astype(_U32)


def _permuted(shingles: np.ndarray) -> np.ndarray:
    """The (len(shingles), NUM_PERM) matrix of permuted hash values (datasketch affine32)."""
    return _fmix32(shingles)[:, None] * _PERM_A + _PERM_B


# ---------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, slots=True, eq=False)
class Fingerprint:
    """What dedupe remembers of an item's text. Arrays are read-only uint32.

    ``shingles`` holds the sorted distinct hashes of the first `MAX_SHINGLES` shingles.
    """

    signature: np.ndarray
    lead_signature: np.ndarray
    shingles: np.ndarray
    token_count: int
    title_key: str

    @property
    def truncated(self) -> bool:
        """True when the text had more shingles than the confirmation set keeps."""
        return self.token_count - SHINGLE_SIZE + 1 > MAX_SHINGLES

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fingerprint):
            return NotImplemented
        return (
            self.token_count == other.token_count
            and self.title_key == other.title_key
            and np.array_equal(self.signature, other.signature)
            and np.array_equal(self.lead_signature, other.lead_signature)
            and np.array_equal(self.shingles, other.shingles)
        )

    def __hash__(self) -> int:
        return hash((self.token_count, self.title_key, self.signature.tobytes()))


def fingerprint(title: str, text: str) -> Fingerprint | None:
    """The fingerprint of an item's body ``text`` (``title`` only feeds ``title_key``).

    Returns None when the folded body has fewer than `MIN_TOKENS` tokens: too short to tell a copy
    from a different item that happens to share a phrase.
    """
    tokens = _folded_words(_strip_furniture(text))
    if len(tokens) < MIN_TOKENS:
        return None
    order = _shingle_hashes(tokens)
    permuted = _permuted(order)
    kept = np.sort(order[:MAX_SHINGLES])
    distinct = np.empty(len(kept), dtype=bool)
    distinct[0] = True
    np.not_equal(kept[1:], kept[:-1], out=distinct[1:])
    return Fingerprint(
        signature=_frozen(permuted.min(axis=0)),
        lead_signature=_frozen(permuted[:LEAD_SHINGLES].min(axis=0)),
        shingles=_frozen(kept[distinct]),
        token_count=len(tokens),
        title_key=" ".join(fold_tokens(title)),
    )


def fingerprint_to_bytes(fp: Fingerprint) -> bytes:
    """A compact little-endian encoding of ``fp`` for the store (about 4 bytes per shingle + 0.5 kB)."""
    title = fp.title_key.encode()
    return b"".join(
        (
            _HEADER.pack(_MAGIC, _FORMAT_VERSION, SHINGLE_SIZE, NUM_PERM, LEAD_SHINGLES, SEED,
                         fp.token_count, len(title)),
            title,
            fp.signature.astype("<u4").tobytes(),
            fp.lead_signature.astype("<u4").tobytes(),
            _COUNT.pack(len(fp.shingles)),
            fp.shingles.astype("<u4").tobytes(),
        )
    )


def fingerprint_from_bytes(data: bytes) -> Fingerprint:
    """Decode `fingerprint_to_bytes` output.

    Raises ValueError when ``data`` is malformed or was made with other parameters (shingle size,
    permutations, seed, format version): such a fingerprint cannot be compared and must be recomputed.
    """
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise ValueError("fingerprint too short")
    magic, version, k, num_perm, lead, seed, token_count, title_len = _HEADER.unpack_from(view)
    if magic != _MAGIC:
        raise ValueError("not a fingerprint")
    if (version, k, num_perm, lead, seed) != (_FORMAT_VERSION, SHINGLE_SIZE, NUM_PERM, LEAD_SHINGLES, SEED):
        raise ValueError("fingerprint made with other parameters; recompute it from the text")
    pos = _HEADER.size
    sig_bytes = 4 * NUM_PERM
    if len(view) < pos + title_len + 2 * sig_bytes + _COUNT.size:
        raise ValueError("fingerprint truncated")
    try:
        title_key = bytes(view[pos : pos + title_len]).decode()
    except UnicodeDecodeError as exc:
        raise ValueError("fingerprint title is not UTF-8") from exc
    pos += title_len
    signature = np.frombuffer(view, dtype="<u4", count=NUM_PERM, offset=pos).astype(_U32)
    pos += sig_bytes
    lead_signature = np.frombuffer(view, dtype="<u4", count=NUM_PERM, offset=pos).astype(_U32)
    pos += sig_bytes
    (count,) = _COUNT.unpack_from(view, pos)
    pos += _COUNT.size
    if count > MAX_SHINGLES or len(view) != pos + 4 * count:
        raise ValueError("fingerprint shingle set has the wrong size")
    shingles = np.frombuffer(view, dtype="<u4", count=count, offset=pos).astype(_U32)
    if count == 0 or np.any(shingles[1:] <= shingles[:-1]):
        raise ValueError("fingerprint shingle set is not sorted and distinct")
    return Fingerprint(
        signature=_frozen(signature),
        lead_signature=_frozen(lead_signature),
        shingles=_frozen(shingles),
        token_count=token_count,
        title_key=title_key,
    )


# ---------------------------------------------------------------------------------------------
# Banded LSH tables
# ---------------------------------------------------------------------------------------------


class _BandTable:
    """Multimap band hash -> slot: sorted numpy arrays (16 bytes a pair) plus a bounded dict of
    recent inserts, merged into the arrays when full.

    Removed slots stay until `compact`; the index filters them out of query results meanwhile.
    """

    _BUFFER_MIN = 4096  # pairs held in the dict before a merge: at least this many,
    _BUFFER_MAX = 65536  # at most this many (about 5 MB), else an eighth of the arrays

    def __init__(self, bands: int, rows: int, salt: int) -> None:
        self.bands = bands
        self.rows = rows
        rng = np.random.default_rng(salt)
        self._mult = rng.integers(0, 2**63, size=rows, dtype=_U64) * _U64(2) + _U64(1)
        self._salt = rng.integers(0, 2**63, size=bands, dtype=_U64)
        self._hashes = np.empty(0, dtype=_U64)
        self._slots = np.empty(0, dtype=np.int64)
        self._buffer: dict[int, int | list[int]] = {}  # recent pairs, for queries
        self._pending_h: list[int] = []  # the same pairs in insertion order, for the merge
        self._pending_s: list[int] = []

    def band_hashes(self, signature: np.ndarray) -> np.ndarray:
        """The band hashes of one signature: a random linear map of each band's values mod 2**64
        (distinct bands collide with probability about 2**-33; lookups compare all 64 bits)."""
        rows = signature[: self.bands * self.rows].astype(_U64).reshape(self.bands, self.rows)
        return rows @ self._mult + self._salt

    def insert(self, slot: int, signature: np.ndarray) -> None:
        buffer = self._buffer
        hashes = self.band_hashes(signature).tolist()
        self._pending_h.extend(hashes)
        self._pending_s.extend([slot] * self.bands)
        for h in hashes:
            bucket = buffer.get(h)
            if bucket is None:
                buffer[h] = slot
            elif isinstance(bucket, list):
                bucket.append(slot)
            else:
                buffer[h] = [bucket, slot]
        if len(self._pending_h) >= min(self._BUFFER_MAX, max(self._BUFFER_MIN, len(self._hashes) // 8)):
            self._merge()

    def query(self, signature: np.ndarray) -> set[int]:
        found: set[int] = set()
        hashes = self.band_hashes(signature)
        if len(self._hashes):
            lo = np.searchsorted(self._hashes, hashes, side="left")
            hi = np.searchsorted(self._hashes, hashes, side="right")
            for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
                if b > a:
                    found.update(self._slots[a:b].tolist())
        if self._buffer:
            for h in hashes.tolist():
                bucket = self._buffer.get(h)
                if bucket is None:
                    continue
                if isinstance(bucket, list):
                    found.update(bucket)
                else:
                    found.add(bucket)
        return found

    def compact(self, live: np.ndarray) -> None:
        """Keep only the pairs whose slot is in ``live`` (a sorted array of slots)."""
        self._merge()
        keep = np.isin(self._slots, live, assume_unique=False)
        self._hashes = self._hashes[keep]
        self._slots = self._slots[keep]

    def _merge(self) -> None:
        """Move the recent pairs into the sorted arrays: O(len) copying, no full re-sort."""
        if not self._pending_h:
            return
        new_h = np.array(self._pending_h, dtype=_U64)
        new_s = np.array(self._pending_s, dtype=np.int64)
        order = np.argsort(new_h)
        new_h, new_s = new_h[order], new_s[order]
        at = np.searchsorted(self._hashes, new_h)
        self._hashes = np.insert(self._hashes, at, new_h)
        self._slots = np.insert(self._slots, at, new_s)
        self._buffer.clear()
        self._pending_h.clear()
        self._pending_s.clear()


# ---------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------


def _banding(threshold: float, recall: float = LSH_RECALL) -> tuple[int, int]:
    """(bands, rows): the most selective banding of `NUM_PERM` values under which a pair with
    Jaccard similarity ``threshold`` still becomes a candidate with probability >= ``recall``.

    A pair with similarity s collides in at least one of b bands of r rows with probability
    1 - (1 - s**r)**b. datasketch's MinHashLSH optimiser balances false positives against false
    negatives around its threshold and leaves about half of the pairs at the threshold behind.
    """
    for rows in range(NUM_PERM, 1, -1):
        bands = NUM_PERM // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return bands, rows
    return NUM_PERM, 1


@dataclass(frozen=True, slots=True)
class DuplicateMatch:
    """A confirmed match: ``key`` is the indexed item (the original).

    ``similarity`` is the Jaccard similarity for ``near_duplicate`` and, for ``contained``, the
    fraction of the shorter text's shingles found in the longer one.
    """

    key: int
    kind: Literal["near_duplicate", "contained"]
    similarity: float
    value: int = 0  # what the caller stored with the original (the bot: its story id)


@dataclass(slots=True)
class _Entry:
    """What the index keeps of a fingerprint: enough to confirm a candidate (not the signatures)."""

    key: int
    shingles: np.ndarray
    token_count: int
    title_key: str
    timestamp: float
    value: int

    @classmethod
    def of(cls, key: int, fp: Fingerprint, timestamp: float, value: int = 0) -> _Entry:
        return cls(key, fp.shingles, fp.token_count, fp.title_key, timestamp, value)


def _titles_agree(a: str, b: str) -> bool:
    wa, wb = set(a.split()), set(b.split())
    if not wa or not wb:
        return not wa and not wb
    return len(wa & wb) / min(len(wa), len(wb)) >= TITLE_OVERLAP


class NearDuplicateIndex:
    """Near-duplicate and containment lookup over recent fingerprints (see the module docstring).

    ``threshold``: Jaccard similarity of shingle sets at or above which two texts are near-duplicates.
    ``containment_threshold``: fraction of the shorter text's shingles present in the longer text at
    or above which the shorter one is a contained copy (summary, first paragraph).
    ``max_entries``: at most this many fingerprints; the oldest timestamps are evicted first.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.6,
        containment_threshold: float = 0.8,
        max_entries: int = 200_000,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if not 0.0 < containment_threshold <= 1.0:
            raise ValueError(f"containment_threshold must be in (0, 1], got {containment_threshold}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.threshold = threshold
        self.containment_threshold = containment_threshold
        self.max_entries = max_entries
        self._full = _BandTable(*_banding(threshold), salt=1)
        self._lead = _BandTable(*_banding(LEAD_LSH_THRESHOLD), salt=2)
        self._by_key: dict[int, int] = {}  # key -> live slot
        self._slots: dict[int, _Entry] = {}  # live slot -> entry
        self._heap: list[tuple[float, int]] = []  # (timestamp, slot), may hold dead slots
        self._next_slot = 0
        self._dead = 0  # removed slots still present in the band tables

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def add(self, key: int, fp: Fingerprint, timestamp: float, value: int = 0) -> None:
        """Index ``fp`` under ``key`` (replacing an earlier fingerprint of that key); ``value`` comes
        back in the `DuplicateMatch` of a copy (the bot keeps the original's story id there)."""
        if key in self._by_key:
            self._remove_slot(self._by_key[key])
        slot = self._next_slot
        self._next_slot += 1
        self._by_key[key] = slot
        self._slots[slot] = _Entry.of(key, fp, timestamp, value)
        heapq.heappush(self._heap, (timestamp, slot))
        self._full.insert(slot, fp.signature)
        self._lead.insert(slot, fp.lead_signature)
        while len(self._slots) > self.max_entries:
            self._pop_oldest()
        self._maybe_compact()

    def find(self, fp: Fingerprint, *, exclude: int | None = None) -> DuplicateMatch | None:
        """The best confirmed match for ``fp`` (highest similarity, then oldest), or None."""
        slots = self._full.query(fp.signature) | self._lead.query(fp.lead_signature)
        best: tuple[float, bool, float, int] | None = None
        best_match: DuplicateMatch | None = None
        for slot in slots:
            entry = self._slots.get(slot)
            if entry is None or entry.key == exclude:
                continue
            match = self._confirm(fp, entry)
            if match is None:
                continue
            rank = (match.similarity, match.kind == "near_duplicate", -entry.timestamp, -slot)
            if best is None or rank > best:
                best, best_match = rank, match
        return best_match

    def compare(self, a: Fingerprint, b: Fingerprint) -> DuplicateMatch | None:
        """Judge one pair with this index's thresholds (``key`` is -1): the confirmation step alone."""
        return self._confirm(a, _Entry.of(-1, b, 0.0))

    def evict_older_than(self, timestamp: float) -> int:
        """Forget fingerprints with a timestamp before ``timestamp``; returns how many."""
        removed = 0
        while self._heap and self._heap[0][0] < timestamp:
            _, slot = heapq.heappop(self._heap)
            if slot in self._slots:
                self._remove_slot(slot)
                removed += 1
        self._maybe_compact()
        return removed

    # -- internals --------------------------------------------------------------------------

    def _confirm(self, fp: Fingerprint, other: _Entry) -> DuplicateMatch | None:
        a, b = fp.shingles, other.shingles
        shared = int(np.intersect1d(a, b, assume_unique=True).size)
        if shared == 0:
            return None
        if min(fp.token_count, other.token_count) < SHORT_TOKENS and not _titles_agree(
            fp.title_key, other.title_key
        ):
            return None
        jaccard = shared / (len(a) + len(b) - shared)
        if jaccard >= self.threshold and shared >= MIN_SHARED_SHINGLES:
            return DuplicateMatch(other.key, "near_duplicate", jaccard, other.value)
        smaller = min(len(a), len(b))
        containment = shared / smaller
        if smaller >= MIN_CONTAINED_SHINGLES and containment >= self.containment_threshold:
            return DuplicateMatch(other.key, "contained", containment, other.value)
        return None

    def _pop_oldest(self) -> None:
        while self._heap:
            _, slot = heapq.heappop(self._heap)
            if slot in self._slots:
                self._remove_slot(slot)
                return

    def _remove_slot(self, slot: int) -> None:
        entry = self._slots.pop(slot)
        del self._by_key[entry.key]
        self._dead += 1

    def _maybe_compact(self) -> None:
        """Drop removed slots from the band tables and the heap once they outnumber live ones."""
        if self._dead <= max(1024, len(self._slots)):
            return
        live = np.fromiter(self._slots, dtype=np.int64, count=len(self._slots))
        live.sort()
        self._full.compact(live)
        self._lead.compact(live)
        self._heap = [(e.timestamp, s) for s, e in self._slots.items()]
        heapq.heapify(self._heap)
        self._dead = 0
