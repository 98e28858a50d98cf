"""Domain types shared by every stage of the pipeline and by the adapters.

Plain data only: no I/O, no platform imports. Adapters receive `OutgoingMessage`
objects and return `SendResult`; slash commands arrive as `Command` and leave as `Reply`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Destination:
    """Where alerts go: ``platform:workspace/channel`` (the console has no workspace).

    Examples: ``console:#news``, ``slack:T0123/C0456``, ``discord:1234/5678``.
    """

    platform: str
    channel: str
    workspace: str = ""

    @classmethod
    def parse(cls, text: str) -> Destination:
        platform, sep, rest = text.partition(":")
        platform = platform.strip().lower()
        if not sep or not platform or not rest.strip():
            raise ValueError(f"not a destination: {text!r} (expected platform:channel, e.g. console:#news)")
        if platform not in ("console", "slack", "discord", "null"):
            raise ValueError(f"unknown platform {platform!r} in destination {text!r}")
        rest = rest.strip()
        if platform != "console" and "/" in rest:
            workspace, _, channel = rest.partition("/")
            return cls(platform=platform, channel=channel, workspace=workspace)
        return cls(platform=platform, channel=rest)

    def __str__(self) -> str:
        if self.workspace:
            return f"{self.platform}:{self.workspace}/{self.channel}"
        return f"{self.platform}:{self.channel}"


@dataclass(frozen=True, slots=True)
class Item:
    """One normalised feed entry. Text fields are clean plain text (no HTML)."""

    source_name: str
    guid: str
    url: str  # canonical URL (tracking parameters, fragments, AMP forms removed)
    title: str
    text: str  # clean body or summary, boilerplate removed
    published: datetime | None  # UTC, timezone-aware
    categories: tuple[str, ...] = ()
    author: str = ""
    original_url: str = ""  # link as the feed gave it
    source_id: int | None = None


class MessageKind(StrEnum):
    ALERT = "alert"  # root message of a story in a destination
    REPLY = "reply"  # later coverage, in the root's thread
    UPDATE = "update"  # edit of an earlier message (e.g. "also reported by")


# Not frozen: built for every message sent, and a frozen dataclass's __init__ is about 4x slower.
# Treat as read-only.
@dataclass(slots=True)
class OutgoingMessage:
    """A neutral message for an adapter to render and send.

    For REPLY, ``thread_ref`` is the thread to post in (Slack: root ``ts``; Discord: thread id;
    console: root message id). For UPDATE, ``target_ref`` is the platform id of the message to
    edit and ``thread_ref`` the thread it lives in (None for a root).
    All text fields are untrusted feed text: adapters escape them.
    """

    delivery_id: int
    kind: MessageKind
    destination: Destination
    story_id: int
    url: str
    title: str
    source: str
    published: datetime | None
    summary: str
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # the subscription tags (queries) that matched
    also_reported_by: tuple[str, ...] = ()
    thread_ref: str | None = None
    target_ref: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the platform gave back: the new message's id and, for a root, its thread id.

    Slack: message_ref = ts, thread_ref = ts. Discord: message_ref = message id,
    thread_ref = id of the thread created from it. Console: a generated id for both.
    """

    message_ref: str
    thread_ref: str | None = None


class DeliveryError(Exception):
    """Raised by an adapter when a message could not be sent.

    ``retry_after``: seconds the platform asked us to wait (rate limit), if any.
    ``pause``: the destination is unusable (deleted channel, bot removed, archived):
    pause its subscriptions instead of retrying. ``fatal``: credentials are wrong; stop the adapter.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        pause: bool = False,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.pause = pause
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class Command:
    """A slash command (or CLI call) turned into neutral data by an adapter."""

    name: str  # subscribe | unsubscribe | subscriptions | latest | sources | why | help
    args: str  # the raw argument text as the user typed it
    destination: Destination  # the channel the command was typed in
    user: str = ""
    is_admin: bool = False  # workspace admin / Manage Server, as the platform reports it


@dataclass(frozen=True, slots=True)
class StoryView:
    """A story as shown in replies to `latest` and `subscribe`."""

    story_id: int
    title: str
    url: str
    sources: tuple[str, ...]
    published: datetime | None
    summary: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The neutral answer to a Command. ``text`` is plain text (adapters escape it)."""

    text: str
    ok: bool = True
    ephemeral: bool = False
    stories: tuple[StoryView, ...] = ()
    lines: tuple[str, ...] = field(default=())  # extra plain-text lines (lists of tags, sources)
