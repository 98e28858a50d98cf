"""The console adapter: alerts on stdout for people, and JSON Lines for programs.

Needs no tokens; it is the default destination (``console:#channel``). Replies are shown indented
under their root; updates ("also reported by") are printed as a short edit line. When a JSONL path is
configured, one JSON object per posted message is appended there (type alert | reply | update).
Feed text is untrusted: control characters (terminal escape sequences) are removed before printing.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import TextIO

from bot.adapter import CommandPort
from bot.models import MessageKind, OutgoingMessage, SendResult

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Printable text only: no terminal escapes, no bidi overrides, newlines kept."""
    return _CONTROL.sub("", text)


class ConsoleAdapter:
    platform = "console"

    def __init__(self, jsonl: str | Path | None = None, stream: TextIO | None = None, color: bool | None = None):
        self.jsonl = Path(jsonl) if jsonl else None
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() if color is None else color
        self._lock = asyncio.Lock()

    async def start(self, commands: CommandPort) -> None:  # commands arrive through the CLI instead
        return None

    async def close(self) -> None:
        return None

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def render(self, m: OutgoingMessage) -> str:
        title = clean(m.title)
        when = m.published.strftime("%Y-%m-%d %H:%M UTC") if m.published else "undated"
        meta = " · ".join(x for x in (clean(m.source), when, clean(", ".join(m.categories[:3]))) if x)
        tags = ", ".join(clean(t) for t in m.tags)
        also = ", ".join(clean(s) for s in m.also_reported_by)
        if m.kind is MessageKind.UPDATE:
            return f"  ✎ [{m.destination}] story {m.story_id}: {title} — also reported by {also}\n"
        if m.kind is MessageKind.REPLY:
            lines = [f"    ↳ [{m.destination}] {title}", f"      {meta}", f"      {m.url}"]
            if m.summary:
                lines.append(f"      {clean(m.summary)}")
            return "\n".join(lines) + "\n"
        lines = [
            self._style(f"● [{m.destination}] {title}", "1"),
            f"  {meta}",
            f"  {m.url}",
        ]
        if m.summary:
            lines.append(f"  {clean(m.summary)}")
        footer = f"  tag: {tags}" if tags else ""
        if also:
            footer += f"  · also reported by {also}"
        if footer:
            lines.append(self._style(footer, "2"))
        return "\n".join(lines) + "\n"

    def event(self, m: OutgoingMessage, message_id: str) -> dict[str, object]:
        return {
            "type": m.kind.value,
            "destination": str(m.destination),
            "message_id": message_id if m.kind is not MessageKind.UPDATE else m.target_ref,
            "thread_id": m.thread_ref if m.kind is not MessageKind.ALERT else None,
            "story_id": m.story_id,
            "url": m.url,
            "title": m.title,
            "source": m.source,
            "published": m.published.isoformat() if m.published else None,
            "tags": list(m.tags),
            "summary": m.summary,
            "also_reported_by": list(m.also_reported_by),
        }

    async def send(self, m: OutgoingMessage) -> SendResult:
        message_id = m.target_ref if m.kind is MessageKind.UPDATE and m.target_ref else f"c{m.delivery_id}"
        async with self._lock:
            self.stream.write(self.render(m))
            self.stream.flush()
            if self.jsonl is not None:
                line = json.dumps(self.event(m, message_id), ensure_ascii=False) + "\n"
                await asyncio.to_thread(_append, self.jsonl, line)
        if m.kind is MessageKind.ALERT:
            return SendResult(message_ref=message_id, thread_ref=message_id)
        return SendResult(message_ref=message_id, thread_ref=m.thread_ref)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
