"""The Discord adapter: slash commands in, threaded alert embeds out, through discord.py 2.x.

Only transport and rendering live here; every decision (who may do what, what a command
means, which guild sees what) is the core's, reached through `CommandPort`.

* Connection: an `AutoShardedClient` with default intents (no privileged ones). With
  ``shards`` unset, Discord recommends the shard count (``GET /gateway/bot``, which also names
  the gateway to use); with ``shards = N`` the client opens N shards on ``gateway_url``.
  discord.py takes its REST base and default gateway from class attributes
  (`discord.http.Route.BASE`, `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`); the adapter
  sets them while it runs and restores them on close. One process can therefore talk to one
  Discord API at a time (two adapters with different endpoints refuse to start).
* Mentions: ``AllowedMentions.none()`` on the client and again on every send, edit and reply,
  so feed text can never ping @everyone, @here, a role or a user.
* Commands are synced once per start: to each of ``guild_ids`` (instant) if set, else globally.
* Sends are paced per channel (``messages_per_second``) on top of discord.py's own bucket
  handling; a rate limit longer than ``max_ratelimit_timeout`` comes back to the core as
  ``DeliveryError(retry_after=…)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord import render
from bot.adapter import CommandPort
from bot.config import Config, ConfigError, DiscordConfig
from bot.models import (
    Command,
    DeliveryError,
    Destination,
    MessageKind,
    OutgoingMessage,
    Reply,
    SendResult,
)

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()

# Discord JSON error codes the adapter reacts to.
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MESSAGE = 10008
MISSING_ACCESS = 50001
NOT_TEXT_CHANNEL = 50008
MISSING_PERMISSIONS = 50013
THREAD_ARCHIVED = 50083
THREAD_LOCKED = 160005
# Answers meaning "this channel cannot take our messages": pause the destination.
_CHANNEL_GONE = {UNKNOWN_CHANNEL, UNKNOWN_GUILD, MISSING_ACCESS, NOT_TEXT_CHANNEL, MISSING_PERMISSIONS}

THREAD_ARCHIVE_MINUTES = 1440  # posting to an archived (unlocked) thread reopens it
MAX_RATELIMIT_WAIT = 30.0  # discord.py's minimum; longer waits go back to the core's backoff

# How a deferred reply starts out (the core's Reply decides in the end; see _answer).
_DEFER_EPHEMERAL = {
    "subscribe": False,
    "unsubscribe": False,
    "subscriptions": True,
    "latest": True,
    "sources": True,
    "why": True,
    "help": True,
}

_DEFAULT_BASE = Route.BASE
_DEFAULT_GATEWAY = DiscordWebSocket.DEFAULT_GATEWAY


class _Endpoints:
    """Points discord.py at the configured REST base and gateway while adapters run.

    Both are class attributes in discord.py, read whenever a `Route` is built (REST, interaction
    callbacks and follow-ups alike) and whenever a gateway connection opens, so there is no
    per-client setting. Adapters holding the same endpoints may share; the last one to
    release restores discord.py's defaults.
    """

    _holders: ClassVar[set[int]] = set()
    _current: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def claim(cls, holder: object, api_base: str, gateway: str) -> None:
        wanted = (api_base.rstrip("/"), gateway)
        if cls._holders and cls._current != wanted:
            raise RuntimeError(
                "another Discord adapter in this process uses different API endpoints "
                f"({cls._current}); discord.py supports one set per process"
            )
        cls._holders.add(id(holder))
        cls._current = wanted
        Route.BASE = wanted[0]
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)

    @classmethod
    def release(cls, holder: object) -> None:
        if id(holder) not in cls._holders:
            return
        cls._holders.discard(id(holder))
        if not cls._holders:
            cls._current = None
            Route.BASE = _DEFAULT_BASE
            DiscordWebSocket.DEFAULT_GATEWAY = _DEFAULT_GATEWAY


def _is_admin(permissions: discord.Permissions) -> bool:
    """Manage Server, as Discord resolved it for the member (owners and administrators have it)."""
    return permissions.manage_guild or permissions.administrator


class ChannelPacer:
    """At most ``rate`` sends per second per channel, by reserving time slots.

    Safe for concurrent callers on one event loop. Remembers at most ``max_channels``
    channels (the least recently used are forgotten; their slots lie in the past anyway).
    """

    def __init__(self, rate: float, max_channels: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate
        self.max_channels = max_channels
        self._clock = clock
        self._next: OrderedDict[int, float] = OrderedDict()

    def reserve(self, channel_id: int) -> float:
        """Book the next slot for the channel; return how long to wait for it."""
        now = self._clock()
        slot = max(now, self._next.get(channel_id, now))
        self._next[channel_id] = slot + self.interval
        self._next.move_to_end(channel_id)
        while len(self._next) > self.max_channels:
            self._next.popitem(last=False)
        return slot - now

    async def wait(self, channel_id: int) -> None:
        delay = self.reserve(channel_id)
        if delay > 0:
            await asyncio.sleep(delay)


class _Client(discord.AutoShardedClient):
    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        # Tagwire never joins voice: no warnings about voice libraries that are not installed.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(intents=discord.Intents.default(), allowed_mentions=NO_MENTIONS, **options)
        self.adapter = adapter
        self.tree = app_commands.CommandTree(self)

    async def on_ready(self) -> None:
        await self.adapter._on_ready()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Discord allows one IDENTIFY per 5 s per concurrency bucket; discord.py's default
        # waits that long before every shard but the first. Kept, but settable for stand-ins.
        if not initial:
            await asyncio.sleep(self.adapter.identify_interval)


class DiscordAdapter:
    """`bot.adapter.Adapter` for Discord. See the module docstring for the behaviour."""

    platform = "discord"

    def __init__(
        self,
        settings: DiscordConfig,
        token: str,
        *,
        defer_after: float = 1.5,
        connect_timeout: float = 60.0,
        request_timeout: float = 60.0,
        command_timeout: float = 600.0,
        guild_ready_timeout: float = 2.0,
        identify_interval: float = 5.0,
    ) -> None:
        if not token.strip():
            raise ValueError("a Discord bot token is required")
        self.settings = settings
        self._token = token.strip()
        self.defer_after = defer_after  # answer directly if the core is this quick, else defer
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.command_timeout = command_timeout
        self.guild_ready_timeout = guild_ready_timeout
        self.identify_interval = identify_interval
        self.pacer = ChannelPacer(settings.messages_per_second)
        self._client: _Client | None = None
        self._commands: CommandPort | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._synced = False

    @classmethod
    def from_config(cls, config: Config, **options: Any) -> DiscordAdapter:
        """Build from the app config; the token comes from the environment variable it names."""
        token = config.secret(config.discord.token_env)
        if not token:
            raise ConfigError(
                f"discord.token_env: environment variable {config.discord.token_env} is not set "
                "(put the bot token from the Discord developer portal there)"
            )
        return cls(config.discord, token, **options)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, commands: CommandPort) -> None:
        """Log in, connect every shard, sync the slash commands; return once ready."""
        if self._client is not None:
            raise RuntimeError("Discord adapter already started")
        self._commands = commands
        _Endpoints.claim(self, self.settings.api_base_url, self.settings.gateway_url)
        client = _Client(
            self,
            shard_count=self.settings.shards,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT,
            guild_ready_timeout=self.guild_ready_timeout,
        )
        self._client = client
        for command in build_commands(self):
            client.tree.add_command(command)
        try:
            async with asyncio.timeout(self.connect_timeout):
                try:
                    await client.login(self._token)
                except discord.LoginFailure as e:
                    raise DeliveryError("Discord rejected the bot token (401)", fatal=True) from e
                self._runner = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
                self._runner.add_done_callback(self._gateway_ended)
                ready = asyncio.create_task(self._ready.wait())
                try:
                    await asyncio.wait({ready, self._runner}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ready.cancel()
                if not self._ready.is_set():
                    exc = self._runner.exception()
                    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
                        raise DeliveryError("Discord rejected the bot token (4004)", fatal=True) from exc
                    raise RuntimeError(f"Discord gateway connection ended before ready: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise
        log.info("discord: connected as %s, %d guild(s)", client.user, len(client.guilds))

    def _gateway_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._client is None:
            return  # closing
        exc = task.exception()
        log.error("discord: gateway connection ended (%r); slash commands stop until restart", exc)

    async def _on_ready(self) -> None:
        client = self._client
        try:
            if client is not None and not self._synced:
                self._synced = True
                await self._sync_commands(client)
        finally:
            self._ready.set()

    async def _sync_commands(self, client: _Client) -> None:
        """Register the slash commands: in each of ``guild_ids`` (instant) or else globally.

        A failure is logged and does not stop the bot: commands registered earlier stay.
        """
        targets: list[discord.Object | None] = [discord.Object(id=g) for g in self.settings.guild_ids] or [None]
        for guild in targets:
            where = f"guild {guild.id}" if guild else "all guilds (global; may take a while to show)"
            try:
                if guild is not None:
                    client.tree.copy_global_to(guild=guild)
                async with asyncio.timeout(self.request_timeout):
                    synced = await client.tree.sync(guild=guild)
                log.info("discord: registered %d commands in %s", len(synced), where)
            except discord.Forbidden:
                log.error(
                    "discord: %s refused the commands (403): invite the bot with the "
                    "applications.commands scope (see docs/discord.md)",
                    where,
                )
            except (discord.HTTPException, aiohttp.ClientError, TimeoutError):
                log.exception("discord: registering commands in %s failed; earlier ones stay", where)

    async def close(self) -> None:
        client, self._client = self._client, None
        try:
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(10):
                        await client.close()
            if self._runner is not None:
                if not self._runner.done():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait({self._runner}, timeout=5)
                    self._runner.cancel()
                with contextlib.suppress(BaseException):
                    await self._runner
                self._runner = None
        finally:
            self._ready.clear()
            self._synced = False
            _Endpoints.release(self)

    # --- alerts -------------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> SendResult:
        client = self._client
        if client is None or not self._ready.is_set():
            raise DeliveryError("Discord adapter is not connected")
        dest = message.destination
        try:
            channel_id = int(dest.channel)
            guild_id = int(dest.workspace) if dest.workspace else None
        except ValueError:
            raise DeliveryError(f"{dest}: not a Discord channel id", pause=True) from None
        try:
            if message.kind is MessageKind.ALERT:
                return await self._alert(client, message, channel_id, guild_id)
            if message.kind is MessageKind.REPLY:
                return await self._reply(client, message, channel_id, guild_id)
            return await self._update(client, message, channel_id, guild_id)
        except DeliveryError:
            raise
        except Exception as e:
            raise self._delivery_error(e, dest) from e

    async def _post(self, client: _Client, msg: OutgoingMessage, channel_id: int, guild_id: int | None) -> int:
        """Post the message's embed in a channel or thread; return the new message's id.

        The nonce (with discord.py's ``enforce_nonce``) makes Discord answer a repeat of the
        same delivery in the same channel with the message it already created, so a retry
        after a lost answer does not post twice.
        """
        channel = client.get_partial_messageable(channel_id, guild_id=guild_id)
        await self.pacer.wait(channel_id)
        async with asyncio.timeout(self.request_timeout):
            sent = await channel.send(
                embed=render.alert_embed(msg), allowed_mentions=NO_MENTIONS, nonce=f"tagwire-{msg.delivery_id}"
            )
        return sent.id

    async def _open_thread(self, client: _Client, msg: OutgoingMessage, channel_id: int, message_id: int) -> None:
        async with asyncio.timeout(self.request_timeout):
            await client.http.start_thread_with_message(
                channel_id,
                message_id,
                name=render.thread_name(msg.title),
                auto_archive_duration=THREAD_ARCHIVE_MINUTES,
            )

    async def _alert(self, client: _Client, msg: OutgoingMessage, channel_id: int, guild_id: int | None) -> SendResult:
        message_id = await self._post(client, msg, channel_id, guild_id)
        # The message is out: from here on nothing may raise (the core would post it again).
        # A thread started from a message shares its id, so message_id is the thread's id
        # even when creating it fails now; _reply creates it late if needed.
        try:
            await self._open_thread(client, msg, channel_id, message_id)
        except Exception as e:
            log.warning("discord: alert %s posted but its thread was not created: %r", message_id, e)
        return SendResult(message_ref=str(message_id), thread_ref=str(message_id))

    async def _reply(self, client: _Client, msg: OutgoingMessage, channel_id: int, guild_id: int | None) -> SendResult:
        if msg.thread_ref:
            thread_id = int(msg.thread_ref)
            try:
                try:
                    mid = await self._post(client, msg, thread_id, guild_id)
                except discord.NotFound as e:
                    if e.code != UNKNOWN_CHANNEL:
                        raise
                    # the thread was never created (or was deleted): start it from the root alert
                    await self._open_thread(client, msg, channel_id, thread_id)
                    mid = await self._post(client, msg, thread_id, guild_id)
                return SendResult(message_ref=str(mid), thread_ref=msg.thread_ref)
            except discord.HTTPException as e:
                if e.status not in (400, 403, 404):
                    raise
                log.warning(
                    "discord: thread %s unusable (%s %s); posting the follow-up in channel %s",
                    thread_id,
                    e.status,
                    e.code,
                    channel_id,
                )
        mid = await self._post(client, msg, channel_id, guild_id)
        return SendResult(message_ref=str(mid), thread_ref=None)

    async def _update(self, client: _Client, msg: OutgoingMessage, channel_id: int, guild_id: int | None) -> SendResult:
        if not msg.target_ref:
            raise DeliveryError("UPDATE without target_ref: nothing to edit")
        where = int(msg.thread_ref) if msg.thread_ref else channel_id
        partial = client.get_partial_messageable(where, guild_id=guild_id).get_partial_message(int(msg.target_ref))
        await self.pacer.wait(where)
        try:
            async with asyncio.timeout(self.request_timeout):
                await partial.edit(embed=render.alert_embed(msg), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as e:
            in_thread = msg.thread_ref is not None and e.status in (400, 403, 404)
            if not (e.code == UNKNOWN_MESSAGE or e.code in (THREAD_ARCHIVED, THREAD_LOCKED) or in_thread):
                raise
            # the message (or its thread) is gone or closed: nothing left to edit
            log.warning("discord: could not edit message %s in %s (%s); skipped", msg.target_ref, where, e.code)
        return SendResult(message_ref=msg.target_ref, thread_ref=msg.thread_ref)

    @staticmethod
    def _delivery_error(exc: Exception, dest: Destination) -> DeliveryError:
        if isinstance(exc, discord.RateLimited):
            return DeliveryError(f"{dest}: rate limited for {exc.retry_after:.0f}s", retry_after=exc.retry_after)
        if isinstance(exc, discord.HTTPException):
            text = f"{dest}: Discord answered {exc.status} (code {exc.code}): {exc.text}"
            if exc.status == 401:
                return DeliveryError(text + " - the bot token is no longer valid", fatal=True)
            if exc.status in (403, 404) or exc.code in _CHANNEL_GONE:
                log.warning("discord: pausing %s: %s", dest, text)
                return DeliveryError(text, pause=True)
            return DeliveryError(text)
        if isinstance(exc, TimeoutError):
            return DeliveryError(f"{dest}: Discord did not answer in time")
        return DeliveryError(f"{dest}: {exc!r}")

    # --- commands -----------------------------------------------------------------------------

    @staticmethod
    def destination_of(interaction: discord.Interaction[Any]) -> Destination | None:
        """The channel a command belongs to; a thread counts as its parent channel."""
        if interaction.guild_id is None or interaction.channel_id is None:
            return None
        channel = interaction.channel
        channel_id = interaction.channel_id
        if isinstance(channel, discord.Thread) and channel.parent_id:
            channel_id = channel.parent_id
        return Destination(platform="discord", channel=str(channel_id), workspace=str(interaction.guild_id))

    async def run_command(self, interaction: discord.Interaction[Any], name: str, args: str) -> None:
        """Hand a slash command to the core and render its reply.

        If the core answers within ``defer_after`` seconds the reply goes out as the
        interaction response itself; otherwise the interaction is deferred first (Discord
        allows 3 seconds) and the reply follows as a follow-up message.
        """
        dest = self.destination_of(interaction)
        if dest is None or self._commands is None:
            await self._answer(interaction, Reply("Tagwire commands work in server channels.", ok=False), None)
            return
        command = Command(
            name=name,
            args=args.strip(),
            destination=dest,
            user=str(interaction.user.id),
            is_admin=_is_admin(interaction.permissions),
        )
        task = asyncio.create_task(self._handle(command))
        deferred: bool | None = None
        done, _ = await asyncio.wait({task}, timeout=self.defer_after)
        if not done:
            deferred = _DEFER_EPHEMERAL.get(name, True)
            try:
                async with asyncio.timeout(self.request_timeout):
                    await interaction.response.defer(ephemeral=deferred, thinking=True)
            except (discord.HTTPException, aiohttp.ClientError, TimeoutError):
                # too late to answer (Discord gave up on the interaction); let the command finish
                log.exception("discord: could not defer /%s; its answer is dropped", name)
                await task
                return
        reply = await task
        await self._answer(interaction, reply, deferred)

    async def _handle(self, command: Command) -> Reply:
        assert self._commands is not None
        try:
            async with asyncio.timeout(self.command_timeout):
                return await self._commands.handle(command)
        except Exception:
            log.exception("discord: /%s failed", command.name)
            return Reply("Something went wrong on our side; please try again later.", ok=False, ephemeral=True)

    async def _answer(self, interaction: discord.Interaction[Any], reply: Reply, deferred: bool | None) -> None:
        """Send the reply; ``deferred`` is None if not deferred, else the defer's ephemeral flag."""
        out = render.reply_payload(reply)
        kwargs: dict[str, Any] = {
            "content": out.content,
            "embeds": list(out.embeds),
            "ephemeral": out.ephemeral,
            "allowed_mentions": NO_MENTIONS,
        }
        try:
            async with asyncio.timeout(self.request_timeout):
                if deferred is None:
                    await interaction.response.send_message(**kwargs)
                    return
                if deferred != out.ephemeral:
                    # the "thinking…" placeholder has the wrong visibility: remove it, answer afresh
                    await interaction.delete_original_response()
                await interaction.followup.send(**kwargs)
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError):
            log.exception("discord: could not answer /%s", getattr(interaction.command, "name", "?"))

    async def tag_choices(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        """Autocomplete for /unsubscribe: this channel's tags containing what was typed."""
        dest = self.destination_of(interaction)
        if dest is None or self._commands is None:
            return []
        try:
            async with asyncio.timeout(2.0):  # Discord waits 3 s for choices
                tags = await self._commands.tags(dest)
        except Exception:
            log.exception("discord: tag autocomplete failed")
            return []
        needle = current.casefold().strip()
        picks = [t for t in tags if 0 < len(t) <= 100 and needle in t.casefold()]
        return [app_commands.Choice(name=t, value=t) for t in picks[:25]]


def build_commands(adapter: DiscordAdapter) -> list[app_commands.Command[Any, ..., None] | app_commands.Group]:
    """The slash commands, each a thin shim over `DiscordAdapter.run_command`."""

    @app_commands.command(name="subscribe", description="Post alerts for a query in this channel")
    @app_commands.describe(query='What to follow, e.g. #LiuZhongyi or "climate policy" -opinion')
    @app_commands.guild_only()
    async def subscribe(interaction: discord.Interaction[Any], query: app_commands.Range[str, 1, 500]) -> None:
        await adapter.run_command(interaction, "subscribe", query)

    @app_commands.command(name="unsubscribe", description="Stop alerts for one of this channel's tags")
    @app_commands.describe(tag="The tag to stop")
    @app_commands.guild_only()
    async def unsubscribe(interaction: discord.Interaction[Any], tag: app_commands.Range[str, 1, 500]) -> None:
        await adapter.run_command(interaction, "unsubscribe", tag)

    @unsubscribe.autocomplete("tag")
    async def _unsubscribe_tag(interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        return await adapter.tag_choices(interaction, current)

    @app_commands.command(name="subscriptions", description="List this channel's subscriptions")
    @app_commands.guild_only()
    async def subscriptions(interaction: discord.Interaction[Any]) -> None:
        await adapter.run_command(interaction, "subscriptions", "")

    @app_commands.command(name="latest", description="The newest stories for a query")
    @app_commands.describe(query="e.g. #LiuZhongyi", count="How many stories (1-20)")
    @app_commands.guild_only()
    async def latest(
        interaction: discord.Interaction[Any],
        query: app_commands.Range[str, 1, 500],
        count: app_commands.Range[int, 1, 20] | None = None,
    ) -> None:
        # always pass the count, so a query ending in a number ("covid 19") is not read as one
        await adapter.run_command(interaction, "latest", f"{query} {count if count is not None else 5}")

    @app_commands.command(name="why", description="Why an article was or was not posted here")
    @app_commands.describe(url="The article's link")
    @app_commands.guild_only()
    async def why(interaction: discord.Interaction[Any], url: app_commands.Range[str, 1, 2000]) -> None:
        await adapter.run_command(interaction, "why", url)

    @app_commands.command(name="help", description="How to use Tagwire")
    @app_commands.guild_only()
    async def help_(interaction: discord.Interaction[Any]) -> None:
        await adapter.run_command(interaction, "help", "")

    sources = app_commands.Group(
        name="sources",
        description="Manage the feeds this server follows",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )

    @sources.command(name="add", description="Add a news feed")
    @app_commands.describe(url="RSS or Atom feed URL", name="Display name (optional)")
    async def sources_add(
        interaction: discord.Interaction[Any],
        url: app_commands.Range[str, 1, 2000],
        name: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        await adapter.run_command(interaction, "sources", f"add {url} {name or ''}")

    @sources.command(name="remove", description="Remove a feed")
    @app_commands.describe(source="The feed's name or URL")
    async def sources_remove(interaction: discord.Interaction[Any], source: app_commands.Range[str, 1, 2000]) -> None:
        await adapter.run_command(interaction, "sources", f"remove {source}")

    @sources.command(name="list", description="List the feeds")
    async def sources_list(interaction: discord.Interaction[Any]) -> None:
        await adapter.run_command(interaction, "sources", "list")

    return [subscribe, unsubscribe, subscriptions, latest, why, help_, sources]
