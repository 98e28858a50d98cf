"""Fast path of the parse stage: plain RSS 2.0 and Atom 1.0 read with lxml, same result as feedparser.

feedparser is the reference parser and the bot's biggest CPU cost: most of its time goes into
re-parsing every HTML field with sgmllib to sanitise it and resolve relative links in it. The bot
never shows that HTML: `bot.normalise` reduces it to plain text, and for the HTML feeds carry,
sanitising changes markup (attributes, links, some elements) but not that text. So, for documents
it fully understands, this module reads the XML with
lxml, replays the part of feedparser's element handling that decides the fields `RawEntry` takes
(which element wins, link and id rules, summary versus content, authors, categories, the text
clean-ups feedparser applies to every value) and keeps HTML as the feed gave it when sanitising
provably would not change the text the bot derives from it.

`parse_fast` returns None ("ask feedparser") for anything it is not sure to reproduce: no RSS 2.0 /
0.9x / Atom 1.0 root (RSS 1.0/RDF, HTML pages, JSON), DOCTYPE or entity declarations, malformed or
truncated XML, encodings feedparser would have to guess, xml:base, XHTML or base64 content, markup
inside text elements, unknown or ambiguous elements that feedparser maps onto the fields we read,
date formats other than RFC 822 and RFC 3339, HTML that sanitising would alter as text (elements
feedparser drops that hold text, comments, unknown entities, Windows-1252 character references,
mis-encoded UTF-8), and more. Declining is always safe; `differences` compares both parsers at the
level of normalised items and is what the tests (and, sampled, the bot) use to hold the two equal.

Feed text is untrusted: lxml runs without DTD loading, entity expansion, network access or huge-tree
mode, and a document with a DOCTYPE is never handed to it.

It borrows a few of feedparser's own pieces so that the rules stay feedparser's: the encoding
detection (`convert_to_utf8`), the namespace table, the author and tag bookkeeping helpers and the
"does this plain text look like HTML" test. A feedparser upgrade that moves them makes the import
fail, and `bot.parse.parse_feed` then uses feedparser alone.
"""

from __future__ import annotations

import functools
import html.entities
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from feedparser.encodings import convert_to_utf8
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import _HTMLSanitizer
from feedparser.urls import _urljoin
from feedparser.util import FeedParserDict
from lxml import etree

from bot.normalise import MAX_MARKUP_CHARS, MAX_TITLE_CHARS
from bot.parse import ParsedFeed, build_parsed_feed, parse_with_feedparser

__all__ = ["compare_parsed", "differences", "parse_fast"]

# --------------------------------------------------------------------------- feedparser's rules

_MIXIN = _FeedParserMixin
_NAMESPACES = {uri.lower(): prefix for uri, prefix in _MIXIN.namespaces.items()}
# every element name feedparser has a handler for ("dc_creator", "content_encoded", ...)
_HANDLED = frozenset(
    name.split("_", 2)[2].lower() for name in dir(_MIXIN) if name.startswith(("_start_", "_end_"))
)
_RELATIVE = frozenset(_MIXIN.can_be_relative_uri)
_MARKUP = frozenset(_MIXIN.can_contain_dangerous_markup) | frozenset(_MIXIN.can_contain_relative_uris)
_HTML_TYPES = frozenset(_MIXIN.html_types)
_KEYMAP = FeedParserDict.keymap
_ACCEPTED_VERSIONS = frozenset({"rss20", "rss091u", "rss092", "rss093", "rss094", "rss", "atom10"})
_RSS_VERSIONS = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
# feedparser maps C1 control characters to what they mean in Windows-1252
_CP1252 = {}
for _code in range(0x80, 0xA0):
    try:
        _CP1252[_code] = bytes([_code]).decode("cp1252")
    except UnicodeDecodeError:
        pass
_C1 = re.compile("[\x80-\x9f]")
_AMP_ENTITY = re.compile("&([A-Za-z0-9_]+);")  # feedparser's repair of "&amp;" in links

# Names (keys of the entry/feed dicts) that decide what we read: an element feedparser has no
# handler for but that would be stored under one of them is not guessed at.
_PROTECTED = frozenset({
    "id", "link", "links", "title", "summary", "content", "published", "published_parsed", "updated",
    "updated_parsed", "tags", "author", "author_detail", "authors",
})
# Handlers with no effect on any field we read, on elements without children.
_HARMLESS_LEAVES = frozenset({
    "language", "dc_language", "rights", "copyright", "dc_rights", "subtitle", "tagline", "itunes_subtitle",
    "info", "feedburner_browserfriendly", "generator", "enclosure", "cloud", "width", "height", "created",
    "dcterms_created", "expirationdate", "newlocation", "media_thumbnail", "media_credit", "media_player",
    "media_rating", "media_restriction", "media_license", "itunes_image", "itunes_link", "itunes_block",
    "itunes_explicit", "georss_point", "georss_line", "georss_polygon", "georss_box", "cc_license",
    "creativecommons_license", "admin_generatoragent", "admin_errorreportsto",
})
_HARMLESS_CONTAINERS = frozenset({"media_content", "media_group"})
# feedparser's "special hack" for empty <image>/<textInput>: other unprefixed elements end them
_KEEPS_TEXTINPUT = frozenset({"title", "link", "description", "name"})
_KEEPS_IMAGE = frozenset({"title", "link", "description", "url", "href", "width", "height"})

# --------------------------------------------------------------------------- HTML that sanitising keeps

_ACCEPTABLE = frozenset(_HTMLSanitizer.acceptable_elements)
_VOID = frozenset({
    "area", "base", "basefont", "br", "col", "command", "embed", "frame", "hr", "img", "input", "isindex",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
})
# Elements the sanitiser removes that `html_to_text` ignores too, as long as they hold no text.
_REMOVABLE_EMPTY = frozenset({"iframe", "script", "style", "object", "param", "wbr"})
_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9]*)"
    r"((?:\s+[A-Za-z_][-A-Za-z0-9_:.]*(?:\s*=\s*(?:\"[^\"<>]*\"|'[^'<>]*'|[-A-Za-z0-9./,:;+*%?!&$()_#~@]+))?)*)"
    r"\s*(/?)>"
)
_COMMENT = re.compile(r"<!--(?:[^-<>]|-(?!-))*-->")
_ATTR_NAME = re.compile(r"\s([A-Za-z_][-A-Za-z0-9_:.]*)")
# what feedparser's sgmllib tokenizer reads after "&": a character reference, or an entity name
_AMP = re.compile(r"&(?:#([0-9]+|[xX][0-9a-fA-F]+);|([A-Za-z][-.A-Za-z0-9]*))?")
_COMMON_REF = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_UNESCAPE_SPAN = re.compile(r"[^\t\n\f <&#;]{1,32}")  # what html.unescape reads as a name
_KNOWN_ENTITIES = frozenset(html.entities.name2codepoint) | {"apos"}
# names an HTML parser may decode without a ';' (and libxml2 also as a prefix: "&ampx" -> "&x")
_ENTITY_PREFIXES = frozenset(html.entities.name2codepoint) | {
    name for name in html.entities.html5 if not name.endswith(";")}
# `bot.normalise` looks at no more than this much of a field's HTML (titles: 10x MAX_TITLE_CHARS)
_TITLE_LIMIT = MAX_TITLE_CHARS * 10
_MARKUP_LIMIT = MAX_MARKUP_CHARS

# --------------------------------------------------------------------------- dates

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), start=1)}
_ZONE_HOURS = {"GMT": 0, "UT": 0, "UTC": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
               "MST": -7, "MDT": -6, "PST": -8, "PDT": -7}
_RFC822 = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([0-9]{4}) ([0-9]{2}):([0-9]{2})(?::([0-9]{2}))? (GMT|UTC|UT|Z|[ECMP][SD]T|[+-][0-9]{4})"
)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})"
)


class _Decline(Exception):
    """The fast path is not sure to match feedparser here."""


def _utc_tuple(fields: tuple[str, ...], zone_minutes: int) -> time.struct_time:
    year, month, day, hour, minute = (int(f) for f in fields[:5])
    second = int(fields[5]) if fields[5] else 0
    try:
        stamp = datetime(year, month, day, hour, minute, second)
        if zone_minutes:
            stamp -= timedelta(minutes=zone_minutes)
        return stamp.utctimetuple()
    except (ValueError, OverflowError):
        raise _Decline("date out of range") from None  # feedparser would try its other parsers


def _parse_date(value: str) -> time.struct_time | None:
    """feedparser's ``*_parsed`` value for a date, for the two shapes feeds use in practice:
    RFC 822 (``Tue, 05 Mar 2024 14:03:00 GMT``, ``+0100``, US zone names) and RFC 3339
    (``2024-03-05T14:03:00Z``, ``+01:00``, fractions). Raises `_Decline` for anything else."""
    if not value:
        return None
    match = _RFC822.fullmatch(value)
    if match:
        day, month, year, hour, minute, second, zone = match.groups()
        if zone[0] in "+-":
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            offset = -minutes if zone[0] == "-" else minutes
        else:
            offset = _ZONE_HOURS[zone] * 60
        return _utc_tuple((year, str(_MONTHS[month]), day, hour, minute, second or ""), offset)
    match = _RFC3339.fullmatch(value)
    if match:
        year, month, day, hour, minute, second, zone = match.groups()
        offset = 0
        if zone != "Z":
            minutes = int(zone[1:3]) * 60 + int(zone[4:6])
            offset = -minutes if zone[0] == "-" else minutes
        return _utc_tuple((year, month, day, hour, minute, second or ""), offset)
    raise _Decline(f"date format: {value[:40]!r}")


# --------------------------------------------------------------------------- text clean-ups


def _plain(text: str) -> str:
    """What feedparser does to every text value after sanitising: undo UTF-8 read as Latin-1,
    then map C1 controls to their Windows-1252 characters."""
    if text.isascii():
        return text
    try:
        text = text.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return _cp1252(text)


def _cp1252(text: str) -> str:
    return text.translate(_CP1252) if _C1.search(text) else text


def _check_html(markup: str, limit: int) -> str:
    """``markup`` if feedparser's sanitiser (and its relative-URI pass) would leave every piece of
    text, every element `html_to_text` looks at and its class/id attributes as they are, so that
    the text the bot derives is the same with or without it. Raises `_Decline` otherwise."""
    # Length: normalise truncates long fields, so both versions must stay under its limit. The
    # sanitiser adds at most 5 characters per '&', quote, '>', '=' or '/'.
    if len(markup) * 6 > limit and len(markup) + 5 * sum(markup.count(c) for c in "&\"'>=/") > limit:
        raise _Decline("HTML too long to compare")
    original = markup
    if "<!" in markup:
        # simple comments: the sanitiser keeps them and html_to_text drops them; CDATA, DOCTYPEs and
        # odd comments the two HTML parsers may read differently
        markup = _COMMENT.sub(" ", markup)
        if "<!" in markup:
            raise _Decline("CDATA, declaration or odd comment in HTML")
    text = markup
    if "<" in markup:
        parts = _TAG.split(markup)  # text, then the 4 groups of each tag, text, ...
        if len(parts) // 5 != markup.count("<"):
            raise _Decline("'<' that is not a simple tag")
        removed = False
        for i in range(1, len(parts), 5):
            closing, name, attrs, self_closing = parts[i:i + 4]
            name = name.lower()
            if name not in _ACCEPTABLE:
                removed = True
            elif closing:
                if attrs or self_closing or name == "br":
                    raise _Decline("odd end tag")  # </br> may read as <br>; the sanitiser drops it
            elif self_closing and name not in _VOID:
                raise _Decline("self-closing non-void element")
            elif attrs and ("&#" in attrs or _duplicate_class_or_id(attrs)):
                raise _Decline("attributes the sanitiser would rewrite")
        if removed:
            _check_removed(markup)
        text = " ".join(parts[::5])
    if "&" in text:
        # the usual complete references are fine as they are; look closer only when there is more
        refs = _COMMON_REF.findall(text)
        for ref in set(refs):
            if not _reference_kept(ref):
                raise _Decline(f"reference {ref} the sanitiser would rewrite")
        if len(refs) != text.count("&"):
            _check_ampersands(text)
    if not text.isascii():
        try:
            text.encode("iso-8859-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        else:
            raise _Decline("UTF-8 read as Latin-1")  # feedparser would re-decode the sanitised text
    return _cp1252(original)


def _check_removed(markup: str) -> None:
    """Elements the sanitiser removes (keeping what is inside) are fine only when `html_to_text`
    drops them too and they hold nothing: ``<iframe ...></iframe>``, ``<script src=...></script>``."""
    kept = 0
    open_removed: re.Match[str] | None = None
    for tag in _TAG.finditer(markup):
        closing, name, _attrs, self_closing = tag.groups()
        name = name.lower()
        if open_removed is not None:
            if not (closing and name == open_removed.group(2).lower()) or markup[
                    open_removed.end():tag.start()].strip():
                raise _Decline("removed element with content")
            open_removed = None
        elif name in _ACCEPTABLE:
            kept += 1
        elif name in _REMOVABLE_EMPTY and not closing:
            if name not in _VOID:
                if self_closing:  # an HTML parser ignores the "/": the element would swallow what follows
                    raise _Decline(f"self-closing <{name}/>")
                open_removed = tag
        else:
            raise _Decline(f"element <{name}>")
    if open_removed is not None:
        raise _Decline("unclosed removed element")
    if not kept:
        raise _Decline("only removed elements")  # the sanitised text would read as plain text


@functools.lru_cache(maxsize=4096)
def _reference_kept(ref: str) -> bool:
    """Does the sanitiser keep this complete reference (``&amp;``, ``&#8217;``) as it is? Not when
    the entity is unknown to it or the character is a Windows-1252 code point (128-159)."""
    if ref[1] == "#":
        code = int(ref[3:-1], 16) if ref[2] in "xX" else int(ref[2:-1])
        return not 0x80 <= code <= 0x9F
    return ref[1:-1] in _KNOWN_ENTITIES


def _check_ampersands(text: str) -> None:
    """The sanitiser's tokenizer rewrites some references: "&name" followed by a non-name character
    becomes "&name;" when the entity is known and "&amp;name" when not, "&unknown;" becomes
    "&amp;unknown", character references to 128-159 become the Windows-1252 characters. Accept
    only the cases where the text an HTML parser (or `html.unescape`) reads stays the same."""
    for match in _AMP.finditer(text):
        ref, name = match.group(1), match.group(2)
        if ref is not None:
            if len(ref) > 7:
                raise _Decline("overlong character reference")
            code = int(ref[1:], 16) if ref[0] in "xX" else int(ref)
            if 0x80 <= code <= 0x9F:
                raise _Decline("Windows-1252 character reference")
        elif name is not None:
            end = match.end(2)
            if end == len(text):
                continue  # unterminated at the very end: kept as it is
            if text[end] == ";":
                if name not in _KNOWN_ENTITIES:
                    raise _Decline(f"unknown entity &{name};")
                continue
            if name in _KNOWN_ENTITIES:
                raise _Decline(f"entity &{name} without ';'")
            span = _UNESCAPE_SPAN.match(text, match.start() + 1)
            word = span.group() if span else name
            if any(word[:i] in _ENTITY_PREFIXES for i in range(2, len(word) + 1)):
                raise _Decline(f"bare &{word[:20]} that HTML parsers may read as an entity")
        # "&" before anything else stays "&"


def _duplicate_class_or_id(attrs: str) -> bool:
    low = attrs.lower()
    if low.count("class") + low.count("id") < 2:
        return False
    names = [n.lower() for n in _ATTR_NAME.findall(attrs)]
    return names.count("class") > 1 or names.count("id") > 1


# --------------------------------------------------------------------------- the walk


class _Walker:
    """Replays feedparser's element handlers (mixin.py, namespaces/_base.py) for the elements
    listed in `_HANDLERS`, over an lxml tree. Attribute names follow feedparser's so that its
    author and tag helpers below can be borrowed as they are; they only use `_get_context`."""

    _add_tag = _MIXIN._add_tag
    _sync_author_detail = _MIXIN._sync_author_detail
    _save_author = _MIXIN._save_author
    _enforce_href = staticmethod(_MIXIN._enforce_href)
    _map_type = staticmethod(_MIXIN.map_content_type)
    _looks_like_html = staticmethod(_MIXIN.looks_like_html)

    def __init__(self) -> None:
        self.version = ""
        # plain dicts: the keys stored here are never ones FeedParserDict maps to others
        self.feeddata: dict[str, Any] = {}
        self.entries: list[dict[str, Any]] = []
        self._depths: list[dict[str, int]] = []  # feedparser's property_depth_map, per entry
        self.sourcedata: dict[str, Any] = {}
        self._dates: dict[str, time.struct_time | None] = {}
        self.namespacemap: dict[str | None, str] = {}
        self._names: dict[tuple[str, str | None], tuple[str, bool]] = {}
        self.infeed = self.inentry = self.inimage = self.intextinput = 0
        self.inauthor = self.inpublisher = self.insource = self.incontent = 0
        self.has_content = 0
        self.title_depth = -1
        self.guidislink = False
        self.summary_key: str | None = None
        self.ctype: str | None = None  # type of the open text element (feedparser's contentparams)
        self.expecting = True
        self.link_text = False
        self.depth = 0
        self.root = ""

    # -- feedparser's context rules ---------------------------------------------------------------
    def _get_context(self) -> dict[str, Any]:
        if self.insource:
            return self.sourcedata
        if self.inimage and "image" in self.feeddata:
            return self.feeddata["image"]
        if self.intextinput:
            return self.feeddata["textinput"]
        if self.inentry:
            return self.entries[-1]
        return self.feeddata

    def _save(self, key: str, value: Any, overwrite: bool = False) -> None:
        context = self._get_context()
        if overwrite:
            context[key] = value
        else:
            context.setdefault(key, value)

    # -- names, attributes, namespaces --------------------------------------------------------------
    def track_namespace(self, prefix: str, uri: str) -> None:
        if not uri:
            return
        prefix_or_none = prefix or None
        lower = uri.lower()
        if not self.version:
            if prefix_or_none is None and lower == "http://my.netscape.com/rdf/simple/0.9/":
                self.version = "rss090"
            elif lower == "http://purl.org/rss/1.0/":
                self.version = "rss10"
            elif lower == "http://www.w3.org/2005/atom":
                self.version = "atom10"
        if "backend.userland.com/rss" in lower:
            lower = "http://backend.userland.com/rss"
        if lower in _NAMESPACES:
            self.namespacemap[prefix_or_none] = _NAMESPACES[lower]
        self._names.clear()

    def name_of(self, element: Any) -> tuple[str, bool]:
        """feedparser's name for an element ("title", "dc_creator", ...) and whether it has no prefix."""
        key = (element.tag, element.prefix)
        known = self._names.get(key)
        if known is not None:
            return known
        tag = element.tag
        if tag[0] == "{":
            uri, local = tag[1:].split("}", 1)
        else:
            uri, local = "", tag
        lower = uri.lower()
        if "backend.userland.com/rss" in lower:
            lower = "http://backend.userland.com/rss"
        prefix = _NAMESPACES.get(lower)
        if prefix is None:
            prefix = element.prefix  # an unknown namespace: feedparser goes by the document's prefix
        local = local.lower()
        if prefix:
            prefix = prefix.lower()
            prefix = self.namespacemap.get(prefix, prefix)
        result = (f"{prefix}_{local}", False) if prefix else (local, True)
        self._names[key] = result
        return result

    @staticmethod
    def attributes(element: Any) -> dict[str, str]:
        items = element.items()
        if not items:
            return {}
        attrs: dict[str, str] = {}
        for key, value in items:
            if key[0] == "{":
                uri, local = key[1:].split("}", 1)
                prefix = _NAMESPACES.get(uri.lower())
                if not prefix:  # unknown namespace, or one feedparser reads as unprefixed
                    raise _Decline(f"attribute {key}")
                key = f"{prefix}:{local}"
            key = key.lower()
            if key.endswith("base"):  # xml:base / base change how feedparser resolves links
                raise _Decline("xml:base")
            attrs[key] = value.lower() if key in ("rel", "type") else value
        return attrs

    # -- the walk ---------------------------------------------------------------------------------
    def walk(self, root: Any) -> None:
        stack: list[tuple[str, Any]] = []
        for event, node in etree.iterwalk(root, events=("start-ns", "start", "end")):
            if event == "start-ns":
                self.track_namespace(*node)
                continue
            if not isinstance(node.tag, str):
                raise _Decline("entity reference")
            if event == "start":
                self.depth += 1
                if self.incontent:
                    raise _Decline("markup inside a text element")
                name, unprefixed = self.name_of(node)
                if self.depth == 1 and name not in ("rss", "feed"):
                    raise _Decline(f"root element {name}")
                attrs = self.attributes(node)
                if unprefixed:
                    if name not in _KEEPS_TEXTINPUT:
                        self.intextinput = 0
                    if name not in _KEEPS_IMAGE:
                        self.inimage = 0
                handler = _HANDLERS.get(name)
                if handler is not None:
                    handler[0](self, node, name, attrs)
                elif name in _HARMLESS_LEAVES:
                    if len(node):
                        raise _Decline(f"<{name}> with children")
                elif name in _HARMLESS_CONTAINERS:
                    pass
                elif name in _HANDLED:
                    raise _Decline(f"element {name}")
                else:
                    handler = self._unknown_start(node, name, attrs)
                stack.append((name, handler))
            else:
                name, handler = stack.pop()
                if handler is not None and handler[1] is not None:
                    handler[1](self, node, name)
                self.depth -= 1

    # -- pushing and popping text (feedparser's push/pop, minus the sanitiser) -----------------------
    def _leaf_text(self, node: Any) -> str:
        if len(node):
            raise _Decline(f"children in <{node.tag}>")
        return node.text or ""

    def _push_content(self, node: Any, attrs: dict[str, str], default: str, expecting: bool) -> None:
        self._leaf_text(node)
        ctype = self._map_type(attrs.get("type", default))
        if attrs.get("mode") == "base64" or ctype not in ("text/plain", "text/html"):
            raise _Decline(f"content type {ctype}")
        if "src" in attrs:
            raise _Decline("out-of-line content")
        self.incontent += 1
        self.ctype = ctype
        self.expecting = expecting

    def _pop_content(self, element: str, node: Any) -> str:
        value = self._pop(element, node.text or "", self.expecting)
        self.incontent -= 1
        self.ctype = None
        return value

    def _pop(self, element: str, raw: str, expecting: bool = True) -> str:
        output = raw.strip()
        if not expecting:
            return output
        if element in _RELATIVE and ":///" in output and (element != "id" or self.guidislink):
            output = _urljoin("", output)  # with no base URI this only drops extra slashes after "scheme://"
        ctype = self.ctype
        if (ctype == "text/plain" and ("<" in output or "&" in output) and not self.version.startswith("atom")
                and self._looks_like_html(output)):
            ctype = self.ctype = "text/html"
        if element in _MARKUP and (ctype or "text/html") in _HTML_TYPES:
            if self.inentry and not self.insource:
                if element in ("title", "description", "summary", "content"):
                    limit = _TITLE_LIMIT if element == "title" else _MARKUP_LIMIT
                    output = _check_html(output, limit)
                # other markup fields of an entry (rights, subtitle, ...) are not read
            elif element == "title":
                raise _Decline("HTML in a feed title")
        else:
            output = _plain(output)
        return self._store(element, output, ctype)

    def _store(self, element: str, output: str, ctype: str | None) -> str:
        if element in ("category", "tags", "itunes_keywords"):
            return output
        if element == "title" and -1 < self.title_depth <= self.depth:
            return output
        if self.inentry and not self.insource:
            entry = self.entries[-1]
            if element == "content":
                entry.setdefault("content", []).append({"type": ctype, "value": output})
            elif element == "link":
                if not self.inimage:
                    output = _AMP_ENTITY.sub(r"&\1", output.replace("&amp;", "&"))
                    entry["link"] = output
                    if output:
                        entry["links"][-1]["href"] = output
            else:
                if element == "description":
                    element = "summary"
                depths = self._depths[-1]
                old = depths.get(element)
                if old is None or self.depth <= old:
                    depths[element] = self.depth
                    entry[element] = output
        elif self.infeed or self.insource:
            context = self._get_context()
            if element == "description":
                element = "subtitle"
            context[element] = output
            if element == "link":
                output = _AMP_ENTITY.sub(r"&\1", output)
                context[element] = output
                context["links"][-1]["href"] = output
        return output

    # -- structure --------------------------------------------------------------------------------
    def start_rss(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self.depth != 1:
            raise _Decline("nested <rss>")
        self.root = "rss"
        if not self.version or not self.version.startswith("rss"):
            given = attrs.get("version", "")
            self.version = _RSS_VERSIONS.get(given) or ("rss20" if given.startswith("2.") else "rss")

    def start_channel(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self.root != "rss" or self.depth != 2 or self.infeed or "lastmod" in attrs or "href" in attrs:
            raise _Decline("unexpected <channel>")
        self.infeed = 1

    def start_feed(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self.depth != 1:
            raise _Decline("nested <feed>")
        self.root = "feed"
        self.infeed = 1
        if not self.version:
            self.version = "atom"

    def end_feed(self, node: Any, name: str) -> None:
        self.infeed = 0

    def start_item(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        expected = 3 if self.root == "rss" else 2
        if self.depth != expected or not self.infeed or self.inentry or self.inimage or self.intextinput:
            raise _Decline("entry outside the channel")
        if "rdf:about" in attrs or "lastmod" in attrs or "href" in attrs:
            raise _Decline("entry attributes")
        self.entries.append({})
        self._depths.append({})
        self.inentry = 1
        self.guidislink = False
        self.title_depth = -1

    def end_item(self, node: Any, name: str) -> None:
        self.inentry = 0
        self.has_content = 0

    def start_image(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self.inentry or self.inimage or self.intextinput or self.insource:
            raise _Decline("<image> inside an entry")
        self._get_context().setdefault("image", {})
        self.inimage = 1
        self.title_depth = -1

    def end_image(self, node: Any, name: str) -> None:
        self.inimage = 0

    def start_textinput(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self.inentry or self.inimage or self.intextinput or self.insource:
            raise _Decline("<textInput> inside an entry")
        self._get_context().setdefault("textinput", {})
        self.intextinput = 1
        self.title_depth = -1

    def end_textinput(self, node: Any, name: str) -> None:
        self.intextinput = 0

    # -- title, link, id --------------------------------------------------------------------------
    def start_title(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self._push_content(node, attrs, "text/plain", bool(self.infeed or self.inentry or self.insource))

    def end_title(self, node: Any, name: str) -> None:
        keep = self.title_depth
        value = self._pop_content("title", node)
        if value:
            self.title_depth = self.depth
        if name == "media_title":
            self.title_depth = keep

    def start_link(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if attrs["rel"] == "self" else "text/html")
        context = self._get_context()
        attrs = self._enforce_href(attrs)
        if "href" in attrs and ":///" in attrs["href"]:
            attrs["href"] = _urljoin("", attrs["href"])
        context.setdefault("links", [])
        if not (self.inentry and self.inimage):
            context["links"].append(dict(attrs))
        self._leaf_text(node)
        self.link_text = "href" not in attrs  # else there is nothing to pop at the end
        if not self.link_text:
            if attrs.get("rel") == "alternate" and self._map_type(attrs.get("type")) in _HTML_TYPES:
                context["link"] = attrs["href"]
        self.expecting = bool(self.infeed or self.inentry or self.insource)

    def end_link(self, node: Any, name: str) -> None:
        if self.link_text:
            self._pop("link", node.text or "", self.expecting)

    def start_guid(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self._leaf_text(node)
        self.guidislink = attrs.get("ispermalink", "true") == "true"

    def end_guid(self, node: Any, name: str) -> None:
        value = self._pop("id", node.text or "")
        self._save("guidislink", self.guidislink and "link" not in self._get_context())
        if self.guidislink:
            self._save("link", value)

    # -- description, summary, content --------------------------------------------------------------
    def _to_content(self) -> bool:
        return "summary" in self._get_context() and not self.has_content

    def start_description(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self._to_content():
            self.summary_key = "content"
            self.start_content(node, name, attrs)
        else:
            self._push_content(node, attrs, "text/html", bool(self.infeed or self.inentry or self.insource))

    def end_description(self, node: Any, name: str) -> None:
        if self.summary_key == "content":
            self.end_content(node, name)
        else:
            self._pop_content("description", node)
        self.summary_key = None

    def start_summary(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self._to_content():
            self.summary_key = "content"
            self.start_content(node, name, attrs)
        else:
            self.summary_key = "summary"
            self._push_content(node, attrs, "text/plain", True)

    def end_summary(self, node: Any, name: str) -> None:
        if self.summary_key == "content":
            self.end_content(node, name)
        else:
            self._pop_content(self.summary_key or "summary", node)
        self.summary_key = None

    def start_content(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self.has_content = 1
        self._push_content(node, attrs, "text/plain", True)

    def start_content_encoded(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self.has_content = 1
        self._push_content(node, attrs, "text/html", True)

    def end_content(self, node: Any, name: str) -> None:
        copy_to_summary = self.ctype in ("text/plain", "text/html")
        value = self._pop_content("content", node)
        if copy_to_summary:
            self._save("summary", value)

    # -- dates ------------------------------------------------------------------------------------
    def start_leaf(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self._leaf_text(node)

    def _date(self, value: str) -> time.struct_time | None:
        if not self.inentry:
            return None  # the feed's own dates are not read
        if value not in self._dates:
            self._dates[value] = _parse_date(value)
        return self._dates[value]

    def end_published(self, node: Any, name: str) -> None:
        value = self._pop("published", node.text or "")
        self._save("published_parsed", self._date(value), overwrite=True)

    def end_updated(self, node: Any, name: str) -> None:
        value = self._pop("updated", node.text or "")
        self._save("updated_parsed", self._date(value), overwrite=True)

    # -- categories -------------------------------------------------------------------------------
    def start_category(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self._leaf_text(node)
        if name == "itunes_category":
            self._add_tag(attrs.get("text"), "http://www.itunes.com/", None)
            return
        if name == "media_category":
            attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
        self._add_tag(attrs.get("term"), attrs.get("scheme", attrs.get("domain")), attrs.get("label"))

    def end_category(self, node: Any, name: str) -> None:
        value = self._pop("category", node.text or "")
        if not value:
            return
        tags = self._get_context()["tags"]
        if tags and not tags[-1]["term"]:
            tags[-1]["term"] = value
        else:
            self._add_tag(value, None, None)

    def end_keywords(self, node: Any, name: str) -> None:
        value = self._pop(name, node.text or "")
        scheme = "http://www.itunes.com/" if name == "itunes_keywords" else None
        for term in value.split(","):
            if term.strip():
                self._add_tag(term.strip(), scheme, None)

    # -- authors ----------------------------------------------------------------------------------
    def start_author(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self.inauthor or self.inpublisher:
            raise _Decline("nested authors")
        self.inauthor = 1
        self._get_context().setdefault("authors", []).append(FeedParserDict())

    def end_author(self, node: Any, name: str) -> None:
        own = (node.text or "") + "".join(child.tail or "" for child in node)
        if len(node) and own.strip():
            raise _Decline("author with text and children")
        self._pop("author", own)
        self.inauthor = 0
        self._sync_author_detail()

    def end_name(self, node: Any, name: str) -> None:
        value = (node.text or "").strip()
        if self.inpublisher:
            self._save_author("name", value, "publisher")
        elif self.inauthor:
            self._save_author("name", value)
        elif self.intextinput:
            self._get_context()["name"] = value

    def end_email(self, node: Any, name: str) -> None:
        value = (node.text or "").strip()
        if self.inpublisher:
            self._save_author("email", value, "publisher")
        elif self.inauthor:
            self._save_author("email", value)

    def end_url(self, node: Any, name: str) -> None:
        value = self._pop("href", node.text or "")
        if self.inauthor:
            self._save_author("href", value)

    def start_publisher(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self._leaf_text(node)  # <webMaster>, <dc:publisher>: only the feed's publisher fields

    def start_owner(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        if self.inauthor or self.inpublisher:
            raise _Decline("nested authors")
        self.inpublisher = 1

    def end_owner(self, node: Any, name: str) -> None:
        self.inpublisher = 0

    # -- the rest ---------------------------------------------------------------------------------
    def start_source(self, node: Any, name: str, attrs: dict[str, str]) -> None:
        self._leaf_text(node)  # RSS <source url="...">Name</source>; Atom's <source> has children
        self.title_depth = -1

    def _unknown_start(self, node: Any, name: str, attrs: dict[str, str]) -> tuple[Any, Any] | None:
        """An element feedparser has no handler for: stored under its own name, which matters only
        for <ttl> (feed) and <feedburner:origLink> (entry)."""
        key = _KEYMAP.get(name, name)
        if isinstance(key, list):
            key = key[0]
        if key in _PROTECTED:
            raise _Decline(f"element {name} would set {key}")
        if name not in ("ttl", "feedburner_origlink"):
            return None
        if attrs:
            self._get_context()[name] = attrs
            return None
        self._leaf_text(node)
        return (None, _Walker.end_stored)

    def end_stored(self, node: Any, name: str) -> None:
        self._pop(name, node.text or "")


_H = _Walker
_HANDLERS: dict[str, tuple[Any, Any]] = {
    "rss": (_H.start_rss, None),
    "channel": (_H.start_channel, _H.end_feed),
    "feed": (_H.start_feed, _H.end_feed),
    "item": (_H.start_item, _H.end_item),
    "entry": (_H.start_item, _H.end_item),
    "image": (_H.start_image, _H.end_image),
    "textinput": (_H.start_textinput, _H.end_textinput),
    "title": (_H.start_title, _H.end_title),
    "dc_title": (_H.start_title, _H.end_title),
    "media_title": (_H.start_title, _H.end_title),
    "link": (_H.start_link, _H.end_link),
    "guid": (_H.start_guid, _H.end_guid),
    "id": (_H.start_guid, _H.end_guid),
    "description": (_H.start_description, _H.end_description),
    "dc_description": (_H.start_description, _H.end_description),
    "media_description": (_H.start_description, _H.end_description),
    "summary": (_H.start_summary, _H.end_summary),
    "itunes_summary": (_H.start_summary, _H.end_summary),
    "content": (_H.start_content, _H.end_content),
    "content_encoded": (_H.start_content_encoded, _H.end_content),
    "pubdate": (_H.start_leaf, _H.end_published),
    "published": (_H.start_leaf, _H.end_published),
    "issued": (_H.start_leaf, _H.end_published),
    "dcterms_issued": (_H.start_leaf, _H.end_published),
    "updated": (_H.start_leaf, _H.end_updated),
    "modified": (_H.start_leaf, _H.end_updated),
    "lastbuilddate": (_H.start_leaf, _H.end_updated),
    "dc_date": (_H.start_leaf, _H.end_updated),
    "dcterms_modified": (_H.start_leaf, _H.end_updated),
    "category": (_H.start_category, _H.end_category),
    "dc_subject": (_H.start_category, _H.end_category),
    "keywords": (_H.start_category, _H.end_category),
    "media_category": (_H.start_category, _H.end_category),
    "itunes_category": (_H.start_category, _H.end_category),
    "media_keywords": (_H.start_leaf, _H.end_keywords),
    "itunes_keywords": (_H.start_leaf, _H.end_keywords),
    "author": (_H.start_author, _H.end_author),
    "managingeditor": (_H.start_author, _H.end_author),
    "dc_author": (_H.start_author, _H.end_author),
    "dc_creator": (_H.start_author, _H.end_author),
    "itunes_author": (_H.start_author, _H.end_author),
    "name": (_H.start_leaf, _H.end_name),
    "itunes_name": (_H.start_leaf, _H.end_name),
    "email": (_H.start_leaf, _H.end_email),
    "itunes_email": (_H.start_leaf, _H.end_email),
    "url": (_H.start_leaf, _H.end_url),
    "uri": (_H.start_leaf, _H.end_url),
    "homepage": (_H.start_leaf, _H.end_url),
    "webmaster": (_H.start_publisher, None),
    "dc_publisher": (_H.start_publisher, None),
    "itunes_owner": (_H.start_owner, _H.end_owner),
    "source": (_H.start_source, None),
}

# --------------------------------------------------------------------------- entry points

_local = threading.local()


def _xml_parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers must not be shared between threads)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
                                 remove_comments=True, remove_pis=True, collect_ids=False)
        _local.parser = parser
    return parser


# anywhere, even in text: a false alarm only sends the feed to feedparser
_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_fast(body: bytes, *, url: str, content_type: str | None) -> ParsedFeed | None:
    """The `ParsedFeed` feedparser would give for ``body`` (``parser="fast"``), or None when this
    module is not sure to reproduce it (feedparser must parse it then). Pure and CPU-bound.

    ``url`` is not used to parse, as with feedparser (`bot.normalise` resolves relative links);
    it is in the signature so that both parsers are called alike."""
    try:
        return _parse(body, content_type)
    except _Decline:
        return None


def _parse(body: bytes, content_type: str | None) -> ParsedFeed | None:
    if not body or not body.strip():
        return None
    headers = {"content-type": content_type} if content_type else {}
    result: dict[str, Any] = {}
    data = convert_to_utf8(headers, body, result)
    if not result.get("encoding") or not isinstance(data, bytes):
        return None  # feedparser would use its loose (non-XML) parser
    if _DECLARATION.search(data):
        return None  # DOCTYPE / ENTITY declarations: feedparser rewrites them; never give them to lxml
    parser = _xml_parser()
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError):
        return None
    if root is None or len(parser.error_log) or root.getroottree().docinfo.doctype:
        return None
    walker = _Walker()
    walker.walk(root)
    if walker.version not in _ACCEPTED_VERSIONS or (walker.root == "feed") != (walker.version == "atom10"):
        return None
    is_rss = walker.version.startswith("rss")
    for entry in walker.entries:
        parts = [p for p in entry.get("content") or () if p.get("value")
                 and (not is_rss or p.get("type") in _HTML_TYPES)]
        if len(parts) > 1:
            return None  # RawEntry keeps the longest, and sanitising changes lengths
    bozo = result.get("bozo_exception") if result.get("bozo") else None
    return build_parsed_feed(walker.feeddata, walker.entries, version=walker.version, bozo=bozo,
                             content_type=content_type, parser="fast")


# --------------------------------------------------------------------------- differential check


def differences(body: bytes, *, url: str, content_type: str | None = None) -> list[str]:
    """What the bot would see differently if ``body`` went through the fast path rather than
    feedparser (see `compare_parsed`). Empty when both agree, or when the fast path declines
    ``body`` (feedparser parses it anyway). Side-effect free; costs one parse with each parser
    plus normalising every entry twice."""
    try:
        fast = parse_fast(body, url=url, content_type=content_type)
    except Exception as error:  # parse_feed would fall back to feedparser; still a bug to report
        return [f"fast path failed: {type(error).__name__}: {error}"]
    if fast is None:
        return []
    try:
        reference = parse_with_feedparser(body, url=url, content_type=content_type)
    except ValueError as error:
        return [f"feedparser refuses what the fast path accepts: {error}"]
    return compare_parsed(fast, reference, url=url)


def compare_parsed(fast: ParsedFeed, reference: ParsedFeed, *, url: str) -> list[str]:
    """Human-readable differences between two parses of one feed, at the level the bot uses them:
    feed title, link, ttl, version and warning, the entry count, and per entry the guid
    (`entry_guid`), the raw id, link, dates, tags and author, and the normalised `Item` (guid, URLs,
    title, text, date, categories, author) with its origin hint. HTML is compared as the text the
    bot derives from it, not byte for byte: feedparser sanitises it, the fast path does not."""
    from bot.normalise import entry_guid, normalise_with_origin

    out: list[str] = []
    for field in ("title", "link", "ttl", "version", "warning"):
        _compare(out, f"feed {field}", getattr(fast, field), getattr(reference, field))
    _compare(out, "entry count", len(fast.entries), len(reference.entries))
    now = datetime.now(UTC)
    for i, (a, b) in enumerate(zip(fast.entries, reference.entries, strict=False)):
        _compare(out, f"entry {i} guid", entry_guid(a, url), entry_guid(b, url))
        for field in ("id", "link", "published", "published_raw", "updated", "updated_raw", "tags", "author"):
            _compare(out, f"entry {i} raw {field}", getattr(a, field), getattr(b, field))
        got = normalise_with_origin(a, source_name="", feed_url=url, now=now)
        want = normalise_with_origin(b, source_name="", feed_url=url, now=now)
        if got is None or want is None:
            _compare(out, f"entry {i} item", got, want)
            continue
        for field in ("guid", "url", "original_url", "title", "text", "published", "categories", "author"):
            _compare(out, f"entry {i} {field}", getattr(got[0], field), getattr(want[0], field))
        _compare(out, f"entry {i} origin", got[1], want[1])
    return out


def _compare(out: list[str], what: str, fast: object, reference: object) -> None:
    if fast != reference:
        out.append(f"{what}: fast={_short(fast)} feedparser={_short(reference)}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."

