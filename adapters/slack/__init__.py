"""Slack: slash commands via slack-bolt, threaded Block Kit alerts via slack_sdk."""

from __future__ import annotations

from adapters.slack.adapter import SlackAdapter, SlackTuning, delivery_error
from adapters.slack.commands import split_subcommand
from adapters.slack.render import escape, render_alert, render_reply

__all__ = [
    "SlackAdapter",
    "SlackTuning",
    "delivery_error",
    "escape",
    "render_alert",
    "render_reply",
    "split_subcommand",
]
