"""Skip the entries a source showed last time: parse only what changed in a feed.

A changed feed usually differs from its previous version by an entry or two at the top; the other
48 are byte for byte what the bot parsed a minute ago and dropped as known. `split` cuts a body into
its entries' byte spans (``<item>…</item>`` / ``<entry>…</entry>``) and the skeleton around them;
`encode` gives what the store keeps with the source once the body is processed: a digest of each
span and of the skeleton's markup. When the markup around the entries is the same as last time
(same tags and attributes: namespaces, ``xml:base``, encoding), `reduce` returns the body without
the entries already seen, and the parser reads only the rest: same feed fields, only the new ones.

Cutting bytes is only sound where the cut is at real element boundaries, so `split` refuses (None,
and the whole body is parsed) whenever it cannot be sure: prefixed or nested entry elements, entry
tags inside CDATA sections, comments or processing instructions, a DOCTYPE, a byte order mark or
NUL bytes (UTF-16/32), an unbalanced sequence of tags.

Pure and CPU-light (regular expressions and BLAKE2 digests, in C).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["Spans", "encode", "reduce", "split"]

_ENTRY_TAG = re.compile(rb"<(/?)(item|entry)(?=[\s/>])[^>]*>")
_PREFIXED_ENTRY = re.compile(rb"</?[A-Za-z_][\w.-]*:(?:item|entry)[\s/>]")
_OPAQUE = re.compile(rb"<!\[CDATA\[.*?\]\]>|<!--.*?-->|<\?.*?\?>", re.DOTALL)
_MARKUP = re.compile(rb"<[^!?/][^>]*>|<\?xml[^>]*\?>")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_DIGEST = 8  # bytes per digest: collisions are a 2**-64 matter per pair


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


@dataclass(frozen=True, slots=True)
class Spans:
    """Where a body's entries are: ``bounds[i] = (start, end)`` byte offsets of entry ``i``."""

    bounds: tuple[tuple[int, int], ...]
    digests: tuple[bytes, ...]  # one per entry, of its bytes
    context: bytes  # digest of the tags (with attributes) outside the entries


def split(body: bytes) -> Spans | None:
    """The entries' byte spans of an RSS 2.0 / Atom body, or None if they cannot be cut safely."""
    if not body or body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body or _DOCTYPE.search(body):
        return None
    if _PREFIXED_ENTRY.search(body):
        return None
    tags = list(_ENTRY_TAG.finditer(body))
    if not tags:
        return None
    opaque = [(m.start(), m.end()) for m in _OPAQUE.finditer(body)]
    if opaque:
        for tag in tags:
            if any(a <= tag.start() < b for a, b in opaque):
                return None  # an entry tag inside CDATA, a comment or a PI: not an element
    bounds: list[tuple[int, int]] = []
    name = b""
    start = -1
    for tag in tags:
        closing, tag_name = tag.group(1), tag.group(2)
        if not closing:
            if start >= 0 or tag.group(0).endswith(b"/>"):
                return None  # nested entries, or an empty <item/>: not the plain shape
            name, start = tag_name, tag.start()
        else:
            if start < 0 or tag_name != name:
                return None
            bounds.append((start, tag.end()))
            start = -1
    if start >= 0:
        return None
    skeleton = bytearray()
    at = 0
    for a, b in bounds:
        skeleton += body[at:a]
        at = b
    skeleton += body[at:]
    context = _digest(b"\n".join(m.group(0) for m in _MARKUP.finditer(bytes(skeleton))))
    return Spans(tuple(bounds), tuple(_digest(body[a:b]) for a, b in bounds), context)


def encode(spans: Spans | None) -> bytes | None:
    """What to remember of a processed body (stored with its source): its context and entry
    digests, about 8 bytes per entry. None for a body that was not cut into spans."""
    if spans is None:
        return None
    return spans.context + b"".join(spans.digests)


def reduce(body: bytes, spans: Spans | None, seen: bytes | None) -> tuple[bytes, tuple[int, ...] | None]:
    """``body`` without the entries remembered in ``seen`` (`encode` of the source's previous
    body), and the indices of the entries kept; (``body``, None) when nothing can be left out:
    no spans, nothing remembered, other markup around the entries, or every entry new."""
    if spans is None or not seen or len(seen) % _DIGEST or seen[:_DIGEST] != spans.context:
        return body, None
    known = {seen[i:i + _DIGEST] for i in range(_DIGEST, len(seen), _DIGEST)}
    parts: list[bytes] = []
    kept: list[int] = []
    at = 0
    for i, ((a, b), digest) in enumerate(zip(spans.bounds, spans.digests, strict=True)):
        if digest in known:
            parts.append(body[at:a])
            at = b
        else:
            kept.append(i)
    if len(kept) == len(spans.bounds):
        return body, None
    parts.append(body[at:])
    return b"".join(parts), tuple(kept)
