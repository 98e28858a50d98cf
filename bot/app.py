"""Wiring: the composition root that builds the core from a Config and runs it.

`Core` holds the store, the pipeline, the outbox and the command service; `Tagwire` adds the
fetcher, the scheduler and the platform adapters and runs them until stopped. Platform adapters
are loaded by module path only when enabled, so nothing in ``bot/`` imports a platform SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from typing import Any

from bot import match
from bot.adapter import Adapter
from bot.commands import CommandService
from bot.config import Config
from bot.fetch import AddressPolicy, Fetcher
from bot.models import Destination
from bot.outbox import Outbox
from bot.pipeline import Pipeline
from bot.scheduler import PollOutcome, Scheduler
from bot.store.sqlite import SQLiteStore

log = logging.getLogger("tagwire.app")

# platform -> "module:Class"; the class takes (config, platform_section) keyword arguments
ADAPTERS = {
    "console": "adapters.console:ConsoleAdapter",
    "slack": "adapters.slack:SlackAdapter",
    "discord": "adapters.discord:DiscordAdapter",
}


def load_adapter(platform: str, config: Config) -> Adapter:
    module_name, _, class_name = ADAPTERS[platform].partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    if platform == "console":
        return cls(jsonl=config.console.jsonl, color=config.console.color)
    return cls.from_config(config)


class Core:
    """Store + pipeline + outbox + commands: everything but polling and platform connections."""

    def __init__(self, config: Config, store: SQLiteStore) -> None:
        self.config = config
        self.store = store
        self.outbox = Outbox(store)
        self.pipeline = Pipeline(config, store, on_queued=self.outbox.wake)
        # a destination the platform says is gone: stop judging items into its subscriptions
        self.outbox.on_paused = self.pipeline.refresh_subscriptions
        self.commands = CommandService(
            store,
            config,
            on_subscriptions_changed=self.pipeline.refresh_subscriptions,
            on_sources_changed=self.pipeline.refresh_subscriptions,
        )

    @classmethod
    async def open(cls, config: Config, *, sender: bool = True) -> Core:
        """Open the store and rebuild the core. ``sender=False`` for a process that only runs
        commands (the CLI) next to a running bot: it must not take back the bot's claimed deliveries."""
        store = SQLiteStore(config.storage.path)
        await store.open()
        core = cls(config, store)
        try:
            await core._sync_config()
            if sender:
                await store.release_claims()
            await core.pipeline.start()
        except BaseException:
            await store.close()
            raise
        return core

    async def _sync_config(self) -> None:
        cfg = self.config
        await self.store.sync_config_sources(
            [(s.url, s.name or _default_name(s.url), s.interval) for s in cfg.sources]
        )
        # queries were validated with the config (SubscriptionConfig), so they parse here
        subs = [(Destination.parse(s.destination), s.query, match.parse_query(s.query).normal_form)
                for s in cfg.subscriptions]
        await self.store.sync_config_subscriptions(subs)

    def register_adapter(self, adapter: Adapter) -> None:
        self.outbox.register(adapter)

    async def deliver_pending(self) -> int:
        return await self.outbox.run_once()

    async def close(self) -> None:
        self.pipeline.close()
        await self.store.close()


def _default_name(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


class Tagwire:
    """The running bot: core + fetcher + scheduler + adapters."""

    def __init__(self, core: Core, fetcher: Fetcher, adapters: list[Adapter]) -> None:
        self.core = core
        self.fetcher = fetcher
        self.adapters = adapters
        self.scheduler = Scheduler(core.store, fetcher, core.pipeline, core.config.fetch)
        for a in adapters:
            core.register_adapter(a)
        self._stop = asyncio.Event()
        self._started = False

    @classmethod
    async def create(
        cls, config: Config, *, adapters: list[Adapter] | None = None, policy: AddressPolicy | None = None
    ) -> Tagwire:
        core = await Core.open(config)
        if adapters is None:
            adapters = []
            for platform in ("console", "slack", "discord"):
                section = getattr(config, platform)
                if section.enabled:
                    adapters.append(load_adapter(platform, config))
        fetcher = Fetcher(config.fetch, policy=policy)
        return cls(core, fetcher, adapters)

    async def start_adapters(self) -> None:
        """Connect every adapter. One that cannot start (bad token, unreachable API) is stopped with a
        clear log line; its deliveries stay queued and the other platforms go on."""
        if self._started:
            return
        self._started = True
        for a in self.adapters:
            try:
                await a.start(self.core.commands)
            except Exception as e:
                self.core.outbox.stopped_platforms[a.platform] = str(e)
                log.error("adapter could not start; its alerts stay queued",
                          extra={"platform": a.platform, "error": str(e)})

    async def run_once(self) -> list[PollOutcome]:
        """Poll every source once, deliver everything pending, return (adapters: see start_adapters)."""
        outcomes = await self.scheduler.poll_all_once()
        await self.core.deliver_pending()
        return outcomes

    async def run(self) -> None:
        """Run until stop() or SIGINT/SIGTERM."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        await self.start_adapters()
        self.scheduler.start()
        outbox = asyncio.create_task(self.core.outbox.run_forever(self._stop))
        housekeeping = asyncio.create_task(self._housekeeping())
        log.info("tagwire running", extra={"adapters": [a.platform for a in self.adapters]})
        try:
            await self._stop.wait()
        finally:
            await self.scheduler.stop()
            housekeeping.cancel()
            # the outbox sees the stop event and finishes (and records) the message it is sending;
            # cancelling it mid-send could post a message without recording it, so post it twice
            self._stop.set()
            try:
                await asyncio.wait_for(outbox, timeout=10)  # cancels it only after the timeout
            except TimeoutError:
                log.warning("outbox did not stop in time; cancelled it")
            except Exception:
                log.exception("outbox ended with an error")
            await asyncio.gather(outbox, housekeeping, return_exceptions=True)

    async def _housekeeping(self, every: float = 3600.0, watch: float = 5.0) -> None:
        """Hourly pruning; and every few seconds, pick up subscriptions and sources that another
        process (the `tagwire subscribe` / `sources add` CLI) wrote to the same database."""
        version = await self.core.store.data_version()
        last_prune = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(watch)
            try:
                now_version = await self.core.store.data_version()
                if now_version != version:
                    version = now_version
                    await self.core.pipeline.refresh_subscriptions()
                if asyncio.get_running_loop().time() - last_prune >= every:
                    last_prune = asyncio.get_running_loop().time()
                    await self.core.pipeline.housekeeping()
            except Exception:
                log.exception("housekeeping failed")

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        for a in self.adapters:
            with contextlib.suppress(Exception):
                await a.close()
        await self.fetcher.close()
        await self.core.close()
