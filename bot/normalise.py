"""Normalise stage: `RawEntry` -> `Item` (canonical URL, clean text, UTC date).

Public helpers, each usable on its own:

- `canonical_url(url)`: the URL two outlets' links are compared by: lowercase scheme and
  host, no default port, no fragment, no tracking parameters, AMP forms mapped to the article.
- `html_to_text(html)`: readable plain text from feed HTML (lxml): block elements become
  paragraph breaks, ``<br>`` a line break, entities decoded, whitespace collapsed; scripts,
  styles, iframes, figure captions and ad/newsletter/related boxes dropped.
- `strip_boilerplate(text)`: removes lines (and trailing sentences) that are not the article:
  "Advertisement", "Continue reading...", syndication footers, photo/video captions and
  credits, copyright lines, newsletter pitches, Reddit's "submitted by ... [link] [comments]".
- `origin_hint(text)`: the outlet a text says it comes from ("This article originally appeared
  in the South China Morning Post" -> "South China Morning Post"; "LONDON (Reuters) - ..." ->
  "Reuters"). Call it on the text *before* `strip_boilerplate`, which removes such footers:
  ``origin_hint(html_to_text(raw_html))``; `normalise_with_origin` does this for an entry.

Everything here treats feed text as untrusted: sizes are bounded, only http(s) links are kept.
"""

from __future__ import annotations

import hashlib
import html
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_tz
from typing import Any
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

from lxml import etree

from bot.models import Item
from bot.parse import RawEntry

__all__ = [
    "canonical_url",
    "html_to_text",
    "normalise_entry",
    "normalise_with_origin",
    "origin_hint",
    "parse_date_text",
    "strip_boilerplate",
]

MAX_TITLE_CHARS = 400
MAX_TEXT_CHARS = 20_000
MAX_MARKUP_CHARS = 300_000  # raw HTML looked at per field; longer bodies are truncated first
MAX_GUID_CHARS = 500
MAX_CATEGORIES = 20
MAX_CATEGORY_CHARS = 100
FUTURE_TOLERANCE = timedelta(days=1)
EARLIEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=UTC)

# --------------------------------------------------------------------------- canonical URLs

_TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "yclid", "twclid", "ttclid", "igshid", "li_fat_id",
    "mc_cid", "mc_eid", "guccounter", "guce_referrer", "guce_referrer_sig", "_ga", "_gl", "_hsenc",
    "_hsmi", "hsctatracking", "mkt_tok", "ref_src", "ref_url", "cmpid", "cmp", "ocid", "spm",
    "sr_share", "smid", "smtyp", "s_cid", "xtor", "ito", "wt_mc", "wt_zmc", "soc_src", "soc_trk",
    "vero_id", "rb_clickid", "__twitter_impression", "oly_anon_id", "oly_enc_id", "ncid", "ns_mchannel",
    "ns_source", "ns_campaign", "ns_linkname", "ns_fee", "fsrc",
})
_TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_", "hsa_", "wt.", "ga_")
# Parameters that only say "you came from a feed": dropped when their value says so.
_FEED_MARKER_PARAMS = frozenset({"rss", "from", "source", "src", "ref", "feed", "via", "partner"})
_FEED_MARKER_VALUES = frozenset({"1", "true", "rss", "rss2", "feed", "feeds", "atom", "rdf", "rssfeed",
                                 "feedburner", "newsfeed"})
_AMP_QUERY_VALUES = frozenset({"", "1", "true", "yes"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def canonical_url(url: str) -> str:
    """Canonical form of an absolute http(s) URL; other input comes back stripped, unchanged.

    Scheme and host lowercased, credentials and default port dropped, fragment dropped (except
    ``#!`` routes), tracking parameters removed, remaining parameters kept verbatim but sorted
    by name, AMP forms (``/amp/``, ``.amp``, ``?amp=1``, ``amp.`` host, ``outputType=amp``,
    Google's AMP cache and viewer) mapped to the article URL.
    """
    url = url.strip()
    try:
        scheme, hostname, port, path, query, fragment = _url_parts(url)
    except ValueError:
        return url
    if scheme not in _DEFAULT_PORTS or not hostname:
        return url
    host = hostname.lower().rstrip(".")
    path = path or "/"

    # Google's AMP cache and viewer wrap the publisher's URL.
    if host.endswith(".cdn.ampproject.org"):
        for prefix, inner_scheme in (("/c/s/", "https://"), ("/v/s/", "https://"), ("/c/", "http://"),
                                     ("/v/", "http://")):
            if path.startswith(prefix) and len(path) > len(prefix):
                return canonical_url(inner_scheme + path[len(prefix):] + (f"?{query}" if query else ""))
    if host in ("www.google.com", "google.com") and path.startswith("/amp/"):
        rest = path[len("/amp/"):]
        prefix = "https://"
        if rest.startswith("s/"):
            rest = rest[2:]
        elif rest.startswith(("http://", "https://")):
            prefix = ""
        if rest:
            return canonical_url(prefix + rest + (f"?{query}" if query else ""))

    if host.startswith("amp.") and host.count(".") >= 2:
        host = host[len("amp."):]
    netloc = host if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]" if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"[{host}]:{port}"

    path = _strip_amp_path(path)
    query = _clean_query(query) if query else ""
    fragment = fragment if fragment.startswith("!") else ""  # keep #! routes
    if not netloc:  # a host of dots only
        return urlunsplit((scheme, netloc, path, query, fragment))
    # What urlunsplit gives when there is a host and the path starts with "/" (as it does here).
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")


def _url_parts(url: str) -> tuple[str, str | None, int | None, str, str, str]:
    """(scheme lowercased, hostname, port, path, query, fragment) as `urlsplit` gives them,
    raising ValueError where it or its ``port`` does; without urlsplit for a plain URL."""
    netloc = _plain_netloc(url)
    if netloc is None:
        parts = urlsplit(url)
        return parts.scheme.lower(), parts.hostname, parts.port, parts.path, parts.query, parts.fragment
    scheme, _, rest = url.partition("://")
    rest = rest[len(netloc):]
    rest, _, fragment = rest.partition("#")
    path, _, query = rest.partition("?")
    host, _, port_text = netloc.partition(":")
    port = None
    if port_text:  # what SplitResult.port accepts
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"bad port {port_text!r}")
        port = int(port_text)
    return scheme, host.lower() or None, port, path, query, fragment


_NETLOC_END = re.compile(r"[/?#]")
_NOT_PLAIN_NETLOC = re.compile(r"[@%\[\]]")


def _plain_netloc(url: str) -> str | None:
    """The netloc of an http(s) URL that `urlsplit` takes apart without any of its special cases:
    lowercase scheme, no tab or line break, an ASCII netloc without credentials, brackets or "%"
    (so its hostname is the part before any ":"); None for any other URL."""
    if url.startswith("https://"):
        start = 8
    elif url.startswith("http://"):
        start = 7
    else:
        return None
    end = _NETLOC_END.search(url, start)
    netloc = url[start:end.start()] if end else url[start:]
    if (not netloc or not netloc.isascii() or _NOT_PLAIN_NETLOC.search(netloc)
            or "\t" in url or "\r" in url or "\n" in url):
        return None
    return netloc


def _strip_amp_path(path: str) -> str:
    if "amp" not in path.lower():
        return path
    segments = path.split("/")
    kept = [s for s in segments[1:] if s.lower() != "amp"]
    if len(kept) != len(segments) - 1:
        path = "/" + "/".join(kept)
        if path != "/" and segments[-1].lower() == "amp":
            path = path.rstrip("/") + "/"
        path = path.replace("//", "/")
    lowered = path.lower()
    if lowered.endswith(".amp"):
        path = path[: -len(".amp")]
    elif ".amp." in lowered:  # /story.amp.html
        index = lowered.rfind(".amp.")
        path = path[:index] + path[index + len(".amp"):]
    return path or "/"


def _clean_query(query: str) -> str:
    """Drop tracking parameters; keep the others byte for byte, sorted by name."""
    kept: list[tuple[str, str]] = []
    for pair in query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        # unquote_plus changes nothing without "%" or "+"; most parameters have neither.
        key = (unquote_plus(raw_key) if "%" in raw_key or "+" in raw_key else raw_key).lower()
        value = (unquote_plus(raw_value) if "%" in raw_value or "+" in raw_value else raw_value).lower()
        if key in _TRACKING_PARAMS or key.startswith(_TRACKING_PREFIXES):
            continue
        if key == "amp" and value in _AMP_QUERY_VALUES:
            continue
        if key == "outputtype" and value == "amp":
            continue
        if key in _FEED_MARKER_PARAMS and value in _FEED_MARKER_VALUES:
            continue
        kept.append((key, pair))
    kept.sort(key=lambda kv: kv[0])  # stable: repeated keys keep their order
    return "&".join(pair for _, pair in kept)


# --------------------------------------------------------------------------- HTML to text

_PARSER = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True, encoding="utf-8")
_DROP_TAGS = (
    "script", "style", "iframe", "noscript", "template", "svg", "math", "object", "embed", "applet",
    "form", "button", "select", "textarea", "input", "video", "audio", "canvas", "figcaption", "head",
    "nav", "aside", "footer", "map",
)
_DROP = frozenset(_DROP_TAGS)
_BLOCK_TAGS = frozenset({
    "p", "div", "section", "article", "header", "main", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
    "li", "dl", "dt", "dd", "blockquote", "pre", "table", "tr", "thead", "tbody", "tfoot", "hr", "figure",
    "address", "center", "details", "summary", "caption", "body", "html", "fieldset", "legend",
})
_CELL_TAGS = frozenset({"td", "th"})
# class/id tokens of boxes that are not the article (ads, captions, promos, share bars).
_NOISE_CLASS_TOKENS = frozenset({
    "ad", "ads", "advert", "advertisement", "ad-container", "ad-slot", "adsbygoogle", "sponsored",
    "caption", "wp-caption-text", "image-caption", "img-caption", "photo-caption", "media-caption",
    "credit", "image-credit", "photo-credit", "newsletter", "newsletter-signup", "related",
    "related-posts", "related-articles", "share", "sharing", "social", "social-share", "promo",
    "sharedaddy", "jp-relatedposts", "subscribe", "signup",
})
_BREAK = "\x00"  # paragraph break marker while assembling
_LINE = "\x01"  # line break marker
# What an element adds before its text and after its content: (opening, closing) markers.
_MARKS = {tag: (_BREAK, _BREAK) for tag in _BLOCK_TAGS} | {tag: (" ", " ") for tag in _CELL_TAGS}
_MARKS["br"] = (_LINE, "")
_NO_MARKS = ("", "")
_MAX_WALK_DEPTH = 300  # deeper trees (libxml2 stops at 255 today) take the iterative walk
# Invisible characters, removed before parsing; the markers cannot come from the feed either.
_INVISIBLE_ASCII = "".join(map(chr, (*range(0x02, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)))
_INVISIBLE_OTHER = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_INVISIBLE = re.compile(f"[{re.escape(_INVISIBLE_ASCII + _INVISIBLE_OTHER)}]")
_INVISIBLE_BYTES = (_BREAK + _LINE + _INVISIBLE_ASCII).encode("ascii")
_INVISIBLE_OTHER_CHARS = tuple(_INVISIBLE_OTHER)
_INVISIBLE_UTF8 = tuple(ch.encode("utf-8") for ch in _INVISIBLE_OTHER)
_MARKER_RUN = re.compile(r"([\x00\x01][\x00\x01\s]*)")  # markers with the whitespace around them
_PARAGRAPH_GAP = re.compile(r"\n\s*\n")
_TAG_LIKE = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*[\s/>]|/[a-zA-Z]|!--)")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")


def html_to_text(markup: str) -> str:
    """Plain text from an HTML fragment or document (also fine on plain text).

    Paragraphs are separated by a blank line, ``<br>`` gives a single newline, all other
    whitespace collapses to single spaces. Markup that arrives entity-escaped and nothing else
    (``&lt;p&gt;Hello&lt;/p&gt;``, a common feed bug) is decoded and converted too; escaped
    markup inside real markup is content (a code sample) and stays as text.
    """
    if not markup:
        return ""
    if "<" in markup and _TAG_LIKE.search(markup):
        return _markup_to_text(markup)
    if "&" not in markup:
        return _plain_to_text(markup)
    text = html.unescape(markup)
    if "<" in text and _TAG_LIKE.search(text):
        return _markup_to_text(text)
    if "&" in text and _ENTITY.search(text):  # double-escaped: "AT&amp;amp;T"
        text = html.unescape(text)
    return _plain_to_text(text)


def _squash(text: str) -> str:
    """Whitespace runs as single spaces, none at either end (``" ".join(text.split())``)."""
    if text.isprintable():  # then " " is its only whitespace character
        while "  " in text:
            text = text.replace("  ", " ")
        return text.strip()
    return " ".join(text.split())


def _plain_to_text(text: str) -> str:
    if text.isprintable():  # no line breaks, markers or invisible characters
        return _squash(text)
    text = _INVISIBLE.sub("", text.replace(_BREAK, "").replace(_LINE, ""))
    if "\n" not in text:
        return _squash(text)
    paragraphs = (_squash(p) for p in _PARAGRAPH_GAP.split(text))
    return "\n\n".join(p for p in paragraphs if p)


def _markup_to_text(markup: str) -> str:
    # Invisible characters go before parsing (they can hide a tag name); as UTF-8 bytes that is
    # a byte deletion plus a replace for the few non-ASCII ones (UTF-8 cannot match mid-character).
    data = markup.encode("utf-8", "replace").translate(None, _INVISIBLE_BYTES)
    if not markup.isascii() and _has_any(markup, _INVISIBLE_OTHER_CHARS):
        for sequence in _INVISIBLE_UTF8:
            data = data.replace(sequence, b"")
    try:
        root = etree.HTML(data, _PARSER)
    except (etree.ParserError, ValueError):
        return _plain_to_text(markup)
    if root is None:
        return ""
    pieces: list[str] = []
    try:
        _walk(root, pieces.append, 0)
    except _UnusualTree:
        pieces = _walk_iteratively(root)
    return _assemble("".join(pieces))


class _UnusualTree(Exception):
    """A node `_walk` does not handle (not an element) or a tree too deep to recurse into."""


def _walk(element: Any, append: Callable[[str], object], depth: int) -> None:
    """Append the text of ``element`` (not its tail) with break markers: block elements open and
    close with a paragraph break, ``<br>`` is a line break, table cells are spaced; dropped
    elements (scripts, captions, ...) lose their content but keep their tail; noise boxes
    (`_is_noise`) keep only their closing marker. `_walk_iteratively` is the same walk for trees
    this one refuses (`_UnusualTree`)."""
    opening, closing = _MARKS.get(element.tag, _NO_MARKS)
    keys = element.keys()
    if keys and ("class" in keys or "id" in keys) and _is_noise(element):
        if closing:
            append(closing)
        return
    if opening:
        append(opening)
    text = element.text
    if text:
        append(text)
    if depth >= _MAX_WALK_DEPTH:
        raise _UnusualTree
    for child in element:
        tag = child.tag
        if tag.__class__ is not str:
            raise _UnusualTree
        if tag not in _DROP:
            _walk(child, append, depth + 1)
        tail = child.tail
        if tail:
            append(tail)
    if closing:
        append(closing)


def _walk_iteratively(root: Any) -> list[str]:
    """`_walk` for any tree, without recursion (modifies the tree: drops `_DROP_TAGS`)."""
    etree.strip_elements(root, *_DROP_TAGS, with_tail=False)
    pieces: list[str] = []
    append = pieces.append
    walker = etree.iterwalk(root, events=("start", "end"))
    for event, element in walker:
        tag = element.tag
        if not isinstance(tag, str):
            continue
        opening, closing = _MARKS.get(tag, _NO_MARKS)
        if event == "start":
            if _is_noise(element):
                walker.skip_subtree()
                continue
            if opening:
                append(opening)
            if element.text:
                append(element.text)
        else:
            if closing:
                append(closing)
            if element.tail:
                append(element.tail)
    return pieces


def _assemble(joined: str) -> str:
    """Text with break markers -> paragraphs ("\\n\\n" for a run of markers holding a paragraph
    break or two line breaks, else "\\n"), whitespace squashed, none around the breaks."""
    if _LINE not in joined:  # only paragraph breaks: split at each, drop the empty paragraphs
        return "\n\n".join([_squash(p) for p in joined.split(_BREAK) if p and not p.isspace()])
    parts = _MARKER_RUN.split(joined)  # text, run, text, run, ..., text
    parts[0::2] = [_squash(p) for p in parts[0::2]]
    parts[1::2] = ["\n\n" if _BREAK in run or run.count(_LINE) > 1 else "\n" for run in parts[1::2]]
    return "".join(parts).strip()


def _is_noise(element: Any) -> bool:
    classes = element.get("class")
    ident = element.get("id")
    if not classes and not ident:
        return False
    tokens = f"{classes or ''} {ident or ''}".lower().split()
    return any(token in _NOISE_CLASS_TOKENS for token in tokens)


# --------------------------------------------------------------------------- boilerplate

_BOILERPLATE_LINES = (
    # ads and "continue" links
    r"advertisement|advertising|ad|sponsored(?: content)?|paid (?:content|post)|skip (?:advertisement|ad)",
    r"(?:story|article) continues below(?: (?:this )?advertisement)?|scroll to continue(?: with content)?",
    r"continue reading\b.*|read more\b.*|(?:click|tap) here\b.*",
    r"(?:read|see|view) (?:the )?(?:full|whole|original) (?:article|story|post)\b.*",
    r"more on this story|(?:most|more) (?:read|popular)",
    # syndication footers
    r"the post .+ appeared first on .+",
    r"(?:this|the above) (?:article|story|piece|post|report|content|column|essay|interview)"
    r" (?:was |is |has been |had been )?(?:originally |first )"
    r"(?:appeared|published|posted|ran|run|featured)\b.*",
    r"originally (?:published|appeared|posted) (?:in|on|at|by)\b.*",
    r"(?:this (?:article|story|piece) (?:is|was) )?(?:republished|reprinted)"
    r" (?:from|with permission|courtesy)\b.*",
    # photo / video captions and credits
    r"(?:image|photo|picture|video|media|audio) (?:caption|source|credit)s?\b.*",
    r"(?:photo|image|picture|video|photograph|illustration|graphic|gallery|pictured|caption)s? ?[:|] .*",
    r"\(?(?:photo|image|picture|video|photograph|illustration|graphic)s? (?:by|credit|courtesy|source)\b.*",
    r"\((?:ap|afp|epa|reuters|getty|bloomberg)\b[^)]*(?:photo|images?|via|file)\b[^)]*\)",
    r"(?:getty images|ap photo|afp photo|epa|shutterstock|reuters/[^,]*)(?: ?/ ?.*)?",
    r"watch ?[:|] .*|listen ?[:|] .*",
    # copyright, newsletters, related links, social
    r"(?:©|\(c\) ?\d|copyright:? ?(?:©|\(c\))? ?(?:\d{4}|©|\(c\))).*",  # and _RIGHTS_RESERVED
    r"(?:sign up|subscribe|register)\b.{0,120}\bnewsletters?\b.*",
    r"(?:get|join) (?:our|the)\b.{0,80}\bnewsletters?\b.*",
    r"related(?: (?:articles?|stories|content|coverage|links|reading|posts?|news|videos?))? ?:.*",
    r"related (?:articles|stories|coverage|content)",
    r"(?:follow|like) us on\b.*|share (?:this|on|via)\b.*",
    # Reddit's footer, wire credits, podcast hosts' notices, lone ellipses
    r"submitted by\b.*|(?:\[[^\]\n]{1,40}\] ?)+",
    r"\(?(?:reporting|writing|editing|additional reporting|compiled) by\b.*",
    r"see omnystudio\.com/listener for privacy information\.?",
    r"\[?(?:…|\.\.\.)\]?",
)
_LINE_END = r"[\s.!…:»›→>-]*"
_BOILERPLATE_LINE = re.compile("(?:" + "|".join(_BOILERPLATE_LINES) + ")" + _LINE_END, re.IGNORECASE)
# The same, case-sensitive, for the lowercased line: several times faster, and the same answer
# unless the line holds one of the three characters that IGNORECASE equates with an ASCII letter
# while ``str.lower`` does not ("İ", "ı" ~ "i"; "ſ" ~ "s"). tests/test_normalise.py checks this.
_BOILERPLATE_LOWERED = re.compile(_BOILERPLATE_LINE.pattern)
_CASE_SPECIALS = ("\u0130", "\u0131", "\u017f")
# One more boilerplate line: anything ending in "All rights reserved." (a search from the phrase, and
# only on lines holding "all r": far cheaper than a fullmatch that backtracks over every line).
_RIGHTS_RESERVED = re.compile(r"\ball rights reserved\.?" + _LINE_END + r"\Z", re.IGNORECASE)
_MAX_BOILERPLATE_LINE = 300
# A syndication footer glued to the end of a paragraph.
_TRAILING_FOOTER = re.compile(
    r"(?<=[.!?…\"”’)\]])\s+(?:"
    r"the post .{1,300}? appeared first on .{1,200}"
    r"|(?:this|the) (?:article|story|piece|post) (?:was |is )?(?:originally|first)"
    r" (?:appeared|published|posted|ran)\b.{0,300}"
    r"|originally (?:published|appeared) (?:in|on|at|by)\b.{0,300}"
    r"|(?:this (?:article|story|piece) (?:is|was) )?(?:republished|reprinted) (?:from|with permission)\b.{0,300}"
    r"|see omnystudio\.com/listener for privacy information\."
    r")$",
    re.IGNORECASE,
)
# A "read more" link or "[…]" glued to the end of a paragraph.
_TRAILING_LINK = re.compile(
    r"\s*(?:\[(?:…|\.\.\.)\]"
    r"|\[?(?:continue reading|read more|read the full (?:story|article))\b[^\n]{0,40}?\]?)"
    r"[\s.…»›→>]*$",
    re.IGNORECASE,
)
_INLINE_CREDIT = re.compile(
    r"\s*\((?:photo|image|picture|video)s? ?(?:by|credit|courtesy|:)[^)\n]{0,150}\)", re.IGNORECASE
)
_CREDIT_GATE = re.compile(r"\((?:photo|image|picture|video)", re.IGNORECASE)  # fast: searched from "("
# Cheap substring gates (on the lowercased line), so that the trailing patterns only run on lines
# that may match: the footer words anywhere, a link word in the last 60 characters plus one of the
# link phrases anywhere (each spelt so that IGNORECASE has no other spelling of it; see below).
_FOOTER_WORDS = ("appeared", "published", "omnystudio", "reprinted")
_LINK_WORDS = ("read", "…]", "...]")
_LINK_PHRASES = ("read more", "read the full", "nue read", "…]", "...]")
_INLINE_AD = re.compile(r"\s*\bADVERTISEMENT\b\s*")


def strip_boilerplate(text: str) -> str:
    """Drop lines and trailing bits that are not the article. Line structure is kept."""
    return _strip_boilerplate(text, text.lower()) if text else ""


def _strip_boilerplate(text: str, lowered: str) -> str:
    """`strip_boilerplate`, given ``lowered = text.lower()``: it has the same lines, each
    ``line.lower()`` (``str.lower`` neither makes nor removes line breaks or whitespace)."""
    # Whole-text checks: a step that no line of the text can need is skipped on every line. A line
    # that the inline removals changed may have gained a gate word, so it is checked in full.
    may_ad = "ADVERTISEMENT" in text
    may_credit = "(" in text and _CREDIT_GATE.search(text) is not None
    may_footer = _has_any(lowered, _FOOTER_WORDS)
    may_rights = "all r" in lowered
    lowered_ok = text.isascii() or not _has_any(text, _CASE_SPECIALS)  # then for every line, too
    out: list[str] = []
    for raw_line, raw_low in zip(text.split("\n"), lowered.split("\n"), strict=True):
        line = raw_line.strip()
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        low = raw_low.strip()
        if len(line) <= _MAX_BOILERPLATE_LINE and _is_boilerplate_line(line, low, lowered_ok, may_rights):
            continue
        kept = line
        if may_ad and "ADVERTISEMENT" in kept:
            kept = _INLINE_AD.sub(" ", kept).strip()
        if may_credit and "(" in kept and _CREDIT_GATE.search(kept):
            kept = _INLINE_CREDIT.sub("", kept)
        changed = kept != line
        if changed:
            low = kept.lower()
        if (may_footer or changed) and _has_any(low, _FOOTER_WORDS):
            kept = _TRAILING_FOOTER.sub("", kept)
        if _has_any(low[-60:], _LINK_WORDS) and _has_any(low, _LINK_PHRASES):
            kept = _TRAILING_LINK.sub("", kept).strip()
        if kept == line or (
            kept
            and not (
                len(kept) <= _MAX_BOILERPLATE_LINE
                and _is_boilerplate_line(kept, kept.lower(), lowered_ok, True)
            )
        ):
            out.append(kept)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def _has_any(text: str, words: tuple[str, ...]) -> bool:
    for word in words:
        if word in text:
            return True
    return False


def _is_boilerplate_line(line: str, low: str, lowered_ok: bool, may_rights: bool) -> bool:
    """Is the whole (stripped, single) line boilerplate. ``low`` is ``line.lower()``; ``lowered_ok``:
    the line holds none of `_CASE_SPECIALS`; ``may_rights``: False if the line lacks "all r"."""
    if _BOILERPLATE_LOWERED.fullmatch(low) if lowered_ok else _BOILERPLATE_LINE.fullmatch(line):
        return True
    # "all r" cannot be spelt otherwise under IGNORECASE (unlike "i" and "s": "İ", "ı", "ſ").
    return may_rights and "all r" in low and _RIGHTS_RESERVED.search(line) is not None


# --------------------------------------------------------------------------- origin hints

_NAME = (
    r"(?P<name>[A-Z0-9][\w&'’\-]*(?:\.[a-z]{2,}\b)?"
    r"(?:\s+(?:(?:of|and|the|for|&|de|del|la|le|du|des|di)\s+)?[A-Z][\w&'’\-]*)*)"
)
_DOMAIN = r"(?P<domain>[a-z0-9][\w\-]*(?:\.[a-z0-9][\w\-]*)*\.[a-z]{2,24})"
_ORIGIN_PATTERNS = (
    re.compile(
        r"\b(?i:(?:originally|first) (?:appeared|published|posted|ran|featured)|appeared (?:originally|first)"
        r"|(?:re)?published (?:originally|first))"
        r" (?:in|on|at|by|with)\s+(?:the\s+)?(?:" + _NAME + "|" + _DOMAIN + ")"
    ),
    re.compile(
        r"\b(?i:republished|reprinted|reproduced) (?:here )?"
        r"(?:from|with (?:the )?permission (?:from|of)|courtesy of)"
        r"\s+(?:the\s+)?(?:" + _NAME + "|" + _DOMAIN + ")"
    ),
)
_ORIGIN_GATES = (
    ("originally", "first appeared", "first published", "first posted", "first ran", "first featured",
     "appeared first", "published first"),
    ("republished", "reprinted", "reproduced"),
)
# Fewer, shorter words that each gate word contains: two quick scans before the gate's many.
_ORIGIN_PREFILTERS = (("originally", "first"), ("republ", "repr"))
_DATELINE_CREDIT = re.compile(
    r"^[^\n()]{0,60}?\((?P<name>[A-Z][A-Za-z&.'’]{1,24}(?: [A-Z][A-Za-z&.'’]{1,24}){0,3})\)\s*[-–—]{1,2}\s"
)
_NOT_OUTLETS = frozenset({"photo", "video", "image", "file", "update", "updated", "updates", "watch", "live"})


def origin_hint(text: str) -> str | None:
    """The outlet the text says it originally comes from, if it says so clearly; else None.

    Recognises syndication credits ("This article originally appeared in X", "... first
    appeared on X", "Republished with permission from X", WordPress's "The post ... appeared
    first on X") and wire datelines ("WASHINGTON (Reuters) - ...", "(CNN) —").
    Run it on text before `strip_boilerplate`, which removes these footers.
    """
    return _origin_hint(text, text.lower()) if text else None


def _origin_hint(text: str, low: str) -> str | None:
    """`origin_hint`, given ``low = text.lower()``."""
    for pattern, prefilter, gate in zip(_ORIGIN_PATTERNS, _ORIGIN_PREFILTERS, _ORIGIN_GATES, strict=True):
        if not (prefilter[0] in low or prefilter[1] in low) or not any(word in low for word in gate):
            continue
        for match in pattern.finditer(text):
            name = _clean_outlet(match.group("name") or match.group("domain") or "")
            if name:
                return name
    if "(" not in text:
        return None
    for line in text.split("\n", 8)[:8]:
        if "(" not in line:
            continue
        line = line.strip()
        if line.find("(", 0, 61) < 0:  # the credit's "(" is within the first 61 characters
            continue
        match = _DATELINE_CREDIT.match(line)
        if match:
            name = _clean_outlet(match.group("name"))
            if name:
                return name
    return None


def _clean_outlet(name: str) -> str:
    name = name.strip().rstrip(".'’-&")
    words = name.split()
    while words and words[-1].lower() in ("of", "and", "the", "for", "&", "de", "la"):
        words.pop()
    name = " ".join(words)
    if len(name) < 2 or name.lower() in _NOT_OUTLETS:
        return ""
    return name[:80]


# --------------------------------------------------------------------------- dates

_MONTHS = {
    # English first, then pt, es, de, fr, it, nl abbreviations and full names (folded, no accents).
    "jan": 1, "january": 1, "janeiro": 1, "enero": 1, "ene": 1, "januar": 1, "janv": 1, "janvier": 1,
    "gen": 1, "gennaio": 1, "januari": 1,
    "feb": 2, "february": 2, "fev": 2, "fevereiro": 2, "febrero": 2, "februar": 2, "fevr": 2,
    "fevrier": 2, "febbraio": 2, "februari": 2,
    "mar": 3, "march": 3, "marco": 3, "marzo": 3, "marz": 3, "mrz": 3, "mars": 3, "maart": 3, "mrt": 3,
    "apr": 4, "april": 4, "abr": 4, "abril": 4, "avr": 4, "avril": 4, "aprile": 4,
    "may": 5, "mai": 5, "maio": 5, "mayo": 5, "mag": 5, "maggio": 5, "mei": 5,
    "jun": 6, "june": 6, "junho": 6, "junio": 6, "juni": 6, "juin": 6, "giu": 6, "giugno": 6,
    "jul": 7, "july": 7, "julho": 7, "julio": 7, "juli": 7, "juil": 7, "juillet": 7, "lug": 7, "luglio": 7,
    "aug": 8, "august": 8, "ago": 8, "agosto": 8, "aout": 8, "augustus": 8,
    "sep": 9, "sept": 9, "september": 9, "set": 9, "setembro": 9, "septiembre": 9, "septembre": 9,
    "settembre": 9,
    "oct": 10, "october": 10, "out": 10, "outubro": 10, "octubre": 10, "okt": 10, "oktober": 10,
    "octobre": 10, "ott": 10, "ottobre": 10,
    "nov": 11, "november": 11, "novembro": 11, "noviembre": 11, "novembre": 11,
    "dec": 12, "december": 12, "dez": 12, "dezembro": 12, "diciembre": 12, "dic": 12, "dezember": 12,
    "decembre": 12, "dicembre": 12,
}
_ENGLISH_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ZONES = frozenset({"ut", "utc", "gmt", "z", "est", "edt", "cst", "cdt", "mst", "mdt", "pst", "pdt"})
_DATE_WORD = re.compile(r"[^\W\d_]+\.?")
_MERIDIEM = re.compile(r"\b([ap])\.?m\.?(?=\s|$)", re.IGNORECASE)
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_date_text(text: str) -> datetime | None:
    """Parse an RFC 822-like date in English or a common European language, as UTC.

    Fallback for dates feedparser cannot read ("Seg, 24 Set 2018 19:42:40 -0300") and for
    12-hour clocks it misreads ("Sat, Dec 16 2023 02:02:33 PM"). No zone means UTC.
    """
    if not text or len(text) > 100:
        return None
    try:
        iso = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return (iso if iso.tzinfo else iso.replace(tzinfo=UTC)).astimezone(UTC)
    meridiem = _MERIDIEM.search(text)
    text = _MERIDIEM.sub(" ", text)

    def replace_word(match: re.Match[str]) -> str:
        word = _fold(match.group()).rstrip(".")
        if word in _MONTHS:
            return _ENGLISH_MONTHS[_MONTHS[word]]
        if word in _ZONES:
            return word.upper()
        return " "  # weekday names, "de", "às", ...

    cleaned = " ".join(_DATE_WORD.sub(replace_word, text.replace(",", " ")).split())
    if meridiem:
        time_match = _TIME.search(cleaned)
        if time_match:
            hour = int(time_match.group(1)) % 12 + (12 if meridiem.group(1).lower() == "p" else 0)
            cleaned = cleaned[: time_match.start(1)] + f"{hour:02d}" + cleaned[time_match.end(1):]
    fields = parsedate_tz(cleaned)
    if fields is None:
        return None
    year, month, day, hour, minute, second = fields[:6]
    offset = fields[9] or 0
    try:
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return (naive - timedelta(seconds=offset)).replace(tzinfo=UTC)


def _entry_date(parsed: time.struct_time | None, raw: str) -> datetime | None:
    if raw and _may_have_meridiem(raw) and _MERIDIEM.search(raw):  # feedparser ignores AM/PM
        fixed = parse_date_text(raw)
        if fixed is not None:
            return fixed
    if parsed is not None:
        try:
            return datetime(*parsed[:6], tzinfo=UTC)
        except (ValueError, TypeError):
            return None
    return parse_date_text(raw) if raw else None


def _may_have_meridiem(raw: str) -> bool:
    """A quick necessary condition for `_MERIDIEM` ("am", "a.m", "pm" or "p.m", any case)."""
    low = raw.lower()
    return "m" in low and ("am" in low or "pm" in low or "a.m" in low or "p.m" in low)


def _published(entry: RawEntry, now: datetime) -> datetime | None:
    when = _entry_date(entry.published, entry.published_raw) or _entry_date(entry.updated, entry.updated_raw)
    if when is None or when < EARLIEST_PLAUSIBLE:
        return None
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if when > now + FUTURE_TOLERANCE:
        return now.astimezone(UTC)
    return when


# --------------------------------------------------------------------------- entries


def normalise_entry(
    entry: RawEntry | Mapping[str, Any],
    *,
    source_name: str,
    feed_url: str,
    now: datetime,
) -> Item | None:
    """One `Item` from a parsed entry (or a feedparser entry dict); None if it has neither
    a title nor a usable http(s) link."""
    result = normalise_with_origin(entry, source_name=source_name, feed_url=feed_url, now=now)
    return result[0] if result else None


def normalise_with_origin(
    entry: RawEntry | Mapping[str, Any],
    *,
    source_name: str,
    feed_url: str,
    now: datetime,
) -> tuple[Item, str | None] | None:
    """Like `normalise_entry`, plus `origin_hint` of the entry's text taken before the
    boilerplate (which holds the credit) was stripped: e.g. ``(item, "South China Morning Post")``."""
    if not isinstance(entry, RawEntry):
        entry = RawEntry.from_feedparser(entry)
    original_url = _absolute_http(entry.link, feed_url)
    title = _bounded(_squash(html_to_text(entry.title[:MAX_TITLE_CHARS * 10])), MAX_TITLE_CHARS)
    if not title and not original_url:
        return None
    url = canonical_url(original_url) if original_url else ""

    text, origin = _body_text(entry)
    if not title:
        title = _bounded(text.split("\n", 1)[0], 120) or url
    published = _published(entry, now)

    guid = entry.id
    if not guid:
        guid = url or _hash_guid(title, published)
    elif len(guid) > MAX_GUID_CHARS:
        guid = "sha256:" + hashlib.sha256(guid.encode("utf-8", "replace")).hexdigest()

    item = Item(
        source_name=source_name,
        guid=guid,
        url=url,
        title=title,
        text=text,
        published=published,
        categories=_categories(entry.tags),
        author=_bounded(" ".join(html.unescape(entry.author).split()), 200),
        original_url=original_url,
    )
    return item, origin


def entry_guid(entry: RawEntry, feed_url: str) -> str | None:
    """The guid `normalise_with_origin` gives this entry, if it is known without normalising it
    (from the entry's id, else from its link); None when only normalising can tell."""
    guid = entry.id
    if guid:
        if len(guid) > MAX_GUID_CHARS:
            return "sha256:" + hashlib.sha256(guid.encode("utf-8", "replace")).hexdigest()
        return guid
    original_url = _absolute_http(entry.link, feed_url)
    return canonical_url(original_url) if original_url else None


def _body_text(entry: RawEntry) -> tuple[str, str | None]:
    """The cleaned body (content if longer than the summary) and the origin it credits."""
    raw_summary = html_to_text(entry.summary[:MAX_MARKUP_CHARS]) if entry.summary else ""
    summary_low = raw_summary.lower()
    raw_content = content_low = content = ""
    if entry.content and entry.content != entry.summary:
        raw_content = html_to_text(entry.content[:MAX_MARKUP_CHARS])
        content_low = raw_content.lower()
        content = _strip_boilerplate(raw_content, content_low) if raw_content else ""
    if len(content) > len(raw_summary):  # stripping never lengthens a text: the content wins
        text = content
    else:
        text = _strip_boilerplate(raw_summary, summary_low) if raw_summary else ""
        if len(content) > len(text):
            text = content
    origin = _origin_hint(raw_content, content_low) if raw_content else None
    if origin is None and raw_summary:
        origin = _origin_hint(raw_summary, summary_low)
    return _bounded(text, MAX_TEXT_CHARS), origin


def _absolute_http(link: str, base: str) -> str:
    link = link.strip()
    if not link:
        return ""
    netloc = _plain_netloc(link)
    try:
        if netloc is not None and ";" not in link and "?#" not in link and not link.endswith(("?", "#")):
            # urljoin(base, link) is link itself: an http(s) URL with a host that urlsplit and
            # urlunsplit give back unchanged (no ";" parameters, no empty query or fragment).
            if base:
                urlsplit(base)  # raises where urljoin would
            return link if netloc.partition(":")[0] else ""
        absolute = urljoin(base, link) if base else link
        parts = urlsplit(absolute)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return absolute


def _categories(tags: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        name = " ".join(html.unescape(tag).split())[:MAX_CATEGORY_CHARS]
        key = name.casefold()
        if name and key not in seen:
            seen.add(key)
            out.append(name)
            if len(out) >= MAX_CATEGORIES:
                break
    return tuple(out)


def _hash_guid(title: str, published: datetime | None) -> str:
    basis = f"{title}\x1f{published.isoformat() if published else ''}"
    return "hash:" + hashlib.sha256(basis.encode("utf-8", "replace")).hexdigest()[:32]


def _bounded(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
