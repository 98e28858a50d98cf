"""Configuration: validated on load, errors name the key and the reason, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, config_from_dict, load_config, parse_duration

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2), ("90s", 90), ("5m", 300), ("1h", 3600), (45, 45),
                                                ("1.5h", 5400), ("250ms", 0.25)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "soon", "-5m", "5 parsecs", "0s", True])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_error_names_the_key_path_and_reason():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"sources": [{"url": "https://a.example/feed"}, {"url": "https://b.example/rss"},
                                      {"url": "ftp://c.example/feed"}],
                          "fetch": {"default_interval": "often", "bogus": 1}})
    text = str(e.value)
    assert "sources[2].url: not an http(s) URL" in text
    assert "fetch.bogus: unknown key" in text
    assert "fetch.default_interval: not a duration: 'often'" in text


def test_duplicate_sources_and_bad_destinations_are_named():
    with pytest.raises(ConfigError, match=r"sources\[1\]\.url: duplicate of sources\[0\]\.url"):
        config_from_dict({"sources": [{"url": "https://a.example/f"}, {"url": "https://a.example/f"}]})
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.destination: .*not a destination"):
        config_from_dict({"subscriptions": [{"destination": "news", "query": "x"}]})


def test_bad_query_in_config_points_at_the_problem():
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.query: .*column"):
        config_from_dict({"subscriptions": [{"destination": "console:#a", "query": "(Myanmar OR"}]})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[fetch\nx=1")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(bad)


def test_example_config_is_valid():
    cfg = load_config(ROOT / "config.example.toml")
    assert len(cfg.sources) >= 3 and cfg.subscriptions
    assert all(s.url.startswith("https://") for s in cfg.sources)


def test_check_config_command_exit_codes(tmp_path):
    good = subprocess.run([sys.executable, "-m", "bot", "check-config", "--config",
                           str(ROOT / "config.example.toml")], capture_output=True, text=True, cwd=ROOT)
    assert good.returncode == 0, good.stderr
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('[[sources]]\nurl = "not a url"\n')
    bad = subprocess.run([sys.executable, "-m", "bot", "check-config", "--config", str(bad_file)],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0
    assert "sources[0].url: not an http(s) URL" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_secrets_come_from_the_environment_only(monkeypatch):
    cfg = config_from_dict({"slack": {"enabled": True}})
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    assert cfg.secret(cfg.slack.bot_token_env) == "xoxb-secret"
    with pytest.raises(ConfigError, match=r"slack\.bot_token: unknown key"):
        config_from_dict({"slack": {"bot_token": "xoxb-in-file"}})
