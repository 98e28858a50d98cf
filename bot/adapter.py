"""The contract between the core and a platform adapter (console, Slack, Discord).

The core decides *what* to post (`OutgoingMessage`) and *which* command reply to give
(`Reply`); an adapter only renders and transports. Nothing here imports a platform SDK.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from bot.models import Command, Destination, OutgoingMessage, Reply, SendResult

CommandHandler = Callable[[Command], Awaitable[Reply]]


class CommandPort(Protocol):
    """What an adapter may ask of the core's command service."""

    async def handle(self, command: Command) -> Reply:
        """Run one command and return the neutral reply."""
        ...

    async def tags(self, destination: Destination) -> list[str]:
        """The tags (queries) subscribed in a destination, for autocomplete."""
        ...


@runtime_checkable
class Adapter(Protocol):
    """A destination platform.

    ``send`` posts one message and returns the platform's ids; on failure it raises
    `bot.models.DeliveryError` (with ``retry_after``, ``pause`` or ``fatal`` set as the
    platform's answer warrants). Pacing per channel is the adapter's job.
    """

    platform: str

    async def start(self, commands: CommandPort) -> None:
        """Connect and begin receiving commands; return once connected."""
        ...

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...
