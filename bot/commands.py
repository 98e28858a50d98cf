"""The command service: every slash command and CLI command, once, platform-neutral.

Adapters turn an invocation into a `Command` and render the `Reply`. Permission checks and
workspace isolation live here: managing sources needs an admin; a workspace (Slack team, Discord
guild) only ever sees its own channels' subscriptions and its own (plus the config's) sources.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bot import match
from bot.config import Config
from bot.fetch import AddressPolicy, FetchError, vet_url
from bot.models import Command, Destination, Reply, StoryView
from bot.normalise import canonical_url
from bot.store import StoredItem
from bot.store.sqlite import SQLiteStore

log = logging.getLogger("tagwire.commands")

MAX_LATEST = 20
DEFAULT_LATEST = 5
PREVIEW = 3
CANDIDATES = 400

HELP = """Tagwire posts one alert per news story matching your tags, with later coverage in its thread.
subscribe QUERY     follow a query in this channel, e.g. #LiuZhongyi or "scam centres" AND Myanmar -sport
unsubscribe TAG     stop following a tag here (as listed by subscriptions)
subscriptions       the tags this channel follows
latest QUERY [N]    the newest N stories (default 5, at most 20) matching a query, from the archive
sources list        the feeds Tagwire polls for this workspace, with their health
sources add URL [NAME]      poll a new feed (admins)
sources remove NAME|URL     stop polling a feed (admins)
why URL             why an article was or was not posted here
Query language: words, "exact phrases", AND (implicit), OR, NOT or -word, (parentheses),
title: and source: fields, #HashTags (CamelCase splits: #LiuZhongyi matches "Liu Zhongyi")."""


def _error(text: str) -> Reply:
    return Reply(text=text, ok=False, ephemeral=True)


class CommandService:
    """Implements `bot.adapter.CommandPort`."""

    def __init__(
        self,
        store: SQLiteStore,
        config: Config,
        on_subscriptions_changed: Callable[[], Awaitable[None]] | None = None,
        on_sources_changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self._subs_changed = on_subscriptions_changed
        self._sources_changed = on_sources_changed

    async def tags(self, destination: Destination) -> list[str]:
        return [s.query for s in await self.store.subscriptions(destination)]

    async def handle(self, command: Command) -> Reply:
        name = command.name.strip().lower().lstrip("/")
        handler = {
            "help": self._help,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "subscriptions": self._subscriptions,
            "latest": self._latest,
            "sources": self._sources,
            "why": self._why,
        }.get(name)
        if handler is None:
            return _error(f"Unknown command {name!r}.\n{HELP}")
        try:
            return await handler(command)
        except Exception:
            log.exception("command failed", extra={"command": name, "destination": str(command.destination)})
            return _error("Something went wrong on our side; the error is in the bot's log. Please try again.")

    @staticmethod
    def _workspace(command: Command) -> str:
        return command.destination.workspace

    # -- help ------------------------------------------------------------------------------------
    async def _help(self, command: Command) -> Reply:
        return Reply(text=HELP, ephemeral=True)

    # -- subscriptions ---------------------------------------------------------------------------
    async def _subscribe(self, command: Command) -> Reply:
        text = command.args.strip()
        if not text:
            return _error('Give a query to follow, e.g. subscribe #LiuZhongyi or subscribe "scam centres" Myanmar')
        try:
            query = match.parse_query(text)
        except match.QueryError as e:
            return _error(f"That query has a problem: {e}.\nExample: \"scam centres\" AND Myanmar -sport")
        sub, created = await self.store.add_subscription(
            command.destination, text, query.normal_form, command.user
        )
        paused = [s.paused_reason for s in await self.store.subscriptions(command.destination) if s.paused_reason]
        resumed = await self.store.resume_destination(command.destination) if paused else 0
        if self._subs_changed is not None:
            await self._subs_changed()
        stories = await self._stories(query, PREVIEW, self._workspace(command))
        if created:
            head = f"Subscribed {command.destination.channel} to: {query.normal_form}"
        else:
            head = f"{command.destination.channel} already follows: {sub.normal_form}"
        if resumed:
            head += f"\nDelivery to {command.destination.channel} was paused ({paused[0]}); it is resumed."
        tail = (
            "Newest matching stories already in the archive:" if stories
            else "Nothing in the archive matches yet; new stories will be posted here as they appear."
        )
        return Reply(text=f"{head}\n{tail}", stories=tuple(stories))

    async def _unsubscribe(self, command: Command) -> Reply:
        tag = command.args.strip()
        if not tag:
            return _error("Say which tag to stop following, e.g. unsubscribe #LiuZhongyi (see subscriptions).")
        removed = await self.store.remove_subscription(command.destination, tag)
        if removed is None:
            try:
                removed = await self.store.remove_subscription(
                    command.destination, match.parse_query(tag).normal_form
                )
            except match.QueryError:
                removed = None
        if removed is None:
            existing = await self.tags(command.destination)
            listing = ", ".join(existing) if existing else "none"
            return _error(f"This channel does not follow {tag!r}. It follows: {listing}")
        if self._subs_changed is not None:
            await self._subs_changed()
        return Reply(text=f"Unsubscribed {command.destination.channel} from: {removed.query}")

    async def _subscriptions(self, command: Command) -> Reply:
        subs = await self.store.subscriptions(command.destination)
        if not subs:
            return Reply(text="This channel follows no tags yet. Try: subscribe #YourTopic", ephemeral=True)
        lines = []
        for s in subs:
            line = s.query if s.query == s.normal_form else f"{s.query}  (means: {s.normal_form})"
            if s.paused_reason:
                line += f"  [paused: {s.paused_reason}]"
            lines.append(line)
        return Reply(text=f"{command.destination.channel} follows {len(subs)} tag(s):", lines=tuple(lines),
                     ephemeral=True)

    # -- latest ----------------------------------------------------------------------------------
    async def _latest(self, command: Command) -> Reply:
        words = command.args.strip()
        count = DEFAULT_LATEST
        head, _, last = words.rpartition(" ")
        if head and last.isdigit():
            count, words = int(last), head.strip()
            if not 1 <= count <= MAX_LATEST:
                return _error(f"Ask for between 1 and {MAX_LATEST} stories, e.g. latest #LiuZhongyi 5")
        if not words:
            return _error("Give a query, e.g. latest #LiuZhongyi 5")
        try:
            query = match.parse_query(words)
        except match.QueryError as e:
            return _error(f"That query has a problem: {e}.")
        stories = await self._stories(query, count, self._workspace(command))
        if not stories:
            return Reply(text=f"No stories in the archive match {query.normal_form}.", ephemeral=True)
        return Reply(text=f"Newest {len(stories)} stor{'y' if len(stories) == 1 else 'ies'} for {query.normal_form}:",
                     stories=tuple(stories), ephemeral=True)

    async def latest(self, query_text: str, count: int, workspace: str | None = None) -> list[StoryView]:
        """For the CLI: newest stories matching a query across the archive."""
        return await self._stories(match.parse_query(query_text), count, workspace)

    async def _stories(self, query: match.Query, count: int, workspace: str | None) -> list[StoryView]:
        """Newest stories with an item matching ``query``, deduplicated, each with its sources."""
        candidates = await self.store.search(query.fts_prefilter(), CANDIDATES, workspace)

        def newest_matching_stories() -> list[int]:  # CPU work: run off the event loop
            order: list[int] = []
            for it in candidates:
                if it.story_id is None or it.story_id in order:
                    continue
                if query.matches(match.document(it.title, it.text, it.source)):
                    order.append(it.story_id)
                    if len(order) >= count:
                        break
            return order

        order = await asyncio.to_thread(newest_matching_stories)
        by_story = await self.store.story_items(order)
        visible = None if workspace is None else await self.store.visible_source_ids(workspace)
        views = []
        for sid in order:
            items = by_story.get(sid, [])
            if visible is not None:
                items = [it for it in items if it.source_id in visible]
            if not items:
                continue
            views.append(_story_view(sid, items))
        return views

    # -- sources ---------------------------------------------------------------------------------
    async def _sources(self, command: Command) -> Reply:
        verb, _, rest = command.args.strip().partition(" ")
        verb = verb.lower()
        if verb in ("", "list"):
            return await self._sources_list(command)
        if verb not in ("add", "remove"):
            return _error("Use: sources list | sources add URL [NAME] | sources remove NAME_OR_URL")
        if not command.is_admin:
            return _error("Only workspace admins can add or remove sources. Ask an admin, or use sources list.")
        if verb == "add":
            return await self._sources_add(command, rest.strip())
        return await self._sources_remove(command, rest.strip())

    async def _sources_list(self, command: Command) -> Reply:
        listed = await self.store.list_sources(self._workspace(command))
        if not listed:
            return Reply(text="No sources yet. An admin can add one: sources add URL [NAME]", ephemeral=True)
        now = time.time()
        lines = []
        for src, name in listed:
            if src.state == "failing":
                health = f"failing ({src.consecutive_failures} errors in a row): {src.last_error}"
            elif src.last_error:
                health = f"retrying ({src.consecutive_failures} error(s) in a row): {src.last_error}"
            elif src.state == "new":
                health = "not fetched yet"
            else:
                health = f"ok, checked {_ago(now - (src.last_success or now))}"
            lines.append(f"{name} <{src.url}> {src.item_count} items, {health}")
        return Reply(text=f"{len(listed)} source(s):", lines=tuple(lines), ephemeral=True)

    async def _sources_add(self, command: Command, rest: str) -> Reply:
        url, _, name = rest.partition(" ")
        url, name = url.strip().strip("<>"), name.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _error(f"{url or 'That'} is not an http(s) URL. Example: sources add https://example.com/feed.xml")
        if not self.config.fetch.allow_private_addresses:
            try:
                vet_url(url, AddressPolicy(allow_private=False))
            except FetchError as e:
                return _error(f"Tagwire will not fetch that URL: {e}")
        name = name or parts.hostname
        src, created = await self.store.add_source(url, name, self._workspace(command), command.user)
        if self._sources_changed is not None:
            await self._sources_changed()
        if not created:
            return Reply(text=f"{name} <{url}> is already a source here.", ephemeral=True)
        return Reply(
            text=f"Added source {name} <{src.url}>. Its first fetch is a baseline: what it has now becomes "
            "searchable with latest; only items published after that are posted."
        )

    async def _sources_remove(self, command: Command, which: str) -> Reply:
        if not which:
            return _error("Say which source to remove: sources remove NAME_OR_URL (see sources list).")
        removed = await self.store.remove_source(self._workspace(command), which.strip("<>"))
        if removed is None:
            return _error(f"No source called {which!r} here. See sources list.")
        if self._sources_changed is not None:
            await self._sources_changed()
        return Reply(text=f"Removed source {removed.name} <{removed.url}>.")

    # -- why -------------------------------------------------------------------------------------
    async def _why(self, command: Command) -> Reply:
        raw = command.args.strip().strip("<>")
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _error("Give the article's URL, e.g. why https://example.com/news/article")
        url = canonical_url(raw)
        visible = await self.store.visible_source_ids(self._workspace(command))
        items = [it for it in await self.store.items_by_url(url) if it.source_id in visible]
        if not items:
            return Reply(
                text=f"Tagwire has not seen {url} in any source's feed. It can only post what its sources "
                "publish: see sources list.",
                ephemeral=True,
            )
        here = command.destination
        lines = await self.explain(items, here)
        return Reply(text=f"What happened to {url}:", lines=tuple(lines), ephemeral=True)

    async def explain(self, items: list[StoredItem], here: Destination | None) -> list[str]:
        """The decision log for these items, limited to what ``here``'s workspace may see."""
        decisions = await self.store.decisions_for([it.id for it in items])
        deliveries = await self.store.deliveries_for_items([it.id for it in items])
        lines: list[str] = []
        for it in items:
            lines.append(f"{it.source}: {it.title!r} (item {it.id}, story {it.story_id})")
            for d in decisions:
                if d.item_id != it.id or not _visible(d.destination, here):
                    continue
                where = f" [{d.destination}]" if d.destination else ""
                lines.append(f"  {d.decision}{where}: {d.detail}".rstrip(": "))
            for item_id, dest, kind, status, error in deliveries:
                if item_id != it.id or not _visible(dest, here):
                    continue
                line = f"  delivery [{dest}] {kind}: {status}"
                if error and status != "sent":
                    line += f" ({error})"
                lines.append(line)
        return lines


def _visible(destination: str, here: Destination | None) -> bool:
    if not destination or here is None:
        return True
    try:
        d = Destination.parse(destination)
    except ValueError:
        return False
    return d.platform == here.platform and d.workspace == here.workspace


def _story_view(story_id: int, items: list[StoredItem]) -> StoryView:
    originals = [it for it in items if it.duplicate_of is None] or items
    first = originals[0]
    sources: list[str] = []
    for it in items:
        if it.source not in sources:
            sources.append(it.source)
    newest = max((it.published or it.seen) for it in items)
    return StoryView(
        story_id=story_id,
        title=first.title,
        url=first.url,
        sources=tuple(sources),
        published=datetime.fromtimestamp(newest, UTC),
        summary=first.summary,
    )


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 90:
        return f"{s}s ago"
    if s < 5400:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"
