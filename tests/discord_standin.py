"""A local stand-in for Discord's REST API (v10) and Gateway, for tests of the Discord adapter.

It speaks to the real discord.py client the way Discord does, as far as the adapter uses it:

* REST under ``/api/v10``: ``/users/@me``, ``/oauth2/applications/@me``, ``/gateway/bot``, command
  sync (``PUT /applications/{app}/commands`` and ``.../guilds/{guild}/commands``), message
  create / edit, threads from messages, interaction callbacks, and interaction follow-ups
  (``/webhooks/{app}/{token}``). Bot routes need ``Authorization: Bot <token>`` (else 401).
  JSON answers carry a Content-Type of exactly ``application/json`` as Discord's do (discord.py
  treats anything else as text); a 429 carries ``Via`` (without it discord.py assumes a
  Cloudflare ban) and a JSON body with ``retry_after`` and ``global``.
* Discord's checks that matter to a bot: unknown channel 404/10003, no access 403/50001,
  unknown message 404/10008, empty message 400/50006, thread already exists 400/160004,
  archived/locked thread 400/50083, embed and content limits 400/50035, interaction answered
  twice 400/40060.
* Gateway at ``/gateway``: HELLO (op 10), IDENTIFY (op 2) -> READY + one GUILD_CREATE per guild
  of that shard (``(guild_id >> 22) % shard_count``), heartbeats ACKed (op 11), dispatches
  zlib-stream compressed when the client asks for ``compress=zlib-stream`` (discord.py does).

Everything the client sent is recorded (``requests``, ``identifies``) so tests can assert on
what "Discord" received. ``interact()`` delivers an INTERACTION_CREATE the way a user's slash
command would; ``fail()`` / ``rate_limit()`` script error answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

API = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
EPHEMERAL = 1 << 6

# Discord's embed limits, checked as Discord checks them.
_LIMITS = {"title": 256, "description": 4096, "footer": 2048, "author": 256}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return _json({"message": message, "code": code, **extra}, status=status)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class _HTTPError(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


@dataclass
class Recorded:
    """One HTTP request the client made."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int = 0
    at: float = field(default_factory=time.monotonic)


_REC = web.RequestKey("rec", Recorded)


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    response: Callable[[], web.Response]
    times: int


@dataclass
class SentInteraction:
    id: str
    token: str
    name: str
    guild_id: int
    channel_id: int
    dispatched_at: float
    responses: list[Recorded] = field(default_factory=list)


_FOR = web.RequestKey("interaction", SentInteraction)


@dataclass
class _Session:
    ws: web.WebSocketResponse
    compressor: Any | None
    shard: tuple[int, int] = (0, 1)
    seq: int = 0
    identified: bool = False


class DiscordStandIn:
    def __init__(self, *, token: str = "standin-bot-token", shards: int = 1) -> None:
        self.token = token
        self.recommended_shards = shards
        self._ids = itertools.count(1)
        self.bot_id = self.snowflake()
        self.bot_user = {
            "id": str(self.bot_id),
            "username": "Tagwire",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "verified": True,
            "flags": 0,
            "mfa_enabled": False,
            "public_flags": 0,
        }
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}  # text channels and threads
        self.forbidden: set[int] = set()  # channels the bot cannot access (403 Missing Access)
        self.messages: dict[int, dict[str, Any]] = {}
        self._nonces: dict[tuple[int, str], int] = {}
        self._lose: list[_Failure] = []
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # None: global
        self.requests: list[Recorded] = []
        self.identifies: list[dict[str, Any]] = []
        self.interactions: dict[str, SentInteraction] = {}
        self._failures: list[_Failure] = []
        self._sessions: list[_Session] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- set-up -------------------------------------------------------------------------------

    def snowflake(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def add_guild(
        self, name: str = "Guild", *, channels: int = 1, shard: tuple[int, int] | None = None
    ) -> tuple[int, list[int]]:
        """A guild the bot is in, with ``channels`` text channels. Returns (guild id, channel ids).

        ``shard=(id, count)`` picks a guild id that Discord's formula puts on that shard.
        """
        gid = self.snowflake()
        if shard is not None:
            shard_id, count = shard
            gid += ((shard_id - (gid >> 22)) % count) << 22
        chans = []
        for i in range(channels):
            cid = self.snowflake()
            self.channels[cid] = {
                "id": str(cid),
                "type": 0,
                "guild_id": str(gid),
                "name": f"news-{i}",
                "position": i,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "default_auto_archive_duration": 1440,
                "flags": 0,
            }
            chans.append(cid)
        self.guilds[gid] = {"id": gid, "name": name, "channels": chans}
        return gid, chans

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        body: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and the ``path`` regex with an error."""
        self._failures.append(
            _Failure(method, re.compile(path), lambda: _json(body, status=status, headers=headers), times)
        )

    def lose_answer(self, method: str, path: str, *, times: int = 1) -> None:
        """Do the next matching request, then drop the connection instead of answering
        (the client cannot know whether it worked)."""
        self._lose.append(_Failure(method, re.compile(path), lambda: web.Response(status=500), times))

    def rate_limit(self, method: str, path: str, retry_after: float, *, times: int = 1, global_: bool = False) -> None:
        """Script a 429 as Discord sends it (through Cloudflare, hence ``Via``)."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": global_}
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Scope": "user",
        }
        self.fail(method, path, 429, body, headers=headers, times=times)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        r = app.router
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/oauth2/applications/@me", self._application)
        r.add_get(API + "/applications/@me", self._application)
        r.add_get(API + "/gateway/bot", self._gateway_bot)
        r.add_get(API + "/gateway", self._gateway_plain)
        r.add_put(API + "/applications/{app}/commands", self._put_commands)
        r.add_put(API + "/applications/{app}/guilds/{guild}/commands", self._put_commands)
        r.add_post(API + "/channels/{channel}/messages", self._create_message)
        r.add_patch(API + "/channels/{channel}/messages/{message}", self._edit_message)
        r.add_post(API + "/channels/{channel}/messages/{message}/threads", self._create_thread)
        r.add_post(API + "/interactions/{id}/{token}/callback", self._callback)
        r.add_post(API + "/webhooks/{app}/{token}", self._followup)
        r.add_patch(API + "/webhooks/{app}/{token}/messages/{message}", self._edit_original)
        r.add_delete(API + "/webhooks/{app}/{token}/messages/{message}", self._delete_original)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for s in list(self._sessions):
            with contextlib.suppress(Exception):
                await s.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> DiscordStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- what the client sent -----------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[Recorded], bool], within: float = 5.0) -> Recorded:
        """The first recorded request matching ``predicate``, waiting for it if needed."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for rec in self.requests:
                    if predicate(rec):
                        return rec
                await self._changed.wait()

    def sent(self, method: str, path_regex: str) -> list[Recorded]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    def message_posts(self) -> list[Recorded]:
        """Every request by which the bot put words in front of people (messages, edits, replies)."""
        posting = (
            ("POST", r"/channels/\d+/messages"),
            ("PATCH", r"/channels/\d+/messages/\d+"),
            ("POST", r"/webhooks/\d+/[^/]+"),
            ("PATCH", r"/webhooks/\d+/[^/]+/messages/.+"),
        )
        out = [r for r in self.requests for m, p in posting if r.method == m and re.fullmatch(p, r.path)]
        out += [
            r
            for r in self.sent("POST", r"/interactions/\d+/[^/]+/callback")
            if isinstance(r.body, dict) and r.body.get("type") == 4
        ]
        return out

    # --- HTTP plumbing ------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(
            method=request.method,
            path=request.path.removeprefix(API),
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
        )
        request[_REC] = rec
        try:
            response = self._scripted(rec)
            if response is None:
                bot_route = not rec.path.startswith(("/interactions/", "/webhooks/"))
                if bot_route and request.headers.get("Authorization") != f"Bot {self.token}":
                    response = _error(401, 0, "401: Unauthorized")
                else:
                    response = await handler(request)
        except _HTTPError as e:
            response = e.response
        rec.status = response.status
        for lose in self._lose:
            if lose.times > 0 and lose.method == rec.method and lose.pattern.fullmatch(rec.path):
                lose.times -= 1
                rec.status = 0  # no answer
                if request.transport is not None:
                    request.transport.abort()
                break
        self.requests.append(rec)
        if request.get(_FOR) is not None:
            request[_FOR].responses.append(rec)  # recorded together, so waiters see both
        await self._notify()
        return response

    def _scripted(self, rec: Recorded) -> web.Response | None:
        for f in self._failures:
            if f.times > 0 and f.method == rec.method and f.pattern.fullmatch(rec.path):
                f.times -= 1
                return f.response()
        return None

    # --- REST: identity and commands ----------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(self.bot_id),
                "name": "Tagwire",
                "icon": None,
                "description": "",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "bot": self.bot_user,
                "owner": {**self.bot_user, "id": str(self.snowflake()), "username": "owner", "bot": False},
                "summary": "",
                "verify_key": "0" * 64,
                "team": None,
                "flags": 0,
                "interactions_endpoint_url": None,
                "tags": [],
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14400000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _gateway_plain(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _put_commands(self, request: web.Request) -> web.Response:
        if int(request.match_info["app"]) != self.bot_id:
            return _error(403, 50001, "Missing Access")
        guild = request.match_info.get("guild")
        gid = int(guild) if guild else None
        if gid is not None and gid not in self.guilds:
            return _error(403, 50001, "Missing Access")
        body = request[_REC].body
        if not isinstance(body, list):
            return _error(400, 50035, "Invalid Form Body")
        out = []
        for cmd in body:
            if not re.fullmatch(r"[-_\w]{1,32}", cmd.get("name", "")) or cmd["name"] != cmd["name"].lower():
                return _error(400, 50035, "Invalid Form Body", errors={"name": cmd.get("name")})
            if not 1 <= len(cmd.get("description", "")) <= 100:
                return _error(400, 50035, "Invalid Form Body", errors={"description": cmd.get("name")})
            entry = {
                **cmd,
                "id": str(self.snowflake()),
                "application_id": str(self.bot_id),
                "version": str(self.snowflake()),
                "type": cmd.get("type", 1),
                "default_member_permissions": (
                    None if cmd.get("default_member_permissions") is None else str(cmd["default_member_permissions"])
                ),
                "nsfw": cmd.get("nsfw", False),
                "options": cmd.get("options", []),
            }
            if gid is not None:
                entry["guild_id"] = str(gid)
            out.append(entry)
        self.commands[gid] = out
        return _json(out)

    # --- REST: messages and threads -----------------------------------------------------------

    def _channel(self, raw: str) -> dict[str, Any]:
        cid = int(raw)
        if cid in self.forbidden:
            raise _HTTPError(_error(403, 50001, "Missing Access"))
        chan = self.channels.get(cid)
        if chan is None:
            raise _HTTPError(_error(404, 10003, "Unknown Channel"))
        return chan

    @staticmethod
    def _check_message_body(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HTTPError(_error(400, 50035, "Invalid Form Body"))
        content = body.get("content") or ""
        embeds = body.get("embeds") or []
        problems: dict[str, str] = {}
        if len(content) > 2000:
            problems["content"] = "Must be 2000 or fewer in length."
        if len(embeds) > 10:
            problems["embeds"] = "Must be 10 or fewer in length."
        total = 0
        for i, e in enumerate(embeds):
            for key, limit in _LIMITS.items():
                value = e.get(key)
                text = value.get("text" if key == "footer" else "name", "") if isinstance(value, dict) else value
                if text and len(text) > limit:
                    problems[f"embeds.{i}.{key}"] = f"Must be {limit} or fewer in length."
                total += len(text or "")
            fields = e.get("fields") or []
            if len(fields) > 25:
                problems[f"embeds.{i}.fields"] = "Must be 25 or fewer in length."
            for j, f in enumerate(fields):
                if not f.get("name") or not f.get("value"):
                    problems[f"embeds.{i}.fields.{j}"] = "This field is required"
                if len(f.get("name", "")) > 256 or len(f.get("value", "")) > 1024:
                    problems[f"embeds.{i}.fields.{j}"] = "Too long."
                total += len(f.get("name", "")) + len(f.get("value", ""))
            url = e.get("url")
            if url is not None and not re.match(r"https?://[^\s/]+", url):
                problems[f"embeds.{i}.url"] = "Not a well formed URL."
        if total > 6000:
            problems["embeds"] = "Embed size exceeds maximum size of 6000"
        if problems:
            raise _HTTPError(_error(400, 50035, "Invalid Form Body", errors=problems))
        if not content and not embeds:
            raise _HTTPError(_error(400, 50006, "Cannot send an empty message"))
        return body

    def _message(self, channel_id: int, body: dict[str, Any], *, webhook: bool = False) -> dict[str, Any]:
        mid = self.snowflake()
        chan = self.channels.get(channel_id)
        msg = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "type": 0,
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "author": self.bot_user,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "pinned": False,
            "flags": int(body.get("flags") or 0),
            "components": [],
            "allowed_mentions": body.get("allowed_mentions"),
        }
        if chan is not None and chan.get("guild_id"):
            msg["guild_id"] = chan["guild_id"]
        if webhook:
            msg["webhook_id"] = str(self.bot_id)
            msg["application_id"] = str(self.bot_id)
        self.messages[mid] = msg
        return msg

    def _writable(self, chan: dict[str, Any]) -> None:
        meta = chan.get("thread_metadata")
        if meta and meta.get("locked"):
            raise _HTTPError(_error(400, 50083, "Thread is archived"))

    async def _create_message(self, request: web.Request) -> web.Response:
        chan = self._channel(request.match_info["channel"])
        self._writable(chan)
        body = self._check_message_body(request[_REC].body)
        nonce = body.get("nonce")
        if nonce and body.get("enforce_nonce"):
            # Discord: the same author, nonce and channel within minutes -> the message it already made
            earlier = self._nonces.get((int(chan["id"]), str(nonce)))
            if earlier is not None and earlier in self.messages:
                return _json({k: v for k, v in self.messages[earlier].items() if k != "allowed_mentions"})
        msg = self._message(int(chan["id"]), body)
        if nonce:
            msg["nonce"] = str(nonce)
            self._nonces[(int(chan["id"]), str(nonce))] = int(msg["id"])
        chan["last_message_id"] = msg["id"]
        if chan.get("thread_metadata"):
            chan["thread_metadata"]["archived"] = False  # sending unarchives an archived thread
            chan["message_count"] += 1
        return _json({k: v for k, v in msg.items() if k != "allowed_mentions"})

    async def _edit_message(self, request: web.Request) -> web.Response:
        chan = self._channel(request.match_info["channel"])
        self._writable(chan)
        msg = self.messages.get(int(request.match_info["message"]))
        if msg is None or msg["channel_id"] != chan["id"]:
            return _error(404, 10008, "Unknown Message")
        body = request[_REC].body or {}
        merged = {"content": body.get("content", msg["content"]), "embeds": body.get("embeds", msg["embeds"])}
        self._check_message_body(merged)
        msg.update(merged, edited_timestamp=_now_iso())
        return _json({k: v for k, v in msg.items() if k != "allowed_mentions"})

    async def _create_thread(self, request: web.Request) -> web.Response:
        chan = self._channel(request.match_info["channel"])
        mid = int(request.match_info["message"])
        msg = self.messages.get(mid)
        if msg is None or msg["channel_id"] != chan["id"]:
            return _error(404, 10008, "Unknown Message")
        if mid in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        body = request[_REC].body or {}
        name = body.get("name") or ""
        if not 1 <= len(name) <= 100:
            return _error(400, 50035, "Invalid Form Body", errors={"name": "Must be between 1 and 100 in length."})
        thread = {
            "id": str(mid),  # a thread started from a message shares the message's id
            "type": 11,
            "guild_id": chan["guild_id"],
            "parent_id": chan["id"],
            "owner_id": str(self.bot_id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": body.get("rate_limit_per_user") or 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": body.get("auto_archive_duration", 1440),
                "archive_timestamp": _now_iso(),
                "locked": False,
                "create_timestamp": _now_iso(),
            },
            "total_message_sent": 0,
        }
        self.channels[mid] = thread
        msg["thread"] = thread
        return _json(thread, status=201)

    # --- test controls for channels -----------------------------------------------------------

    def delete_channel(self, channel_id: int) -> None:
        self.channels.pop(channel_id, None)

    def delete_message(self, message_id: int) -> None:
        self.messages.pop(message_id, None)

    def lock_thread(self, thread_id: int) -> None:
        self.channels[thread_id]["thread_metadata"].update(archived=True, locked=True)

    def posted_in(self, channel_id: int, *, command_answers: bool = False) -> list[dict[str, Any]]:
        """Messages now in a channel or thread, oldest first; answers to slash commands only if asked."""
        return [
            m
            for m in self.messages.values()
            if m["channel_id"] == str(channel_id) and (command_answers or "webhook_id" not in m)
        ]

    # --- interactions -------------------------------------------------------------------------

    def _command_id(self, name: str, guild_id: int) -> tuple[str, int | None]:
        for gid in (guild_id, None):
            for cmd in self.commands.get(gid, []):
                if cmd["name"] == name:
                    return cmd["id"], gid
        raise AssertionError(f"command /{name} was never synced (guild {guild_id} or global)")

    async def interact(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int | None = None,
        permissions: int = 0,
        autocomplete: bool = False,
    ) -> SentInteraction:
        """Deliver a slash command (or an autocomplete request) as a member would trigger it.

        ``permissions`` is the member's resolved permission integer in the channel (Discord
        sends it as ``member.permissions``); 1 << 5 is Manage Server.
        """
        cmd_id, cmd_guild = self._command_id(name, guild_id)
        iid = str(self.snowflake())
        token = f"aW50ZXJhY3Rpb246{iid}:{next(self._ids)}"
        uid = user_id or self.snowflake()
        chan = self.channels.get(channel_id) or {"id": str(channel_id), "type": 0, "guild_id": str(guild_id)}
        data: dict[str, Any] = {"id": cmd_id, "name": name, "type": 1, "options": options or []}
        if cmd_guild is not None:
            data["guild_id"] = str(cmd_guild)
        payload = {
            "id": iid,
            "application_id": str(self.bot_id),
            "type": 4 if autocomplete else 2,
            "data": data,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": {**chan, "permissions": str(permissions)},
            "member": {
                "user": {
                    "id": str(uid),
                    "username": f"user{uid % 1000}",
                    "discriminator": "0",
                    "global_name": None,
                    "avatar": None,
                    "public_flags": 0,
                },
                "roles": [],
                "joined_at": _now_iso(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "nick": None,
                "avatar": None,
                "premium_since": None,
                "communication_disabled_until": None,
                "permissions": str(permissions),
            },
            "token": token,
            "version": 1,
            "app_permissions": str(1 << 11 | 1 << 14 | 1 << 35 | 1 << 38),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        sent = SentInteraction(iid, token, name, guild_id, channel_id, time.monotonic())
        self.interactions[token] = sent
        await self.dispatch(guild_id, "INTERACTION_CREATE", payload)
        return sent

    async def answer(self, sent: SentInteraction, count: int = 1, within: float = 5.0) -> list[Recorded]:
        """Wait until the bot made ``count`` requests on this interaction; return them in order."""
        async with asyncio.timeout(within), self._changed:
            while len(sent.responses) < count:
                await self._changed.wait()
        return sent.responses[:count]

    async def _callback(self, request: web.Request) -> web.Response:
        rec: Recorded = request[_REC]
        sent = self.interactions.get(request.match_info["token"])
        if sent is None or sent.id != request.match_info["id"]:
            return _error(404, 10062, "Unknown interaction")
        if any(r.path.endswith("/callback") for r in sent.responses):
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body = rec.body or {}
        kind = body.get("type")
        data = body.get("data") or {}
        if time.monotonic() - sent.dispatched_at > 3.0:
            return _error(404, 10062, "Unknown interaction")
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:
            self._check_message_body(data)
            resource["message"] = self._message(sent.channel_id, data, webhook=True)
        request[_FOR] = sent
        return _json(
            {
                "interaction": {
                    "id": sent.id,
                    "type": 2,
                    "response_message_id": resource.get("message", {}).get("id"),
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(int(data.get("flags") or 0) & EPHEMERAL),
                },
                "resource": resource,
            }
        )

    def _interaction_for(self, request: web.Request) -> SentInteraction:
        sent = self.interactions.get(request.match_info["token"])
        if sent is None or int(request.match_info["app"]) != self.bot_id:
            raise _HTTPError(_error(404, 10015, "Unknown Webhook"))
        if not any(r.path.endswith("/callback") for r in sent.responses):
            raise _HTTPError(_error(404, 10015, "Unknown Webhook"))  # never acknowledged
        return sent

    async def _followup(self, request: web.Request) -> web.Response:
        sent = self._interaction_for(request)
        rec: Recorded = request[_REC]
        body = self._check_message_body(rec.body)
        request[_FOR] = sent
        return _json(self._message(sent.channel_id, body, webhook=True))

    async def _edit_original(self, request: web.Request) -> web.Response:
        sent = self._interaction_for(request)
        rec: Recorded = request[_REC]
        body = self._check_message_body(rec.body)
        request[_FOR] = sent
        return _json(self._message(sent.channel_id, body, webhook=True))

    async def _delete_original(self, request: web.Request) -> web.Response:
        sent = self._interaction_for(request)
        request[_FOR] = sent
        return web.Response(status=204)

    # --- gateway ------------------------------------------------------------------------------

    def _guilds_of(self, shard: tuple[int, int]) -> list[int]:
        shard_id, count = shard
        return [g for g in self.guilds if (g >> 22) % count == shard_id]

    async def _send(self, s: _Session, payload: dict[str, Any]) -> None:
        if payload.get("op") == 0:
            s.seq += 1
            payload["s"] = s.seq
        else:
            payload.setdefault("s", None)
        payload.setdefault("t", None)
        text = json.dumps(payload)
        if s.compressor is not None:
            await s.ws.send_bytes(s.compressor.compress(text.encode()) + s.compressor.flush(zlib.Z_SYNC_FLUSH))
        else:
            await s.ws.send_str(text)

    async def dispatch(self, guild_id: int, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH event on the connection of the shard that owns the guild."""
        for s in self._sessions:
            if s.identified and guild_id in self._guilds_of(s.shard):
                await self._send(s, {"op": 0, "t": event, "d": data})
                return
        raise AssertionError(f"no identified gateway session serves guild {guild_id}")

    def _guild_create(self, gid: int) -> dict[str, Any]:
        g = self.guilds[gid]
        return {
            "id": str(gid),
            "name": g["name"],
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.snowflake()),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                {
                    "id": str(gid),
                    "name": "@everyone",
                    "color": 0,
                    "colors": {"primary_color": 0},
                    "hoist": False,
                    "position": 0,
                    "permissions": str(1 << 10 | 1 << 11 | 1 << 16),
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "stickers": [],
            "joined_at": _now_iso(),
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "voice_states": [],
            "members": [
                {
                    "user": self.bot_user,
                    "roles": [],
                    "joined_at": _now_iso(),
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                    "pending": False,
                    "nick": None,
                    "avatar": None,
                }
            ],
            "channels": [self.channels[c] for c in g["channels"] if c in self.channels],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream"):
            await ws.close(code=4000, message=b"unsupported compression")
            return ws
        s = _Session(ws=ws, compressor=zlib.compressobj() if compress == "zlib-stream" else None)
        self._sessions.append(s)
        try:
            await self._send(s, {"op": 10, "d": {"heartbeat_interval": 41250}})
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                op, d = msg.get("op"), msg.get("d")
                if op == 1:
                    await self._send(s, {"op": 11})
                elif op == 2:
                    await self._identify(s, d)
                elif op == 6:
                    s.identified = True
                    await self._send(s, {"op": 0, "t": "RESUMED", "d": {}})
        finally:
            self._sessions.remove(s)
        return ws

    async def _identify(self, s: _Session, d: dict[str, Any]) -> None:
        self.identifies.append(d)
        await self._notify()
        if d.get("token") != self.token:
            await s.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard = d.get("shard") or [0, 1]
        s.shard = (int(shard[0]), int(shard[1]))
        s.identified = True
        guilds = self._guilds_of(s.shard)
        await self._send(
            s,
            {
                "op": 0,
                "t": "READY",
                "d": {
                    "v": 10,
                    "user": self.bot_user,
                    "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
                    "session_id": f"session-{next(self._ids)}",
                    "resume_gateway_url": self.gateway_url,
                    "shard": list(s.shard),
                    "application": {"id": str(self.bot_id), "flags": 0},
                    "private_channels": [],
                    "presences": [],
                    "relationships": [],
                    "guild_join_requests": [],
                    "user_settings": {},
                },
            },
        )
        for g in guilds:
            await self._send(s, {"op": 0, "t": "GUILD_CREATE", "d": self._guild_create(g)})
