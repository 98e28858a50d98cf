"""Turning the text of ``/tagwire …`` into a subcommand and its arguments (pure functions)."""

from __future__ import annotations

import re

SUBCOMMANDS = frozenset({"subscribe", "unsubscribe", "subscriptions", "latest", "sources", "why", "help"})

# Slack may wrap what a user typed: <https://x|x>, <#C123|general>, <@U123|name>, and escapes & < >.
_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_USER = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")


def unwrap_slack_text(text: str) -> str:
    """What the user typed, as plain text: links unwrapped, ``&amp;``/``&lt;``/``&gt;`` decoded."""
    text = _LINK.sub(r"\1", text)
    text = _CHANNEL.sub(r"#\1", text)
    text = _USER.sub(r"@\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def split_subcommand(text: str) -> tuple[str, str]:
    """``"subscribe  #Foo OR bar"`` -> ``("subscribe", "#Foo OR bar")``; empty text -> ``("help", "")``.

    The subcommand is lower-cased; the arguments are kept as typed (after unwrapping). Whether the
    subcommand exists is for the caller to check against `SUBCOMMANDS`.
    """
    text = unwrap_slack_text(text).strip()
    if not text:
        return "help", ""
    head, *rest = text.split(None, 1)
    return head.lower(), rest[0].strip() if rest else ""
