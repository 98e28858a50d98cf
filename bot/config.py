"""Configuration: a TOML file validated on load, secrets from the environment.

An invalid file raises `ConfigError` whose message names each bad key path and the reason,
e.g. ``sources[2].url: not an http(s) URL``. Secrets (tokens, signing secrets) are never
read from the file: only the *names* of environment variables may be configured.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.models import Destination

DEFAULT_CONFIG_PATH = "tagwire.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(Exception):
    """A configuration problem, already phrased for the person who wrote the file."""


def parse_duration(value: Any) -> float:
    """``"2s"``, ``"90s"``, ``"5m"``, ``"1h"``, ``"2d"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '90s', '5m' or '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. '90s', '5m', '1h')")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    return value.strip()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageConfig(_Section):
    path: str = "tagwire.db"
    retention_days: int = Field(default=90, ge=1, description="items and fingerprints kept this long")


class FetchConfig(_Section):
    allow_private_addresses: bool = False
    default_interval: Duration = 300.0
    min_interval: Duration = 1.0
    max_interval: Duration = 86400.0
    timeout: Duration = 20.0
    connect_timeout: Duration = 10.0
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    concurrency: int = Field(default=32, ge=1, le=1024)
    per_host_concurrency: int = Field(default=4, ge=1, le=64)
    user_agent: str = "Tagwire/0.1 (+https://github.com/tagwire/tagwire)"
    backoff_base: Duration = 60.0
    backoff_max: Duration = 6 * 3600.0
    failing_after: int = Field(default=3, ge=1, description="consecutive failures before 'failing'")


class AlertsConfig(_Section):
    max_age: Duration = 2 * 86400.0  # items older than this are stored but not alerted
    story_window: Duration = 2 * 86400.0
    summary_chars: int = Field(default=400, ge=80, le=3000)


class SourceConfig(_Section):
    name: str = ""
    url: str
    interval: Duration | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)


class ConsoleConfig(_Section):
    enabled: bool = True
    jsonl: str | None = None
    color: bool | None = None  # None: colour when stdout is a terminal


class SubscriptionConfig(_Section):
    destination: str
    query: str

    @field_validator("destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        return str(Destination.parse(v))

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        from bot.match import QueryError, parse_query

        try:
            parse_query(v)
        except QueryError as e:
            raise ValueError(str(e)) from None
        return v.strip()


class SlackConfig(_Section):
    enabled: bool = False
    mode: Literal["socket", "http"] = "socket"
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=3000, ge=1, le=65535)
    api_base_url: str = "https://slack.com/api/"
    bot_token_env: str = "SLACK_BOT_TOKEN"
    app_token_env: str = "SLACK_APP_TOKEN"
    signing_secret_env: str = "SLACK_SIGNING_SECRET"
    command: str = "/tagwire"
    admins: list[str] = Field(default_factory=list, description="user ids allowed to manage sources")
    messages_per_second: float = Field(default=1.0, gt=0)

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        v = _http_url(v)
        return v if v.endswith("/") else v + "/"


class DiscordConfig(_Section):
    enabled: bool = False
    token_env: str = "DISCORD_TOKEN"
    guild_ids: list[int] = Field(default_factory=list)
    shards: int | None = Field(default=None, ge=1, description="None: let Discord decide (auto-sharding)")
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"
    messages_per_second: float = Field(default=1.0, gt=0)

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        return _http_url(v).rstrip("/")


class Config(_Section):
    storage: StorageConfig = Field(default_factory=StorageConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    subscriptions: list[SubscriptionConfig] = Field(default_factory=list)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _unique_source_urls(self) -> Config:
        seen: dict[str, int] = {}
        for i, src in enumerate(self.sources):
            if src.url in seen:
                raise ValueError(f"sources[{i}].url: duplicate of sources[{seen[src.url]}].url")
            seen[src.url] = i
        return self

    def secret(self, env_name: str) -> str | None:
        """Read a secret from the environment by the variable name the config gives."""
        value = os.environ.get(env_name, "").strip()
        return value or None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif err.get("type") == "missing":
        msg = "required key is missing"
    return msg


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        msg = _message(err)
        # model-level validators phrase their own path ("sources[2].url: ...")
        where = _loc(tuple(err.get("loc", ())))
        lines.append(msg if where == "(top level)" and ":" in msg else f"{where}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file. Raises ConfigError with a readable message."""
    p = Path(path or os.environ.get("TAGWIRE_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found (copy config.example.toml to start)") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: TOML syntax error: {e}") from None
    return config_from_dict(data, origin=str(p))


def config_from_dict(data: dict[str, Any], origin: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{origin}: invalid configuration\n{format_validation_error(e)}") from None
