"""A local stand-in for Slack, for tests: the Web API, response_url hooks and Socket Mode.

An aiohttp app on 127.0.0.1 (random port) that answers like Slack does, for the calls Tagwire makes:

- Web API at ``{base_url}{method}`` (``auth.test``, ``apps.connections.open``, ``chat.postMessage``,
  ``chat.update``, ``users.info``): bearer tokens are checked (a wrong token is ``invalid_auth``, a
  bot token on ``apps.connections.open`` is ``not_allowed_token_type``); errors are HTTP 200 with
  ``{"ok": false, "error": …}``; a rate limit is HTTP 429 with ``Retry-After``; channels can be
  missing, archived or private without the bot; messages and their threads are kept per channel.
  Blocks are checked against Slack's limits (50 blocks, 3000 characters per section text).
- ``response_url`` hooks: ``response_url()`` makes one; what the app posts there is in ``responses``.
- Socket Mode: ``apps.connections.open`` returns ``ws://127.0.0.1:PORT/link/?ticket=…``; on connect
  the stand-in sends ``hello``; ``push_slash_command`` sends a ``slash_commands`` envelope and
  the app's acknowledgements land in ``acks``.

It also plays Slack's side of HTTP mode: `slash_command_form` builds the form Slack posts and
`signed_headers` signs it (``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

MAX_BLOCKS = 50
MAX_SECTION = 3000


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    token: str | None
    status: int
    at: float  # time.monotonic() when it arrived
    error: str | None = None


@dataclass
class Channel:
    id: str
    archived: bool = False
    member: bool = True  # the bot is in the channel
    public: bool = True  # chat:write.public lets the bot post in public channels it has not joined
    messages: list[dict[str, Any]] = field(default_factory=list)


def sign(secret: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def signed_headers(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(secret, ts, body),
    }


class SlackStandIn:
    def __init__(
        self,
        *,
        bot_token: str = "xoxb-standin-bot",
        app_token: str = "xapp-standin-app",
        signing_secret: str = "standin-signing-secret",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.calls: list[ApiCall] = []
        self.responses: list[dict[str, Any]] = []  # {"hook": id, "json": body, "at": t}
        self.acks: list[dict[str, Any]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self._hooks: set[str] = set()
        self._tickets: set[str] = set()
        self._rate_limits: dict[str, deque[str]] = defaultdict(deque)
        self._failures: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
        self._ts = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ set-up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    def add_channel(self, channel_id: str, **kw: Any) -> Channel:
        self.channels[channel_id] = Channel(channel_id, **kw)
        return self.channels[channel_id]

    def add_user(self, user_id: str, *, team_id: str | None = None, **flags: bool) -> None:
        self.users[user_id] = {"id": user_id, "team_id": team_id or self.team_id, **flags}

    def rate_limit_next(self, method: str, retry_after: str = "1", times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get HTTP 429 with this Retry-After."""
        self._rate_limits[method].extend([retry_after] * times)

    def fail_next(self, method: str, error: str, status: int = 200, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` fail with ``error`` (HTTP ``status``)."""
        self._failures[method].extend([(status, error)] * times)

    def response_url(self) -> str:
        hook = uuid.uuid4().hex
        self._hooks.add(hook)
        return f"{self.url}/hooks/{hook}"

    # ------------------------------------------------------------------ queries

    def calls_to(self, method: str, ok_only: bool = False) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (not ok_only or c.error is None)]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        return self.channels[channel].messages

    async def wait_for(self, predicate: Callable[[], Any], within: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked whenever the stand-in receives something)."""
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the stand-in did not receive what the test waited for")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> SlackStandIn:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/hooks/{hook}", self._hook)
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _notify(self) -> None:
        self._changed.set()

    # ------------------------------------------------------------------ Web API

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else args.get("token")

        def record(status: int, error: str | None) -> None:
            self.calls.append(ApiCall(method, args, token, status, time.monotonic(), error))
            self._notify()

        if self._rate_limits[method]:
            retry_after = self._rate_limits[method].popleft()
            record(429, "ratelimited")
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": retry_after}
            )
        if self._failures[method]:
            status, error = self._failures[method].popleft()
            record(status, error)
            return web.json_response({"ok": False, "error": error}, status=status)

        handler = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "users.info": self._users_info,
        }.get(method)
        if handler is None:
            result: dict[str, Any] = {"ok": False, "error": "unknown_method"}
        elif method != "apps.connections.open" and token != self.bot_token:
            result = {"ok": False, "error": "not_authed" if not token else "invalid_auth"}
        else:
            result = handler(args, token)
        record(200, None if result.get("ok") else str(result.get("error")))
        return web.json_response(result)

    def _auth_test(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://standin.slack.invalid/",
            "team": "Stand-in",
            "user": "tagwire",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B0001",
        }

    def _connections_open(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        if token != self.app_token:
            return {"ok": False, "error": "not_allowed_token_type" if token == self.bot_token else "invalid_auth"}
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}"}

    def _channel_error(self, channel_id: str) -> str | None:
        channel = self.channels.get(channel_id)
        if channel is None:
            return "channel_not_found"
        if channel.archived:
            return "is_archived"
        if not channel.member and not channel.public:
            return "not_in_channel"
        return None

    @staticmethod
    def _blocks(args: dict[str, Any]) -> list[dict[str, Any]] | None:
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # form-encoded callers send JSON text
            blocks = json.loads(blocks)
        return blocks

    @classmethod
    def _blocks_error(cls, blocks: list[dict[str, Any]] | None) -> str | None:
        if blocks is None:
            return None
        if len(blocks) > MAX_BLOCKS:
            return "invalid_blocks"
        for block in blocks:
            if block.get("type") == "section":
                text = (block.get("text") or {}).get("text", "")
                if not text or len(text) > MAX_SECTION:
                    return "invalid_blocks"
            if block.get("type") == "context" and not block.get("elements"):
                return "invalid_blocks"
        return None

    def _post_message(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        error = self._channel_error(str(args.get("channel", "")))
        blocks = self._blocks(args)
        if error is None and not args.get("text") and not blocks:
            error = "no_text"
        error = error or self._blocks_error(blocks)
        if error:
            return {"ok": False, "error": error}
        channel = self.channels[str(args["channel"])]
        ts = f"{1_700_000_000 + next(self._ts)}.000100"
        message = {
            "type": "message",
            "ts": ts,
            "user": self.bot_user_id,
            "text": args.get("text", ""),
            "blocks": blocks,
            "thread_ts": args.get("thread_ts"),
            "edits": [],
        }
        channel.messages.append(message)
        public = {k: v for k, v in message.items() if k != "edits" and v is not None}
        return {"ok": True, "channel": channel.id, "ts": ts, "message": public}

    def _update(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        error = self._channel_error(str(args.get("channel", "")))
        blocks = self._blocks(args)
        error = error or self._blocks_error(blocks)
        if error:
            return {"ok": False, "error": error}
        channel = self.channels[str(args["channel"])]
        found = [m for m in channel.messages if m["ts"] == args.get("ts")]
        if not found:
            return {"ok": False, "error": "message_not_found"}
        message = found[0]
        message["edits"].append({"text": message["text"], "blocks": message["blocks"]})
        message["text"] = args.get("text", message["text"])
        message["blocks"] = blocks if blocks is not None else message["blocks"]
        return {"ok": True, "channel": channel.id, "ts": message["ts"], "text": message["text"]}

    def _users_info(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        user = self.users.get(str(args.get("user", "")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        flags = {"is_admin": False, "is_owner": False, "is_primary_owner": False, "is_bot": False}
        return {"ok": True, "user": {**flags, **user}}

    # ------------------------------------------------------------------ response_url

    async def _hook(self, request: web.Request) -> web.Response:
        hook = request.match_info["hook"]
        if hook not in self._hooks:
            return web.Response(status=404, text="no_active_hooks")
        self.responses.append({"hook": hook, "json": await request.json(), "at": time.monotonic()})
        self._notify()
        return web.Response(text="ok")

    # ------------------------------------------------------------------ Socket Mode

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.sockets),
                "debug_info": {"host": "standin", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "A0001"},
            }
        )
        self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(msg.data))
                    self._notify()
        finally:
            self.sockets.remove(ws)
            self._notify()
        return ws

    async def push_slash_command(self, **fields: str) -> str:
        """Send a slash command envelope over the open Socket Mode connection; returns its id."""
        await self.wait_for(lambda: self.sockets)
        envelope_id = uuid.uuid4().hex
        payload = slash_command_form(self, **fields)
        await self.sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": "slash_commands",
                "accepts_response_payload": True,
                "payload": payload,
            }
        )
        return envelope_id


def slash_command_form(
    standin: SlackStandIn,
    *,
    text: str,
    channel_id: str = "C0001",
    user_id: str = "U0001",
    team_id: str | None = None,
    command: str = "/tagwire",
) -> dict[str, str]:
    """The fields Slack sends for a slash command (with a fresh response_url on the stand-in)."""
    return {
        "token": "deprecated-verification-token",
        "team_id": team_id or standin.team_id,
        "team_domain": "standin",
        "channel_id": channel_id,
        "channel_name": "news",
        "user_id": user_id,
        "user_name": "someone",
        "command": command,
        "text": text,
        "api_app_id": "A0001",
        "is_enterprise_install": "false",
        "response_url": standin.response_url(),
        "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().int % 10**6}",
    }


def form_body(fields: dict[str, str]) -> str:
    return urlencode(fields)
