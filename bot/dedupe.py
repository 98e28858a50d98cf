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
    leaves about half of the pairs at the threshold out.

    A text that extends an indexed one (the old text is contained in the new) is reported as
    ``contained`` too: the same article re-issued with more paragraphs, or the full text of a
    summary seen before. A rewritten update (a new body on the same story) is not a copy.

Storage (no Python object per entry)
    * per entry only numbers in parallel arrays indexed by slot: key and value (int32 while they
      fit, else that array turns int64), timestamp (float64), flags; a key -> slot hash table of
      int32 cells; the eviction order as a sorted int32 array of slots plus a small heap;
    * shingles and folded titles back to back in two growing arrays (uint32, UTF-8), compacted in
      place, for the resident entries: all of them, unless the index has a ``load`` (the caller's
      store of fingerprints). Then `NearDuplicateIndex.persisted` says that every entry added so
      far can be fetched through ``load`` and drops their shingles and titles; `find` fetches
      those of its persisted candidates with one ``load`` call (all keys at once) and keeps the
      last ``cache_size`` fetched in an LRU cache (the same originals are candidates again and
      again). A key ``load`` does not return is not a match;
    * both band tables in one structure (`_BandTables`): 4-byte words that pack a slot and the
      low bits of a 34-bit band key, sorted, whose other bits are implied by a bucket directory;
      LSM-style runs of 8-byte words and a dict for recent inserts.
    A removed entry keeps its slot until the next rebuild, which drops it, renumbers the live
    slots in order (rankings by slot do not change) and comes after a quarter of the live count
    in adds (amortised O(1) per add).

    Measured at 200,000 entries (farm texts, about 108 shingles each, ``load`` and `persisted`
    as the bot uses them, tracemalloc): 252 bytes per entry, of which about 180 are the 42 band
    pairs (4-byte words, 8 in runs) and 22 the directory; 933 with the former design (8-byte
    band words, all shingles in memory). The process's RSS grew by 285 to 330 bytes per entry
    (by 990 to 1,080 before), the rest being the allocator's.

    Band keys and the one way answers can differ from whole 64-bit band hashes: a band key keeps
    34 bits of the band hash, so candidates are the slots sharing a 64-bit band hash (as before)
    plus random collisions on the other 30 bits: with N pairs per table (4.2 million at 200,000
    entries) a find's 2 x 21 keys meet 2 * 21 * N / 2**34 of them, about 0.010 per find. Each
    costs one exact confirmation (with ``load``, maybe a fetch), which rejects it unless the pair
    truly is a near-duplicate or containment that the 64-bit bands missed (the 1% of pairs at
    the threshold that banding misses, or a copy of a middle paragraph): then the index reports
    that genuine match where whole hashes would have reported none or a weaker one. It never
    reports a pair that fails confirmation. On a replay of 290,000 finds and 264,000 adds
    (max_entries 200,000, farm texts with syndicated, truncated, extended, edited and short
    copies) every answer was identical.

Bounds: at most ``max_entries`` fingerprints (oldest timestamp evicted first), each shingle set at
most `MAX_SHINGLES` values; `NearDuplicateIndex.evict_older_than` applies the retention window.
The index is not thread-safe: use it from one thread (the pipeline's judge thread).
Callers should add originals only, so that a match's ``key`` is the item a copy is linked to.
"""

from __future__ import annotations

import bisect
import heapq
import operator
import re
import struct
import unicodedata
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "DuplicateMatch",
    "Fingerprint",
    "Loader",
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
    (count,) = _COUNT.unpack_from(view, pos + 2 * sig_bytes)
    if count > MAX_SHINGLES or len(view) != pos + 2 * sig_bytes + _COUNT.size + 4 * count:
        raise ValueError("fingerprint shingle set has the wrong size")
    # one copy of all numbers (native, aligned), cut into the three arrays
    numbers = np.frombuffer(data, dtype="<u4", count=2 * NUM_PERM + 1 + count, offset=pos).astype(_U32)
    signature, lead_signature = numbers[:NUM_PERM], numbers[NUM_PERM : 2 * NUM_PERM]
    shingles = numbers[2 * NUM_PERM + 1 :]
    if count == 0 or not (shingles[1:] > shingles[:-1]).all():
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

_STEP = 1 << 16  # elements per step of the in-place rebuilds: bounds their temporary memory
_I64 = np.int64
_KEY_BITS = 34  # bits of a 64-bit band hash a band key keeps (its top bits); the family bit comes on top
_MAX_SLOT_BITS = 64 - _KEY_BITS - 2  # a run word packs a band key (+1 for a bound) and a slot in 64 bits
_BLOCK = 6  # the bucket directory: one absolute start per 2**_BLOCK buckets, 16-bit offsets within


def _resize(owner: object, name: str, size: int) -> None:
    """Grow or shrink the array attribute ``name`` of ``owner`` to ``size`` elements: in place (a
    realloc, which moves no data for large arrays) unless something else refers to the array (a
    view, a profiler), else as a copy."""
    try:
        getattr(owner, name).resize(size, refcheck=True)
    except ValueError:
        old = getattr(owner, name)
        new = np.zeros(size, dtype=old.dtype)
        new[: min(size, len(old))] = old[:size]
        setattr(owner, name, new)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] .. starts[i] + lengths[i] - 1`` of every range, concatenated."""
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(total)


class _BandTables:
    """Both banded LSH tables (family 0: full signatures, 1: lead signatures) as one multimap from
    band key to slot. A band key is ``family << 34 | (band hash >> 30)``: the family and the top
    `_KEY_BITS` bits of the 64-bit band hash. Three tiers, from old to new pairs:

    * the main table: one uint32 array of words ``(key mod 2**R) << S | slot``, S the slot bits
      and R = 32 - S, sorted by (key, slot). The key's other bits are its bucket, known from the
      word's position: the bucket directory gives where each bucket starts (an absolute uint32
      per block of 64 buckets and a 16-bit offset per bucket; 32-bit offsets in the unlikely case
      that a block holds 2**16 pairs or more). There are 2**(S + 3) buckets, 2**(S + 2) per
      family, so R + bucket bits = `_KEY_BITS` + 1 whatever S is. At S = 18 (200,000 entries)
      a pair costs 4 bytes plus 2 * 8 / 42 for the directory. `rebuild` redoes it in place,
      dropping removed slots and taking in the runs;
    * runs: sorted uint64 arrays of words ``key << S | slot`` inserted since, merged with one
      another LSM-style so that there are few of them (a lookup costs two binary searches per run);
    * a dict of the newest pairs (key -> slot or list of slots).

    A newer tier holds larger slots. Removed slots stay until `rebuild`; the index filters them
    out of query results meanwhile.

    Candidates are the slots sharing a band key, a superset of those sharing the 64-bit band
    hash in the same family (the set the index used when it kept whole hashes). The extra ones are
    random collisions on 34 bits: with N pairs per family in the table, a lookup of 2 x 21 band
    keys meets about 42 * N / 2**34 of them, 0.010 per find at 200,000 entries (N = 4.2 million).
    """

    _PENDING = 8192  # pairs in the dict before they become a run
    _RUN_RATIO = 4  # the newest two runs merge while the older is at most this times the newer
    _MAX_RUN = 1 << 19  # and the merged run is at most this long (merging copies it);
    _MAX_RUNS = 4  # more runs than this, or more pairs than an eighth of the main table: fold

    def __init__(self, full: tuple[int, int], lead: tuple[int, int], slot_bits: int) -> None:
        self._shape = (full, lead)  # (bands, rows) per family
        self._mult: list[np.ndarray] = []
        self._salt: list[np.ndarray] = []
        for salt, (bands, rows) in enumerate(self._shape, start=1):
            rng = np.random.default_rng(salt)
            self._mult.append(rng.integers(0, 2**63, size=rows, dtype=_U64) * _U64(2) + _U64(1))
            self._salt.append(rng.integers(0, 2**63, size=bands, dtype=_U64))
        if full[1] == lead[1]:
            tiles = [np.tile(m, (bands, 1)) for m, (bands, _) in zip(self._mult, self._shape, strict=True)]
            self._row_mult = np.concatenate(tiles)
            self._band_salt = np.concatenate(self._salt)
        # the family bit of each band key
        self._family = np.repeat(np.array([0, 1 << _KEY_BITS], dtype=_U64), [full[0], lead[0]])
        self._words = np.empty(0, dtype=np.uint32)
        self._set_bits(slot_bits)
        nb = 1 << (slot_bits + 3)
        self._base = np.zeros((nb >> _BLOCK) + 1, dtype=np.uint32)
        self._off = np.zeros(nb + 1, dtype=np.uint16)
        self._window = np.arange(64)  # bucket positions, for lookups
        self._runs: list[np.ndarray] = []  # run words, old first
        self._buffer: dict[int, int | list[int]] = {}  # the newest pairs
        self._pending: list[int] = []  # the same pairs as run words, for the next run

    def _set_bits(self, slot_bits: int) -> None:
        if slot_bits > _MAX_SLOT_BITS:
            raise ValueError("too many slots for the band tables")
        self._bits = slot_bits
        residual = 32 - slot_bits
        # slot bits, residual key bits, slot mask, residual mask (numpy scalars for array arithmetic)
        self._s, self._r = _U64(slot_bits), _U64(residual)
        self._slot_mask = _U64((1 << slot_bits) - 1)
        self._res_mask = _U64((1 << residual) - 1)

    def band_keys(self, signature: np.ndarray, lead_signature: np.ndarray) -> np.ndarray:
        """The band keys of both signatures, full then lead (uint64). A band hash is a random
        linear map of the band's values mod 2**64 (distinct bands collide with probability about
        2**-33 on all 64 bits); its key keeps the top 34 bits and the family."""
        (full_bands, rows), (lead_bands, lead_rows) = self._shape
        if rows == lead_rows:  # one product for both (the sum of products wraps mod 2**64 like @)
            values = np.concatenate((signature[: full_bands * rows], lead_signature[: lead_bands * rows]))
            products = np.multiply(values.reshape(-1, rows), self._row_mult, dtype=_U64)
            hashes = products.sum(axis=1, dtype=_U64) + self._band_salt
        else:
            parts = []
            for family, sig in enumerate((signature, lead_signature)):
                bands, rows = self._shape[family]
                values = sig[: bands * rows].astype(_U64).reshape(bands, rows)
                parts.append(values @ self._mult[family] + self._salt[family])
            hashes = np.concatenate(parts)
        return (hashes >> _U64(64 - _KEY_BITS)) | self._family

    def insert(self, slot: int, keys: np.ndarray) -> None:
        listed = keys.tolist()
        self._pending.extend(((keys << self._s) | _U64(slot)).tolist())
        buffer = self._buffer
        for key in listed:
            bucket = buffer.get(key)
            if bucket is None:
                buffer[key] = slot
            elif isinstance(bucket, list):
                bucket.append(slot)
            else:
                buffer[key] = [bucket, slot]
        if len(self._pending) >= self._PENDING:
            self._flush()
            runs = self._runs
            while (
                len(runs) >= 2
                and len(runs[-2]) <= self._RUN_RATIO * len(runs[-1])
                and len(runs[-2]) + len(runs[-1]) <= self._MAX_RUN
            ):
                old, new = runs[-2], runs[-1]
                runs[-2:] = [np.insert(old, np.searchsorted(old, new), new)]
            if len(runs) > self._MAX_RUNS or sum(len(run) for run in runs) > max(_STEP, len(self._words) // 8):
                # runs cost 8 bytes a pair, the main table 4: fold them in (about once between two
                # of the index's rebuilds, which come every quarter of its size in adds)
                self.rebuild(None, self._bits)

    def query(self, keys: np.ndarray) -> list[np.ndarray]:
        """Slots with a band key equal to one of ``keys`` (from `band_keys`); repeats and removed
        slots too."""
        found: list[np.ndarray] = []
        s = self._s
        if len(self._words):
            bucket = (keys >> self._r).astype(np.intp)
            base, off = self._base, self._off
            lo = base[bucket >> _BLOCK].astype(np.intp) + off[bucket]
            bucket += 1
            lengths = base[bucket >> _BLOCK].astype(np.intp) + off[bucket] - lo
            width = int(lengths.max())
            wanted = (keys & self._res_mask).astype(np.uint32)
            if width <= len(self._window):  # the usual case: small buckets, read as a matrix
                window = self._window[:width]
                words = self._words.take(lo[:, None] + window, mode="clip")
                same = ((words >> np.uint32(self._bits)) == wanted[:, None]) & (window < lengths[:, None])
            else:  # a crowded bucket (many texts sharing a band): read only what is there
                words = self._words[_ranges(lo, lengths)]
                same = (words >> np.uint32(self._bits)) == np.repeat(wanted, lengths)
            found.append(words[same] & np.uint32(self._slot_mask))
        if self._runs:
            low, high = keys << s, (keys + _U64(1)) << s
            for run in self._runs:
                lo = np.searchsorted(run, low)
                hi = np.searchsorted(run, high)
                if (hi > lo).any():
                    found.append(run[_ranges(lo, hi - lo)] & self._slot_mask)
        buffer = self._buffer
        hits: list[int] = []
        for key in buffer.keys() & keys.tolist():
            bucket_slots = buffer[key]
            if isinstance(bucket_slots, list):
                hits.extend(bucket_slots)
            else:
                hits.append(bucket_slots)
        if hits:
            found.append(np.array(hits, dtype=_U64))
        return found

    def rebuild(self, new_slot: np.ndarray | None, slot_bits: int) -> None:
        """Fold all pairs into the main table for slots below ``2**slot_bits``, renumbering slot s
        to ``new_slot[s]`` (order-preserving) and dropping it where that is -1 (None: keep all).

        In place and in steps over ranges of keys: the merged table is written backwards from the
        end of the grown array (never over words not yet read), then moved to the front.
        """
        self._flush()
        runs, self._runs = self._runs, []
        old_bits, old_r = self._bits, int(self._r)
        old_base, old_off = self._base, self._off
        self._set_bits(slot_bits)
        new_r = int(self._r)
        size = len(self._words) + sum(len(run) for run in runs)
        _resize(self, "_words", size)
        key_bits = _KEY_BITS + 1
        old_buckets, new_buckets = key_bits - old_r, key_bits - new_r  # bucket bits, old and new
        step_bits = min(old_buckets, new_buckets - _BLOCK, (size // _STEP).bit_length())
        steps = 1 << step_bits
        inner = np.arange(1, steps, dtype=_U64) << _U64(key_bits - step_bits + old_bits)
        cuts = [np.concatenate(([0], np.searchsorted(run, inner), [len(run)])).tolist() for run in runs]
        per_old, per_new = 1 << (old_buckets - step_bits), 1 << (new_buckets - step_bits)
        nb = 1 << new_buckets
        base = np.zeros((nb >> _BLOCK) + 1, dtype=_I64)  # block starts, in the grown array first
        off = np.zeros(nb + 1, dtype=np.uint16)
        old_starts = _StartsOf(old_base, old_off)
        old_shift, new_s = _U64(old_bits), _U64(slot_bits)
        end = size
        for c in range(steps - 1, -1, -1):
            # this step's pairs as words key << old_bits | slot, in (key, slot) order
            first, stop = c * per_old, (c + 1) * per_old
            starts = old_starts(np.arange(first, stop + 1))
            words = self._words[int(starts[0]) : int(starts[-1])]
            bucket = np.repeat(np.arange(first, stop, dtype=_U64), np.diff(starts))
            merged = (((bucket << _U64(old_r)) | (words >> np.uint32(old_bits)).astype(_U64)) << old_shift) | (
                words & np.uint32((1 << old_bits) - 1)
            )
            del words  # a view: it would stop the in-place resizes
            parts = [run[cut[c] : cut[c + 1]] for run, cut in zip(runs, cuts, strict=True)]
            parts = [part for part in parts if len(part)]
            if parts:  # (pairs in runs have larger slots than equal keys in the main table)
                more = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
                merged = np.insert(merged, np.searchsorted(merged, more), more)
            keys, slots = merged >> old_shift, merged & _U64((1 << old_bits) - 1)
            del merged
            if new_slot is not None:
                renumbered = new_slot[slots.astype(np.intp)]
                keep = renumbered >= 0
                keys, slots = keys[keep], renumbered[keep].astype(_U64)
            n = len(keys)
            self._words[end - n : end] = (((keys & self._res_mask) << new_s) | slots).astype(np.uint32)
            end -= n
            # the directory of this step's buckets (positions in the grown array)
            counts = np.bincount((keys >> _U64(new_r)).astype(np.intp) - c * per_new, minlength=per_new)
            within = np.zeros(per_new + 1, dtype=_I64)
            np.cumsum(counts, out=within[1:])
            blocks = within[: per_new : 1 << _BLOCK]
            base[(c * per_new) >> _BLOCK : ((c + 1) * per_new) >> _BLOCK] = end + blocks
            local = within[:per_new] - np.repeat(blocks, 1 << _BLOCK)
            if off.dtype == np.uint16 and len(local) and int(local.max()) > 0xFFFF:
                off = off.astype(np.uint32)
            off[c * per_new : (c + 1) * per_new] = local
        total = size - end
        for a in range(0, total, _STEP):
            b = min(total, a + _STEP)
            self._words[a:b] = self._words[end + a : end + b]
        _resize(self, "_words", total)
        base -= end
        base[-1] = total
        self._base = base.astype(np.uint32 if total < 2**32 else _I64)
        self._off = off

    def _flush(self) -> None:
        """Turn the dict's pairs into the newest run."""
        if not self._pending:
            return
        self._runs.append(np.sort(np.array(self._pending, dtype=_U64)))
        self._buffer.clear()
        self._pending.clear()


class _StartsOf:
    """Where buckets start in the main table, from a directory (block starts, offsets)."""

    def __init__(self, base: np.ndarray, off: np.ndarray) -> None:
        self.base, self.off = base, off

    def __call__(self, buckets: np.ndarray) -> np.ndarray:
        return self.base[buckets >> _BLOCK].astype(np.intp) + self.off[buckets]


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


_Kind = Literal["near_duplicate", "contained"]


@dataclass(frozen=True, slots=True)
class DuplicateMatch:
    """A confirmed match: ``key`` is the indexed item (the original).

    ``similarity`` is the Jaccard similarity for ``near_duplicate`` and, for ``contained``, the
    fraction of the shorter text's shingles found in the longer one.
    """

    key: int
    kind: _Kind
    similarity: float
    value: int = 0  # what the caller stored with the original (the bot: its story id)


def _titles_agree(a: str, b: str) -> bool:
    wa, wb = set(a.split()), set(b.split())
    if not wa or not wb:
        return not wa and not wb
    return len(wa & wb) / min(len(wa), len(wb)) >= TITLE_OVERLAP


_LIVE = 1  # slot flags
_SHORT = 2  # token_count < SHORT_TOKENS
_MIN_HEADROOM = 1024  # slots handed out between rebuilds: a quarter of the live count, at least this many
_RECENT = 4096  # eviction heap entries before they are merged into the sorted eviction order
_KEY_MULT = 0x9E3779B97F4A7C15  # multiplicative hashing of keys into the key table
_MASK64 = (1 << 64) - 1
_EMPTY, _DELETED = -1, -2  # key table cells
_FEW_HITS = 256  # query results up to this long are deduplicated with a set,
_FEW_CANDIDATES = 6  # and up to this many distinct slots judged one at a time (less numpy overhead)
_BITMAP = np.uint32(0xFFFF)  # low bits of a shingle for the membership pre-test in `find`
_ARENA = (1 << 16, 1 << 14)  # initial (and, after `persisted`, kept) sizes of the shingle and title arenas
_MAX_ENTRIES = 100_000_000  # slots must fit the band tables' words (`_MAX_SLOT_BITS`)

Loader = Callable[[Sequence[int]], Mapping[int, Fingerprint | bytes]]
"""Fetches persisted entries: keys -> their fingerprints, as `Fingerprint` or as the bytes of
`fingerprint_to_bytes` (cheaper: the index reads only the shingles and the title from them).
Keys it cannot find are absent."""


_PREFIX = _HEADER.pack(_MAGIC, _FORMAT_VERSION, SHINGLE_SIZE, NUM_PERM, LEAD_SHINGLES, SEED, 0, 0)[:14]
_TITLE_LEN = struct.Struct("<I")  # at offset 18 of the header


def _confirmation_data(got: object) -> tuple[bytes, str] | None:
    """(little-endian uint32 shingles, folded title) of a loaded fingerprint; None if malformed."""
    if isinstance(got, Fingerprint):
        return got.shingles.astype("<u4").tobytes(), got.title_key
    try:
        data = bytes(got)  # type: ignore[call-overload]
        if data[:14] != _PREFIX:  # magic, format version, parameters
            return None
        (title_len,) = _TITLE_LEN.unpack_from(data, 18)
        at = _HEADER.size + title_len + 8 * NUM_PERM
        (count,) = _COUNT.unpack_from(data, at)
        at += _COUNT.size
        if not 0 < count <= MAX_SHINGLES or len(data) != at + 4 * count:
            return None
        return data[at:], data[_HEADER.size : _HEADER.size + title_len].decode()
    except (TypeError, ValueError, struct.error):  # (UnicodeDecodeError is a ValueError)
        return None


def _slot_bits(capacity: int) -> int:
    return max(10, (capacity - 1).bit_length())


def _int64(name: str, value: object) -> int:
    number = operator.index(value)  # type: ignore[arg-type]
    if not -(2**63) <= number < 2**63:
        raise OverflowError(f"{name} must fit in 64 bits, got {number}")
    return number


def _widened(array: np.ndarray, number: int) -> np.ndarray:
    """``array`` (int32 or int64) as int64 if ``number`` does not fit its type, else itself."""
    if array.dtype == np.int32 and not -(2**31) <= number < 2**31:
        return array.astype(_I64)
    return array


class NearDuplicateIndex:
    """Near-duplicate and containment lookup over recent fingerprints (see the module docstring).

    ``threshold``: Jaccard similarity of shingle sets at or above which two texts are near-duplicates.
    ``containment_threshold``: fraction of the shorter text's shingles present in the longer text at
    or above which the shorter one is a contained copy (summary, first paragraph).
    ``max_entries``: at most this many fingerprints; the oldest timestamps are evicted first.
    Keys and values are 64-bit signed integers.

    ``load``: where the fingerprints of persisted entries can be fetched (the caller's store).
    With it, `persisted` drops the shingles and titles of every entry added so far from memory and
    `find` fetches those of its candidates through ``load`` (one call per find, all keys at once),
    keeping the last ``cache_size`` fetched in memory. A key ``load`` does not return is not a
    match. Without it (the default) everything stays in memory and `persisted` does nothing.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.6,
        containment_threshold: float = 0.8,
        max_entries: int = 200_000,
        load: Loader | None = None,
        cache_size: int = 2048,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if not 0.0 < containment_threshold <= 1.0:
            raise ValueError(f"containment_threshold must be in (0, 1], got {containment_threshold}")
        if not 1 <= max_entries <= _MAX_ENTRIES:
            raise ValueError(f"max_entries must be in [1, {_MAX_ENTRIES}], got {max_entries}")
        if cache_size < 0:
            raise ValueError(f"cache_size must not be negative, got {cache_size}")
        self.threshold = threshold
        self.containment_threshold = containment_threshold
        self.max_entries = max_entries
        self.cache_size = cache_size
        self._load = load
        # confirmation data of persisted entries fetched lately: key -> (shingles, title_key)
        self._cache: OrderedDict[int, tuple[bytes, str]] = OrderedDict()
        self._least = min(threshold, containment_threshold) * (1.0 - 1e-9)
        # Entries live in slots numbered in insertion order; a removed entry's slot stays until
        # the next `_rebuild`, which renumbers the live ones 0.. in the same order.
        cap = _MIN_HEADROOM
        self._cap = cap  # slots [0, cap) can be handed out before the next rebuild
        self._next_slot = 0
        self._live = 0
        self._tables = _BandTables(_banding(threshold), _banding(LEAD_LSH_THRESHOLD), _slot_bits(cap))
        # keys and values as int32 until one needs 64 bits (then that array becomes int64)
        self._keys = np.zeros(cap, dtype=np.int32)
        self._values = np.zeros(cap, dtype=np.int32)
        self._ts = np.zeros(cap, dtype=np.float64)
        self._flags = np.zeros(cap, dtype=np.uint8)
        # Slots from `_res0` on are resident: their shingles and UTF-8 folded titles are here, back
        # to back in slot order: slot s has _shingles[_sh_off[i]:_sh_off[i + 1]] and
        # _titles[_ti_off[i]:_ti_off[i + 1]], i = s - _res0. Slots below `_res0` are persisted
        # (`persisted`; never without ``load``): their data comes from ``load``.
        self._res0 = 0
        self._shingles = np.empty(_ARENA[0], dtype=np.uint32)
        self._titles = np.empty(_ARENA[1], dtype=np.uint8)
        self._sh_off = np.zeros(cap + 1, dtype=_I64)
        self._ti_off = np.zeros(cap + 1, dtype=_I64)
        self._sh_end = self._ti_end = 0  # = _sh_off[_next_slot - _res0], _ti_off[...]
        # key -> slot: open addressing over the keys array (linear probing, cells hold slots)
        self._cells = np.full(2 * cap, _EMPTY, dtype=np.int32)
        self._cell_shift = 64 - (len(self._cells) - 1).bit_length()
        # eviction order: (timestamp, slot) ascending = sorted array from `_head` + a small heap
        self._order = np.empty(0, dtype=np.int32)
        self._head = 0
        self._recent: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: object) -> bool:
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        try:
            number = _int64("key", key)
        except (TypeError, OverflowError):
            return False
        return self._probe(number)[0] >= 0

    def add(self, key: int, fp: Fingerprint, timestamp: float, value: int = 0) -> None:
        """Index ``fp`` under ``key`` (replacing an earlier fingerprint of that key); ``value`` comes
        back in the `DuplicateMatch` of a copy (the bot keeps the original's story id there)."""
        key, value, timestamp = _int64("key", key), _int64("value", value), float(timestamp)
        band_keys = self._tables.band_keys(fp.signature, fp.lead_signature)  # (all that can fail, first)
        title = np.frombuffer(fp.title_key.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        self._keys = _widened(self._keys, key)
        self._values = _widened(self._values, value)
        cell, free = self._probe(key)
        if cell >= 0:
            self._remove_slot(int(self._cells[cell]))
        if self._next_slot == self._cap:
            self._rebuild()
            cell, free = self._probe(key)  # a new key table
        elif cell >= 0:
            free = cell
        slot = self._next_slot
        self._next_slot += 1
        self._live += 1
        self._keys[slot] = key
        self._values[slot] = value
        self._ts[slot] = timestamp
        self._flags[slot] = _LIVE | (_SHORT if fp.token_count < SHORT_TOKENS else 0)
        at = slot - self._res0 + 1
        self._sh_off[at] = self._sh_end = self._append("_shingles", self._sh_end, fp.shingles)
        self._ti_off[at] = self._ti_end = self._append("_titles", self._ti_end, title)
        self._cells[free] = slot
        heapq.heappush(self._recent, (timestamp, slot))
        if len(self._recent) > _RECENT:
            self._merge_recent()
        self._tables.insert(slot, band_keys)
        while self._live > self.max_entries:
            self._pop_oldest()

    def persisted(self) -> None:
        """Every entry added so far can now be fetched through ``load``: drop their shingles and
        titles from memory (`find` fetches them when they are candidates). Without ``load``,
        nothing happens."""
        if self._load is None or self._res0 == self._next_slot:
            return
        self._res0 = self._next_slot
        self._sh_end = self._ti_end = 0  # (the offsets arrays stay long enough: _res0 only grew)
        for name, size in zip(("_shingles", "_titles"), _ARENA, strict=True):
            if len(getattr(self, name)) > size:
                _resize(self, name, size)
        size = self._cap - self._res0 + 1  # offsets for the slots still to come
        if len(self._sh_off) > 2 * size:
            self._sh_off, self._ti_off = np.zeros(size, dtype=_I64), np.zeros(size, dtype=_I64)

    def find(self, fp: Fingerprint, *, exclude: int | None = None) -> DuplicateMatch | None:
        """The best confirmed match for ``fp`` (highest similarity, then oldest), or None."""
        found = self._tables.query(self._tables.band_keys(fp.signature, fp.lead_signature))
        hits = sum(len(part) for part in found)
        if not hits:
            return None
        res0 = self._res0
        stored: list[int] = []  # candidate slots whose data comes from `load`
        if hits <= _FEW_HITS:
            distinct: set[int] = set()
            for part in found:
                distinct.update(part.tolist())
            if res0:
                stored = [slot for slot in distinct if slot < res0]
                distinct.difference_update(stored)
            if len(distinct) <= _FEW_CANDIDATES:
                candidates = self._few_candidates(fp.shingles, distinct)
            else:
                candidates = self._many_candidates(fp.shingles, np.fromiter(distinct, np.intp, len(distinct)))
        else:
            slots = np.sort(np.concatenate(found)).astype(np.intp)
            first = np.empty(len(slots), dtype=bool)
            first[0] = True
            np.not_equal(slots[1:], slots[:-1], out=first[1:])
            slots = slots[first]
            if res0:
                cut = int(np.searchsorted(slots, res0))
                stored, slots = slots[:cut].tolist(), slots[cut:]
            candidates = self._many_candidates(fp.shingles, slots) if len(slots) else []
        titles: dict[int, str] = {}  # of the stored candidates
        if stored:
            candidates += self._stored_candidates(fp.shingles, stored, exclude, titles)
        best: tuple[float, bool, float, int] | None = None
        best_match: DuplicateMatch | None = None
        size = len(fp.shingles)
        short = fp.token_count < SHORT_TOKENS
        for slot, shared, length in candidates:
            key = int(self._keys[slot])
            if key == exclude:
                continue
            verdict = self._verdict(shared, size, length)
            if verdict is None:
                continue
            if (short or self._flags[slot] & _SHORT) and not _titles_agree(
                fp.title_key, titles[slot] if slot < res0 else self._title(slot)
            ):
                continue
            kind, similarity = verdict
            rank = (similarity, kind == "near_duplicate", -float(self._ts[slot]), -slot)
            if best is None or rank > best:
                best = rank
                best_match = DuplicateMatch(key, kind, similarity, int(self._values[slot]))
        return best_match

    def compare(self, a: Fingerprint, b: Fingerprint) -> DuplicateMatch | None:
        """Judge one pair with this index's thresholds (``key`` is -1): the confirmation step alone."""
        shared = int(np.intersect1d(a.shingles, b.shingles, assume_unique=True).size)
        if shared == 0:
            return None
        if min(a.token_count, b.token_count) < SHORT_TOKENS and not _titles_agree(a.title_key, b.title_key):
            return None
        verdict = self._verdict(shared, len(a.shingles), len(b.shingles))
        return None if verdict is None else DuplicateMatch(-1, verdict[0], verdict[1], 0)

    def evict_older_than(self, timestamp: float) -> int:
        """Forget fingerprints with a timestamp before ``timestamp``; returns how many."""
        removed = 0
        order, ts = self._order, self._ts
        cut = bisect.bisect_left(order, timestamp, lo=self._head, key=lambda slot: ts[slot])
        for slot in order[self._head : cut].tolist():
            if self._flags[slot] & _LIVE:
                self._remove_slot(slot)
                removed += 1
        self._head = cut
        recent = self._recent
        while recent and recent[0][0] < timestamp:
            _, slot = heapq.heappop(recent)
            if self._flags[slot] & _LIVE:
                self._remove_slot(slot)
                removed += 1
        if self._next_slot - self._live > max(_MIN_HEADROOM, self._live):
            self._rebuild()  # give the memory back after a large eviction
        return removed

    # -- internals --------------------------------------------------------------------------

    def _verdict(self, shared: int, size_a: int, size_b: int) -> tuple[_Kind, float] | None:
        jaccard = shared / (size_a + size_b - shared)
        if jaccard >= self.threshold and shared >= MIN_SHARED_SHINGLES:
            return "near_duplicate", jaccard
        smaller = min(size_a, size_b)
        containment = shared / smaller
        if smaller >= MIN_CONTAINED_SHINGLES and containment >= self.containment_threshold:
            return "contained", containment
        return None

    # Candidates: (slot, shared shingles, shingles) of the live slots that may match. A match
    # shares at least min(threshold, containment_threshold) of the smaller set (less a rounding
    # margin: `_least`), which rules most out before `_verdict` judges the others exactly.

    def _few_candidates(self, query: np.ndarray, slots: set[int]) -> list[tuple[int, int, int]]:
        """The candidates among a few resident ``slots``, one at a time (less numpy overhead)."""
        wanted = set(query.tolist())
        size, flags, offsets, arena, res0 = len(query), self._flags, self._sh_off, self._shingles, self._res0
        candidates = []
        for slot in slots:
            if flags[slot] & _LIVE:
                start, end = int(offsets[slot - res0]), int(offsets[slot - res0 + 1])
                shared = len(wanted.intersection(arena[start:end].tolist()))
                if shared >= min(end - start, size) * self._least:
                    candidates.append((slot, shared, end - start))
        return candidates

    def _many_candidates(self, query: np.ndarray, slots: np.ndarray) -> list[tuple[int, int, int]]:
        """The candidates among distinct resident ``slots``, all at once: the shingles of all are
        checked against a bitmap of the query's low 16 bits, and those that pass looked up exactly."""
        slots = slots[(self._flags[slots] & _LIVE) != 0]
        at = slots - self._res0
        starts = self._sh_off[at]
        lengths = self._sh_off[at + 1] - starts
        ends = np.cumsum(lengths)
        values = self._shingles[_ranges(starts, lengths)]
        bitmap = np.zeros(1 << 16, dtype=np.bool_)
        bitmap[query & _BITMAP] = True
        maybe = np.flatnonzero(bitmap[values & _BITMAP])
        values = values[maybe]
        at = np.minimum(np.searchsorted(query, values), len(query) - 1)
        owner = np.searchsorted(ends, maybe[query[at] == values], side="right")
        shared = np.bincount(owner, minlength=len(slots))
        keep = np.flatnonzero(shared >= np.minimum(lengths, len(query)) * self._least)
        return list(zip(slots[keep].tolist(), shared[keep].tolist(), lengths[keep].tolist(), strict=True))

    def _stored_candidates(
        self, query: np.ndarray, slots: list[int], exclude: int | None, titles: dict[int, str]
    ) -> list[tuple[int, int, int]]:
        """The candidates among persisted ``slots``: their data from the cache, else from one call
        of ``load`` (which the cache then keeps). Their titles go into ``titles``."""
        at = np.array(slots, dtype=np.intp)
        at = at[(self._flags[at] & _LIVE) != 0]
        wanted = [(slot, key) for slot, key in zip(at.tolist(), self._keys[at].tolist(), strict=True) if key != exclude]
        if not wanted or self._load is None:
            return []
        cache = self._cache
        data: dict[int, tuple[bytes, str]] = {}
        missing: list[int] = []
        for _, key in wanted:
            entry = cache.get(key)
            if entry is None:
                missing.append(key)
            else:
                cache.move_to_end(key)
                data[key] = entry
        if missing:
            loaded = self._load(missing)
            for key in missing:
                got = loaded.get(key)
                entry = None if got is None else _confirmation_data(got)
                if entry is None:
                    continue  # not in the store (or unreadable): not a match
                data[key] = entry
                if self.cache_size:
                    cache[key] = entry
                    if len(cache) > self.cache_size:
                        cache.popitem(last=False)
        found = [(slot, data[key]) for slot, key in wanted if key in data]
        if not found:
            return []
        parts = [shingles for _, (shingles, _) in found]
        values = np.frombuffer(b"".join(parts), dtype="<u4")
        at = np.minimum(np.searchsorted(query, values), len(query) - 1)
        running = np.zeros(len(values) + 1, dtype=np.intp)
        np.cumsum(query[at] == values, out=running[1:])
        lengths = np.fromiter(map(len, parts), dtype=np.intp, count=len(parts)) >> 2
        ends = np.cumsum(lengths)
        shared = running[ends] - running[ends - lengths]
        candidates = []
        for i in np.flatnonzero(shared >= np.minimum(lengths, len(query)) * self._least).tolist():
            slot, (_, title) = found[i]
            candidates.append((slot, int(shared[i]), int(lengths[i])))
            titles[slot] = title
        return candidates

    def _title(self, slot: int) -> str:
        at = slot - self._res0
        data = self._titles[int(self._ti_off[at]) : int(self._ti_off[at + 1])]
        return data.tobytes().decode("utf-8", "surrogatepass")

    def _append(self, name: str, at: int, data: np.ndarray) -> int:
        """Write ``data`` at ``at`` into the arena ``name`` (growing it); returns the end."""
        end = at + len(data)
        arena = getattr(self, name)
        if end > len(arena):
            del arena  # no reference of ours may stop an in-place resize
            _resize(self, name, max(end, len(getattr(self, name)) * 17 // 16))  # a realloc: cheap steps
            arena = getattr(self, name)
        arena[at:end] = data
        return end

    def _probe(self, key: int) -> tuple[int, int]:
        """(the key table cell holding ``key`` or -1, the first deleted or empty cell on its way)."""
        cells, keys = self._cells, self._keys
        mask = len(cells) - 1
        cell = ((key * _KEY_MULT) & _MASK64) >> self._cell_shift
        free = -1
        while True:
            slot = cells[cell]
            if slot >= 0:
                if keys[slot] == key:
                    return int(cell), free
            elif free < 0:
                free = int(cell)
            if slot == _EMPTY:
                return -1, free
            cell = (cell + 1) & mask

    def _remove_slot(self, slot: int) -> None:
        key = int(self._keys[slot])
        cell = self._probe(key)[0]
        assert cell >= 0, "a live slot's key is in the key table"
        self._flags[slot] &= ~np.uint8(_LIVE)
        self._cells[cell] = _DELETED
        self._live -= 1
        if self._cache:
            self._cache.pop(key, None)  # (the key may come back with another fingerprint)

    def _pop_oldest(self) -> None:
        """Remove the live entry with the smallest (timestamp, slot)."""
        order, flags, recent = self._order, self._flags, self._recent
        head = self._head
        while head < len(order) and not flags[order[head]] & _LIVE:
            head += 1
        self._head = head
        while recent and not flags[recent[0][1]] & _LIVE:
            heapq.heappop(recent)
        if head < len(order):
            slot = int(order[head])
            if not recent or (float(self._ts[slot]), slot) < recent[0]:
                self._head = head + 1
                self._remove_slot(slot)
                return
        if recent:
            self._remove_slot(heapq.heappop(recent)[1])

    def _merge_recent(self) -> None:
        """Move the heap's live entries into the sorted eviction order (their slots are larger)."""
        rest = self._order[self._head :]
        rest = rest[(self._flags[rest] & _LIVE) != 0]
        recent = sorted(entry for entry in self._recent if self._flags[entry[1]] & _LIVE)
        times = np.array([t for t, _ in recent], dtype=np.float64)
        slots = np.array([s for _, s in recent], dtype=np.int32)
        at = np.searchsorted(self._ts[rest], times, side="right")
        self._order = np.insert(rest, at, slots)
        self._head = 0
        self._recent = []

    def _rebuild(self) -> None:
        """Drop removed slots everywhere, renumber the live ones 0.. in order and size everything
        for the slots that can be handed out until the next rebuild."""
        self._merge_recent()
        used = self._next_slot
        live = (self._flags[:used] & _LIVE) != 0
        count = int(live.sum())
        new_slot = np.full(used, -1, dtype=_I64)
        new_slot[live] = np.arange(count)
        # the next rebuild comes after a quarter of the live count in adds: soon enough to bound the
        # removed slots' memory and the band tables' runs, late enough to cost O(1) per add
        cap = count + max(_MIN_HEADROOM, count // 4)
        self._tables.rebuild(new_slot, _slot_bits(cap))
        res0 = self._res0
        new_res0 = int(live[:res0].sum())
        self._sh_off = self._compact("_shingles", self._sh_off, live[res0:], cap - new_res0)
        self._ti_off = self._compact("_titles", self._ti_off, live[res0:], cap - new_res0)
        for name in ("_keys", "_values", "_ts", "_flags"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[:count] = old[:used][live]
            setattr(self, name, new)
        self._order = new_slot[self._order].astype(np.int32)
        self._cap, self._next_slot, self._res0 = cap, count, new_res0
        self._sh_end, self._ti_end = int(self._sh_off[count - new_res0]), int(self._ti_off[count - new_res0])
        self._build_key_table()

    def _compact(self, name: str, offsets: np.ndarray, live: np.ndarray, size: int) -> np.ndarray:
        """Keep the data of the resident slots marked ``live`` in the arena ``name`` (in place, in
        steps); their new offsets, in an array for ``size`` resident slots."""
        used = len(live)
        lengths = np.diff(offsets[: used + 1])
        new = np.zeros(size + 1, dtype=_I64)
        if live.all():  # nothing to drop (the index is filling up)
            new[: used + 1] = offsets[: used + 1]
            return new
        end = 0
        step = 1024
        for first in range(0, used, step):
            stop = min(used, first + step)
            lo, hi = int(offsets[first]), int(offsets[stop])
            kept = getattr(self, name)[lo:hi][np.repeat(live[first:stop], lengths[first:stop])]
            getattr(self, name)[end : end + len(kept)] = kept
            end += len(kept)
        if len(getattr(self, name)) > end + end // 8 + (1 << 16):
            _resize(self, name, end + end // 16 + (1 << 16))
        np.cumsum(lengths[live], out=new[1 : int(live.sum()) + 1])
        return new

    def _build_key_table(self) -> None:
        """The key table for slots [0, _next_slot), sized for `_cap` slots (at most half full)."""
        count = self._next_slot
        size = 1 << (2 * self._cap - 1).bit_length()
        cells = np.full(size, _EMPTY, dtype=np.int32)
        self._cell_shift = 64 - (size - 1).bit_length()
        keys = self._keys[:count].astype(_I64).view(_U64)
        cell = ((keys * _U64(_KEY_MULT)) >> _U64(self._cell_shift)).astype(np.intp)
        waiting = np.arange(count)
        while len(waiting):  # place in rounds: a key takes its cell if it is free and no one before wants it
            free = np.flatnonzero(cells[cell] == _EMPTY)
            taken, first = np.unique(cell[free], return_index=True)
            cells[taken] = waiting[free[first]]
            placed = np.zeros(len(waiting), dtype=bool)
            placed[free[first]] = True
            waiting, cell = waiting[~placed], (cell[~placed] + 1) & (size - 1)
        self._cells = cells
