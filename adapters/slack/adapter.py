"""The Slack adapter: slash commands in, Block Kit alerts out, through slack-bolt and slack_sdk.

- Connection: Socket Mode by default (bot token + app-level token, no public URL needed), or HTTP
  mode (Bolt's aiohttp app on ``http_port``, every request's signature verified with the signing
  secret). All Web API calls, including Socket Mode's ``apps.connections.open``, go to
  ``[slack].api_base_url``, so the adapter can run against a local stand-in.
- Commands: one slash command (``/tagwire`` by default) with subcommands. The command is acked at
  once (Slack allows 3 s), the core is asked, and the answer goes to the command's ``response_url``:
  errors and personal answers ephemeral, confirmations in the channel (the core's `Reply` decides).
- Alerts: a story's first alert is a top-level message; later items are replies with ``thread_ts``;
  "also reported by" edits the message with ``chat.update``. Posts are paced per channel; 429 waits
  for Retry-After (up to a bound, then the core is told to come back later); server errors are
  retried with backoff; a channel that is gone pauses, bad credentials are fatal.

Tokens come only from the environment variables the config names and are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.commands import SUBCOMMANDS, split_subcommand
from adapters.slack.render import MAX_FALLBACK, clip, render_alert, render_reply
from bot.adapter import CommandPort
from bot.config import Config, ConfigError, SlackConfig
from bot.models import (
    Command,
    DeliveryError,
    Destination,
    MessageKind,
    OutgoingMessage,
    Reply,
    SendResult,
)

log = logging.getLogger("tagwire.slack")

PAUSE_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived", "channel_is_archived"})
FATAL_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
    }
)
# Slack refused our blocks: post the plain text instead rather than never posting
BLOCK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long"})
# the message to edit is gone or can no longer be edited: the edit can never succeed
GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


@dataclass(frozen=True, slots=True)
class SlackTuning:
    """Timings and bounds; the defaults suit production, tests shrink them."""

    request_timeout: float = 15.0  # every Web API call
    rate_limit_retries: int = 2  # 429s waited out inside one send
    max_rate_limit_wait: float = 30.0  # a longer Retry-After goes back to the core instead
    server_error_retries: int = 2
    server_error_backoff: float = 0.5  # seconds, doubled per attempt
    admin_cache_ttl: float = 300.0
    admin_cache_size: int = 2048
    command_timeout: float = 60.0  # how long the core may take for one command
    connect_timeout: float = 30.0  # Socket Mode connection at start
    ping_interval: float = 10.0  # Socket Mode keep-alive
    http_path: str = "/slack/events"


def retry_after_seconds(headers: Any, default: float = 1.0) -> float:
    """The Retry-After header in seconds (Slack sends whole seconds; fractions are accepted)."""
    value: Any = None
    for key in headers.keys() if headers is not None else ():
        if str(key).lower() == "retry-after":
            value = headers[key]
            break
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if seconds >= 0 else default


class ProportionalJitter(Jitter):
    """Up to +50% of the interval (slack_sdk's default adds up to a whole second to every wait)."""

    def recalculate(self, duration: float) -> float:
        return duration * (1.0 + 0.5 * random.random())


class RateLimitRetryHandler(AsyncRetryHandler):
    """Wait out a 429's Retry-After and try again, unless the wait is longer than ``max_wait``.

    slack_sdk's own handler rounds down to whole seconds and adds up to a second of jitter; this one
    waits exactly what Slack asked and leaves long waits to the caller (the core's retry schedule),
    so one rate-limited channel does not hold the outbox.
    """

    def __init__(self, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return (
            response is not None
            and response.status_code == 429
            and retry_after_seconds(response.headers) <= self.max_wait
        )

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = retry_after_seconds(response.headers if response is not None else None)
        log.info("slack: rate limited on %s, waiting %.1f s", request.url.rsplit("/", 1)[-1], wait)
        await asyncio.sleep(wait)
        state.increment_current_attempt()


class _TTLCache:
    """A small bounded cache with expiry (least recently used entries go first)."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._data: OrderedDict[tuple[str, str], tuple[float, bool]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> bool | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: tuple[str, str], value: bool) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


def delivery_error(error: SlackApiError, channel: str, action: str) -> DeliveryError:
    """Map a Slack Web API error to what the core should do about it."""
    response = error.response
    code = str(response.get("error", "")) if response is not None else ""
    status = getattr(response, "status_code", 0)
    where = f"slack {action} in {channel}"
    if status == 429 or code == "ratelimited":
        wait = retry_after_seconds(getattr(response, "headers", None), default=30.0)
        return DeliveryError(f"{where}: rate limited, retry after {wait:.0f} s", retry_after=wait)
    if code in PAUSE_ERRORS:
        return DeliveryError(f"{where}: {code} (invite the bot or pick another channel)", pause=True)
    if code in FATAL_ERRORS:
        hint = "add the missing scope and reinstall" if code == "missing_scope" else "check the bot token"
        return DeliveryError(f"slack: {code}: {hint}", fatal=True)
    return DeliveryError(f"{where}: {code or f'HTTP {status}'}")


class SlackAdapter:
    """Slack through slack-bolt (commands) and slack_sdk (posting). See the module docstring.

    ``http_host``/``http_port`` override where HTTP mode listens (port 0 picks a free port; the
    bound port is then in ``http_port``); ``tuning`` shrinks timings for tests.
    """

    platform = "slack"

    def __init__(
        self,
        settings: SlackConfig,
        *,
        tuning: SlackTuning | None = None,
        http_host: str = "0.0.0.0",
        http_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.tuning = tuning or SlackTuning()
        self.http_host = http_host
        self.http_port = settings.http_port if http_port is None else http_port
        self._bot_token = _secret(settings.bot_token_env, "slack.bot_token_env")
        self._app_token: str | None = None
        self._signing_secret: str | None = None
        if settings.mode == "socket":
            self._app_token = _secret(settings.app_token_env, "slack.app_token_env")
            if not self._app_token.startswith("xapp-"):
                raise ConfigError(
                    f"slack.app_token_env: {settings.app_token_env} must hold an app-level token (xapp-…) "
                    "with the connections:write scope, needed for Socket Mode"
                )
        else:
            self._signing_secret = _secret(settings.signing_secret_env, "slack.signing_secret_env")
        self._interval = 1.0 / settings.messages_per_second
        self._next_slot: dict[str, float] = {}
        self._admins = _TTLCache(self.tuning.admin_cache_ttl, self.tuning.admin_cache_size)
        self._session: aiohttp.ClientSession | None = None
        self._web: AsyncWebClient | None = None
        self._commands: CommandPort | None = None
        self._bolt: AsyncApp | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self.team_id: str | None = None
        self.bot_user_id: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> SlackAdapter:
        """The adapter for ``config.slack`` (how `bot.app` loads it)."""
        return cls(config.slack, http_host=config.slack.http_host)

    def __repr__(self) -> str:  # never show tokens
        return f"SlackAdapter(mode={self.settings.mode!r}, api={self.settings.api_base_url!r})"

    # ------------------------------------------------------------------ lifecycle

    def _client(self) -> AsyncWebClient:
        if self._web is None:
            t = self.tuning
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=t.request_timeout))
            self._web = AsyncWebClient(
                token=self._bot_token,
                base_url=self.settings.api_base_url,
                timeout=int(max(1, t.request_timeout)),
                session=self._session,
                logger=logging.getLogger("tagwire.slack.sdk"),
                retry_handlers=[
                    AsyncConnectionErrorRetryHandler(),
                    RateLimitRetryHandler(t.rate_limit_retries, t.max_rate_limit_wait),
                    AsyncServerErrorRetryHandler(
                        max_retry_count=t.server_error_retries,
                        interval_calculator=BackoffRetryIntervalCalculator(
                            backoff_factor=t.server_error_backoff, jitter=ProportionalJitter()
                        ),
                    ),
                ],
            )
        return self._web

    async def start(self, commands: CommandPort) -> None:
        """Check the bot token, then listen for the slash command (Socket Mode or HTTP)."""
        self._commands = commands
        client = self._client()
        try:
            auth = await client.auth_test()
        except SlackApiError as e:
            raise delivery_error(e, "-", "auth.test") from None
        self.team_id = auth.get("team_id")
        self.bot_user_id = auth.get("user_id")
        log.info("slack: authenticated as %s in team %s", self.bot_user_id, self.team_id)

        app = AsyncApp(
            client=client,
            signing_secret=self._signing_secret or "",
            name="tagwire",
            logger=logging.getLogger("tagwire.slack.bolt"),
        )
        app.command(self.settings.command)(self._on_command)
        self._bolt = app
        if self.settings.mode == "socket":
            await self._start_socket_mode(app, client)
        else:
            await self._start_http(app)

    async def _start_socket_mode(self, app: AsyncApp, client: AsyncWebClient) -> None:
        assert self._app_token is not None
        try:
            # ask once ourselves so a bad app token is a clear error, not an endless reconnect loop
            opened = await client.apps_connections_open(app_token=self._app_token)
        except SlackApiError as e:
            code = e.response.get("error", "") if e.response is not None else ""
            raise DeliveryError(
                f"slack: apps.connections.open failed ({code}): check the app-level token in "
                f"{self.settings.app_token_env} and that Socket Mode is enabled",
                fatal=code in FATAL_ERRORS,
            ) from None
        handler = AsyncSocketModeHandler(
            app, app_token=self._app_token, web_client=client, ping_interval=self.tuning.ping_interval
        )
        handler.client.wss_uri = opened["url"]
        self._socket = handler
        try:
            await asyncio.wait_for(handler.connect_async(), self.tuning.connect_timeout)
        except TimeoutError:
            await handler.close_async()
            self._socket = None
            raise ConnectionError(
                f"slack: Socket Mode did not connect within {self.tuning.connect_timeout:.0f} s"
            ) from None
        log.info("slack: Socket Mode connected; listening for %s", self.settings.command)

    async def _start_http(self, app: AsyncApp) -> None:
        runner = web.AppRunner(app.web_app(path=self.tuning.http_path), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.http_host, self.http_port)
        await site.start()
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.http_port = int(address[1])
                break
        log.info(
            "slack: HTTP mode listening on %s:%d%s for %s",
            self.http_host,
            self.http_port,
            self.tuning.http_path,
            self.settings.command,
        )

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._web = None

    # ------------------------------------------------------------------ commands

    async def _on_command(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()  # within Slack's 3 seconds, before any slow work
        try:
            reply = await asyncio.wait_for(self.run_command(body), self.tuning.command_timeout)
        except TimeoutError:
            reply = Reply(text="That took too long; please try again in a moment.", ok=False, ephemeral=True)
        except Exception:
            log.exception("slack: command %r failed", body.get("text", "")[:200])
            reply = Reply(text="Something went wrong on our side; try again.", ok=False, ephemeral=True)
        payload = render_reply(reply, now=datetime.now(UTC))
        try:
            result = await respond(**payload)
            if getattr(result, "status_code", 200) != 200:
                log.warning("slack: response_url answered HTTP %s", result.status_code)
        except Exception as e:  # the user sees nothing; say so in the log
            log.warning("slack: could not answer the command via response_url: %s", e)

    async def run_command(self, body: dict[str, Any]) -> Reply:
        """One slash-command payload -> the core's Reply (unknown subcommands get help)."""
        if self._commands is None:
            raise RuntimeError("SlackAdapter.start() was not called")
        team = str(body.get("team_id") or self.team_id or "")
        channel = str(body.get("channel_id", ""))
        user = str(body.get("user_id", ""))
        name, args = split_subcommand(str(body.get("text", "")))
        destination = Destination(platform="slack", channel=channel, workspace=team)
        is_admin = await self.is_admin(team, user)
        if name not in SUBCOMMANDS:
            help_reply = await self._commands.handle(Command("help", "", destination, user, is_admin))
            return Reply(
                text=f"Unknown subcommand “{clip(name, 40)}”. {help_reply.text}".strip(),
                ok=False,
                ephemeral=True,
                lines=help_reply.lines,
            )
        return await self._commands.handle(Command(name, args, destination, user, is_admin))

    async def is_admin(self, team: str, user: str) -> bool:
        """Workspace admin or owner (users.info, cached), or listed in ``[slack].admins``."""
        if not user:
            return False
        if user in self.settings.admins:
            return True
        cached = self._admins.get((team, user))
        if cached is not None:
            return cached
        try:
            info = await self._client().users_info(user=user)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as e:
            log.warning("slack: users.info failed for %s (%s); treating as not an admin", user, _code(e))
            return False
        profile = info.get("user") or {}
        admin = bool(profile.get("is_admin") or profile.get("is_owner") or profile.get("is_primary_owner"))
        self._admins.put((team, user), admin)
        return admin

    # ------------------------------------------------------------------ alerts

    async def _pace(self, channel: str) -> None:
        """About ``messages_per_second`` per channel: reserve the next slot, then wait for it."""
        now = time.monotonic()
        slot = max(now, self._next_slot.get(channel, 0.0))
        self._next_slot[channel] = slot + self._interval
        if len(self._next_slot) > 4096:
            for key in [k for k, v in self._next_slot.items() if v <= now]:
                del self._next_slot[key]
        if slot > now:
            await asyncio.sleep(slot - now)

    async def send(self, message: OutgoingMessage) -> SendResult:
        channel = message.destination.channel
        payload = render_alert(message)
        await self._pace(channel)
        if message.kind is MessageKind.UPDATE:
            return await self._update(message, channel, payload)
        return await self._post(message, channel, payload)

    async def _post(self, message: OutgoingMessage, channel: str, payload: dict[str, Any]) -> SendResult:
        client = self._client()
        kwargs: dict[str, Any] = {"channel": channel, "unfurl_links": False, "unfurl_media": False}
        if message.kind is MessageKind.REPLY:
            if message.thread_ref:
                kwargs["thread_ts"] = message.thread_ref
            else:
                log.warning("slack: reply %d has no thread; posting it top-level", message.delivery_id)
        try:
            try:
                response = await client.chat_postMessage(**kwargs, **payload)
            except SlackApiError as e:
                if _code(e) not in BLOCK_ERRORS:
                    raise
                log.warning("slack: blocks refused (%s); posting plain text", _code(e))
                response = await client.chat_postMessage(**kwargs, text=clip(payload["text"], MAX_FALLBACK))
        except SlackApiError as e:
            raise delivery_error(e, channel, "chat.postMessage") from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise DeliveryError(f"slack chat.postMessage in {channel}: {type(e).__name__}") from None
        ts = str(response["ts"])
        return SendResult(message_ref=ts, thread_ref=kwargs.get("thread_ts") or ts)

    async def _update(self, message: OutgoingMessage, channel: str, payload: dict[str, Any]) -> SendResult:
        if not message.target_ref:
            raise DeliveryError(f"slack chat.update in {channel}: no message to edit", pause=False)
        client = self._client()
        try:
            await client.chat_update(channel=channel, ts=message.target_ref, **payload)
        except SlackApiError as e:
            if _code(e) in GONE_ERRORS:
                # the message was deleted or is too old to edit: the edit can never apply
                log.warning("slack: cannot edit %s in %s (%s)", message.target_ref, channel, _code(e))
            else:
                raise delivery_error(e, channel, "chat.update") from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise DeliveryError(f"slack chat.update in {channel}: {type(e).__name__}") from None
        return SendResult(message_ref=message.target_ref, thread_ref=message.thread_ref)


def _code(error: Exception) -> str:
    if isinstance(error, SlackApiError) and error.response is not None:
        return str(error.response.get("error", ""))
    return type(error).__name__


def _secret(env_name: str, key: str) -> str:
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise ConfigError(f"{key}: environment variable {env_name} is not set")
    return value
