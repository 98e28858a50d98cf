"""Structured logging: one line per event, ``key=value`` pairs after the message (logfmt-like).

Extras passed with ``log.info("msg", extra={...})`` become fields. Nothing here ever logs a
token: adapters read secrets from the environment and never pass them to a logger.
"""

from __future__ import annotations

import json
import logging
import sys

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        parts = [f"{ts}Z", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={json.dumps(record.getMessage(), ensure_ascii=False)}"]
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if isinstance(value, str) and value and " " not in value and '"' not in value and "=" not in value:
                parts.append(f"{key}={value}")
            else:
                parts.append(f"{key}={json.dumps(value, ensure_ascii=False, default=str)}")
        if record.exc_info:
            parts.append(f"exc={json.dumps(self.formatException(record.exc_info), ensure_ascii=False)}")
        return " ".join(parts)


def setup_logging(level: str = "info") -> None:
    import time

    handler = logging.StreamHandler(sys.stderr)
    formatter = KeyValueFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "aiosqlite", "asyncio", "discord", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
