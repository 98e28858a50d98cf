"""Block Kit rendering for Slack: pure functions from neutral messages to Slack payloads.

Everything from feeds (titles, summaries, source names, categories) and every core reply is
untrusted text. Slack reads message text as mrkdwn in which ``<…>`` starts a control sequence
(``<!channel>``, ``<@U123>``, ``<https://x|label>``), so ``&``, ``<`` and ``>`` are always escaped
and bare ``@here``/``@channel``/``@everyone`` get a zero-width space after the ``@``. Only this module
writes control sequences (the headline link and date tokens), from values it has checked.

Limits (Slack rejects a message that exceeds them): at most 50 blocks, 3000 characters of text per
section, 10 elements per context block. Text that is too long is cut, preferably at a word boundary,
and ends with an ellipsis; rendering never fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from bot.models import OutgoingMessage, Reply, StoryView

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_CONTEXT = 2000  # per context element; Slack allows more but long context text is unreadable
MAX_FALLBACK = 3000  # the top-level `text` (notifications, screen readers)
MAX_URL = 2000
ELLIPSIS = "…"
ZWSP = "\u200b"

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MASS_MENTION = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# characters that would end or confuse a link label, or break the bold around a headline
_LABEL_CHARS = str.maketrans({"|": "∣", "*": "∗", "\n": " "})


def escape(text: str) -> str:
    """Escape untrusted text for mrkdwn: no control sequence and no mass mention can survive."""
    out = "".join(_ESCAPES.get(c, c) for c in text)
    return _MASS_MENTION.sub("@" + ZWSP, out)


def _one_line(text: str) -> str:
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def _tidy(text: str, collapse: bool = True) -> str:
    """Drop blank-line runs and trailing spaces, keep paragraph breaks; ``collapse`` runs of spaces."""
    lines = text.replace("\r\n", "\n").split("\n")
    lines = [_SPACES.sub(" ", line).strip() if collapse else line.rstrip() for line in lines]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters; a cut ends at a word boundary if one is near, plus an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ELLIPSIS[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= (limit - 1) * 0.8:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def escape_clipped(text: str, limit: int) -> str:
    """Escape, then fit in ``limit`` characters without cutting an entity such as ``&amp;`` in half."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    # cut the raw text so that its escaped form plus the ellipsis fits
    budget = limit - 1
    used = 0
    end = 0
    for i, ch in enumerate(text):
        used += len(_ESCAPES.get(ch, ch))
        if used > budget:
            break
        end = i + 1
    raw = text[:end]
    space = raw.rfind(" ")
    if space >= end * 0.8:
        raw = raw[:space]
    return escape(raw.rstrip()) + ELLIPSIS


def safe_url(url: str) -> str | None:
    """The URL made safe to put inside ``<…|…>``, or None if it is not a plain http(s) URL."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or len(url) > MAX_URL:
        return None
    # percent-encode anything that could end the link or inject a label; keep URL syntax as is
    encoded = quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")
    return encoded.replace("&", "&amp;")


def link(url: str, label: str, limit: int = MAX_SECTION) -> str:
    """``<url|label>`` with the label escaped and neutralised; plain escaped label if no usable URL."""
    label = _one_line(label).translate(_LABEL_CHARS) or _one_line(url) or "(untitled)"
    target = safe_url(url)
    if target is None:
        return escape_clipped(label, limit)
    room = limit - len(target) - 3
    if room < 20:  # absurdly long URL: show the label without a link rather than fail
        return escape_clipped(label, limit)
    return f"<{target}|{escape_clipped(label, room)}>"


def headline(url: str, title: str, limit: int = MAX_SECTION) -> str:
    """The headline in bold as a link to the article."""
    return f"*{link(url, title, limit - 2)}*"


def slack_date(when: datetime, fmt: str, fallback: str) -> str:
    """A date token Slack renders in the reader's time zone, with a plain fallback."""
    ts = int(when.timestamp())
    return f"<!date^{ts}^{fmt}|{escape(fallback)}>"


def format_published(when: datetime | None) -> str:
    if when is None:
        return ""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return slack_date(when, "{date_short_pretty} {time}", fallback)


def time_ago(when: datetime | None, now: datetime) -> str:
    """Plain "5 min ago" style text (the fallback of Slack's ``{ago}`` token)."""
    if when is None:
        return "undated"
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def format_ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "undated"
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return slack_date(when, "{ago}", time_ago(when, now))


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack must not turn bare URLs, #channel names or @names into links or mentions
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text)}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(t) for t in texts[:10] if t]}


def _join_escaped(values: Iterable[str], limit: int, each: int = 60) -> str:
    parts = [escape_clipped(_one_line(v), each) for v in values if v and v.strip()]
    return clip(", ".join(parts), limit) if parts else ""


# --------------------------------------------------------------------------- alerts


def render_alert(msg: OutgoingMessage) -> dict[str, Any]:
    """Blocks and fallback text for an alert, a thread reply or an edited message.

    Layout: headline link · "source · date · categories" · summary · "Tag: …" · "Also reported by: …".
    """
    blocks: list[Block] = [section(headline(msg.url, msg.title or msg.url))]
    meta = [
        escape_clipped(_one_line(msg.source), 200) if msg.source.strip() else "",
        format_published(msg.published),
        _join_escaped(msg.categories[:3], 300, each=40),
    ]
    meta_text = " · ".join(m for m in meta if m)
    if meta_text:
        blocks.append(context(meta_text))
    summary = _tidy(msg.summary)
    if summary:
        blocks.append(section(escape_clipped(summary, MAX_SECTION)))
    tags = _join_escaped(msg.tags, MAX_CONTEXT, each=200)
    if tags:
        blocks.append(context(f"Tag: {tags}"))
    also = _join_escaped(msg.also_reported_by, MAX_CONTEXT, each=80)
    if also:
        blocks.append(context(f"Also reported by: {also}"))
    return {"text": alert_fallback(msg), "blocks": blocks}


def alert_fallback(msg: OutgoingMessage) -> str:
    """The plain `text` shown in notifications and by clients that cannot show blocks."""
    title = _one_line(msg.title) or msg.url
    source = _one_line(msg.source)
    text = f"{title} ({source})" if source else title
    if msg.also_reported_by:
        text += " · also reported by " + ", ".join(_one_line(s) for s in msg.also_reported_by)
    return escape_clipped(text, MAX_FALLBACK)


# --------------------------------------------------------------------------- command replies


def response_type(reply: Reply) -> str:
    """Errors and personal answers only to the person who asked; confirmations to the channel."""
    return "ephemeral" if reply.ephemeral or not reply.ok else "in_channel"


def _line_sections(lines: Sequence[str]) -> list[Block]:
    """Group plain-text lines into as few sections as the 3000-character limit allows."""
    blocks: list[Block] = []
    current: list[str] = []
    size = 0
    for raw in lines:
        line = escape_clipped(_one_line(raw), MAX_SECTION)
        if not line:
            continue
        if current and size + 1 + len(line) > MAX_SECTION:
            blocks.append(section("\n".join(current)))
            current, size = [], 0
        current.append(line)
        size += len(line) + (1 if size else 0)
    if current:
        blocks.append(section("\n".join(current)))
    return blocks


def _story_blocks(story: StoryView, now: datetime, summary_chars: int) -> list[Block]:
    text = headline(story.url, story.title or story.url)
    summary = _tidy(story.summary)
    if summary:
        room = MAX_SECTION - len(text) - 1
        text += "\n" + escape_clipped(summary, max(1, min(summary_chars, room)))
    meta = " · ".join(m for m in (_join_escaped(story.sources, 500, each=80), format_ago(story.published, now)) if m)
    return [section(text), context(meta)] if meta else [section(text)]


def render_reply(reply: Reply, now: datetime | None = None, summary_chars: int = 300) -> dict[str, Any]:
    """A command reply as a response_url payload: response_type, fallback text and blocks."""
    now = now or datetime.now(UTC)
    text = _tidy(reply.text, collapse=False)  # the core's own text: keep its layout
    head = escape_clipped(text, MAX_SECTION - 10) if text else ""
    if head and not reply.ok:
        head = ":warning: " + head
    blocks: list[Block] = [section(head)] if head else []
    # each group is shown whole or not at all (a story's headline never without its context line)
    groups: list[list[Block]] = [[b] for b in _line_sections(reply.lines)]
    groups += [_story_blocks(story, now, summary_chars) for story in reply.stories]
    room = MAX_BLOCKS - len(blocks)
    if sum(len(g) for g in groups) > room:
        room -= 1  # keep one block for the "more not shown" note
        shown = 0
        for group in groups:
            if len(group) > room:
                break
            blocks.extend(group)
            room -= len(group)
            shown += 1
        hidden = groups[shown:]
        hidden_stories = min(len(hidden), len(reply.stories))
        noun = "story" if hidden_stories == 1 else "stories"
        what = f"{hidden_stories} more {noun}" if hidden_stories else "more"
        blocks.append(context(f"{ELLIPSIS} {what} not shown"))
    else:
        for group in groups:
            blocks.extend(group)
    fallback = escape_clipped(text or _first_line(reply), MAX_FALLBACK) or "Tagwire"
    return {"response_type": response_type(reply), "text": fallback, "blocks": blocks}


def _first_line(reply: Reply) -> str:
    if reply.lines:
        return _one_line(reply.lines[0])
    if reply.stories:
        return _one_line(reply.stories[0].title)
    return ""
