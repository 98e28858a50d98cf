"""The embedded store: SQLite through aiosqlite.

WAL mode, versioned migrations (bot/store/migrations/NNNN_*.sql, applied in order inside a
transaction and recorded in ``PRAGMA user_version``), one connection, one writer at a time
(an asyncio lock around every write transaction), FTS5 over items for `latest`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from types import EllipsisType
from typing import Any, TypeVar

import aiosqlite

from bot.models import Destination
from bot.store import (
    Decision,
    NewItem,
    PendingDelivery,
    SourceRecord,
    StoredItem,
    SubscriptionRecord,
    SubscriptionRow,
)

log = logging.getLogger("tagwire.store")

T = TypeVar("T")

_SOURCE_COLS = (
    "id, url, name, interval, in_config, state, next_poll, last_poll, last_success, "
    "consecutive_failures, last_error, etag, last_modified, body_hash, baseline_done, item_count, seen_entries"
)
_SOURCE_FIELDS = len(_SOURCE_COLS.split(","))
_ITEM_COLS = (
    "i.id, s.name, i.url, i.title, i.text, i.summary, i.published, i.seen, i.story_id, "
    "i.duplicate_of, i.categories, i.source_id"
)


@functools.lru_cache(maxsize=4096)
def _destination(text: str) -> Destination:
    """`Destination.parse`, remembered: a few hundred channels come back on every claimed row."""
    return Destination.parse(text)


@functools.lru_cache(maxsize=4096)
def _json_list(values: tuple[str, ...]) -> str:
    """Tags as the JSON list stored with a delivery, remembered (the same tag sets recur)."""
    return json.dumps(list(values), ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def _json_tuple(text: str | None) -> tuple[str, ...]:
    """A JSON list column (tags, categories) as a tuple, remembered (the same few lists recur)."""
    return tuple(json.loads(text or "[]"))


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("bot.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _source(row: Iterable[Any]) -> SourceRecord:
    r = list(row)
    return SourceRecord(
        id=r[0],
        url=r[1],
        name=r[2],
        interval=r[3],
        in_config=bool(r[4]),
        state=r[5],
        next_poll=r[6],
        last_poll=r[7],
        last_success=r[8],
        consecutive_failures=r[9],
        last_error=r[10],
        etag=r[11],
        last_modified=r[12],
        body_hash=r[13],
        baseline_done=bool(r[14]),
        item_count=r[15],
        seen_entries=r[16],
    )


def _item(row: Iterable[Any]) -> StoredItem:
    r = list(row)
    return StoredItem(
        id=r[0],
        source=r[1],
        url=r[2],
        title=r[3],
        text=r[4],
        summary=r[5],
        published=r[6],
        seen=r[7],
        story_id=r[8],
        duplicate_of=r[9],
        categories=tuple(json.loads(r[10] or "[]")),
        source_id=r[11],
    )


def _subscription(row: Iterable[Any]) -> SubscriptionRecord:
    r = list(row)
    return SubscriptionRecord(
        id=r[0],
        destination=_destination(r[1]),
        query=r[2],
        normal_form=r[3],
        in_config=bool(r[4]),
        created_by=r[5],
        paused_reason=r[6],
    )


_SUB_COLS = "id, destination, query, normal_form, in_config, created_by, paused_reason"


class SQLiteStore:
    """`bot.store.Store` on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._grouped = _GroupedWrites(self)

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        self._db = db
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._grouped.drain()  # records queued before the close are committed first
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for version, sql in _migrations():
            if version <= current:
                continue
            log.info("applying migration", extra={"version": version})
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    await self.db.execute(statement)
                await self.db.execute(f"PRAGMA user_version={version}")
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    async def data_version(self) -> int:
        """Changes whenever another connection (e.g. a `tagwire subscribe` from the CLI) commits."""
        row = await self._one("PRAGMA data_version")
        return int(row[0]) if row else 0

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time (the single-writer discipline)."""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            else:
                await self.db.execute("COMMIT")

    # Each aiosqlite call is a round trip to its thread, and under load (parsing threads holding
    # the GIL) every round trip costs a thread switch: reads take one round trip, not three
    # (execute, fetch, close); a write of one statement goes to the group commit (`_GroupedWrites`).
    # Callers of `_one` expect at most a row or two.
    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return list(await self.db.execute_fetchall(sql, tuple(params)))

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self.db.execute_fetchall(sql, tuple(params))
        return next(iter(rows), None)

    async def _hop(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database thread: one round trip however many statements.

        aiosqlite has no public call for this; ``Connection._execute`` is the queue every one of its
        own calls goes through (the same in every release since 0.17; pyproject pins the range and
        every write test goes through here, so a change there fails the suite, not production)."""
        db = self.db
        return await db._execute(fn, db._conn)

    async def _write_hop(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` as one write transaction (BEGIN IMMEDIATE … COMMIT, ROLLBACK on any
        error) in one round trip, under the single-writer lock."""
        async with self._write_lock:
            return await self._hop(functools.partial(_transaction, fn))

    # -- sources ---------------------------------------------------------------------------------
    async def sync_config_sources(self, sources: list[tuple[str, str, float | None]]) -> None:
        """Make the config's sources present (owned by everyone); forget config sources removed from it."""
        now = time.time()
        urls = [u for u, _, _ in sources]
        async with self._tx() as db:
            for url, name, interval in sources:
                await db.execute(
                    "INSERT INTO sources (url, name, interval, in_config, created) VALUES (?, ?, ?, 1, ?) "
                    "ON CONFLICT(url) DO UPDATE SET name=excluded.name, interval=excluded.interval, in_config=1",
                    (url, name, interval, now),
                )
                await db.execute(
                    "INSERT INTO source_owners (source_id, workspace, name, created) "
                    "SELECT id, '', ?, ? FROM sources WHERE url=? "
                    "ON CONFLICT(source_id, workspace) DO UPDATE SET name=excluded.name",
                    (name, now, url),
                )
            placeholders = ",".join("?" * len(urls)) or "''"
            await db.execute(
                f"DELETE FROM source_owners WHERE workspace='' AND source_id IN "
                f"(SELECT id FROM sources WHERE in_config=1 AND url NOT IN ({placeholders}))",
                urls,
            )
            await db.execute(
                f"UPDATE sources SET in_config=0 WHERE in_config=1 AND url NOT IN ({placeholders})", urls
            )
            await db.execute(
                "DELETE FROM sources WHERE in_config=0 AND id NOT IN (SELECT source_id FROM source_owners)"
            )

    async def add_source(
        self, url: str, name: str, workspace: str, added_by: str, interval: float | None = None
    ) -> tuple[SourceRecord, bool]:
        """Add (or share) a source for a workspace. Returns (source, created_for_workspace)."""
        now = time.time()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO sources (url, name, interval, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(url) DO NOTHING",
                (url, name, interval, now),
            )
            row = await self._one(f"SELECT {_SOURCE_COLS} FROM sources WHERE url=?", (url,))
            src = _source(row)
            cur = await db.execute(
                "INSERT INTO source_owners (source_id, workspace, name, added_by, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(source_id, workspace) DO NOTHING",
                (src.id, workspace, name, added_by, now),
            )
            created = cur.rowcount > 0
        return src, created

    async def remove_source(self, workspace: str, name_or_url: str) -> SourceRecord | None:
        """Remove a workspace's claim on a source; the source goes when nobody has it any more."""
        async with self._tx() as db:
            row = await self._one(
                f"SELECT {', '.join('s.' + c.strip() for c in _SOURCE_COLS.split(','))} "
                "FROM sources s JOIN source_owners o ON o.source_id = s.id "
                "WHERE o.workspace=? AND (s.url=? OR lower(o.name)=lower(?)) ORDER BY s.id LIMIT 1",
                (workspace, name_or_url, name_or_url),
            )
            if row is None:
                return None
            src = _source(row)
            await db.execute(
                "DELETE FROM source_owners WHERE source_id=? AND workspace=?", (src.id, workspace)
            )
            if workspace == "":
                await db.execute("UPDATE sources SET in_config=0 WHERE id=?", (src.id,))
            await db.execute(
                "DELETE FROM sources WHERE id=? AND NOT EXISTS "
                "(SELECT 1 FROM source_owners WHERE source_id=?)",
                (src.id, src.id),
            )
        return src

    async def list_sources(self, workspace: str | None) -> list[tuple[SourceRecord, str]]:
        """Sources a workspace can see (its own and everyone's), with the name it knows them by.

        ``workspace=None`` lists every source with its own name."""
        cols = ", ".join("s." + c.strip() for c in _SOURCE_COLS.split(","))
        if workspace is None:
            rows = await self._all(f"SELECT {cols}, s.name FROM sources s ORDER BY s.name")
        else:
            rows = await self._all(
                f"SELECT {cols}, o.name FROM sources s JOIN source_owners o ON o.source_id=s.id "
                "WHERE o.workspace IN ('', ?) GROUP BY s.id ORDER BY o.name",
                (workspace,),
            )
        return [(_source(r[:_SOURCE_FIELDS]), r[_SOURCE_FIELDS]) for r in rows]

    async def visible_source_ids(self, workspace: str) -> set[int]:
        """The sources a workspace can see: everyone's ('') and its own."""
        rows = await self._all(
            "SELECT DISTINCT source_id FROM source_owners WHERE workspace IN ('', ?)", (workspace,)
        )
        return {r[0] for r in rows}

    async def source_visibility(self) -> dict[int, frozenset[str]]:
        rows = await self._all("SELECT source_id, workspace FROM source_owners")
        out: dict[int, set[str]] = {}
        for sid, ws in rows:
            out.setdefault(sid, set()).add(ws)
        return {k: frozenset(v) for k, v in out.items()}

    async def get_source(self, source_id: int) -> SourceRecord | None:
        row = await self._one(f"SELECT {_SOURCE_COLS} FROM sources WHERE id=?", (source_id,))
        return _source(row) if row else None

    async def all_sources(self) -> list[SourceRecord]:
        return [_source(r) for r in await self._all(f"SELECT {_SOURCE_COLS} FROM sources ORDER BY id")]

    async def due_sources(self, now: float, limit: int) -> list[SourceRecord]:
        rows = await self._all(
            f"SELECT {_SOURCE_COLS} FROM sources WHERE next_poll <= ? ORDER BY next_poll LIMIT ?",
            (now, limit),
        )
        return [_source(r) for r in rows]

    async def postpone_source(self, source_id: int, next_poll: float) -> None:
        await self._grouped.write("UPDATE sources SET next_poll=? WHERE id=?", [(next_poll, source_id)])

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
    ) -> None:
        """``seen_entries``: the processed body's entry digests (`bot.entryspans.encode`), None to
        forget them, ``...`` (a 304 or an unchanged body) to keep what is stored. Committed together
        with the other polls finishing meanwhile (`_GroupedWrites`); returns once it is committed."""
        await self._grouped.write(
            "UPDATE sources SET state='ok', last_poll=?, last_success=?, next_poll=?, "
            "consecutive_failures=0, last_error=NULL, etag=?, last_modified=?, body_hash=?, "
            "baseline_done=MAX(baseline_done, ?), seen_entries=CASE WHEN ? THEN ? ELSE seen_entries END "
            "WHERE id=?",
            [(now, now, next_poll, etag, last_modified, body_hash, int(baseline_done),
              int(seen_entries is not ...), None if seen_entries is ... else seen_entries, source_id)],
        )

    async def record_poll_failure(
        self, source_id: int, *, now: float, next_poll: float, error: str, failing: bool
    ) -> None:
        await self._grouped.write(
            "UPDATE sources SET last_poll=?, next_poll=?, consecutive_failures=consecutive_failures+1, "
            "last_error=?, state=CASE WHEN ? THEN 'failing' ELSE state END WHERE id=?",
            [(now, next_poll, error[:500], int(failing), source_id)],
        )

    # -- items -----------------------------------------------------------------------------------
    async def known_items(
        self, source_id: int, guids: list[str], urls: list[str]
    ) -> tuple[set[str], dict[str, tuple[int, int]]]:
        """Which of these guids this source already has, and which URLs any source has
        (url -> (original item id, its story id))."""
        known_guids: set[str] = set()
        known_urls: dict[str, tuple[int, int]] = {}
        for chunk in _chunks(guids, 400):
            rows = await self._all(
                f"SELECT guid FROM items WHERE source_id=? AND guid IN ({','.join('?' * len(chunk))})",
                (source_id, *chunk),
            )
            known_guids.update(r[0] for r in rows)
        for chunk in _chunks(urls, 400):
            rows = await self._all(
                "SELECT url, COALESCE(duplicate_of, id), COALESCE(story_id, 0) FROM items "
                f"WHERE url IN ({','.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
            for url, item_id, story_id in rows:
                known_urls.setdefault(url, (item_id, story_id))
        return known_guids, known_urls

    async def next_ids(self) -> tuple[int, int]:
        """The next free (item id, story id): the single writer allocates ids itself, and never
        hands out an id twice (the counters remember ids whose rows were deleted since)."""
        row = await self._one(
            "SELECT MAX(COALESCE((SELECT value FROM counters WHERE name='item'), 0), "
            "COALESCE((SELECT MAX(id) FROM items), 0)), "
            "MAX(COALESCE((SELECT value FROM counters WHERE name='story'), 0), "
            "COALESCE((SELECT MAX(id) FROM stories), 0), COALESCE((SELECT MAX(story_id) FROM items), 0))"
        )
        return int(row[0]) + 1, int(row[1]) + 1

    async def write_items(self, batch: list[NewItem]) -> None:
        """Store new items with their stories, fingerprints, decisions and deliveries, atomically.

        The whole batch is one transaction run on the database thread in one round trip: an item
        that matches many channels is dozens of statements, and each aiosqlite call would be a
        thread hop waiting for the GIL."""
        if batch:
            await self._write_hop(functools.partial(_write_items, batch))

    async def record_decisions(self, rows: list[tuple[int, str, str, str]]) -> None:
        if not rows:
            return
        now = time.time()
        async with self._tx() as db:
            await db.executemany(
                "INSERT INTO decisions (item_id, destination, at, decision, detail) VALUES (?,?,?,?,?)",
                [(i, d, now, dec, det) for i, d, dec, det in rows],
            )

    async def recent_items(self, since: float) -> list[StoredItem]:
        rows = await self._all(
            f"SELECT {_ITEM_COLS} FROM items i JOIN sources s ON s.id=i.source_id "
            "WHERE i.seen >= ? ORDER BY i.id",
            (since,),
        )
        return [_item(r) for r in rows]

    async def fingerprints_since(
        self, since: float, limit: int, batch: int = 5000
    ) -> AsyncIterator[list[tuple[int, float, int, bytes]]]:
        """(item id, time, story id, fingerprint) of the newest ``limit`` fingerprinted items seen
        since ``since``, oldest first, ``batch`` rows at a time (a full index is ~100 MB of rows).
        The time is the one the judge indexes an item by: published, else first seen."""
        where = "f.created >= ? AND i.story_id IS NOT NULL"
        row = await self._one(
            f"SELECT f.item_id FROM fingerprints f JOIN items i ON i.id=f.item_id WHERE {where} "
            "ORDER BY f.item_id DESC LIMIT 1 OFFSET ?",
            (since, max(0, limit - 1)),
        )
        cursor = row[0] - 1 if row else -1
        while True:
            rows = await self._all(
                "SELECT f.item_id, COALESCE(i.published, i.seen), i.story_id, f.data FROM fingerprints f "
                f"JOIN items i ON i.id=f.item_id WHERE f.item_id > ? AND {where} ORDER BY f.item_id LIMIT ?",
                (cursor, since, batch),
            )
            if not rows:
                return
            yield [(r[0], r[1], r[2], r[3]) for r in rows]
            cursor = rows[-1][0]

    async def search(self, fts_query: str | None, limit: int, workspace: str | None) -> list[StoredItem]:
        """Newest items first; ``fts_query`` is an FTS5 MATCH prefilter (None: no prefilter).

        ``workspace`` limits to sources that workspace can see (None: all)."""
        vis = ""
        params: list[Any] = []
        if workspace is not None:
            vis = " AND i.source_id IN (SELECT source_id FROM source_owners WHERE workspace IN ('', ?))"
            params.append(workspace)
        order = " ORDER BY COALESCE(i.published, i.seen) DESC, i.id DESC LIMIT ?"
        if fts_query:
            sql = (
                f"SELECT {_ITEM_COLS} FROM items_fts f JOIN items i ON i.id=f.rowid "
                f"JOIN sources s ON s.id=i.source_id WHERE items_fts MATCH ?{vis}{order}"
            )
            params.insert(0, fts_query)
        else:
            sql = f"SELECT {_ITEM_COLS} FROM items i JOIN sources s ON s.id=i.source_id WHERE 1=1{vis}{order}"
        params.append(limit)
        return [_item(r) for r in await self._all(sql, params)]

    async def items_by_url(self, url: str) -> list[StoredItem]:
        rows = await self._all(
            f"SELECT {_ITEM_COLS} FROM items i JOIN sources s ON s.id=i.source_id WHERE i.url=? ORDER BY i.id",
            (url,),
        )
        return [_item(r) for r in rows]

    async def decisions_for(self, item_ids: list[int]) -> list[Decision]:
        out: list[Decision] = []
        for chunk in _chunks(item_ids, 400):
            rows = await self._all(
                "SELECT item_id, destination, at, decision, detail FROM decisions "
                f"WHERE item_id IN ({','.join('?' * len(chunk))}) ORDER BY at, id",
                chunk,
            )
            out.extend(Decision(*r) for r in rows)
        return out

    async def deliveries_for_items(self, item_ids: list[int]) -> list[tuple[int, str, str, str, str | None]]:
        """(item_id, destination, kind, status, last_error) for `why`."""
        out = []
        for chunk in _chunks(item_ids, 400):
            out.extend(
                await self._all(
                    "SELECT item_id, destination, kind, status, last_error FROM deliveries "
                    f"WHERE item_id IN ({','.join('?' * len(chunk))}) ORDER BY id",
                    chunk,
                )
            )
        return [tuple(r) for r in out]  # type: ignore[misc]

    async def story_items(self, story_ids: list[int]) -> dict[int, list[StoredItem]]:
        out: dict[int, list[StoredItem]] = {}
        for chunk in _chunks(story_ids, 400):
            rows = await self._all(
                f"SELECT {_ITEM_COLS} FROM items i JOIN sources s ON s.id=i.source_id "
                f"WHERE i.story_id IN ({','.join('?' * len(chunk))}) ORDER BY i.id",
                chunk,
            )
            for r in rows:
                it = _item(r)
                out.setdefault(it.story_id or 0, []).append(it)
        return out

    async def prune(self, before: float) -> int:
        """Forget items (and their fingerprints, decisions, deliveries) first seen before ``before``.

        Items with deliveries still pending are kept (looked up per old item through the
        deliveries' item index, not by reading every delivery ever made)."""
        unsent = ("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.item_id = items.id "
                  "AND d.status IN ('pending','sending'))")
        async with self._tx() as db:
            await db.execute(
                f"DELETE FROM items_fts WHERE rowid IN (SELECT id FROM items WHERE seen < ? AND {unsent})",
                (before,),
            )
            # the items' deliveries go by cascade, and each one's thread (if it was the root) by the
            # deliveries_forget_thread trigger, found through threads_root: no sweep of all threads
            cur = await db.execute(f"DELETE FROM items WHERE seen < ? AND {unsent}", (before,))
            await db.execute("DELETE FROM stories WHERE updated < ?", (before,))
            return cur.rowcount

    # -- subscriptions ---------------------------------------------------------------------------
    async def add_subscription(
        self, destination: Destination, query: str, normal_form: str, created_by: str, in_config: bool = False
    ) -> tuple[SubscriptionRecord, bool]:
        async with self._tx() as db:
            cur = await db.execute(
                "INSERT INTO subscriptions (destination, workspace, query, normal_form, in_config, created_by, "
                "created) VALUES (?,?,?,?,?,?,?) ON CONFLICT(destination, normal_form) DO NOTHING",
                (str(destination), destination.workspace, query, normal_form, int(in_config), created_by, time.time()),
            )
            created = cur.rowcount > 0
            row = await self._one(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE destination=? AND normal_form=?",
                (str(destination), normal_form),
            )
        return _subscription(row), created

    async def remove_subscription(self, destination: Destination, tag: str) -> SubscriptionRecord | None:
        """Remove by tag as typed, by normal form, or by number (``#3`` / ``3``) within a destination."""
        tag = tag.strip()
        async with self._tx() as db:
            row = await self._one(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE destination=? AND "
                "(query=? OR normal_form=? OR lower(query)=lower(?) OR lower(normal_form)=lower(?)) LIMIT 1",
                (str(destination), tag, tag, tag, tag),
            )
            if row is None:
                return None
            await db.execute("DELETE FROM subscriptions WHERE id=?", (row[0],))
        return _subscription(row)

    async def subscriptions(self, destination: Destination | None = None) -> list[SubscriptionRecord]:
        if destination is None:
            rows = await self._all(f"SELECT {_SUB_COLS} FROM subscriptions ORDER BY id")
        else:
            rows = await self._all(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE destination=? ORDER BY id", (str(destination),)
            )
        return [_subscription(r) for r in rows]

    async def subscriptions_to_match(self) -> list[SubscriptionRow]:
        """Every subscription as the judge needs it, (id, destination, query, paused), and no more:
        at start-up 100,000 of them are read at once, so no record objects or unused columns."""
        rows: list[Any] = list(await self.db.execute_fetchall(
            "SELECT id, destination, query, paused_reason IS NOT NULL FROM subscriptions ORDER BY id"))
        for i, r in enumerate(rows):  # in place: each row read is freed as its tuple is made
            rows[i] = (r[0], _destination(r[1]), r[2], bool(r[3]))
        return rows

    async def sync_config_subscriptions(self, subs: list[tuple[Destination, str, str]]) -> None:
        """Make the config's subscriptions present; drop config subscriptions no longer in it."""
        now = time.time()
        keep = {(str(d), nf) for d, _, nf in subs}
        async with self._tx() as db:
            for dest, query, nf in subs:
                await db.execute(
                    "INSERT INTO subscriptions (destination, workspace, query, normal_form, in_config, created) "
                    "VALUES (?,?,?,?,1,?) ON CONFLICT(destination, normal_form) DO UPDATE SET in_config=1",
                    (str(dest), dest.workspace, query, nf, now),
                )
            rows = await self._all("SELECT id, destination, normal_form FROM subscriptions WHERE in_config=1")
            for sid, dest_s, nf in rows:
                if (dest_s, nf) not in keep:
                    await db.execute("DELETE FROM subscriptions WHERE id=?", (sid,))

    async def pause_destination(self, destination: Destination, reason: str) -> int:
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE subscriptions SET paused_reason=? WHERE destination=?", (reason[:300], str(destination))
            )
            return cur.rowcount

    async def resume_destination(self, destination: Destination) -> int:
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE subscriptions SET paused_reason=NULL WHERE destination=?", (str(destination),)
            )
            await db.execute(
                "UPDATE deliveries SET status='pending', next_attempt=0 WHERE destination=? AND status='paused'",
                (str(destination),),
            )
            return cur.rowcount

    # -- outbox ----------------------------------------------------------------------------------
    async def claim_deliveries(self, now: float, limit: int) -> list[PendingDelivery]:
        """Claim due pending deliveries (status -> sending), oldest first, with what sending needs.
        One transaction, one round trip to the database thread.

        PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` in the same statement."""
        return await self._write_hop(functools.partial(_claim_deliveries, now, limit))

    async def mark_sent(self, sent: Sequence[tuple[int, str, str | None]], now: float) -> None:
        """Record posted messages, (delivery id, message ref, thread ref) each. The records of
        messages posted by other destinations meanwhile are committed in the same transaction
        (`_GroupedWrites`); returns once these are committed."""
        sql = ("UPDATE deliveries SET status='sent', message_ref=?, thread_ref=?, sent_at=?, "
               "attempts=attempts+1, last_error=NULL WHERE id=?")
        await self._grouped.write(sql, [(message_ref, thread_ref, now, delivery_id)
                                        for delivery_id, message_ref, thread_ref in sent])

    async def mark_retry(self, delivery_id: int, error: str, next_attempt: float, give_up: bool) -> None:
        await self._grouped.write(
            "UPDATE deliveries SET status=?, attempts=attempts+1, last_error=?, next_attempt=? WHERE id=?",
            [("failed" if give_up else "pending", error[:500], next_attempt, delivery_id)],
        )

    async def mark_paused(self, destination: Destination, error: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE deliveries SET status='paused', last_error=? WHERE destination=? "
                "AND status IN ('pending','sending')",
                (error[:500], str(destination)),
            )
            await db.execute(
                "UPDATE subscriptions SET paused_reason=? WHERE destination=?", (error[:300], str(destination))
            )

    async def promote_to_alert(self, delivery_id: int) -> None:
        """A reply whose root could not be posted becomes the story's new root in that destination."""
        async with self._tx() as db:
            row = await self._one("SELECT destination, story_id FROM deliveries WHERE id=?", (delivery_id,))
            if row is None:
                return
            await db.execute(
                "UPDATE deliveries SET kind='alert', target_delivery_id=NULL, status='pending' WHERE id=?",
                (delivery_id,),
            )
            await db.execute(
                "UPDATE threads SET root_delivery_id=? WHERE destination=? AND story_id=?",
                (delivery_id, row[0], row[1]),
            )
            await db.execute(
                "UPDATE deliveries SET target_delivery_id=? WHERE destination=? AND story_id=? AND kind='reply' "
                "AND status IN ('pending','sending') AND id != ?",
                (delivery_id, row[0], row[1], delivery_id),
            )

    async def release_claims(self) -> int:
        """At start-up: deliveries left 'sending' by a crash go back to pending."""
        async with self._tx() as db:
            cur = await db.execute("UPDATE deliveries SET status='pending' WHERE status='sending'")
            return cur.rowcount

    async def next_delivery_due(self) -> float | None:
        row = await self._one("SELECT MIN(next_attempt) FROM deliveries WHERE status='pending'")
        return row[0] if row and row[0] is not None else None

    async def delivery_counts(self) -> dict[str, int]:
        rows = await self._all("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        return {r[0]: r[1] for r in rows}

    async def requeue_destination(self, destination: Destination, next_attempt: float) -> int:
        """Hold every pending or claimed delivery of a destination until ``next_attempt`` (no attempt
        counted; a later retry time already set is kept). One statement however many rows."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE deliveries SET status='pending', next_attempt=MAX(next_attempt, ?) "
                "WHERE destination=? AND status IN ('pending','sending')",
                (next_attempt, str(destination)),
            )
            return cur.rowcount


def _transaction(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    """Run ``fn`` inside BEGIN IMMEDIATE … COMMIT on ``conn`` (autocommit mode). On any error,
    the COMMIT's included, roll back if SQLite has not already, and raise the original error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


_DECISION_SQL = "INSERT INTO decisions (item_id, destination, at, decision, detail) VALUES (?,?,?,?,?)"
_DELIVERY_SQL = (
    "INSERT OR IGNORE INTO deliveries (destination, item_id, story_id, kind, tags, target_delivery_id, "
    "next_attempt, created) VALUES (?,?,?,?,?,?,?,?)"
)


def _write_items(batch: list[NewItem], conn: sqlite3.Connection) -> None:
    """`SQLiteStore.write_items` on the database thread, inside its transaction."""
    for new in batch:
        _write_one(conn, new)
    top_item = max((n.item_id or 0) for n in batch)
    top_story = max(n.story_id for n in batch)
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
        [("item", top_item), ("story", top_story)],
    )


def _write_one(conn: sqlite3.Connection, new: NewItem) -> None:
    it = new.item
    published = it.published.timestamp() if it.published else None
    cur = conn.execute(
        "INSERT INTO items (id, source_id, guid, url, title, text, summary, published, seen, categories, "
        "author, story_id, duplicate_of, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(source_id, guid) DO NOTHING",
        (
            new.item_id,
            new.source_id,
            it.guid,
            it.url,
            it.title,
            it.text,
            new.summary,
            published,
            new.seen,
            json.dumps(list(it.categories), ensure_ascii=False),
            it.author,
            new.story_id,
            new.duplicate_of,
            new.origin,
        ),
    )
    if cur.rowcount == 0:  # raced with an identical insert: nothing new
        return
    item_id = cur.lastrowid
    assert item_id is not None
    new.item_id = item_id
    conn.execute("UPDATE sources SET item_count=item_count+1 WHERE id=?", (new.source_id,))
    conn.execute("INSERT INTO items_fts (rowid, title, body, source) VALUES (?,?,?,?)", (item_id, *new.fts))
    if new.story_is_new:
        conn.execute(
            "INSERT OR IGNORE INTO stories (id, title, first_item_id, created, updated) VALUES (?,?,?,?,?)",
            (new.story_id, it.title, item_id, new.seen, new.seen),
        )
    else:
        conn.execute("UPDATE stories SET updated=? WHERE id=?", (new.seen, new.story_id))
    if new.fingerprint is not None:
        conn.execute(
            "INSERT OR REPLACE INTO fingerprints (item_id, created, data) VALUES (?,?,?)",
            (item_id, new.seen, new.fingerprint),
        )
    decisions = [(item_id, destination, new.seen, decision, detail) for destination, decision, detail in new.decisions]
    story_dests = [str(r.destination) if r.destination else "" for r in new.deliveries
                   if r.kind in ("story", "story_if_new")]
    roots: dict[str, int] = {}
    for chunk in _chunks(sorted(set(story_dests)), 400):
        rows = conn.execute(
            "SELECT destination, root_delivery_id FROM threads WHERE story_id=? AND destination IN "
            f"({','.join('?' * len(chunk))})",
            (new.story_id, *chunk),
        ).fetchall()
        roots.update((d, r) for d, r in rows)
    # deliveries go in runs (one executemany each); the roots of the alerts among them are then
    # recorded in one statement (the new rows are those above the largest id before)
    rows: list[tuple[str, int, int, str, str, int | None, float, float]] = []
    alerts = False
    last_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM deliveries").fetchone()[0]
    for req in new.deliveries:
        dest = str(req.destination) if req.destination else ""
        tags = _json_list(req.tags)
        if req.kind == "story_if_new" and dest in roots:
            continue  # the channel has this story already: the copy's update covers it
        if req.kind in ("story", "story_if_new"):
            root = roots.get(dest)
            alerts = alerts or root is None
            kind = "reply" if root is not None else "alert"
            rows.append((dest, item_id, new.story_id, kind, tags, root, 0, new.seen))
            decisions.append((
                item_id,
                dest,
                new.seen,
                f"queued as {'thread reply' if root is not None else 'root alert'}",
                f"story {new.story_id}",
            ))
        elif req.kind == "copy" and req.original_item_id is not None:
            if rows:  # keep the queue order: earlier requests first
                conn.executemany(_DELIVERY_SQL, rows)
                rows.clear()
            decisions.extend(_queue_updates(conn, new, item_id, req.original_item_id, tags))
    if rows:
        conn.executemany(_DELIVERY_SQL, rows)
    if alerts:
        conn.execute(
            "INSERT INTO threads (destination, story_id, root_delivery_id) SELECT destination, story_id, id "
            "FROM deliveries WHERE id > ? AND item_id = ? AND kind = 'alert'",
            (last_id, item_id),
        )
    conn.executemany(_DECISION_SQL, decisions)


def _queue_updates(
    conn: sqlite3.Connection, new: NewItem, item_id: int, original_id: int, tags: str
) -> list[tuple[int, str, float, str, str]]:
    """Edit every message made for the original to name one more outlet (once per outlet).
    Returns the decisions to record."""
    fresh_outlet = conn.execute(
        "SELECT 1 FROM items o WHERE o.id=? AND o.source_id != ? AND NOT EXISTS "
        "(SELECT 1 FROM items c WHERE c.duplicate_of=o.id AND c.source_id=? AND c.id != ?)",
        (original_id, new.source_id, new.source_id, item_id),
    ).fetchone()
    if fresh_outlet is None:
        return [(item_id, "", new.seen, "no update", "the original's messages already name this outlet")]
    targets = conn.execute(
        "SELECT id, destination FROM deliveries WHERE item_id=? AND kind IN ('alert','reply') "
        "AND status != 'failed'",
        (original_id,),
    ).fetchall()
    # a workspace only ever hears of outlets it can see: no update where the copy's source is private
    owners = {r[0] for r in conn.execute("SELECT workspace FROM source_owners WHERE source_id=?", (new.source_id,))}
    decisions = []
    for target_id, dest in targets:
        if "" not in owners and _workspace_of(dest) not in owners:
            continue
        conn.execute(_DELIVERY_SQL, (dest, item_id, new.story_id, "update", tags, target_id, 0, new.seen))
        decisions.append(
            (item_id, dest, new.seen, "queued update", f"'also reported by' on message of item {original_id}")
        )
    return decisions


def _claim_deliveries(now: float, limit: int, conn: sqlite3.Connection) -> list[PendingDelivery]:
    """`SQLiteStore.claim_deliveries` on the database thread, inside its transaction."""
    rows = conn.execute(
        "SELECT d.id, d.destination, d.kind, d.item_id, d.story_id, d.tags, d.attempts, "
        "i.url, i.title, s.name, i.published, i.summary, i.categories, d.target_delivery_id, "
        "t.message_ref, t.thread_ref, t.status, t.kind, i.duplicate_of, t.tags "
        "FROM deliveries d JOIN items i ON i.id=d.item_id JOIN sources s ON s.id=i.source_id "
        "LEFT JOIN deliveries t ON t.id=d.target_delivery_id "
        "WHERE d.status='pending' AND d.next_attempt <= ? "
        # order per destination: not while an earlier row there waits for its retry
        "AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.status='pending' AND e.destination=d.destination "
        "AND e.id < d.id AND e.next_attempt > ?) "
        "ORDER BY d.id LIMIT ?",
        (now, now, limit),
    ).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    for chunk in _chunks(ids, 500):
        conn.execute(f"UPDATE deliveries SET status='sending' WHERE id IN ({','.join('?' * len(chunk))})", chunk)
    out = []
    for r in rows:
        kind = r[2]
        tags = _json_tuple(r[5])
        thread_ref: str | None = None
        target_ref: str | None = None
        also: tuple[str, ...] = ()
        url, title, source, published, summary, categories = r[7], r[8], r[9], r[10], r[11], r[12]
        if kind == "reply":
            thread_ref = r[15]
        elif kind == "update":
            target_ref = r[14]
            tags = _json_tuple(r[19])  # the edited message keeps its tags
            # the target lives in its own thread (a reply) or is the root (thread None)
            thread_ref = r[15] if r[17] == "reply" else None
            # show the target's item, listing every copy's outlet
            shown = _shown_for_update(conn, r[13])
            if shown is not None:
                url, title, source, published, summary, categories, also = shown
        out.append(
            PendingDelivery(
                id=r[0],
                destination=_destination(r[1]),
                kind=kind,
                item_id=r[3],
                story_id=r[4],
                tags=tags,
                attempts=r[6],
                url=url,
                title=title,
                source=source,
                published=published,
                summary=summary,
                categories=_json_tuple(categories),
                thread_ref=thread_ref,
                target_ref=target_ref,
                target_delivery_id=r[13],
                root_state=r[16],
                also_reported_by=also,
            )
        )
    return out


def _shown_for_update(
    conn: sqlite3.Connection, target_delivery_id: int
) -> tuple[str, str, str, float | None, str, str, tuple[str, ...]] | None:
    """What an edited message shows: the item first posted, listing every outlet that copied it.

    If that item credits another outlet as its origin ("originally appeared in X") and X's own
    copy has since arrived, the message shows X's original instead and lists the reprint."""
    tgt = conn.execute(
        "SELECT i.id, i.url, i.title, s.name, i.published, i.summary, i.categories, i.origin, d.destination "
        "FROM deliveries d JOIN items i ON i.id=d.item_id JOIN sources s ON s.id=i.source_id WHERE d.id=?",
        (target_delivery_id,),
    ).fetchone()
    if tgt is None:
        return None
    # only copies from sources the message's workspace can see
    copies = conn.execute(
        "SELECT i.url, i.title, s.name, i.published, i.summary, i.categories FROM items i "
        "JOIN sources s ON s.id=i.source_id WHERE i.duplicate_of=? AND i.source_id IN "
        "(SELECT source_id FROM source_owners WHERE workspace IN ('', ?)) ORDER BY i.id",
        (tgt[0], _workspace_of(tgt[8])),
    ).fetchall()
    shown = tuple(tgt[1:7])
    origin = (tgt[7] or "").casefold()
    if origin:
        for c in copies:
            if _same_outlet(c[2], origin):
                shown = tuple(c)
                break
    names: list[str] = []
    for name in [tgt[3], *(c[2] for c in copies)]:
        if name != shown[2] and name not in names:
            names.append(name)
    return (*shown, tuple(names))  # type: ignore[return-value]


class _GroupedWrites:
    """Small independent writes from many coroutines (a poll's outcome, a sent message's record)
    committed together: the statements queued while a commit is in flight go in the next one, in
    the order they came (runs of the same statement as one ``executemany``), one transaction and one
    round trip for all. At 500 polls a second that is a few commits a second instead of 500.

    Each writer waits for its own commit, so nothing is reported written before it is; if the
    transaction fails, every writer in it gets the error (and the caller's own handling applies:
    the scheduler holds the source, the outbox records the message again). A writer that is
    cancelled while it waits does not stop the commit (the writes are the writer task's)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._queued: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``sql`` once per row of parameters in the next group commit; return once committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((sql, rows))
        self._waiting.append(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        await done

    async def drain(self) -> None:
        """Wait for the commit in flight and those queued behind it (their errors are the writers')."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _write(self) -> None:
        while self._queued:
            batch, waiting = self._queued, self._waiting
            self._queued, self._waiting = [], []
            try:
                await self._store._write_hop(functools.partial(_run_grouped, batch))
            except Exception as e:
                for done in waiting:
                    if not done.done():
                        done.set_exception(e)
                        done.exception()  # retrieved here: a cancelled writer never reads it
            else:
                for done in waiting:
                    if not done.done():
                        done.set_result(None)


def _run_grouped(statements: list[tuple[str, list[tuple[Any, ...]]]], conn: sqlite3.Connection) -> None:
    start = 0
    while start < len(statements):
        sql = statements[start][0]
        rows = list(statements[start][1])
        end = start + 1
        while end < len(statements) and statements[end][0] == sql:
            rows.extend(statements[end][1])
            end += 1
        conn.executemany(sql, rows)
        start = end


def _workspace_of(destination: str) -> str:
    try:
        return Destination.parse(destination).workspace
    except ValueError:
        return ""


def _same_outlet(source_name: str, origin: str) -> bool:
    """Does a source's name denote the outlet an item credits? Equal names, or one name standing
    as whole words inside the other ("Harbour Daily" in "Harbour Daily World"); "AP" is not
    "Apple Daily"."""
    name = " ".join(re.findall(r"\w+", source_name.casefold()))
    origin = " ".join(re.findall(r"\w+", origin.casefold()))
    if not name or not origin:
        return False
    short, long = sorted((name, origin), key=len)
    return f" {short} " in f" {long} "


def _chunks(values: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _split_sql(sql: str) -> list[str]:
    """Split a migration file into complete statements (triggers' BEGIN … END bodies included),
    using SQLite's own notion of a complete statement; comment lines are dropped first."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        text = "\n".join(current).strip()
        if text and sqlite3.complete_statement(text):
            statements.append(text.rstrip(";").strip())
            current = []
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return statements
