"""Storage: one interface for everything Tagwire keeps.

`Store` is the interface the rest of the core programs against; `SQLiteStore` (bot.store.sqlite)
is the embedded default. Queries that claim work ("due sources", "pending deliveries") are written
so that a PostgreSQL implementation can use ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Protocol

from bot.models import Destination, Item


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, about 4x
# slower, and these are built per row (every due source, every claimed delivery). Treat as read-only.
@dataclass(slots=True)
class SourceRecord:
    id: int
    url: str
    name: str
    interval: float | None
    in_config: bool
    state: str  # new | ok | failing
    next_poll: float
    last_poll: float | None
    last_success: float | None
    consecutive_failures: int
    last_error: str | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    baseline_done: bool
    item_count: int
    seen_entries: bytes | None = None  # digests of the last parsed body's entries (bot.entryspans)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: int
    destination: Destination
    query: str
    normal_form: str
    in_config: bool
    created_by: str
    paused_reason: str | None


# (id, destination, query as typed, paused): what the judge keeps of a subscription
SubscriptionRow = tuple[int, Destination, str, bool]


@dataclass(slots=True)
class DeliveryRequest:
    """A destination that should hear about a new item.

    ``kind`` "story": root alert or thread reply in ``destination``, decided atomically by the store
    from the destination's thread for the story. "copy": the item duplicates ``original_item_id``;
    every message made for the original (in any destination, ``destination`` is None) gets an update
    listing the copy's outlet, unless the copy comes from the original's own source (GUID churn).
    "story_if_new": like "story", but only if the destination has no thread for the story yet (a copy
    reaching a channel that never saw the original).
    """

    destination: Destination | None
    kind: str  # story | story_if_new | copy
    tags: tuple[str, ...] = ()
    original_item_id: int | None = None


@dataclass(slots=True)
class NewItem:
    """Everything the pipeline decided about one new item, written in one transaction."""

    item: Item
    source_id: int
    seen: float
    summary: str
    story_id: int
    story_is_new: bool
    duplicate_of: int | None = None
    origin: str = ""  # the outlet the item credits as its origin, if it names one
    fingerprint: bytes | None = None
    fts: tuple[str, str, str] = ("", "", "")
    deliveries: list[DeliveryRequest] = field(default_factory=list)
    decisions: list[tuple[str, str, str]] = field(default_factory=list)  # (destination, decision, detail)
    item_id: int | None = None  # filled in by the store


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, about 4x
# slower, and these are built per row (every due source, every claimed delivery). Treat as read-only.
@dataclass(slots=True)
class PendingDelivery:
    """A delivery claimed for sending, with what the adapter needs."""

    id: int
    destination: Destination
    kind: str  # alert | reply | update
    item_id: int
    story_id: int
    tags: tuple[str, ...]
    attempts: int
    url: str
    title: str
    source: str
    published: float | None
    summary: str
    categories: tuple[str, ...]
    thread_ref: str | None  # for replies: the root's thread; for updates: the target's thread
    target_ref: str | None  # for updates: the message to edit
    target_delivery_id: int | None
    root_state: str | None  # replies: status of the root delivery (pending/sent/failed)
    also_reported_by: tuple[str, ...]


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, about 4x
# slower, and these are built per row (every due source, every claimed delivery). Treat as read-only.
@dataclass(slots=True)
class StoredItem:
    id: int
    source: str
    url: str
    title: str
    text: str
    summary: str
    published: float | None
    seen: float
    story_id: int | None
    duplicate_of: int | None
    categories: tuple[str, ...]
    source_id: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    item_id: int
    destination: str
    at: float
    decision: str
    detail: str


class Store(Protocol):
    """The storage interface. All methods are coroutines; one writer at a time."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # sources
    async def sync_config_sources(self, sources: list[tuple[str, str, float | None]]) -> None: ...
    async def add_source(
        self, url: str, name: str, workspace: str, added_by: str, interval: float | None = None
    ) -> tuple[SourceRecord, bool]: ...
    async def remove_source(self, workspace: str, name_or_url: str) -> SourceRecord | None: ...
    async def list_sources(self, workspace: str | None) -> list[tuple[SourceRecord, str]]: ...
    async def source_visibility(self) -> dict[int, frozenset[str]]: ...
    async def visible_source_ids(self, workspace: str) -> set[int]: ...
    async def get_source(self, source_id: int) -> SourceRecord | None: ...
    async def due_sources(self, now: float, limit: int) -> list[SourceRecord]: ...
    async def all_sources(self) -> list[SourceRecord]: ...
    async def record_poll_success(
        self,
        source_id: int,
        *,
        now: float,
        next_poll: float,
        etag: str | None,
        last_modified: str | None,
        body_hash: str | None,
        baseline_done: bool,
        seen_entries: bytes | EllipsisType | None = ...,
    ) -> None: ...
    async def record_poll_failure(
        self, source_id: int, *, now: float, next_poll: float, error: str, failing: bool
    ) -> None: ...
    async def postpone_source(self, source_id: int, next_poll: float) -> None: ...

    # items
    async def known_items(
        self, source_id: int, guids: list[str], urls: list[str]
    ) -> tuple[set[str], dict[str, tuple[int, int]]]: ...
    async def write_items(self, batch: list[NewItem]) -> None: ...
    async def record_decisions(self, rows: list[tuple[int, str, str, str]]) -> None: ...
    async def next_ids(self) -> tuple[int, int]: ...
    async def recent_items(self, since: float) -> list[StoredItem]: ...
    def fingerprints_since(
        self, since: float, limit: int, batch: int = 5000
    ) -> AsyncIterator[list[tuple[int, float, int, bytes]]]: ...
    async def search(self, fts_query: str | None, limit: int, workspace: str | None) -> list[StoredItem]: ...
    async def items_by_url(self, url: str) -> list[StoredItem]: ...
    async def decisions_for(self, item_ids: list[int]) -> list[Decision]: ...
    async def deliveries_for_items(self, item_ids: list[int]) -> list[tuple[int, str, str, str, str | None]]: ...
    async def story_items(self, story_ids: list[int]) -> dict[int, list[StoredItem]]: ...
    async def prune(self, before: float) -> int: ...

    # subscriptions
    async def add_subscription(
        self, destination: Destination, query: str, normal_form: str, created_by: str, in_config: bool = False
    ) -> tuple[SubscriptionRecord, bool]: ...
    async def remove_subscription(self, destination: Destination, tag: str) -> SubscriptionRecord | None: ...
    async def subscriptions(self, destination: Destination | None = None) -> list[SubscriptionRecord]: ...
    async def subscriptions_to_match(self) -> list[SubscriptionRow]: ...
    async def sync_config_subscriptions(self, subs: list[tuple[Destination, str, str]]) -> None: ...
    async def pause_destination(self, destination: Destination, reason: str) -> int: ...
    async def resume_destination(self, destination: Destination) -> int: ...

    # outbox
    async def claim_deliveries(self, now: float, limit: int) -> list[PendingDelivery]: ...
    async def mark_sent(self, sent: Sequence[tuple[int, str, str | None]], now: float) -> None: ...
    async def mark_retry(self, delivery_id: int, error: str, next_attempt: float, give_up: bool) -> None: ...
    async def mark_paused(self, destination: Destination, error: str) -> None: ...
    async def promote_to_alert(self, delivery_id: int) -> None: ...
    async def release_claims(self) -> int: ...
    async def requeue_destination(self, destination: Destination, next_attempt: float) -> int: ...
    async def data_version(self) -> int: ...
    async def next_delivery_due(self) -> float | None: ...
    async def delivery_counts(self) -> dict[str, int]: ...
