"""Render neutral messages and replies as Discord embeds and message text.

Pure functions, no I/O. Everything that came from a feed or a user is untrusted: it is
escaped (Markdown and mentions) before it lands in a field Discord renders, and every
length limit Discord enforces is enforced here too, because discord.py does not check
embed limits and Discord rejects an oversize embed with 400 / code 50035. Text that is
too long is cut, preferably at a word boundary, and ends with an ellipsis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import discord
from discord.utils import escape_markdown, escape_mentions, format_dt

from bot.models import OutgoingMessage, Reply, StoryView

# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits)
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
EMBED_TOTAL_MAX = 6000
CONTENT_MAX = 2000
EMBEDS_PER_MESSAGE = 10
THREAD_NAME_MAX = 100
URL_MAX = 2048

ELLIPSIS = "…"
ALERT_COLOUR = 0x2F6FDE
STORY_SUMMARY_MAX = 350  # story embeds in command replies stay short: up to ten share 6000 chars


def escape(text: str) -> str:
    """Make untrusted text inert: Markdown shown literally, no mention can resolve."""
    return escape_mentions(escape_markdown(text))


def plain(text: str) -> str:
    """For places Discord does not render Markdown (footers, thread names): mentions only."""
    return escape_mentions(text)


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending with an ellipsis when cut.

    Prefers a word boundary in the last fifth of the budget; never leaves a dangling
    backslash (which would escape the ellipsis).
    """
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    if limit == 1:
        return ELLIPSIS
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= (limit - 1) * 4 // 5:
        cut = cut[:space]
    cut = cut.rstrip().rstrip("\\").rstrip()
    return cut + ELLIPSIS


def _squash(text: str) -> str:
    return " ".join(text.split())


def safe_url(url: str) -> str | None:
    """An http(s) URL Discord will accept as an embed link, else None (feed links are untrusted)."""
    url = url.strip()
    if not url or len(url) > URL_MAX or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


# --- embed limits -----------------------------------------------------------------------------


def _field(name: Any, value: Any) -> tuple[str, str]:
    name = clip(str(name or "").strip(), FIELD_NAME_MAX) or "\u200b"
    value = clip(str(value or "").strip(), FIELD_VALUE_MAX) or "\u200b"
    return name, value


def embed_total(data: dict[str, Any]) -> int:
    """Characters Discord counts towards the 6000 limit of one embed."""
    total = len(data.get("title") or "") + len(data.get("description") or "")
    total += len((data.get("footer") or {}).get("text") or "")
    total += len((data.get("author") or {}).get("name") or "")
    for f in data.get("fields") or ():
        total += len(f.get("name") or "") + len(f.get("value") or "")
    return total


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Return a copy of ``embed`` within all of Discord's embed limits.

    Each part is clipped to its own limit; past 25 fields the 25th says how many were
    left out; if the total is still over 6000 the description shrinks first, then field
    values from the last one up, then the title.
    """
    data = embed.to_dict()
    if data.get("title"):
        data["title"] = clip(data["title"], TITLE_MAX)
    if data.get("description"):
        data["description"] = clip(data["description"], DESCRIPTION_MAX)
    if isinstance(data.get("footer"), dict) and data["footer"].get("text"):
        data["footer"]["text"] = clip(data["footer"]["text"], FOOTER_MAX)
    if isinstance(data.get("author"), dict) and data["author"].get("name"):
        data["author"]["name"] = clip(data["author"]["name"], AUTHOR_MAX)
    if data.get("url") and not safe_url(str(data["url"])):
        del data["url"]

    fields = []
    for f in data.get("fields") or ():
        name, value = _field(f.get("name"), f.get("value"))
        fields.append({"name": name, "value": value, "inline": bool(f.get("inline", False))})
    if len(fields) > FIELDS_MAX:
        left_out = len(fields) - (FIELDS_MAX - 1)
        fields = [*fields[: FIELDS_MAX - 1], {"name": ELLIPSIS, "value": f"{left_out} more not shown"}]
    if fields:
        data["fields"] = fields

    over = embed_total(data) - EMBED_TOTAL_MAX
    if over > 0 and data.get("description"):
        keep = max(len(data["description"]) - over, 0)
        data["description"] = clip(data["description"], keep) if keep else ""
        if not data["description"]:
            del data["description"]
        over = embed_total(data) - EMBED_TOTAL_MAX
    for f in reversed(fields):
        if over <= 0:
            break
        keep = max(len(f["value"]) - over, 1)
        f["value"] = clip(f["value"], keep)
        over = embed_total(data) - EMBED_TOTAL_MAX
    if over > 0 and data.get("title"):
        data["title"] = clip(data["title"], max(len(data["title"]) - over, 1))
    return discord.Embed.from_dict(data)


# --- alerts -----------------------------------------------------------------------------------


def alert_embed(msg: OutgoingMessage) -> discord.Embed:
    """The embed for an alert, a follow-up in the thread, or the edited root of a story."""
    title = escape(_squash(msg.title)) or "(untitled)"
    embed = discord.Embed(
        title=clip(title, TITLE_MAX),
        url=safe_url(msg.url),
        description=clip(escape(msg.summary.strip()), DESCRIPTION_MAX) or None,
        colour=ALERT_COLOUR,
    )
    if msg.source.strip():
        embed.add_field(name="Source", value=escape(_squash(msg.source)), inline=True)
    if msg.published is not None:
        published = msg.published if msg.published.tzinfo else msg.published.replace(tzinfo=UTC)
        embed.add_field(name="Published", value=format_dt(published, "f"), inline=True)
    categories = [escape(_squash(c)) for c in msg.categories if c.strip()]
    if categories:
        embed.add_field(name="Category", value=", ".join(categories), inline=True)
    if msg.also_reported_by:
        others = ", ".join(escape(_squash(s)) for s in msg.also_reported_by if s.strip())
        if others:
            embed.add_field(name="Also reported by", value=others, inline=False)
    tags = [_squash(t) for t in msg.tags if t.strip()]
    if tags:
        label = "Tag" if len(tags) == 1 else "Tags"
        embed.set_footer(text=plain(f"{label}: " + ", ".join(tags)))
    return fit_embed(embed)


def thread_name(title: str) -> str:
    """A thread name from a story title: one line, at most 100 characters, never empty."""
    name = plain(_squash(title))
    return clip(name, THREAD_NAME_MAX) or "Story"


# --- command replies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedReply:
    content: str
    embeds: tuple[discord.Embed, ...]
    ephemeral: bool


def story_embed(story: StoryView) -> discord.Embed:
    embed = discord.Embed(
        title=clip(escape(_squash(story.title)) or "(untitled)", TITLE_MAX),
        url=safe_url(story.url),
        description=clip(escape(story.summary.strip()), STORY_SUMMARY_MAX) or None,
        colour=ALERT_COLOUR,
    )
    sources = ", ".join(escape(_squash(s)) for s in story.sources if s.strip())
    if sources:
        embed.add_field(name="Sources", value=sources, inline=True)
    if story.published is not None:
        published = story.published if story.published.tzinfo else story.published.replace(tzinfo=UTC)
        embed.add_field(name="Published", value=format_dt(published, "f"), inline=True)
    return fit_embed(embed)


def reply_payload(reply: Reply) -> RenderedReply:
    """Text, story embeds (at most ten, 6000 characters together) and the ephemeral flag."""
    parts = [escape(reply.text.strip())] if reply.text.strip() else []
    parts += [escape("• " + line.strip()) for line in reply.lines if line.strip()]

    embeds: list[discord.Embed] = []
    budget = EMBED_TOTAL_MAX
    for story in reply.stories:
        if len(embeds) == EMBEDS_PER_MESSAGE:
            break
        embed = story_embed(story)
        size = embed_total(embed.to_dict())
        if size > budget:
            break
        embeds.append(embed)
        budget -= size
    for story in reply.stories[len(embeds) :]:  # past ten embeds (or 6000 characters): one line each
        sources = ", ".join(s for s in story.sources if s.strip())
        line = f"• {escape(_squash(story.title)) or '(untitled)'}"
        line += f" ({escape(sources)})" if sources else ""
        url = safe_url(story.url)
        parts.append(line + (f" <{url}>" if url else ""))

    content = "\n".join(parts)
    if not content and not embeds:
        content = "Done." if reply.ok else "That did not work."
    return RenderedReply(
        content=clip(content, CONTENT_MAX),
        embeds=tuple(embeds),
        ephemeral=reply.ephemeral or not reply.ok,
    )
