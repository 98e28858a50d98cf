"""Structured logging: one line per event, ``key=value`` pairs after the message (logfmt-like).

Extras passed with ``log.info("msg", extra={...})`` become fields. Nothing here ever logs a
token: adapters read secrets from the environment and never pass them to a logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# what json.dumps(ensure_ascii=False) would escape in a string: quote, backslash, control characters
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
# a bare value must not look like more than one field or hide a line break (log injection)
_BARE_UNSAFE = re.compile(r'[\s"=\\\x00-\x1f\x7f\u0085\u2028\u2029]')
# characters some readers take as line breaks although JSON leaves them as they are
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029", "\x7f": "\\u007f"}
_HAS_LINE_BREAK = re.compile("[\u0085\u2028\u2029\x7f]")


def _quoted(text: str) -> str:
    """``json.dumps(text, ensure_ascii=False)`` (without the encoder for the usual plain text),
    with NEL, LS, PS and DEL written as ``\\uXXXX`` too: still valid JSON, and no reader splits the
    line there."""
    if _JSON_ESCAPED.search(text) is None:
        return _no_line_breaks(f'"{text}"')
    return _json(text)


def _json(value: object) -> str:
    return _no_line_breaks(json.dumps(value, ensure_ascii=False, default=str))


def _no_line_breaks(encoded: str) -> str:
    if _HAS_LINE_BREAK.search(encoded) is not None:
        for char, escape in _LINE_BREAKS.items():
            encoded = encoded.replace(char, escape)
    return encoded


class KeyValueFormatter(logging.Formatter):
    """``2026-11-27T10:00:00Z level=info logger=tagwire.x msg="…" key=value …``: a bare value is a
    word; anything else (spaces, quotes, ``=``, line breaks, other types) is JSON, so a value from a
    feed can never start a line or a field of its own."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + "Z"
            self._second = second
        parts = [self._stamp, f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={_quoted(record.getMessage())}"]
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if isinstance(value, str):
                if value and _BARE_UNSAFE.search(value) is None:
                    parts.append(f"{key}={value}")
                else:
                    parts.append(f"{key}={_quoted(value)}")
            elif type(value) is int:
                parts.append(f"{key}={value}")
            else:
                parts.append(f"{key}={_json(value)}")
        if record.exc_info:
            parts.append(f"exc={_json(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = KeyValueFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "aiosqlite", "asyncio", "discord", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
