"""Discord: slash commands in, threaded alert embeds out (discord.py 2.x)."""

from __future__ import annotations

from adapters.discord.adapter import ChannelPacer, DiscordAdapter, build_commands

__all__ = ["ChannelPacer", "DiscordAdapter", "build_commands"]
